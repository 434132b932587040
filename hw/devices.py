"""What the FPGA families offer, as numbers: block-RAM shapes, DSP budget, memory styles.

Pure Python, no Amaranth: the hardware generator (:mod:`hw.accelerator`), the plan
(:mod:`hw.plan`) and the resource estimate (:mod:`hw.resources`) all take these from here.

Members
-------
BRAM_SHAPES : dict
    Per family (``"ice40"``, ``"ecp5"``), the (width, depth) shapes one block RAM can take.
BRAM_BITS : int
    Bits of one iCE40 block RAM (SB_RAM40_4K).
LC_PER_BRAM : int
    Logic cells one iCE40 block RAM is worth when logic and block RAM are traded (the UP5K has
    5,280 logic cells and 30 block RAMs).
BRAM_MIN_DEPTH : int
    Memories at least this deep whose style the design did not choose go to block RAM (the build
    flow's rule for the protocol buffers and stand-in cores).
DSP_LANES : int
    Default DSP budget of the MAC array: the iCE40 UP5K's eight SB_MAC16.
DSP_MIN_PRODUCT_BITS : int
    Products narrower than this (weight bits + activation bits) stay in logic: a DSP for a
    2 x 2-bit product is a waste, and yosys maps a multiplier to a DSP only from here.
BLOCK_RAM, LOGIC : dict
    yosys memory attributes that ask for block RAM or for logic.
bram_blocks(width, depth, family="ice40")
    Block RAMs a memory of that shape takes.
memory_style(width, depth, rom)
    ``BLOCK_RAM`` or ``LOGIC``, whichever costs fewer logic cells.
"""

__all__ = ["BRAM_SHAPES", "BRAM_BITS", "LC_PER_BRAM", "BRAM_MIN_DEPTH", "DSP_LANES",
           "DSP_MIN_PRODUCT_BITS", "BLOCK_RAM", "LOGIC", "bram_blocks", "memory_style"]

BRAM_SHAPES = {
    "ice40": ((16, 256), (8, 512), (4, 1024), (2, 2048)),
    "ecp5": ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384)),
}
BRAM_BITS = 4096
LC_PER_BRAM = 176
BRAM_MIN_DEPTH = 128
DSP_LANES = 8
DSP_MIN_PRODUCT_BITS = 11

# yosys maps small memories (and every ROM) to logic unless asked
BLOCK_RAM = {"ram_style": "block", "rom_style": "block"}
LOGIC = {"ram_style": "logic", "rom_style": "logic"}


def bram_blocks(width: int, depth: int, family: str = "ice40") -> int:
    """Block RAMs of ``family`` for a ``width`` x ``depth`` memory, in its best aspect ratio."""
    if family not in BRAM_SHAPES:
        raise ValueError(f"family must be one of {sorted(BRAM_SHAPES)}, not {family!r}")
    return min(-(-width // w) * -(-depth // d) for w, d in BRAM_SHAPES[family])


def memory_style(width: int, depth: int, *, rom: bool) -> dict:
    """``BLOCK_RAM`` or ``LOGIC`` attributes, whichever costs fewer iCE40 logic cells.

    A ROM bit in LUT4s costs about ``2 * ceil(depth / 16) - 1`` (LUTs and the mux tree), a RAM bit
    in logic a flip-flop and its share of the read mux; a block RAM costs :data:`LC_PER_BRAM`.
    Shallow wide images (a threshold ROM of a few words) therefore go to logic.
    """
    per_bit = 2 * -(-depth // 16) - 1 if rom else 1.5 * depth
    return LOGIC if width * per_bit < bram_blocks(width, depth) * LC_PER_BRAM else BLOCK_RAM
