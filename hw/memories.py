"""Every memory of a design, and what yosys will make of it: block RAM cells or logic.

The count is exact, not a model. The memories are those the design declares (Amaranth's
``MemoryInstance`` fragments of the elaborated design: shape, depth, contents, ports,
attributes; for the accelerator the same list is derived from its plan in milliseconds, and a
test checks the two agree), and each is mapped by the rules yosys applies in the build flow
(:func:`hw.build.build`):

1. **Style.** A ``ram_style`` / ``rom_style`` (or ``ram_block``, ``ramstyle`` ...) attribute
   decides: ``block`` forces block RAM, ``logic`` forces flip-flops and LUTs. A memory without
   one gets the flow's ``setattr`` rule (block RAM from :data:`~hw.devices.BRAM_MIN_DEPTH` words
   and :data:`~hw.devices.BRAM_MIN_WIDTH` bits, or from :data:`~hw.devices.BRAM_ALWAYS_DEPTH`
   words), measured on the memory as written. Below that, ``memory_libmap`` compares costs:
   logic at one unit per RAM bit (1/16 per ROM bit) against the cheapest RAM cell (on the ECP5
   also LUT RAM, ``TRELLIS_DPR16X4``, for RAMs).
2. **Constant lanes.** ``opt_mem`` drops the bit lanes a ROM holds constant in every word (the
   padding lanes of a weight image, say) before mapping; a ROM of constants vanishes.
3. **Geometry.** :func:`hw.devices.fit_memory` (``memory_libmap``'s search, ported): the cell's
   widths, words stacked into spare data bits, write enables padded to the cell's byte, one copy
   of the memory per read port beyond the cell's.
4. **Unread cells.** A RAM cell holding only bits nothing reads is removed after mapping (the
   UART buffer keeps 16 bits per value, the core reads 9 or 8).

Two facts of the logic around a memory matter and are not in its declaration; for the
accelerator they come from its plan (:func:`accelerator_memories`): which write enables are
distinct signals (the feature RAM's lanes are declared one by one, but when every writer
enables the whole word yosys sees one enable: no byte padding on the ECP5), and which read bits
are used (of the UART input buffer, the bits the core's input stage looks at; of the feature
RAM, the lanes of the activations some weight multiplies). The slow tests check them against
yosys, Amaranth's netlist and the full synthesis of the calibration builds.

Members
-------
MemorySpec               one memory of the design, as Amaranth describes it.
MappedMemory             a memory and where it goes: style, cells, block RAMs, logic estimate.
design_memories(top)     the ``MemorySpec`` s of an elaboratable, by hierarchical name.
plan_memories(plan, info) the same for the accelerator and its UART bridge, from the plan.
weight_rom(plan)         the weight ROM lane by lane: varying bits, lanes that hold a weight.
map_memory(spec, family) where yosys puts one memory.
accelerator_memories(network, pe, simd, board)
                         the mapped memories of ``Accelerator`` behind the UART bridge.
memory_rows(mapped)      one dict per memory: name, width, depth, kind, style, brams, lcs.
yosys_memory_map(top, family)
                         what yosys itself does with the memories of ``top`` (its memory passes
                         only, a second or two): for tests and calibration.
"""

from __future__ import annotations

import math
import re
import subprocess
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from .devices import (
    BRAM_ALWAYS_DEPTH,
    BRAM_MIN_DEPTH,
    BRAM_MIN_WIDTH,
    RAM_LIBRARY,
    RamFit,
    fit_memory,
)

__all__ = [
    "FAMILY_SYNTH",
    "MappedMemory",
    "MemorySpec",
    "WeightRom",
    "accelerator_memories",
    "design_memories",
    "map_memory",
    "memory_rows",
    "plan_memories",
    "weight_rom",
    "yosys_memory_map",
]

#: attributes yosys reads a memory's style from, in its order (``memory_libmap``)
_STYLE_ATTRS = ("ram_block", "rom_block", "ram_style", "rom_style", "ramstyle", "romstyle",
                "syn_ramstyle", "syn_romstyle")
