"""The memory count (hw.memories): every memory of the design, mapped as yosys maps it.

The fast tests pin the rules on shapes whose yosys mapping was checked; the slow ones ask yosys
itself (its memory passes only: a few seconds) about a spread of shapes and port configurations
on both families and about the real accelerator, and compare the count with the full synthesis
of the calibration builds (``docs/calibration``).
"""

import json
import random

import pytest
from amaranth import Elaboratable, Module, Signal
from amaranth.lib.memory import Memory
from amaranth.utils import ceil_log2
from paths import CHECKOUT
from thresher.hw.devices import BLOCK_RAM, LOGIC, RAM_LIBRARY, bram_blocks, fit_memory
from thresher.hw.memories import (
    MemorySpec,
    accelerator_memories,
    design_memories,
    map_memory,
    memory_rows,
    yosys_memory_map,
)
from thresher.model_tools import load_model
from thresher.model_tools.netgen import small_cnn


class MemoryZoo(Elaboratable):
    """One memory per spec, every port on a top-level port (so nothing is optimised away).

    A spec: ``(name, width, depth, kind, attrs, granularity, reads, transparent, const_mask)``;
    ROM contents are random with the ``const_mask`` bits held at zero.
    """

    def __init__(self, specs, seed=1):
        self.specs, self.seed = specs, seed
        self.ports, self.sig = [], {}
        for name, width, depth, kind, _, gran, reads, _, _ in specs:
            abits = ceil_log2(depth)
            if kind == "ram":
                self.sig[name, "w"] = (Signal(abits, name=f"{name}_wa"),
                                       Signal(width, name=f"{name}_wd"),
                                       Signal(width // gran, name=f"{name}_we"))
                self.ports += self.sig[name, "w"]
            for r in range(reads):
                self.sig[name, r] = (Signal(abits, name=f"{name}_ra{r}"),
                                     Signal(width, name=f"{name}_rd{r}"))
                self.ports += self.sig[name, r]

    def elaborate(self, platform):
        m = Module()
        rnd = random.Random(self.seed)
        for name, width, depth, kind, attrs, gran, reads, transparent, const in self.specs:
            init = [rnd.getrandbits(width) & ~const for _ in range(depth)] if kind == "rom" else []
            m.submodules[name] = mem = Memory(shape=width, depth=depth, init=init, attrs=attrs)
            writes = []
            if kind == "ram":
                wp = mem.write_port(granularity=gran)
                a, d, e = self.sig[name, "w"]
                m.d.comb += [wp.addr.eq(a), wp.data.eq(d), wp.en.eq(e)]
                writes.append(wp)
            for r in range(reads):
                rp = mem.read_port(transparent_for=writes if transparent else ())
                a, d = self.sig[name, r]
                m.d.comb += [rp.addr.eq(a), d.eq(rp.data)]
        return m


def spread(n, seed):
    """``n`` random memory specs: ROMs and RAMs of 1-80 bits, 2-4,100 words, with and without
    styles, byte enables, 1-3 read ports, transparency, constant lanes."""
    rnd = random.Random(seed)
    specs = []
    for i in range(n):
        kind = "rom" if rnd.random() < 0.4 else "ram"
        width = rnd.randint(1, 80)
        depth = rnd.choice([rnd.randint(2, 140), rnd.randint(2, 140), rnd.randint(100, 4100)])
        depth = min(depth, max(2, 60_000 // width))
        attrs = rnd.choice([{}, {}, BLOCK_RAM, LOGIC] if i % 5 else [BLOCK_RAM])
        gran = width
        if kind == "ram":
            gran = rnd.choice([g for g in range(1, width + 1) if width % g == 0] + [width] * 3)
        reads = rnd.choice([1, 1, 1, 2, 3])
        transparent = kind == "ram" and rnd.random() < 0.2
        const = rnd.getrandbits(width) if kind == "rom" and rnd.random() < 0.3 else 0
        specs.append((f"m{i}_{kind}{width}x{depth}", width, depth, kind, attrs, gran, reads,
                      transparent, const))
    return specs


# -- the rules, fast -------------------------------------------------------------------------------

def test_design_memories_reads_the_ports_and_contents():
    specs = [("r", 12, 100, "ram", BLOCK_RAM, 4, 2, True, 0),
             ("c", 8, 20, "rom", {}, 8, 1, False, 0b1001_0000)]
    found = {s.name: s for s in design_memories(MemoryZoo(specs))}
    r, c = found["r"], found["c"]
    assert (r.width, r.depth, r.kind, r.writes, r.reads, r.transparent) == (12, 100, "ram", (4,),
                                                                            2, 2)
    assert r.attrs == BLOCK_RAM and c.kind == "rom" and len(c.init) == 20
    assert c.constant_lanes() == 2 and r.constant_lanes() == 0


@pytest.mark.parametrize("spec, family, expected", [
    # (width, depth, kind, attrs, granularity, reads), family -> (style, cells)
    ((16, 256, "ram", BLOCK_RAM, 16, 1), "ice40", ("block", 1)),
    ((20, 768, "rom", BLOCK_RAM, 20, 1), "ice40", ("block", 4)),      # stacked: not 5 or 6
    ((27, 100, "ram", {}, 9, 1), "ice40", ("block", 2)),              # cheaper than 2,700 FFs
    ((8, 40, "rom", {}, 8, 1), "ice40", ("logic", 0)),                # 320 / 16 < one cell
    ((8, 40, "ram", {}, 8, 1), "ice40", ("block", 1)),
    ((9, 64, "ram", BLOCK_RAM, 9, 1), "ice40", ("block", 1)),         # an im2col tap memory
    ((12, 300, "rom", BLOCK_RAM, 12, 2), "ice40", ("block", 4)),      # one copy per read port
    ((27, 100, "ram", {}, 9, 1), "ecp5", ("block", 1)),               # PDPW16KD, 36 wide
    ((20, 768, "rom", BLOCK_RAM, 20, 1), "ecp5", ("block", 2)),
    ((8, 40, "ram", {}, 8, 1), "ecp5", ("logic", 6)),                 # 6 TRELLIS_DPR16X4
    ((24, 128, "ram", BLOCK_RAM, 3, 1), "ecp5", ("block", 2)),        # 3-bit lanes padded to 9
    ((24, 128, "ram", BLOCK_RAM, 24, 1), "ecp5", ("block", 1)),
    ((12, 300, "rom", BLOCK_RAM, 12, 2), "ecp5", ("block", 1)),       # two ports of one DP16KD
])
def test_map_memory_known_shapes(spec, family, expected):
    width, depth, kind, attrs, gran, reads = spec
    rnd = random.Random(0)
    init = tuple(rnd.getrandbits(width) for _ in range(depth)) if kind == "rom" else ()
    s = MemorySpec("m", width, depth, init=init,
                   writes=(gran,) if kind == "ram" else (), reads=reads, attrs=attrs)
    m = map_memory(s, family)
    assert (m.style, m.cells) == expected
    assert m.brams == (m.cells if m.style == "block" else 0)


def test_styles_and_constant_lanes():
    rom = MemorySpec("w", 8, 300, init=tuple(range(300)), attrs=LOGIC)
    assert map_memory(rom, "ice40").style == "logic"          # the attribute wins
    assert map_memory(rom, "ice40").lcs > 0
    auto = MemorySpec("w", 8, 300, init=tuple(range(300)))   # the build rule: 300 >= 128 words
    assert map_memory(auto, "ice40").reason.startswith("build rule")
    cheapest = map_memory(auto, "ice40", bram_min_depth=512)    # no rule: memory_libmap's costs
    assert cheapest.reason.startswith("cheapest") and cheapest.style == "block"   # 2,400 / 16 > 66
    small = MemorySpec("s", 8, 100, init=tuple(range(100)))
    assert map_memory(small, "ice40").style == "logic"          # 800 / 16 = 50 < 64 + 2
    zero = MemorySpec("z", 21, 1, init=(0,))
    assert map_memory(zero, "ice40").style == "none"          # opt_mem drops constant lanes
    half = MemorySpec("h", 32, 256, init=tuple(v & 0xFFFF for v in range(256)), attrs=BLOCK_RAM)
    assert map_memory(half, "ice40").bits == 8 and map_memory(half, "ice40").cells == 1
    with pytest.raises(ValueError, match="family"):
        map_memory(rom, "gowin")


def test_fit_memory_follows_memory_libmap_costs():
    be0, be1 = RAM_LIBRARY["ice40"]
    # the costs memory_libmap prints for a 27 x 100 RAM with 9-bit enables (yosys -d)
    assert fit_memory(be0, 27, 100, writes=1, granularity=9).cost == 398
    assert fit_memory(be1, 27, 100, writes=1, granularity=9).cost == 142
    assert fit_memory(be0, 20, 768).cost == 278 and fit_memory(be0, 20, 768).cells == 4
    assert bram_blocks(72, 600, "ecp5") == 4 and bram_blocks(1, 2048) == 1


def test_accelerator_memory_rows():
    rows = memory_rows(accelerator_memories(load_model("default"), 8, 4, "icebreaker"))
    by = {r["name"]: r for r in rows}
    assert set(rows[0]) >= {"name", "width", "depth", "kind", "style", "brams", "lcs"}
    assert by["bridge.core.wrom"]["kind"] == "rom" and by["bridge.core.wrom"]["brams"] == 8
    assert by["bridge.core.tap_1_0"]["style"] == "block"      # the memory nextpnr once ran out on
    assert by["bridge.core.trom"]["style"] == "logic" and by["bridge.core.trom"]["brams"] == 0
    assert by["bridge.protocol.in_mem"]["brams"] == 1
    assert sum(r["brams"] for r in rows) == 22                 # what synthesis reports


@pytest.mark.slow
@pytest.mark.parametrize("network", ["default", "tfc", "cnn0", "cnn1", "cnn2", "cnn5"])
def test_plan_memories_are_the_designs(network):
    """The memories derived from the plan (what the estimate prices, fast) are exactly those of
    the elaborated accelerator and UART bridge: names, shapes, contents, ports, styles."""
    net = small_cnn(int(network[3:])) if network.startswith("cnn") else load_model(network)
    for pe, simd in [(1, 1), (2, 8), (8, 2), (8, 8)]:
        def key(spec):
            return (spec.name, spec.width, spec.depth, spec.writes, spec.reads, spec.transparent,
                    spec.async_reads, spec.attrs, spec.used, spec.kept_lanes())

        def cells(mapped):
            return sorted((m.name, m.lcs) for m in mapped)
        fast = accelerator_memories(net, pe, simd, "icebreaker")
        real = accelerator_memories(net, pe, simd, "icebreaker", elaborate=True)
        assert sorted(key(m.spec) for m in fast) == sorted(key(m.spec) for m in real)
        assert cells(fast) == cells(real)          # the weight ROM's cost in logic as well


# -- against yosys ---------------------------------------------------------------------------------

def compare(mapped, yosys, prefix=""):
    """The memories whose style or cell count differs from what yosys' memory_libmap did (cells
    as mapped: synthesis removes cells of unread bits only later, see
    test_count_equals_full_synthesis)."""
    wrong = []
    for m in mapped:
        got = yosys.get(m.name[len(prefix):], {"style": "none", "cells": 0})
        cells = m.fit.data * m.fit.ports if m.fit else m.cells
        if (m.style, cells) != (got["style"], got["cells"]):
            wrong.append(f"{m.name} {m.spec.kind} {m.spec.width}x{m.spec.depth}: ours {m.style} "
                         f"{cells}, yosys {got['style']} {got['cells']}")
    return wrong


def read_bits(top, ports):
    """``{memory name: mask of the read-port data bits anything uses}``, from Amaranth's own
    netlist of ``top``."""
    from amaranth.hdl import Fragment, _nir
    from amaranth.hdl._ir import build_netlist
    netlist = build_netlist(Fragment.get(top, None), ports=ports)
    used = set()
    for cell in netlist.cells:
        used.update(cell.input_nets())
    masks = {}
    for index, cell in enumerate(netlist.cells):
        if isinstance(cell, (_nir.SyncReadPort, _nir.AsyncReadPort)):
            memory = netlist.cells[cell.memory]
            name = ".".join(netlist.modules[memory.module_idx].name[1:] + (memory.name,))
            mask = sum(1 << b for b in range(cell.width)
                       if _nir.Net.from_cell(index, b) in used)
            masks[name] = masks.get(name, 0) | mask
    return masks


@pytest.mark.slow
@pytest.mark.parametrize("family", ["ice40", "ecp5"])
def test_spread_of_shapes_against_yosys(family):
    """60 memories of every kind in one design, mapped by yosys' own memory passes."""
    specs = spread(60, seed=11)
    mapped = [map_memory(s, family) for s in design_memories(MemoryZoo(specs))]
    zoo = MemoryZoo(specs)
    assert compare(mapped, yosys_memory_map(zoo, family, ports=zoo.ports)) == []


@pytest.mark.slow
@pytest.mark.parametrize("board, network, pe, simd", [
    ("icebreaker", "default", 4, 8),
    ("icebreaker", "cnn1", 4, 16),
    ("icebreaker", "cnn3", 8, 8),
    ("icebreaker", "tfc", 8, 8),
    ("ulx3s-85f", "default", 8, 4),
    ("ulx3s-85f", "cnn0", 8, 8),
    ("ulx3s-85f", "cnn2", 16, 4),
])
def test_accelerator_against_yosys(board, network, pe, simd):
    from thresher.hw.board.platforms import board_spec
    from thresher.hw.memories import _bridge
    net = small_cnn(int(network[3:])) if network.startswith("cnn") else load_model(network)
    mapped = accelerator_memories(net, pe, simd, board)
    family = board_spec(board).family
    yosys = yosys_memory_map(_bridge(net, pe, simd, board, (0, 255), 30.0), family)
    assert compare(mapped, yosys, prefix="bridge.") == []


@pytest.mark.slow
@pytest.mark.parametrize("network, pe, simd", [("tfc", 8, 8), ("cnn1", 4, 16), ("cnn0", 2, 16)])
def test_read_bits_against_the_netlist(network, pe, simd):
    """Memories the count takes as read in full are read in full in Amaranth's netlist of the
    bridge; those with a hint (the UART buffer, the feature RAM) read at most what the netlist
    reads: the hint is what the logic behind the port leaves of it, which only full synthesis
    sees (test_count_equals_full_synthesis)."""
    from thresher.hw.memories import _bridge
    net = small_cnn(int(network[3:])) if network.startswith("cnn") else load_model(network)
    top = _bridge(net, pe, simd, "icebreaker", (0, 255), 30.0)
    masks = read_bits(top, [top.rx, top.tx, top.led_busy, top.led_done, top.led_error])
    for m in accelerator_memories(net, pe, simd, "icebreaker"):
        full = (1 << m.spec.width) - 1
        netlist = masks[m.name[len("bridge."):]]
        if m.spec.used is None:
            assert netlist == full, m.name
        else:
            assert m.spec.used & ~netlist == 0 and m.spec.used, m.name


@pytest.mark.parametrize("family", ["ice40", "ecp5"])
def test_count_equals_full_synthesis(family):
    """Every calibration build's block RAMs (yosys' statistics after the full synthesis, as
    ``hw.flow.read_yosys_stats`` reads them; 43 iCE40 and 16 ECP5 designs) equal today's
    count."""
    from thresher.sim.app.bench import calibration_network
    path = CHECKOUT / "docs" / "calibration" / f"{family}.json"
    doc = json.loads(path.read_text())
    cell = {"ice40": "SB_RAM40_4K", "ecp5": "DP16KD"}[family]
    wrong = []
    for p in doc["points"]:
        net = calibration_network(p["network"])
        count = sum(m.brams for m in accelerator_memories(net, p["pe"], p["simd"], doc["board"]))
        if count != p["yosys"].get(cell, 0):
            wrong.append((p["network"], p["pe"], p["simd"], count, p["yosys"].get(cell, 0)))
    assert wrong == []
