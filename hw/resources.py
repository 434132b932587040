"""What a design will cost on a board, before it is built, and the array size chosen from that.

Members
-------
estimate_resources(network, pe, simd, board)   logic, block RAM and DSPs of ``Accelerator`` behind
                                               the UART: {resource: {"used", "available"}}.
choose_parallelism(network, board)             the fastest PE x SIMD whose estimate fits the board.
array_candidates(network, board)               that one, then the fitting smaller arrays.
"""

from __future__ import annotations

import math

from ..model_tools.errors import ThresherError
from ..model_tools.ir import IntegerNetwork
from .board.frame import value_bytes
from .board.platforms import board_spec
from .devices import BLOCK_RAM, DSP_LANES, DSP_MIN_PRODUCT_BITS, bram_blocks, memory_style
from .plan import Plan

__all__ = ["estimate_resources", "choose_parallelism", "array_candidates"]


# Cost model, fitted to builds of hw.Accelerator on this flow (tests/board/test_build.py checks
# the estimate against a build): logic cells (iCE40) / LUT4s (ECP5).
_BASE_LOGIC = {"ice40": 1025, "ecp5": 1495}        # UART, protocol, control, loader
_LANE_LOGIC = {"ice40": 1.6, "ecp5": 1.4}          # per MAC lane per (weight bits x act bits)
_LANE_EXTRA = {"ice40": 9.0, "ecp5": 8.7}          # per MAC lane: operand muxes, pipeline
_PE_LOGIC = {"ice40": 12, "ecp5": 12}              # per PE per threshold level (comparators)


def estimate_resources(network, pe: int, simd: int, board: str, *, input_range=(0, 255)) -> dict:
    """Estimated use of the board's logic, block RAM and DSPs by ``Accelerator(network, pe,
    simd)`` behind the UART: {resource: {"used", "available"}} with nextpnr's names.

    Memories follow the accelerator's own layout and style choice (one weight ROM and one
    threshold ROM for all stages, the feature RAM, the output RAM, styled by
    :func:`hw.devices.memory_style`); logic is a model fitted to builds (see ``_BASE_LOGIC`` ...):
    an estimate to choose an array size with, not a synthesis result.
    """
    spec = board_spec(board)
    plan = Plan(network, pe, simd, input_range)
    fam = spec.family
    logic, bram = _BASE_LOGIC[fam], 0

    def memory(width, depth, *, rom, block=None):
        nonlocal bram, logic
        if width <= 0 or depth <= 0:
            return
        if block is None:
            block = memory_style(width, depth, rom=rom) == BLOCK_RAM
        if block:
            bram += bram_blocks(width, depth, fam)
        else:
            logic += width * ((2 * math.ceil(depth / 16) - 1) if rom else 1.5 * depth)

    F = plan.feat_width
    memory(plan.V * F, plan.feature_depth, rom=False, block=True)
    macs = [s for s in plan.stages if s.kind == "mac"]
    # the shapes of hw.images.weight_image / threshold_image, without packing them
    memory(max(pe * simd * s.weight_width for s in macs),
           sum(int(math.prod(s.loops)) for s in macs), rom=True)
    act = [s for s in macs if s.levels]
    if act:
        memory(max(pe * (1 + s.levels * plan.cmp_width) for s in act),
               sum(s.loops[0] for s in act), rom=True)
    if plan.output_mode == "acc":
        memory(pe * plan.out_width, plan.out_depth, rom=False)
    if plan.input_stage == "rom":
        memory(max(1, plan.in_thresholds.levels.bit_length()), plan.input_rom_words, rom=True,
               block=True)
    memory(8 * value_bytes(plan.raw_width), plan.n_in, rom=False)        # the UART input buffer
    product_bits = plan.weight_width + plan.act_width
    lanes = pe * simd
    dsp_budget = DSP_LANES if fam == "ice40" else spec.resources[spec.dsp]
    dsp = min(lanes, dsp_budget) if product_bits >= DSP_MIN_PRODUCT_BITS else 0
    logic += _LANE_LOGIC[fam] * (lanes - dsp) * plan.weight_width * plan.act_width
    logic += lanes * (plan.acc_width / 2 + _LANE_EXTRA[fam])  # adder trees, lane muxes
    logic += _PE_LOGIC[fam] * pe * max(plan.levels, 1) + pe * plan.acc_width
    res = spec.resources
    return {spec.logic: {"used": int(logic), "available": res[spec.logic]},
            spec.bram: {"used": int(bram), "available": res[spec.bram]},
            spec.dsp: {"used": int(dsp), "available": res[spec.dsp]}}