#: memory_libmap's logic cost per bit: a RAM bit is a flip-flop, a ROM bit a sixteenth of a LUT4
_LOGIC_COST_RAM, _LOGIC_COST_ROM = 1.0, 1.0 / 16

#: per family: the synthesis command and the memory_libmap libraries it runs
FAMILY_SYNTH = {
    "ice40": ("synth_ice40 -dsp", "-lib +/ice40/brams.txt -lib +/ice40/spram.txt -no-auto-huge",
              ("$__ICE40_RAM4K_",)),
    "ecp5": ("synth_ecp5", "-lib +/lattice/lutrams_trellis.txt -lib +/lattice/brams_16kd.txt",
             ("$__DP16KD_", "$__PDPW16KD_", "$__TRELLIS_DPR16X4_")),
}


@dataclass(frozen=True)
class MemorySpec:
    """One memory as the design declares it.

    ``width`` x ``depth`` bits; ``init`` the raw contents (one int per word, ``depth`` of them);
    ``writes`` the granularity of each write port; ``reads`` synchronous read ports, of which
    ``transparent`` are transparent to a write port, ``async_reads`` combinational ones;
    ``attrs`` the memory's attributes; ``used`` the mask of the data bits the design reads
    (None: all of them); ``varying`` the mask of the bits that differ between words, and
    ``logic_cells`` what the ROM costs in logic (:func:`rom_logic_cells`), when known without
    ``init`` (a ROM image too large to pack quickly).
    """

    name: str
    width: int
    depth: int
    init: tuple = ()
    writes: tuple = ()
    reads: int = 1
    transparent: int = 0
    async_reads: int = 0
    attrs: dict = field(default_factory=dict)
    used: int | None = None
    varying: int | None = None
    logic_cells: int | None = None

    @property
    def kind(self) -> str:
        return "ram" if self.writes else "rom"

    def kept_lanes(self) -> list[int]:
        """The bit lanes left after yosys' ``opt_mem``, which removes those a ROM holds equal in
        every word (a RAM's written lanes are never constant here)."""
        if self.writes:
            return list(range(self.width))
        if self.varying is not None:
            return [i for i in range(self.width) if self.varying >> i & 1]
        mask = (1 << self.width) - 1
        ones, zeros = mask, 0
        for word in self.init:
            word &= mask
            ones &= word
            zeros |= word
        if len(self.init) < self.depth:             # rows not given are zero
            ones = 0
        varying = zeros & ~ones
        return [i for i in range(self.width) if varying >> i & 1]

    def constant_lanes(self) -> int:
        """How many bit lanes ``opt_mem`` removes (see :meth:`kept_lanes`)."""
        return self.width - len(self.kept_lanes())


@dataclass(frozen=True)
class MappedMemory:
    """A memory and where yosys puts it.

    ``style`` is ``"block"`` (block RAM cells), ``"logic"`` (flip-flops and LUTs; on the ECP5
    also LUT RAM, ``primitive`` ``TRELLIS_DPR16X4``) or ``"none"`` (every lane constant: no
    memory at all); ``reason`` says why; ``bits`` the lanes left after ``opt_mem``; ``cells``
    the RAM cells (``primitive``), ``brams`` those that are block RAM; ``lcs`` a rough count of
    the logic cells (iCE40) / LUT4s (ECP5) it costs: the memory itself when in logic, the
    read-first emulation and address muxes when in block RAM.
    """

    spec: MemorySpec
    style: str
    reason: str
    bits: int
    primitive: str | None = None
    cells: int = 0
    brams: int = 0
    lcs: int = 0
    fit: RamFit | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def row(self) -> dict:
        s = self.spec
        return {"name": s.name, "width": s.width, "depth": s.depth, "kind": s.kind,
                "style": self.style, "brams": self.brams, "lcs": self.lcs, "bits": self.bits,
                "cells": f"{self.cells} {self.primitive}" if self.cells else "",
                "reason": self.reason}


# -- the design's memories --------------------------------------------------------------------

