"""The gateware side of the board protocol (frame format in :mod:`hw.board.frame`).

:class:`ProtocolEngine` sits between a UART (bytes in, bytes out) and an accelerator core. It
receives one frame at a time into a buffer, checks its CRC, command and length, and only then
feeds the inputs to the core and pulses its ``start``: a corrupted frame never reaches the
accelerator. The outputs are collected into a buffer and sent back once the core is done, with its
cycle count. Both CRCs (of the frame received and of the reply) are ``amaranth.lib.crc``
generators of :data:`hw.board.frame.CRC`, one byte per cycle. Every failure
is answered with an ``ERROR`` frame; a frame whose bytes stop arriving for ``timeout_cycles`` is
dropped and answered with ``TIMEOUT``, so a short frame never hangs the device. Bytes that arrive
while a request is being executed or answered are discarded.
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import frame
from .frame import Info, value_bytes

__all__ = ["ProtocolEngine"]


def _shape(bits, signed_):
    return signed(bits) if signed_ else unsigned(bits)


class ProtocolEngine(wiring.Component):
    """Frames in, core transactions, frames out.

    Parameters
    ----------
    info : :class:`~hw.board.frame.Info`
        The core's geometry (values, widths) and the ``INFO`` reply.
    timeout_cycles : int
        Inter-byte timeout within a frame, in clock cycles.

    Members
    -------
    rx : In(stream.Signature(8))
        Bytes from the UART receiver (always accepted).
    tx : Out(stream.Signature(8))
        Bytes to the UART transmitter.
    core_i : Out(stream.Signature(in_shape))
        One raw input value per beat; all of them before ``start``.
    core_o : In(stream.Signature(out_shape))
        One result per beat.
    start : Out(1)
        One-cycle pulse after the inputs of an inference.
    done : In(1)
        The core has finished (a pulse or a level; its first cycle after ``start`` counts).
    cycles : In(32)
        The core's cycle count, sampled on the cycle after ``done``.
    error : Out(1)
        Pulses when an error reply is started.
    """

    def __init__(self, info: Info, *, timeout_cycles: int):
        if not isinstance(info, Info):
            raise TypeError(f"info must be a frame.Info, not {info!r}")
        if info.n_in < 1 or info.n_out < 1:
            raise ValueError(f"the core needs at least one input and output, not {info!r}")
        if not isinstance(timeout_cycles, int) or timeout_cycles < 2:
            raise ValueError(f"timeout_cycles must be an integer >= 2, not {timeout_cycles!r}")
        self.info = info
        self.timeout_cycles = timeout_cycles
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "core_i": Out(stream.Signature(_shape(info.in_bits, info.in_signed))),
            "core_o": In(stream.Signature(_shape(info.out_bits, info.out_signed))),
            "start": Out(1),
            "done": In(1),
            "cycles": In(32),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        info = self.info
        in_bytes, out_bytes = value_bytes(info.in_bits), value_bytes(info.out_bits)
        req_len, rep_len = info.request_length, info.reply_length
        out_payload = info.n_out * out_bytes
        info_bytes = info.encode()

        # -- buffers ------------------------------------------------------------------------------
        m.submodules.in_mem = in_mem = Memory(shape=in_bytes * 8, depth=info.n_in, init=[])
        in_wr = in_mem.write_port(granularity=8)
        in_rd = in_mem.read_port()
        m.submodules.out_mem = out_mem = Memory(shape=_shape(info.out_bits, info.out_signed),
                                                depth=info.n_out, init=[])
        out_wr = out_mem.write_port()
        out_rd = out_mem.read_port()
        m.submodules.info_rom = info_rom = Memory(shape=8, depth=len(info_bytes),
                                                  init=list(info_bytes))
        info_rd = info_rom.read_port()

        # -- receive state ------------------------------------------------------------------------
        cmd = Signal(8)
        length = Signal(16)
        count = Signal(16)
        wword = Signal(range(info.n_in + 1))
        wlane = Signal(range(in_bytes))
        idle = Signal(range(self.timeout_cycles + 1))
        rx_byte = self.rx.payload
        rx_fire = self.rx.valid & self.rx.ready
        # the CRC of the frame so far: restarted in SYNC1, one byte in per rx_fire from CMD on
        m.submodules.rx_crc = rx_crc = frame.CRC.create()
        m.d.comb += rx_crc.data.eq(rx_byte)

        # -- reply state --------------------------------------------------------------------------
        reply_cmd = Signal(8)
        reply_len = Signal(16)
        kind = Signal(2)          # 0 error, 1 info, 2 infer
        err_code = Signal(8)
        tidx = Signal(16)
        oword = Signal(range(info.n_out + 1))
        olane = Signal(range(out_bytes))
        tx_fire = self.tx.valid & self.tx.ready
        # the CRC of the reply so far: restarted in TX_SYNC1, one byte in per tx_fire from CMD on
        m.submodules.tx_crc = tx_crc = frame.CRC.create()
        m.d.comb += tx_crc.data.eq(self.tx.payload)

        # -- the core transaction -----------------------------------------------------------------
        feed = Signal(range(info.n_in + 1))
        out_count = Signal(range(info.n_out + 1))
        done_seen = Signal()
        done_now_d = Signal()
        cycles = Signal(32)
        collecting = Signal()

        m.d.comb += self.rx.ready.eq(1)
        m.d.comb += [in_rd.addr.eq(feed), out_rd.addr.eq(oword), info_rd.addr.eq(tidx),
                     out_wr.addr.eq(out_count), out_wr.data.eq(self.core_o.payload)]

        # outputs are collected whenever they come, until all are in
        m.d.comb += self.core_o.ready.eq(collecting & (out_count != info.n_out))
        with m.If(self.core_o.valid & self.core_o.ready):
            m.d.comb += out_wr.en.eq(1)
            m.d.sync += out_count.eq(out_count + 1)
        # ``cycles`` is valid on the cycle after ``done`` (the accelerator's port contract)
        done_now = Signal()
        cycles_in = Signal()
        m.d.comb += done_now.eq(collecting & self.done & ~done_seen)
        m.d.sync += done_now_d.eq(done_now)
        with m.If(done_now):
            m.d.sync += done_seen.eq(1)
        with m.If(done_now_d):
            m.d.sync += [cycles.eq(self.cycles), cycles_in.eq(1)]

        def error(code):
            m.d.sync += [err_code.eq(code), reply_cmd.eq(frame.CMD_ERROR), reply_len.eq(2),
                         kind.eq(0), self.error.eq(1)]
            m.next = "TX_SYNC0"

        m.d.sync += self.error.eq(0)

        receiving = Signal()
        with m.If(receiving & ~rx_fire):
            m.d.sync += idle.eq(idle + 1)
        with m.Else():
            m.d.sync += idle.eq(0)

        # the reply payload byte at tidx / oword / olane
        data_byte = Signal(8)
        out_wide = Signal(out_bytes * 8)
        m.d.comb += out_wide.eq(out_rd.data)
        with m.Switch(kind):
            with m.Case(0):
                m.d.comb += data_byte.eq(Mux(tidx == 0, err_code, cmd))
            with m.Case(1):
                m.d.comb += data_byte.eq(info_rd.data)
            with m.Default():
                with m.If(tidx < out_payload):
                    m.d.comb += data_byte.eq(out_wide.word_select(olane, 8))
                with m.Else():
                    m.d.comb += data_byte.eq(cycles.word_select((tidx - out_payload)[:2], 8))

        def receive():
            # in a receive state: the inter-byte timeout
            m.d.comb += receiving.eq(1)
            with m.If((idle == self.timeout_cycles) & ~rx_fire):
                error(frame.ERR_TIMEOUT)

        with m.FSM():
            with m.State("SYNC0"):
                with m.If(rx_fire & (rx_byte == frame.SYNC[0])):
                    m.next = "SYNC1"
            with m.State("SYNC1"):
                receive()
                m.d.comb += rx_crc.start.eq(1)
                with m.If(rx_fire):
                    with m.If(rx_byte == frame.SYNC[1]):
                        m.next = "CMD"
                    with m.Elif(rx_byte != frame.SYNC[0]):
                        m.next = "SYNC0"
            for state, nxt, action in (
                    ("CMD", "LEN0", cmd.eq(rx_byte)),
                    ("LEN0", "LEN1", length[:8].eq(rx_byte)),
                    ("CRC0", "CRC1", None)):
                with m.State(state):
                    receive()
                    m.d.comb += rx_crc.valid.eq(rx_fire)
                    with m.If(rx_fire):
                        if action is not None:
                            m.d.sync += action
                        m.next = nxt
            with m.State("LEN1"):
                receive()
                m.d.comb += rx_crc.valid.eq(rx_fire)
                with m.If(rx_fire):
                    m.d.sync += [length[8:].eq(rx_byte), count.eq(0), wword.eq(0), wlane.eq(0)]
                    with m.If((rx_byte == 0) & (length[:8] == 0)):
                        m.next = "CRC0"
                    with m.Else():
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                receive()
                m.d.comb += [in_wr.addr.eq(wword), in_wr.data.eq(rx_byte.replicate(in_bytes)),
                             rx_crc.valid.eq(rx_fire)]
                with m.If(rx_fire):
                    # bytes past the buffer are only counted (the length check answers them)
                    with m.If(wword != info.n_in):
                        m.d.comb += in_wr.en.eq(1 << wlane)
                    if in_bytes == 1:
                        m.d.sync += wword.eq(Mux(wword == info.n_in, wword, wword + 1))
                    else:
                        with m.If(wlane == in_bytes - 1):
                            m.d.sync += [wlane.eq(0),
                                         wword.eq(Mux(wword == info.n_in, wword, wword + 1))]
                        with m.Else():
                            m.d.sync += wlane.eq(wlane + 1)
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == length - 1):
                        m.next = "CRC0"
            with m.State("CRC1"):
                receive()
                m.d.comb += rx_crc.valid.eq(rx_fire)
                with m.If(rx_fire):
                    m.next = "CHECK"
            with m.State("CHECK"):
                # the CRC of CMD .. CRC is the residue (0) exactly when the frame is intact
                with m.If(~rx_crc.match_detected):
                    error(frame.ERR_BAD_CRC)
                with m.Elif(cmd == frame.CMD_INFO):
                    with m.If(length != 0):
                        error(frame.ERR_BAD_LENGTH)
                    with m.Else():
                        m.d.sync += [reply_cmd.eq(frame.CMD_INFO | frame.REPLY),
                                     reply_len.eq(len(info_bytes)), kind.eq(1)]
                        m.next = "TX_SYNC0"
                with m.Elif(cmd == frame.CMD_INFER):
                    with m.If(length != req_len):
                        error(frame.ERR_BAD_LENGTH)
                    with m.Else():
                        m.next = "LOAD"
                with m.Else():
                    error(frame.ERR_UNKNOWN_COMMAND)
            with m.State("LOAD"):
                m.d.comb += in_rd.addr.eq(0)
                m.d.sync += feed.eq(0)
                m.next = "FEED"
            with m.State("FEED"):
                # the read port shows in_mem[feed]; the address moves on with each handshake
                m.d.comb += [self.core_i.valid.eq(1), self.core_i.payload.eq(in_rd.data)]
                with m.If(self.core_i.ready):
                    m.d.comb += in_rd.addr.eq(feed + 1)
                    m.d.sync += feed.eq(feed + 1)
                    with m.If(feed == info.n_in - 1):
                        m.next = "START"
            with m.State("START"):
                # inputs first, then start: the core's cycle count leaves out the load
                m.d.comb += self.start.eq(1)
                m.d.sync += [out_count.eq(0), done_seen.eq(0), cycles_in.eq(0),
                             collecting.eq(1)]
                m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(cycles_in & (out_count == info.n_out)):
                    m.d.sync += [collecting.eq(0), reply_cmd.eq(frame.CMD_INFER | frame.REPLY),
                                 reply_len.eq(rep_len), kind.eq(2)]
                    m.next = "TX_SYNC0"

            # -- the reply ------------------------------------------------------------------------
            def send(state, byte, nxt, *, crc_it=True):
                with m.State(state):
                    m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(byte)]
                    if crc_it:
                        m.d.comb += tx_crc.valid.eq(tx_fire)
                    with m.If(tx_fire):
                        nxt()

            def goto(name):
                return lambda: setattr(m, "next", name)

            def after_len():
                m.d.sync += [tidx.eq(0), oword.eq(0), olane.eq(0)]
                with m.If(reply_len == 0):
                    m.next = "TX_CRC0"
                with m.Else():
                    m.next = "TX_FETCH"

            send("TX_SYNC0", frame.SYNC[0], goto("TX_SYNC1"), crc_it=False)
            with m.State("TX_SYNC1"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(frame.SYNC[1]),
                             tx_crc.start.eq(1)]
                with m.If(tx_fire):
                    m.next = "TX_CMD"
            send("TX_CMD", reply_cmd, goto("TX_LEN0"))
            send("TX_LEN0", reply_len[:8], goto("TX_LEN1"))
            send("TX_LEN1", reply_len[8:], after_len)
            with m.State("TX_FETCH"):      # the read ports catch up with tidx / oword
                m.next = "TX_DATA"

            def next_data():
                m.d.sync += tidx.eq(tidx + 1)
                if out_bytes == 1:
                    m.d.sync += oword.eq(oword + 1)
                else:
                    with m.If(olane == out_bytes - 1):
                        m.d.sync += [olane.eq(0), oword.eq(oword + 1)]
                    with m.Else():
                        m.d.sync += olane.eq(olane + 1)
                with m.If(tidx == reply_len - 1):
                    m.next = "TX_CRC0"
                with m.Else():
                    m.next = "TX_FETCH"

            send("TX_DATA", data_byte, next_data)
            send("TX_CRC0", tx_crc.crc[8:], goto("TX_CRC1"), crc_it=False)
            send("TX_CRC1", tx_crc.crc[:8], goto("SYNC0"), crc_it=False)
        return m