def choose_parallelism(network, board: str, **options) -> tuple[int, int]:
    """The (pe, simd) with the fewest predicted cycles per inference whose estimated logic, block
    RAM and DSPs fit ``board``: the first of :func:`array_candidates` (same options)."""
    return array_candidates(network, board, **options)[0]


def array_candidates(network, board: str, *, input_range=(0, 255),
                     candidates=(1, 2, 4, 8, 16, 32, 64), margin: float = 0.85,
                     max_lanes: int | None = 64, slack: float = 0.02) -> list[tuple[int, int]]:
    """The (pe, simd) arrays worth building for ``network`` on ``board``, best first.

    The best is the array with the fewest predicted cycles per inference whose estimated logic,
    block RAM and DSPs fit ``board`` (logic within ``margin`` of the device, for routing); among
    those within ``slack`` of the fewest cycles, the squarest, then the smallest. After it come
    the fitting arrays with fewer lanes, fewest cycles first: what a build steps down to when the
    estimate was too kind. Raises :class:`ThresherError` with needed vs available when none fits.

    ``max_lanes`` caps ``pe * simd`` (default 64): larger arrays build much more slowly and
    reach a lower Fmax, and behind a UART the link, not the array, bounds the inference rate.
    ``None`` lifts the cap; explicit ``pe`` / ``simd`` bypass this function.
    """
    spec = board_spec(board)
    if not isinstance(network, IntegerNetwork):
        raise TypeError(f"network must be an IntegerNetwork, not {type(network).__name__}")
    max_out = max([l.out_channels for l in network.mac_layers], default=1)
    max_in = max([l.fan_in for l in network.mac_layers], default=1)
    fitting, smallest = [], None
    for pe in candidates:
        if pe > 2 * max_out:
            continue
        for simd in candidates:
            if simd > 2 * max_in or (max_lanes is not None and pe * simd > max_lanes):
                continue
            try:
                cycles = Plan(network, pe, simd, input_range).predict_cycles()
                need = estimate_resources(network, pe, simd, board, input_range=input_range)
            except ThresherError:
                continue
            fits = all(v["used"] <= v["available"] * (margin if k == spec.logic else 1)
                       for k, v in need.items())
            if smallest is None or (pe * simd, cycles) < (smallest[0][0] * smallest[0][1],
                                                            smallest[2]):
                smallest = ((pe, simd), need, cycles)
            if fits:
                fitting.append((cycles, max(pe, simd), pe * simd, (pe, simd)))
    best = None
    if fitting:
        # within ``slack`` of the fewest cycles, the squarest array: a deep SIMD adder tree
        # costs Fmax for a handful of cycles saved
        fewest = min(f[0] for f in fitting)
        best = min((f for f in fitting if f[0] <= fewest * (1 + slack)),
                   key=lambda f: (f[1], f[2], f[0]))
    if best is None:
        if smallest is None:
            raise ThresherError(f"no PE x SIMD array can run {network.name!r}")
        (pe, simd), need, _ = smallest
        detail = ", ".join(f"{k} {v['used']} needed of {v['available']}" for k, v in need.items())
        raise ThresherError(f"{network.name!r} does not fit {board} ({spec.device}) even at "
                            f"pe={pe} simd={simd}: {detail}; choose a larger board")
    smaller = sorted((f for f in fitting if f[2] < best[2]), key=lambda f: (f[0], f[1], f[2]))
    return [best[3]] + [f[3] for f in smaller]