def design_memories(top, platform=None) -> list[MemorySpec]:
    """Every memory of the elaboratable ``top`` (elaborated with ``platform``), named by its
    path of submodule names as yosys will (``core.wrom``; ``$<n>`` for unnamed ones)."""
    from amaranth.hdl import Fragment, Shape
    from amaranth.hdl._mem import MemoryInstance

    found = []

    def walk(fragment, path):
        if isinstance(fragment, MemoryInstance):
            data = fragment._data
            width = Shape.cast(data.shape).width
            init = tuple(int(v) & ((1 << width) - 1) for v in data.init._raw)
            reads = [p for p in fragment._read_ports if p._domain != "comb"]
            found.append(MemorySpec(
                name=".".join(path), width=width, depth=data.depth, init=init,
                writes=tuple(p._granularity for p in fragment._write_ports),
                reads=len(reads), transparent=sum(1 for p in reads if p._transparent_for),
                async_reads=len(fragment._read_ports) - len(reads),
                attrs=dict(fragment._attrs)))
            return
        for n, (sub, name, _) in enumerate(fragment.subfragments):
            walk(sub, path + (name if name is not None else f"${n}",))

    walk(Fragment.get(top, platform), ())
    return found


# -- where yosys puts one memory -------------------------------------------------------------

def _attribute_style(attrs: dict) -> tuple[str | None, str]:
    """``(kind, why)`` from the memory's attributes, as memory_libmap reads them: ``"block"``,
    ``"logic"``, ``"distributed"``, ``"auto"``, ``"other"`` or None (no style attribute)."""
    for name in _STYLE_ATTRS:
        if name not in attrs:
            continue
        value = attrs[name]
        if value == 1 or value is True:
            return "other", f"{name}=1"
        text = str(value).lower()
        if text == "no_rw_check":
            continue
        why = f"{name}={text}"
        if text == "auto":
            return "auto", why
        if text in ("logic", "registers"):
            return "logic", why
        if text == "distributed":
            return "distributed", why
        if text in ("block", "block_ram", "ebr"):
            return "block", why
        if text in ("huge", "ultra"):
            return "huge", why
        return "other", why
    for name in ("logic_block", "no_ram"):
        if attrs.get(name):
            return "logic", f"{name}=1"
    return None, ""


def _flow_rule(spec: MemorySpec, bram_min_depth: int) -> bool:
    """The build's ``setattr`` rule for memories without a style: block RAM or not."""
    return (spec.depth >= bram_min_depth and spec.width >= BRAM_MIN_WIDTH) or \
        spec.depth >= BRAM_ALWAYS_DEPTH


def rom_logic_cells(columns) -> int:
    """Logic cells of a ROM in LUT4s, from its contents: ``columns`` are the bit columns (one
    sequence of 0/1 per kept lane, one entry per word).

    yosys turns a ROM into a tree of 2:1 multiplexers over 16-word leaves (each a LUT4 of the
    low address bits) and ABC shares what repeats: a leaf that is constant or one address bit
    costs nothing, equal leaves and equal subtrees are built once (across columns too), a
    multiplexer between equal halves vanishes. The count is one LUT per distinct leaf and
    multiplexer left, plus a flip-flop cell for each distinct column that ends in no LUT
    (the read register; otherwise it shares the LUT's cell)."""
    memo, luts, alone = {}, 0, set()

    def node(key):
        nonlocal luts
        if key not in memo:
            memo[key] = len(memo)
            luts += 1
        return memo[key]

    literals = {}
    for size in (2, 4, 8, 16):
        for b in range(4):
            pattern = tuple((i >> b) & 1 for i in range(size))
            if b < size.bit_length() - 1:
                literals[pattern] = literals[tuple(1 - x for x in pattern)] = ("lit", size, b)
    for column in columns:
        column = tuple(int(x) for x in column)
        n = 1 << max(0, (len(column) - 1).bit_length())
        column += (0,) * (n - len(column))
        leaf = min(16, n)
        level = []
        for i in range(0, n, leaf):
            chunk = column[i:i + leaf]
            if len(set(chunk)) == 1:
                level.append(("const", chunk[0]))
            elif chunk in literals:
                level.append(literals[chunk])
            else:
                level.append(node(("leaf", chunk)))
        while len(level) > 1:
            level = [a if a == b else node(("mux", a, b)) for a, b in zip(level[::2], level[1::2])]
        top = level[0]
        if isinstance(top, tuple) and top[0] == "lit":
            alone.add(top)
    return luts + len(alone)


