"""The board top (UART, protocol, core) simulated with Amaranth's simulator, talking to the host
code of sim/host.py: bit-exact with the golden engine, and every bad frame gets an error reply."""


import numpy as np
import pytest

from board_nets import tiny_network
from thresher.hw.accelerator import Accelerator
from thresher.hw.board import frame
from thresher.hw.board.standin import StandInCore
from thresher.hw.board.top import UartBridge, core_info
from thresher.model_tools.errors import ThresherError
from thresher.model_tools.golden import run_integer
from thresher.sim.host import Board, run_board
from thresher.sim.transport import SimulatedTransport

DIVISOR = 4
TIMEOUT = 300


def simulated_board(net, kind):
    if kind == "accelerator":
        core = Accelerator(net, pe=2, simd=4)
        predicted = core.plan.predict_cycles()
    else:
        core = StandInCore(net)
        predicted = core.predict_cycles()
    info = core_info(core, n_in=core.n_in, n_out=core.n_out, clock_hz=1e6,
                     network_hash=frame.network_hash(net), input_range=(0, 255))
    bridge = UartBridge(core, info, divisor=DIVISOR, timeout_cycles=TIMEOUT)
    return SimulatedTransport(bridge, divisor=DIVISOR), predicted


@pytest.fixture(scope="module", params=["standin", "accelerator"])
def board(request):
    net = tiny_network(seed=5)
    transport, predicted = simulated_board(net, request.param)
    return net, transport, predicted


def test_info(board):
    net, transport, predicted = board
    info = Board(transport).info()
    assert (info.n_in, info.n_out, info.in_bits, info.in_signed) == (12, 4, 8, False)
    assert info.out_signed and info.network_hash == frame.network_hash(net)


def test_run_board_bit_exact(board):
    net, transport, predicted = board
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, size=(3, 1, 12)).astype(np.float32)
    x[0, 0, :3] = [0, 255, 128]
    y, cycles = run_board(net, x, transport, return_cycles=True)
    np.testing.assert_array_equal(y, run_integer(net, x))
    assert (cycles == predicted).all()


def error_code(transport, raw):
    transport.flush_input()
    transport.write(raw)
    cmd, payload = Board(transport).read_frame()
    assert cmd == frame.CMD_ERROR
    return payload[0]


def test_error_replies(board):
    net, transport, predicted = board
    good = frame.encode_frame(frame.CMD_INFER, bytes(range(12)))
    bad_crc = bytearray(good)
    bad_crc[7] ^= 0x10
    assert error_code(transport, bytes(bad_crc)) == frame.ERR_BAD_CRC
    assert error_code(transport, frame.encode_frame(0x33, b"\x01")) == frame.ERR_UNKNOWN_COMMAND
    assert error_code(transport, frame.encode_frame(frame.CMD_INFER, bytes(11))) == \
        frame.ERR_BAD_LENGTH
    assert error_code(transport, frame.encode_frame(frame.CMD_INFO, b"\x00" * 20)) == \
        frame.ERR_BAD_LENGTH
    # a short frame: the device times out instead of hanging, then serves the next request
    assert error_code(transport, good[:9]) == frame.ERR_TIMEOUT
    x = np.full((1, 1, 12), 200.0)
    np.testing.assert_array_equal(run_board(net, x, transport), run_integer(net, x))


def test_host_checks(board):
    net, transport, predicted = board
    other = tiny_network(seed=6)
    with pytest.raises(ThresherError, match="another network"):
        run_board(other, np.zeros((1, 1, 12)), transport)
    with pytest.raises(ThresherError, match="integer raw inputs"):
        run_board(net, np.full((1, 1, 12), 0.5), transport)


def test_run_board_sim_port():
    net = tiny_network(seed=8)
    x = np.random.default_rng(3).integers(0, 256, size=(2, 1, 12))
    np.testing.assert_array_equal(run_board(net, x, "sim"), run_integer(net, x))


@pytest.mark.slow
def test_tfc_through_uart(shared):
    """TFC_2W2A on hw.Accelerator 16x16 behind the UART top, one MNIST digit, bit-exact."""
    from thresher.model_tools import load_model
    net = load_model(shared / "models" / "TFC_2W2A.onnx")
    x = np.load(shared / "data" / "mnist4" / "input.npy")[:1]
    from thresher.sim.host import simulated_board as whole_board
    y = run_board(net, x, whole_board(net, pe=16, simd=16), timeout=600)
    np.testing.assert_array_equal(y, run_integer(net, x))


@pytest.mark.parametrize("board, clock_mhz, baud, divisor", [
    ("icebreaker", None, 1_500_000, 8),       # the 12 MHz oscillator: 3M would be 4 clocks a bit
    ("icebreaker", 27.3, 3_000_000, 9),       # a retimed PLL clock (27.375 MHz): 1.4 % fast
    ("ulx3s-85f", None, 1_500_000, 17),       # 25 MHz: the FT231X's 3M and 2M are off; 2.0 % slow
])
def test_board_top_at_the_rate_it_picks(board, clock_mhz, baud, divisor):
    """BoardTop picks the UART rate for the clock it is built at and the board's bridge; the host
    at exactly that (nominal) rate talks to the simulated bridge, whose divisor only approximates
    it: INFO's link bytes are the frames', INFER is bit-exact."""
    from thresher.hw.board.platforms import make_platform
    from thresher.hw.board.top import BoardTop
    net = tiny_network(seed=9)
    core = StandInCore(net)
    top = BoardTop(core, make_platform(board), n_in=core.n_in, n_out=core.n_out,
                   clock_mhz=clock_mhz, network_hash=frame.network_hash(net))
    top._MustUse__silence = True            # only its bridge is simulated
    assert (top.baud, top.divisor) == (baud, divisor)
    transport = SimulatedTransport(top.bridge, divisor=top.divisor, clk_hz=top.clock_hz,
                                   baud=top.baud)
    info = Board(transport).info()
    assert info.n_in == 12
    assert info.clock_hz == round(top.clock_hz)
    assert info.link_bytes == (12 * frame.value_bytes(info.in_bits) + 7) + \
        (4 * frame.value_bytes(info.out_bits) + 4 + 7)
    x = np.random.default_rng(4).integers(0, 256, size=(2, 1, 12))
    x[0, 0, :2] = [0, 255]
    y, cycles = run_board(net, x, transport, return_cycles=True)
    np.testing.assert_array_equal(y, run_integer(net, x))
    assert (cycles == core.predict_cycles()).all()


@pytest.mark.filterwarnings("ignore:.*created but never used")   # the tops that raise
def test_explicit_baud_is_checked_against_the_clock():
    from thresher.hw.board.platforms import make_platform
    from thresher.hw.board.top import BoardTop
    core = StandInCore(tiny_network())
    top = BoardTop(core, make_platform("icebreaker"), n_in=core.n_in, n_out=core.n_out,
                   baud=115200)
    top._MustUse__silence = True
    assert (top.baud, top.divisor) == (115200, 104)
    for baud, msg in ((7, "not a UART rate"), (4_000_000, "at least 4 clocks"),
                      (2_500_000, "off by")):
        with pytest.raises(ThresherError, match=msg):
            BoardTop(core, make_platform("icebreaker"), n_in=core.n_in, n_out=core.n_out,
                     baud=baud)
