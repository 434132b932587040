"""What the FPGA families offer, as numbers: block-RAM shapes, DSP budget, memory styles, and
how yosys' ``memory_libmap`` fits a memory into each family's RAM cells.

Pure Python, no Amaranth: the hardware generator (:mod:`hw.accelerator`), the plan
(:mod:`hw.plan`), the memory count (:mod:`hw.memories`) and the resource estimate
(:mod:`hw.resources`) all take these from here.

Members
-------
BRAM_SHAPES : dict
    Per family (``"ice40"``, ``"ecp5"``), the (width, depth) shapes one block RAM can take.
BRAM_BITS : int
    Bits of one iCE40 block RAM (SB_RAM40_4K).
LC_PER_BRAM : int
    Logic cells one iCE40 block RAM is worth when logic and block RAM are traded (the UP5K has
    5,280 logic cells and 30 block RAMs).
BRAM_MIN_DEPTH, BRAM_MIN_WIDTH, BRAM_ALWAYS_DEPTH : int
    The build flow's rule for memories whose style the design did not choose: block RAM when at
    least ``BRAM_MIN_DEPTH`` deep and ``BRAM_MIN_WIDTH`` wide, or ``BRAM_ALWAYS_DEPTH`` deep
    (the ``setattr`` of :func:`hw.build.build`'s ``script_after_read``).
DSP_LANES : int
    Default DSP budget of the MAC array: the iCE40 UP5K's eight SB_MAC16.
DSP_MIN_PRODUCT_BITS : int
    Products narrower than this (weight bits + activation bits) stay in logic: a DSP for a
    2 x 2-bit product is a waste, and yosys maps a multiplier to a DSP only from here.
BLOCK_RAM, LOGIC : dict
    yosys memory attributes that ask for block RAM or for logic.
RamCell
    One RAM cell of a family's yosys library (``techlibs/ice40/brams.txt``,
    ``techlibs/lattice/brams_16kd.txt``, ``lutrams_trellis.txt``): geometry, ports, cost.
RAM_LIBRARY : dict
    Per family, its :class:`RamCell` s in yosys' library order.
RamFit
    How one memory fits one :class:`RamCell`: cells, cost (yosys' units), configuration.
fit_memory(cell, width, depth, ...)
    ``memory_libmap``'s geometry search for one cell, ported: the cheapest :class:`RamFit`.
bram_blocks(width, depth, family="ice40", ...)
    Block RAMs yosys takes for a memory of that shape (one read port; ROM or RAM).
memory_style(width, depth, rom)
    ``BLOCK_RAM`` or ``LOGIC``, whichever costs fewer logic cells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

__all__ = [
    "BLOCK_RAM",
    "BRAM_ALWAYS_DEPTH",
    "BRAM_BITS",
    "BRAM_MIN_DEPTH",
    "BRAM_MIN_WIDTH",
    "BRAM_SHAPES",
    "DSP_LANES",
    "DSP_MIN_PRODUCT_BITS",
    "LC_PER_BRAM",
    "LOGIC",
    "RAM_LIBRARY",
    "RamCell",
    "RamFit",
    "bram_blocks",
    "fit_memory",
    "memory_style",
]

BRAM_SHAPES = {
    "ice40": ((16, 256), (8, 512), (4, 1024), (2, 2048)),
    "ecp5": ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384)),
}
BRAM_BITS = 4096
LC_PER_BRAM = 176
BRAM_MIN_DEPTH = 128
BRAM_MIN_WIDTH = 4
BRAM_ALWAYS_DEPTH = 1024
DSP_LANES = 8
DSP_MIN_PRODUCT_BITS = 11

# yosys maps small memories (and every ROM) to logic unless asked
BLOCK_RAM = {"ram_style": "block", "rom_style": "block"}
LOGIC = {"ram_style": "logic", "rom_style": "logic"}


# -- yosys' RAM library, as memory_libmap reads it ---------------------------------------------

@dataclass(frozen=True)
class RamCell:
    """One RAM cell of a yosys memory library, reduced to what ``memory_libmap`` weighs.

    ``widths`` are the data widths of the cell at ``2 ** (abits - i)`` words (``dbits``);
    ``byte`` the write-enable granularity (0: none); ``write_widths`` the (lowest, highest)
    index into ``widths`` a write port takes; ``rw_ports`` / ``w_ports`` / ``r_ports`` the
    read-write, write-only and read-only ports; ``async_read``: reads are combinational (a
    synchronous read port gets a soft register); ``rom``: the cell may hold a ROM
    (no ``prune_rom``); ``kind``: ``"block"`` or ``"distributed"``; ``removable``: synthesis
    removes a cell whose outputs nothing reads (a simulation model yosys can see into, like
    ``SB_RAM40_4K``; not a black box, like ``DP16KD``).
    """

    name: str
    primitive: str
    kind: str
    abits: int
    widths: tuple
    byte: int
    cost: float
    write_widths: tuple
    rw_ports: int = 0
    w_ports: int = 0
    r_ports: int = 0
    async_read: bool = False
    rom: bool = True
    removable: bool = True

    @property
    def byte_index(self) -> int:
        """``byte_width_log2`` of memory_libmap: the widest width the byte still covers."""
        if not self.byte:
            return len(self.widths) - 1
        return max([i for i, w in enumerate(self.widths) if self.byte >= w], default=0)

    def port_replicas(self, writes: int, reads: int) -> int | None:
        """Copies of the whole memory needed to give every read port its own port (yosys
        duplicates a memory with more read ports than the cell has), or None: unmappable."""
        if writes > self.rw_ports + self.w_ports or (writes and not (self.rw_ports or
                                                                      self.w_ports)):
            return None
        if self.r_ports:
            return max(1, -(-reads // self.r_ports))
        space = self.rw_ports - max(0, writes - self.w_ports)
        if reads and space <= 0:
            return None
        return max(1, -(-reads // space)) if reads else 1


#: ``$__ICE40_RAM4K_`` comes in two options: without byte enables (write widths 2..8) and with
#: per-bit enables (write width 16); ``DP16KD`` (two read-write ports, 9-bit bytes) and
#: ``PDPW16KD`` (36-bit write, one read port) are both the ECP5's DP16KD block;
#: ``TRELLIS_DPR16X4`` is its LUT RAM (RAMs only: ``prune_rom``).
RAM_LIBRARY = {
    "ice40": (
        RamCell("$__ICE40_RAM4K_ (HAS_BE=0)", "SB_RAM40_4K", "block", 11, (2, 4, 8, 16), 0, 64,
                (0, 2), w_ports=1, r_ports=1),
        RamCell("$__ICE40_RAM4K_ (HAS_BE=1)", "SB_RAM40_4K", "block", 11, (2, 4, 8, 16), 1, 64,
                (3, 3), w_ports=1, r_ports=1),
    ),
    "ecp5": (
        RamCell("$__TRELLIS_DPR16X4_", "TRELLIS_DPR16X4", "distributed", 4, (4,), 0, 4, (0, 0),
                w_ports=1, r_ports=1, async_read=True, rom=False),
        RamCell("$__DP16KD_", "DP16KD", "block", 14, (1, 2, 4, 9, 18), 9, 128, (0, 4),
                rw_ports=2, removable=False),
        RamCell("$__PDPW16KD_", "DP16KD", "block", 14, (1, 2, 4, 9, 18, 36), 9, 128, (5, 5),
                w_ports=1, r_ports=1, removable=False),
    ),
}

# memory_libmap's weights of the soft logic a mapping needs
_FACTOR_MUX, _FACTOR_DEMUX, _FACTOR_EMU = 0.5, 0.5, 2


@dataclass(frozen=True)
class RamFit:
    """One memory in one :class:`RamCell`: ``cells`` of it (``data`` side by side or stacked,
    times ``ports`` copies for the read ports, less those holding only bits nothing reads),
    yosys' ``cost``, the chosen ``base_width``, and the soft logic around it (``mux`` / ``demux``
    bits, ``emulation`` score)."""

    cell: RamCell
    cells: int
    cost: float
    base_width: int
    data: int
    ports: int
    mux: int
    demux: int
    emulation: int


def _emulation_score(cell: RamCell, writes: int, reads: int, transparent: int) -> int:
    """memory_libmap's score of the soft logic that makes ``cell`` behave like the memory:
    a point per read port, and for every synchronous read port that is not transparent to a
    write port of its clock (Amaranth's default: read-first) the read-first emulation (3 per
    write port) and its transparency logic (3 per pair); no library cell here declares a
    write-to-read transparency of its own. A cell with combinational reads needs neither."""
    score = reads
    if not writes:
        return score
    if cell.async_read:
        return score + 3 * transparent * writes
    read_first = reads - transparent
    if read_first:
        score += 3 * writes
    return score + 3 * reads * writes


def fit_memory(cell: RamCell, width: int, depth: int, *, writes: int = 0, reads: int = 1,
               granularity: int | None = None, transparent: int = 0,
               used=None) -> RamFit | None:
    """The cheapest way yosys' ``memory_libmap`` fits a ``width`` x ``depth`` memory into
    ``cell`` (its ``handle_geom``, for ports that are not wide), or None if it cannot.

    Words of ``width`` bits go side by side and, past the cell's depth, also *after* one another
    in the same cells (yosys stacks address ranges into the data bits: a 20 x 768 ROM takes 4
    SB_RAM40_4K, not 6); write enables every ``granularity`` bits are padded to the cell's byte
    (a 3-bit lane takes 9 bits of a DP16KD). Each base width of the cell is tried; the cost is
    yosys' (cells x cell cost, plus read mux, write demux and emulation), first of equals wins.

    ``used``: the data bits the design reads (None: all). The geometry is chosen on every bit,
    but a :attr:`~RamCell.removable` cell that holds only unread bits drives nothing and
    synthesis removes it afterwards; ``RamFit.cells`` counts what remains.
    """
    if width <= 0 or depth <= 0:
        return None
    if not writes and not cell.rom:
        return None
    ports = cell.port_replicas(writes, reads)
    if ports is None:
        return None
    gran = granularity or width
    emulation = _emulation_score(cell, writes, reads, transparent)
    best, best_layout = None, None
    for base in range(len(cell.widths)):
        unit_index = base
        if writes:
            unit_index = min(unit_index, cell.write_widths[1])
        if unit_index != base and best is not None:
            break
        unit = cell.widths[unit_index]
        if writes and base < cell.write_widths[0] and base < cell.byte_index:
            continue                                  # a write port narrower than the cell's
        byte = cell.byte if cell.byte and cell.byte <= unit else unit
        if not writes:
            byte = 1
        swizzle = []                                  # memory bit per cell bit, -1: padding
        for i in range(width):
            if i and i % gran == 0:
                swizzle += [-1] * (-len(swizzle) % byte)
            swizzle.append(i)
        swizzle += [-1] * (-len(swizzle) % byte)
        words = 1 << (cell.abits - base)
        stacked = -(-depth // words)
        data = -(-(stacked * len(swizzle)) // unit)
        lanes = -(-width // gran) if writes else 0
        demux = writes * stacked * lanes if stacked != 1 else 0
        mux = reads * (stacked - 1) * width
        cost = (cell.cost * data * ports + _FACTOR_MUX * mux + _FACTOR_DEMUX * demux
                + _FACTOR_EMU * emulation)
        if best is None or cost < best.cost:
            best = RamFit(cell, data * ports, cost, cell.widths[base], data, ports, mux, demux,
                          emulation)
            best_layout = (swizzle, stacked, unit)
    if best is not None and used is not None and cell.removable:
        swizzle, stacked, unit = best_layout
        live = set()
        for hi in range(stacked):
            for pos, bit in enumerate(swizzle):
                if bit >= 0 and bit in used:
                    live.add((pos + len(swizzle) * hi) // unit)
        best = replace(best, cells=len(live) * best.ports)
    return best


def bram_blocks(width: int, depth: int, family: str = "ice40", *, rom: bool = True,
                reads: int = 1, granularity: int | None = None) -> int:
    """Block RAMs of ``family`` yosys takes for a ``width`` x ``depth`` memory forced to block
    RAM (a ROM, or a RAM with one write port of ``granularity``), ``reads`` read ports."""
    if family not in RAM_LIBRARY:
        raise ValueError(f"family must be one of {sorted(RAM_LIBRARY)}, not {family!r}")
    fits = [fit_memory(c, width, depth, writes=0 if rom else 1, reads=reads,
                       granularity=granularity) for c in RAM_LIBRARY[family] if c.kind == "block"]
    fits = [f for f in fits if f is not None]
    if not fits:
        raise ValueError(f"a {width} x {depth} memory does not fit {family} block RAM")
    return min(fits, key=lambda f: f.cost).cells


def memory_style(width: int, depth: int, *, rom: bool) -> dict:
    """``BLOCK_RAM`` or ``LOGIC`` attributes, whichever costs fewer iCE40 logic cells.

    A ROM bit in LUT4s costs about ``2 * ceil(depth / 16) - 1`` (LUTs and the mux tree), a RAM bit
    in logic a flip-flop and its share of the read mux; a block RAM costs :data:`LC_PER_BRAM`.
    Shallow wide images (a threshold ROM of a few words) therefore go to logic.
    """
    per_bit = 2 * math.ceil(depth / 16) - 1 if rom else 1.5 * depth
    return LOGIC if width * per_bit < bram_blocks(width, depth, rom=rom) * LC_PER_BRAM \
        else BLOCK_RAM