def _logic_lcs(spec: MemorySpec, bits: int) -> int:
    """Logic cells of a memory in flip-flops and LUT4s: a ROM as :func:`rom_logic_cells` counts
    them from its contents (without them, ``2 * ceil(depth / 16) - 1`` LUT4s per bit), a RAM bit
    a flip-flop and its share of the read multiplexer (~1.5 cells)."""
    if spec.writes:
        return round(bits * spec.depth * 1.5)
    if spec.logic_cells is not None:
        return spec.logic_cells
    if spec.init:
        kept = spec.kept_lanes()
        words = list(spec.init) + [0] * (spec.depth - len(spec.init))
        return rom_logic_cells([[w >> lane & 1 for w in words] for lane in kept])
    return bits * max(1, 2 * math.ceil(spec.depth / 16) - 1)


def _emulation_lcs(spec: MemorySpec, fit: RamFit, bits: int) -> int:
    """Rough logic cells of the soft logic yosys adds around RAM cells: the read-first
    emulation of a RAM (the write delayed a cycle and bypassed: data, address and enable
    registers and a multiplexer per bit), and the read multiplexers / write decoders of words
    stacked past the cell's depth."""
    lcs = (fit.mux + fit.demux) // 2
    if spec.writes and fit.emulation > spec.reads:
        lcs += (bits + max(1, math.ceil(math.log2(spec.depth)))) * spec.reads
    if fit.cell.async_read:
        lcs += bits * spec.reads                      # the read register
    return lcs


def map_memory(spec: MemorySpec, family: str, *,
               bram_min_depth: int = BRAM_MIN_DEPTH) -> MappedMemory:
    """Where yosys (``memory_libmap`` in the build flow) puts ``spec`` on ``family``."""
    if family not in RAM_LIBRARY:
        raise ValueError(f"family must be one of {sorted(RAM_LIBRARY)}, not {family!r}")
    kind, why = _attribute_style(spec.attrs)
    if kind is None:
        if _flow_rule(spec, bram_min_depth):
            kind, why = "block", "build rule (deep enough)"
        else:
            kind, why = "auto", "cheapest (yosys cost)"
    kept = spec.kept_lanes()
    bits = len(kept)
    used = None if spec.used is None else \
        frozenset(i for i, lane in enumerate(kept) if spec.used >> lane & 1)
    if bits == 0:
        return MappedMemory(spec, "none", "every lane constant", 0)
    if kind == "logic":
        return MappedMemory(spec, "logic", why, bits, lcs=_logic_lcs(spec, bits))
    fits = []
    for cell in RAM_LIBRARY[family]:
        if kind in ("block", "distributed") and cell.kind != kind:
            continue
        if spec.async_reads and not cell.async_read:
            continue
        gran = min(spec.writes) if spec.writes else None
        fit = fit_memory(cell, bits, spec.depth, writes=len(spec.writes),
                         reads=spec.reads + spec.async_reads, granularity=gran,
                         transparent=spec.transparent, used=used)
        if fit is not None:
            fits.append(fit)
    # one candidate per kind of cell (the cheapest, first of equals), then the cheapest of all;
    # logic wins ties (yosys compares against its cost truncated to an integer)
    best = {}
    for f in fits:
        if f.cell.kind not in best or f.cost < best[f.cell.kind].cost:
            best[f.cell.kind] = f
    fits = [f for f in fits if best[f.cell.kind] is f]
    if kind == "auto":
        limit = int(bits * spec.depth * (_LOGIC_COST_RAM if spec.writes else _LOGIC_COST_ROM))
        chosen = None
        for f in fits:
            if f.cost < limit:
                limit, chosen = f.cost, f
        if chosen is None:
            return MappedMemory(spec, "logic", why, bits, lcs=_logic_lcs(spec, bits))
    else:
        if not fits:
            raise ValueError(f"memory {spec.name!r} ({spec.width} x {spec.depth}) cannot be "
                             f"mapped to {family} RAM ({why})")
        chosen = fits[0]
        for f in fits[1:]:
            if f.cost < chosen.cost:
                chosen = f
    block = chosen.cell.kind == "block"
    return MappedMemory(spec, "block" if block else "logic", why, bits, chosen.cell.primitive,
                        chosen.cells, chosen.cells if block else 0,
                        _emulation_lcs(spec, chosen, bits) + (0 if block else 2 * chosen.cells),
                        chosen)


# -- the accelerator behind the UART ---------------------------------------------------------

def _bridge(network, pe, simd, board, input_range, clock_mhz):
    """``Accelerator(network, pe, simd)`` behind a :class:`hw.board.top.UartBridge`, as a build
    puts it on ``board`` (its multipliers, the INFO reply of ``clock_mhz``)."""
    from .accelerator import Accelerator
    from .board.frame import network_hash
    from .board.top import UartBridge, core_info
    core = Accelerator(network, pe=pe, simd=simd, input_range=input_range,
                       dsp_lanes=_multipliers(board))
    info = core_info(core, n_in=core.n_in, n_out=core.n_out, clock_hz=clock_mhz * 1e6,
                     network_hash=network_hash(network), pe=pe, simd=simd)
    return UartBridge(core, info, divisor=16, timeout_cycles=1000)


def _multipliers(board: str) -> int:
    from .board.platforms import board_spec
    spec = board_spec(board)
    return spec.multipliers


def plan_memories(plan, info, *, weights: WeightRom | None = None) -> list[MemorySpec]:
    """The memories ``Accelerator`` (of ``plan``) and the UART bridge (``info``, the INFO reply)
    declare, derived from the plan without elaborating: the same shapes, contents (the ROM images
    of :mod:`hw.images`), ports and styles, named as :func:`design_memories` names them. A few
    milliseconds instead of the design's elaboration (a fraction of a second, for every array
    :func:`hw.resources.array_candidates` prices); ``tests/hw/test_memories.py`` checks it equals
    the elaborated design's list."""
    from .board.frame import value_bytes
    from .devices import BLOCK_RAM, memory_style
    from .images import input_level_image, input_threshold_image, threshold_image
    specs = []

    def rom(name, width, words, attrs):
        specs.append(MemorySpec(name, width, len(words), init=tuple(words), attrs=attrs))

    def ram(name, width, depth, attrs, gran=None, transparent=0):
        specs.append(MemorySpec(name, width, depth, init=(0,) * depth, writes=(gran or width,),
                                transparent=transparent, attrs=attrs))

    if plan.input_stage == "rom":
        rom("core.loader.level_rom", *input_level_image(plan), BLOCK_RAM)
    elif plan.input_stage == "compare":
        rom("core.loader.threshold_rom", *input_threshold_image(plan), {})
    F, T, stages = plan.feat_width, plan.tap_width, plan.stages
    ram("core.fmem", plan.V * F, plan.feature_depth, BLOCK_RAM, F)
    if plan.im2col:
        _, ho, wo = stages[0].conv_geom
        kh, kw = stages[0].kernel
        for j in range(kh * kw):
            ram(f"core.tap_{j // kw}_{j % kw}", plan.load_geom[0] * T, ho * wo, BLOCK_RAM, T)
    if plan.output_mode == "acc":
        width = plan.pe * plan.out_width
        ram("core.omem", width, plan.out_depth, memory_style(width, plan.out_depth, rom=False))
    if plan.pool_buffer_depth:
        ram("core.pbuf", plan.pe * F, plan.pool_buffer_depth, {}, transparent=1)
    weights = weights or weight_rom(plan)
    specs.append(MemorySpec("core.wrom", weights.width, weights.depth, varying=weights.varying,
                            logic_cells=weights.logic_cells,
                            attrs=memory_style(weights.width, weights.depth, rom=True)))
    images = [threshold_image(plan, s, prenegated=True) for s in stages
              if s.kind == "mac" and s.levels >= 1]
    if images:
        words = [w for _, ws in images for w in ws]
        twidth = max(w for w, _ in images)
        rom("core.trom", twidth, words, memory_style(twidth, len(words), rom=True))
    ram("protocol.in_mem", value_bytes(info.in_bits) * 8, info.n_in, {}, 8)
    ram("protocol.out_mem", info.out_bits, info.n_out, {})
    rom("protocol.info_rom", 8, list(info.encode()), {})
    return specs


@dataclass(frozen=True)
class WeightRom:
    """The accelerator's weight ROM seen lane by lane: ``width`` x ``depth`` bits, ``varying``
    the mask of the bits that differ between words (the others ``opt_mem`` removes), ``live``
    a ``(pe, simd)`` tuple of tuples: whether the lane ``(k, s)`` ever holds a nonzero weight
    (a lane that never does multiplies nothing, and synthesis removes its product, its adder
    inputs and, when every lane of an activation or a PE row is dead, their logic too);
    ``logic_cells`` its cost in logic (:func:`rom_logic_cells`) when the accelerator puts it
    there."""

    width: int
    depth: int
    varying: int
    live: tuple
    logic_cells: int | None = None

    @property
    def dead_activations(self) -> frozenset:
        """The activation lanes ``s`` no weight of any PE row ever multiplies."""
        simd = len(self.live[0]) if self.live else 0
        return frozenset(s for s in range(simd) if not any(row[s] for row in self.live))


def weight_rom(plan) -> WeightRom:
    """The :class:`WeightRom` of ``plan``'s accelerator: the words of
    :func:`hw.images.weight_image` for every MAC stage, stacked, their lanes unpacked with numpy
    rather than packed into integers (a million weights in milliseconds)."""
    import numpy as np

    from .images import weight_lanes
    pe, simd = plan.pe, plan.simd
    width, depth, ones, zeros = 0, 0, None, 0
    live = np.zeros((pe, simd), dtype=bool)
    stage_bits = []

    def mask(flags):
        return int("".join("1" if b else "0" for b in flags[::-1]) or "0", 2)

    for s in plan.stages:
        if s.kind != "mac":
            continue
        if s.bipolar:
            live[:] = True                       # a bipolar weight is never 0
        lanes = weight_lanes(plan, s)            # as the weight ROM holds them
        live |= (lanes != 0).any(axis=0).reshape(pe, simd)
        bits = ((lanes[:, :, None] >> np.arange(s.weight_width)) & 1).astype(bool)
        bits = bits.reshape(len(lanes), -1)
        stage_bits.append(bits)
        zeros |= mask(bits.any(axis=0))
        stage_ones = mask(bits.all(axis=0))
        ones = stage_ones if ones is None else ones & stage_ones
        width = max(width, s.weight_width * pe * simd)
        depth += len(lanes)
    full_mask = (1 << width) - 1
    ones = (ones or 0) & full_mask
    for s in plan.stages:                 # a stage's narrower words hold zeros above its width
        if s.kind == "mac" and s.weight_width * pe * simd < width:
            ones &= (1 << (s.weight_width * pe * simd)) - 1
    varying = zeros & ~ones & full_mask
    cells = None
    from .devices import LOGIC, memory_style
    if memory_style(width, depth, rom=True) == LOGIC:
        matrix = np.zeros((depth, width), dtype=np.uint8)
        row = 0
        for bits in stage_bits:
            matrix[row:row + len(bits), :bits.shape[1]] = bits
            row += len(bits)
        kept = [i for i in range(width) if varying >> i & 1]
        cells = rom_logic_cells(matrix[:, kept].T.tolist())
    return WeightRom(width, depth, varying, tuple(tuple(bool(x) for x in row) for row in live),
                     cells)


def _info(plan, network, clock_mhz):
    """The INFO reply the bridge of ``plan``'s accelerator sends (what :func:`core_info` reads
    off the core's ports)."""
    from .board.frame import Info, network_hash
    return Info(in_bits=plan.raw_width, in_signed=True, out_bits=plan.out_width, out_signed=True,
                n_in=plan.n_in, n_out=plan.n_out, pe=plan.pe, simd=plan.simd,
                clock_hz=round(clock_mhz * 1e6), network_hash=network_hash(network))


def _feature_write_granularity(plan) -> int:
    """The feature RAM's write granularity as yosys sees it: the whole word (``V`` lanes) when
    every writer enables all lanes alike, else one lane (``feat_width`` bits); it matters on the
    ECP5, whose block RAM pads each enable lane to a 9-bit byte.

    Lanes differ when the input loader writes the feature RAM (one lane at a time), when MAC
    results fill ``pe < V`` lanes at a run-time offset, or when a pool writer (``simd`` lanes)
    may fire while ``simd < V``: there are pool stages, or synthesis cannot see there are none.
    The last is a quirk: a per-stage constant indexed by the stage number (``Array(...)[stage]``)
    is folded by yosys unless the stages number 4 or 8 (Amaranth's power-of-two index), so with
    4 or 8 stages the window generator's pool lane offset stays a live signal."""
    V, F = plan.V, plan.feat_width
    n = len(plan.stages)
    pools_seen = any(s.kind == "pool" for s in plan.stages) or (n >= 4 and n & (n - 1) == 0)
    whole = (plan.im2col or V == 1) and plan.pe == V and (plan.simd == V or not pools_seen)
    return V * F if whole else F


def _feature_read_bits(plan, dead) -> int:
    """The bits of a feature-RAM word anything reads. A lane ``j`` reaches the array's
    activation lane ``j % simd``; when no weight of any stage ever multiplies that activation
    lane (the padding of a layer narrower than SIMD, in every stage), synthesis removes the
    products, the operand register and the block RAMs that feed only them (16 lanes on a
    12-channel map and a 9-value window: 2 of 8 SB_RAM40_4K). A pool stage reads every lane, and
    so does a channelwise one (each lane feeds a PE row);
    the output streamer (the last map stays in the feature RAM) the lanes of its channels."""
    V, F, simd = plan.V, plan.feat_width, plan.simd
    if any(s.kind == "pool" or s.channelwise for s in plan.stages):
        return (1 << (V * F)) - 1
    lanes = {j for j in range(V) if j % simd not in dead}
    if plan.output_mode == "feature":
        lanes |= {c % V for c in range(plan.out_geom[0])}
    return sum(((1 << F) - 1) << (lane * F) for lane in lanes)


def _core_input_bits(plan, info) -> int:
    """The low bits of an input value the core uses: all ``in_bits``, but only the address
    bits of the input level ROM when the input is quantized by lookup (``raw - lo`` indexes it:
    256 words for 8-bit pixels take 8 of the 9 bits)."""
    if plan.input_stage == "rom":
        return min(info.in_bits, max(1, (plan.input_rom_words - 1).bit_length()))
    return info.in_bits


def _with_hints(specs, plan, info, rom: WeightRom) -> tuple:
    """``specs`` named as in the build (``bridge.``) with what yosys learns from the logic
    around two memories: the feature RAM's distinct write enables and read lanes, the input
    buffer's read bits (the core takes the low ``in_bits`` of a buffered value, or fewer)."""
    hints = {"core.fmem": {"writes": (_feature_write_granularity(plan),),
                           "used": _feature_read_bits(plan, rom.dead_activations)},
             "protocol.in_mem": {"used": (1 << _core_input_bits(plan, info)) - 1}}
    return tuple(replace(s, name="bridge." + s.name, **hints.get(s.name, {})) for s in specs)


_SPECS: dict = {}          # (fingerprint, pe, simd, input_range, clock, elaborated) -> specs


def accelerator_memories(network, pe: int, simd: int, board: str, *, input_range=(0, 255),
                         clock_mhz: float = 30.0, bram_min_depth: int = BRAM_MIN_DEPTH,
                         elaborate: bool = False) -> list[MappedMemory]:
    """The memories of ``Accelerator(network, pe, simd)`` behind the board's UART bridge (the
    protocol's buffers included), mapped for ``board``'s family; named as in the build
    (``bridge.core.wrom``, ``bridge.protocol.in_mem``).

    The list comes from the plan (:func:`plan_memories`, milliseconds) or, with ``elaborate``,
    from the elaborated design (:func:`design_memories`, a fraction of a second); the two are
    the same (tested). Repeated calls are cached."""
    from .board.frame import network_hash
    from .board.platforms import board_spec
    from .plan import Plan
    family = board_spec(board).family
    key = (network_hash(network), network.name, pe, simd, tuple(input_range), float(clock_mhz),
           elaborate)
    if key not in _SPECS:
        if len(_SPECS) > 512:
            _SPECS.clear()
        plan = Plan(network, pe, simd, input_range)
        info = _info(plan, network, clock_mhz)
        rom = weight_rom(plan)
        if elaborate:
            top = _bridge(network, pe, simd, board, input_range, clock_mhz)
            specs = design_memories(top)
        else:
            specs = plan_memories(plan, info, weights=rom)
        _SPECS[key] = _with_hints(specs, plan, info, rom)
    return [map_memory(s, family, bram_min_depth=bram_min_depth) for s in _SPECS[key]]


def memory_rows(mapped) -> list[dict]:
    """One dict per memory for reports: ``name``, ``width``, ``depth``, ``kind`` (``"rom"`` /
    ``"ram"``), ``style`` (``"block"`` / ``"logic"`` / ``"none"``), ``brams``, ``lcs`` (rough
    logic cells), ``bits`` (lanes kept), ``cells`` (e.g. ``"4 SB_RAM40_4K"``), ``reason``."""
    return [m.row() for m in mapped]


# -- what yosys itself does --------------------------------------------------------------------

_FLOW_RULE = ('setattr -set ram_style "block" -set rom_style "block" r:SIZE>={depth} '
              f'r:WIDTH>={BRAM_MIN_WIDTH} %i r:SIZE>={BRAM_ALWAYS_DEPTH} %u t:$mem_v2 %i '
              'a:ram_style %d a:rom_style %d')
_MAPPED = re.compile(r"^mapping memory \S+?\.(\S+) via (\S+)$", re.MULTILINE)
_LOGIC = re.compile(r"^using FF mapping for memory \S+?\.(\S+)$", re.MULTILINE)


def yosys_memory_map(top, family: str, *, ports=None, bram_min_depth: int = BRAM_MIN_DEPTH,
                     workdir=None) -> dict[str, dict]:
    """What yosys makes of the memories of ``top``: the build's ``setattr`` rule, the family's
    synthesis script up to its memory mapping, then its ``memory_libmap`` (the step of
    ``synth_ice40`` / ``synth_ecp5`` that decides). Returns ``{memid: {"style": "block" /
    "logic", "cell": library cell or None, "cells": count}}``; memories yosys removed are
    absent. A second or two for a small design, some more for the accelerator."""
    from amaranth.back import rtlil

    from .flow import tool_path
    synth, libs, cell_types = FAMILY_SYNTH[family]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(workdir or tmp)
        (d / "top.il").write_text(rtlil.convert(top, ports=ports) if ports is not None
                                  else rtlil.convert(top))
        script = (f"read_rtlil top.il; proc; memory_collect; "
                  f"{_FLOW_RULE.format(depth=int(bram_min_depth))}; "
                  f"{synth} -top top -run begin:map_ram; memory_libmap {libs}; "
                  + "; ".join(f"select -list t:{t}" for t in cell_types))
        r = subprocess.run([tool_path("yosys"), "-q", "-l", "memories.log", "-p", script], cwd=d,
                           capture_output=True, text=True, check=False)
        log = (d / "memories.log").read_text(errors="replace")
        if r.returncode != 0:
            raise RuntimeError(f"yosys failed: {r.stderr[-2000:]}{log[-2000:]}")
    out = {}
    for memid, cell in _MAPPED.findall(log):
        out[memid] = {"style": "logic" if "DPR16X4" in cell else "block", "cell": cell,
                      "cells": 0}
    for memid in _LOGIC.findall(log):
        out[memid] = {"style": "logic", "cell": None, "cells": 0}
    for line in log.splitlines():
        m = re.match(r"^\S+?/(\S+)\.\d+\.\d+$", line.strip())
        if m and m.group(1) in out:
            out[m.group(1)]["cells"] += 1
    return out
