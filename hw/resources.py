"""What a design will cost on a board, before it is built, and the arrays worth building.

Block RAM and DSPs are counted exactly: the memories of the real design, mapped by yosys' rules
(:mod:`hw.memories`), and the accelerator's own DSP decision. Logic (iCE40 logic cells, ECP5
LUT4s) is a linear model of the hardware's parts (:func:`logic_features`) fitted to synthesis and
packing of a spread of networks and arrays (``docs/calibration/*.json``; its error band is in
``docs/architecture.md``).

Members
-------
estimate_resources(network, pe, simd, board)   logic, block RAM and DSPs of ``Accelerator`` behind
                                               the UART: {resource: {"used", "available"}}.
estimate_memories(network, pe, simd, board)    one row per memory: where it goes and what it costs.
logic_features(network, pe, simd, board)       the parts the logic model counts.
fit_logic_model(points)                        least-squares coefficients from measured points.
choose_parallelism(network, board)             the first of :func:`array_candidates`.
array_candidates(network, board)               the arrays a build tries, best first: the fastest
                                               that fits with room and earns its lanes, then
                                               smaller ones.
"""

from __future__ import annotations

import math

import numpy as np

from ..model_tools.errors import ThresherError
from ..model_tools.ir import IntegerNetwork, MaxPool
from .board.platforms import board_spec
from .devices import DSP_MIN_PRODUCT_BITS
from .memories import accelerator_memories, memory_rows
from .plan import Plan, lower_layer

__all__ = [
    "LOGIC_MARGIN",
    "LOGIC_MODEL",
    "MAX_LOGIC_THRESHOLD_BITS",
    "array_candidates",
    "choose_parallelism",
    "estimate_memories",
    "estimate_resources",
    "fit_logic_model",
    "logic_features",
]


# -- logic ----------------------------------------------------------------------------------------

#: The parts of the design the logic model counts (:func:`logic_features`), each in the unit its
#: coefficient prices.
FEATURES = ("base", "lut_products", "lanes", "dsps", "accumulators", "comparators",
            "operands", "operand_mux", "pool_unit", "memories", "stages")

#: Logic cells (iCE40) / LUT4s (ECP5) per unit of each feature: least squares (of the relative
#: error) over the points of ``docs/calibration/<family>.json``, printed by
#: ``python -m thresher.sim.app.bench fit --out docs/calibration/<family>.json``.
LOGIC_MODEL = {
    "ice40": {"base": 1152.2, "lut_products": 1.3065, "lanes": 1.7562, "dsps": 9.2074,
              "accumulators": 3.2366, "comparators": 1.0988, "operands": 5.174,
              "operand_mux": 5.7647, "pool_unit": 7.3899, "memories": 0.7489, "stages": 98.47},
    # the ECP5's own base, comparators (carry chains) and memories (LUT RAM); the rest the
    # iCE40's proportions, scaled: 16 points are too few to price every part on their own
    "ecp5": {"base": 727.5, "lut_products": 1.2873, "lanes": 1.7304, "dsps": 9.0723,
             "accumulators": 3.1891, "comparators": 1.1959, "operands": 5.0981,
             "operand_mux": 5.6801, "pool_unit": 7.2815, "memories": 1.5767, "stages": 97.03},
}


def _lanes(plan: Plan, multipliers: int) -> dict:
    """How ``Accelerator`` spends its lanes with ``multipliers`` DSP blocks on the board:
    ``dsps``, the blocks it instantiates (none for narrow products, one per lane pair when the
    network's ranges allow packing, as :class:`hw.mac_array.MACArray` assigns them; a block stays
    even when its lanes never see a weight: it is mapped before synthesis knows), and of the
    lanes that ever hold a nonzero weight (synthesis removes the logic of the others):
    ``lanes``, ``dsp_lanes`` (on DSP blocks), ``rows`` (PE rows) and ``activations`` (SIMD
    lanes) with one."""
    from .accelerator import pack_shift
    from .memories import weight_rom
    pe, simd = plan.pe, plan.simd
    live = weight_rom(plan).live
    on_dsp = [[False] * simd for _ in range(pe)]
    dsps = 0
    if plan.weight_width + plan.act_width >= DSP_MIN_PRODUCT_BITS and multipliers:
        budget = min(multipliers, pe * simd)
        if pe >= 2 and pack_shift(plan) is not None:
            # lane column 0 takes per-row operands when a stage is channelwise: never packed
            row_ops = any(st.channelwise for st in plan.stages)
            pairs = [(k, s) for k in range(0, pe - 1, 2) for s in range(simd)
                     if s != 0 or not row_ops][:budget]
            for k, s in pairs:
                on_dsp[k][s] = on_dsp[k + 1][s] = True
            dsps = len(pairs)
        else:
            for j in range(budget):
                k, s = divmod(j, simd)
                on_dsp[k][s] = True
            dsps = budget
    cells = [(k, s) for k in range(pe) for s in range(simd) if live[k][s]]
    return {"lanes": len(cells), "dsp_lanes": sum(on_dsp[k][s] for k, s in cells),
            "dsps": dsps, "rows": len({k for k, _ in cells}),
            "activations": len({s for _, s in cells})}


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _other_multipliers(plan: Plan, family: str) -> int:
    """DSP blocks synthesis spends on the accelerator's other multiplications. ``synth_ecp5``
    maps every ``$mul`` of two operands of 2 bits or more to a MULT18X18D, ``synth_ice40 -dsp``
    those whose product keeps 11 bits or more to an SB_MAC16. The multiplications: the window
    generator's output address ``group * pixels`` (of the output stage: 4 x 7 bits on a
    64-pixel map is an SB_MAC16, a ninth on the UP5K), the im2col loader's tap addresses
    ``row * wo`` (one per kernel row, unless ``wo`` is a power of two), the threshold unit's
    ``step * count`` (one per PE when a step is no power of two or the steps differ), the input
    stage's ``step * level``. Operand widths as yosys' ``wreduce`` leaves them: a constant's
    own bits, a product no wider than what it is assigned to."""
    from amaranth.utils import bits_for, ceil_log2
    stages = plan.stages
    sites = []                                  # (count, operand bits, operand bits, product)

    def constant(value):                         # bits of a constant factor, 0: a shift
        return 0 if value < 3 or _pow2(value) else value.bit_length()

    n = len(stages)
    if any(s.to_output for s in stages) or n in (4, 8):     # (4, 8: the branch is not folded)
        groups = max(s.loops[0] for s in stages).bit_length()
        pixels = {s.pixels for s in stages}
        largest = max(pixels)
        factor = constant(largest) if len(pixels) == 1 else largest.bit_length()
        oaddr = bits_for(max(plan.feature_depth, plan.out_depth, 1))
        sites.append((1, groups, factor, min(groups + factor, oaddr)))
    if plan.im2col:
        s0 = stages[0]
        _, ho, wo = s0.conv_geom
        _, lh, lw = plan.load_geom
        kh, kw = s0.kernel
        rows = bits_for(max(lh, lw, ho, wo) + max(*s0.pad_tl, kh, kw) + 2) + 2
        sites.append((kh, rows, constant(wo), ceil_log2(ho * wo)))
    act = [s for s in stages if s.kind == "mac" and s.levels >= 1]
    steps = {s.step for s in act}
    if act and plan.levels >= 2:
        step = max(steps).bit_length() if len(steps) > 1 else constant(min(steps))
        sites.append((plan.pe, step, bits_for(plan.levels), plan.act_width))
    q = plan.in_thresholds
    if q is not None and q.levels >= 2:
        sites.append((1, constant(q.step), bits_for(q.levels), plan.act_width))
    least_product = {"ice40": 11, "ecp5": 0}[family]
    return sum(count for count, a, b, y in sites if a >= 2 and b >= 2 and y >= least_product)


def _multipliers(board: str) -> int:
    spec = board_spec(board)
    return spec.multipliers


def logic_features(network, pe: int, simd: int, board: str, *, input_range=(0, 255),
                   memories=None) -> dict:
    """The parts of ``Accelerator(network, pe, simd)`` behind the UART that the logic model
    prices, following the hardware:

    ``base``
        1: the UART, the protocol engine, the phase FSM, loader, window generator and streamer
        counters (independent of the array).
    ``lut_products``
        LUT lanes x (n - 1) x (m + n), n and m the narrower and wider operand's bits: the
        shift-and-add multipliers of the lanes not on DSP blocks (n - 1 adders of m + n bits).
    ``lanes``
        lanes x (weight bits + activation bits): product registers and the SIMD adder trees.
    ``dsps``
        DSP blocks (each with its operand packing and product split when two lanes share one).
    ``accumulators``
        PE rows x accumulator bits: accumulate adders and registers.
    ``comparators``
        PE rows x threshold levels x comparator bits: the threshold unit.
    ``operands``
        SIMD lanes x activation bits: the operand registers and masks in front of the array.
    ``operand_mux``
        the same x log2 of the words multiplexed in front of the array (the feature word's SIMD
        slices, an im2col first layer's window chunks).
    ``pool_unit``
        SIMD x activation bits when the max-pool unit stays: there are pool stages, or synthesis
        cannot see there are none (4 or 8 stages, see :mod:`hw.memories`).

    Lanes, rows and SIMD lanes count only those that ever see a nonzero weight
    (:func:`hw.memories.weight_rom`): synthesis removes the rest (a 2 x 32 array on a network
    whose layers have at most 16 inputs per beat keeps 32 lanes).
    ``memories``
        the logic cells of the memories in logic, and of the soft logic around block RAMs
        (:func:`hw.memories.map_memory`'s ``lcs``).
    ``stages``
        the stages: their constants in the window generator and the per-stage multiplexers.
    """
    plan = Plan(network, pe, simd, input_range)
    if memories is None:
        memories = accelerator_memories(network, pe, simd, board, input_range=input_range)
    W, A = plan.weight_width, plan.act_width
    lanes = _lanes(plan, _multipliers(board))
    n, m = min(W, A), max(W, A)
    words = plan.V // simd
    if plan.im2col:
        words *= plan.stages[0].loops[3]
    stages = len(plan.stages)
    pool_unit = any(s.kind == "pool" for s in plan.stages) or stages in (4, 8)
    return {
        "base": 1.0,
        "lut_products": float((lanes["lanes"] - lanes["dsp_lanes"]) * max(1, n - 1) * (m + n)),
        "lanes": float(lanes["lanes"] * (W + A)),
        "dsps": float(lanes["dsps"]),
        "accumulators": float(lanes["rows"] * plan.acc_width),
        "comparators": float(lanes["rows"] * max(plan.levels, 1) * plan.cmp_width),
        "operands": float(lanes["activations"] * A),
        "operand_mux": float(lanes["activations"] * A * math.log2(max(words, 1))),
        "pool_unit": float(simd * A if pool_unit else 0),
        "memories": float(sum(m.lcs for m in memories)),
        "stages": float(stages),
    }


def _logic(features: dict, family: str) -> float:
    model = LOGIC_MODEL[family]
    return sum(model[k] * features[k] for k in FEATURES)


def fit_logic_model(features: list[dict], measured: list[float], *, prior: dict | None = None,
                    free=("base", "comparators", "memories")) -> dict:
    """Coefficients of :data:`FEATURES` for ``measured`` logic: least squares of the relative
    error (a 2,000-cell design counts as much as a 15,000-cell one), each coefficient kept
    non-negative (a feature that fits a negative price is dropped and the rest refitted).

    With a ``prior`` model (another family's coefficients) only the ``free`` features get their
    own price; the others keep the prior's proportions under one common scale: a family with
    few measured points (the ECP5) borrows the shape of the one with many."""
    y = np.asarray(measured, dtype=float)
    F = np.array([[f[k] for k in FEATURES] for f in features], dtype=float)
    if prior is None:
        columns = [[k] for k in FEATURES]
        X = F
    else:
        shared = [k for k in FEATURES if k not in free]
        columns = [[k] for k in free] + [shared]
        X = np.column_stack([F[:, FEATURES.index(k)] for k in free] +
                            [F[:, [FEATURES.index(k) for k in shared]] @
                             np.array([prior[k] for k in shared])])
    X = X / y[:, None]
    active = list(range(X.shape[1]))
    while True:
        coef, *_ = np.linalg.lstsq(X[:, active], np.ones_like(y), rcond=None)
        if (coef >= 0).all() or len(active) == 1:
            break
        active.pop(int(np.argmin(coef)))
    out = dict.fromkeys(FEATURES, 0.0)
    for i, c in zip(active, coef):
        for k in columns[i]:
            out[k] = float(max(c, 0.0)) * (prior[k] if len(columns[i]) > 1 else 1.0)
    return out


# -- the estimate -----------------------------------------------------------------------------

def estimate_resources(network, pe: int, simd: int, board: str, *, input_range=(0, 255)) -> dict:
    """Estimated use of the board's logic, block RAM and DSPs by ``Accelerator(network, pe,
    simd)`` behind the UART: {resource: {"used", "available"}} with nextpnr's names.

    Block RAM is the exact count of the design's memories as yosys maps them
    (:func:`estimate_memories` lists them); DSPs the accelerator's own choice; logic the fitted
    model (:data:`LOGIC_MODEL`, :func:`logic_features`): an estimate within the band measured in
    ``docs/architecture.md``, not a synthesis result.
    """
    return _estimate(network, pe, simd, board, input_range)[0]


#: The widest threshold ROM word a first try may hold in logic (bits). Wider, its LUT network
#: (address bits driving thousands of LUTs, shared leaves feeding multiplexers across the whole
#: ROM) did not route on the ECP5-85F: DS-CNN at 16 x 4 (6,016 bits, 32 % of the LUTs) and
#: ResNet-8 at 16 x 4 and 8 x 8 (25,216 and 12,608 bits) were still far from routed after tens
#: of minutes, while their 4 x 4 and 2 x 16 arrays, whose threshold words go to block RAM, routed
#: in 3-7 minutes; the builds that routed with it in logic had words of at most ~600 bits.
MAX_LOGIC_THRESHOLD_BITS = 2048


def _threshold_rom_in_logic(memories) -> int:
    """The width of the threshold ROM when it is in logic, else 0."""
    return max([m.spec.width for m in memories
                if m.name.endswith("core.trom") and m.style == "logic"], default=0)


def _estimate(network, pe, simd, board, input_range):
    """:func:`estimate_resources` and the mapped memories it counted."""
    spec = board_spec(board)
    plan = Plan(network, pe, simd, input_range)
    memories = accelerator_memories(network, pe, simd, board, input_range=input_range)
    features = logic_features(network, pe, simd, board, input_range=input_range,
                              memories=memories)
    dsp = _lanes(plan, _multipliers(board))["dsps"] + _other_multipliers(plan, spec.family)
    res = spec.resources
    return {spec.logic: {"used": round(_logic(features, spec.family)),
                         "available": res[spec.logic]},
            spec.bram: {"used": sum(m.brams for m in memories), "available": res[spec.bram]},
            spec.dsp: {"used": int(dsp), "available": res[spec.dsp]}}, memories


def estimate_memories(network, pe: int, simd: int, board: str, *,
                      input_range=(0, 255)) -> list[dict]:
    """One row per memory of the design (the UART's buffers included): ``name``, ``width``,
    ``depth``, ``kind`` (rom / ram), ``style`` (block / logic / none), ``brams``, ``lcs`` (rough
    logic cells), ``bits``, ``cells``, ``reason``; see :func:`hw.memories.memory_rows`."""
    return memory_rows(accelerator_memories(network, pe, simd, board, input_range=input_range))


# -- the arrays a build tries -------------------------------------------------------------------

def choose_parallelism(network, board: str, **options) -> tuple[int, int]:
    """The (pe, simd) a build tries first: the first of :func:`array_candidates` (same
    options)."""
    return array_candidates(network, board, **options)[0]


#: The share of the device's logic an array's estimate may take and still be tried first. The
#: build checks every synthesised design with nextpnr's packer and steps down when it is over,
#: so the margin only has to keep hopeless first tries out: 0.96 lets the default model keep its
#: 8 x 4 array (estimated at 95.5 %, packs at 92 %, routes at 33-37 MHz) where 0.85 halved its
#: throughput.
LOGIC_MARGIN = 0.96


def array_candidates(network, board: str, *, input_range=(0, 255),
                     candidates=(1, 2, 4, 8, 16, 32, 64), margin: float = LOGIC_MARGIN,
                     max_lanes: int | None = 64, slack: float = 0.02, gain: float = 0.2,
                     refuse_over: float = 1.3) -> list[tuple[int, int]]:
    """The (pe, simd) arrays worth building for ``network`` on ``board``, best first.

    Every array is priced: cycles per inference (:meth:`hw.plan.Plan.predict_cycles`), logic
    (the fitted estimate), block RAM and DSPs (exact). An array *fits* when its block RAM and
    DSPs are within the device and its logic within ``margin`` of it: room for placement and
    for the estimate's error (see ``docs/architecture.md``).

    An array must *earn its lanes*: against every smaller array, each doubling of lanes has to
    save at least ``gain`` (a fifth) of the cycles. Lanes the network's shapes leave idle (16
    PEs on 10 output channels, 32 SIMD lanes on a 9-value window) save nothing and fail; so do
    arrays whose fixed overheads (stage gaps, the output) outweigh the MACs they share. The
    test uses cycles and lanes only, so it is the same on every board, and a larger board never
    gets a slower array. The best is the fastest fitting array that earns its lanes (within
    ``slack`` of the fewest cycles, the squarest, then the smallest: a deep SIMD adder tree costs
    Fmax); if none does, the fastest fitting array. After it come the step-downs: the fitting
    arrays on the cycles-logic Pareto front with less logic, in descending logic (each the
    fastest of what is smaller), which a build takes when packing finds the design over.

    When no array fits ``margin`` but one needs at most ``refuse_over`` of the device's logic
    (and its block RAM and DSPs fit), that one, the least logic, is the only candidate: the
    logic estimate is a model, and the build's packing check decides. Raises
    :class:`ThresherError` with needed vs available when block RAM or DSPs (exact) never fit,
    or logic is over ``refuse_over`` even at the smallest array.

    ``max_lanes`` caps ``pe * simd`` (default 64): larger arrays build much more slowly and
    reach a lower Fmax, and behind a UART the link, not the array, bounds the inference rate.
    ``None`` lifts the cap; explicit ``pe`` / ``simd`` bypass this function.
    """
    spec = board_spec(board)
    if not isinstance(network, IntegerNetwork):
        raise TypeError(f"network must be an IntegerNetwork, not {type(network).__name__}")
    # the MAC stages as the engine runs them (grouped convs and average pools lowered to dense)
    macs = [lower_layer(l) for l in network.layers if not isinstance(l, MaxPool)]
    max_out = max([l.out_channels for l in macs], default=1)
    max_in = max([l.fan_in for l in macs], default=1)
    priced = []
    for pe in candidates:
        if pe > 2 * max_out:
            continue
        for simd in candidates:
            if simd > 2 * max_in or (max_lanes is not None and pe * simd > max_lanes):
                continue
            try:
                cycles = Plan(network, pe, simd, input_range).predict_cycles()
                need, memories = _estimate(network, pe, simd, board, input_range)
            except ThresherError:
                continue
            priced.append(_Priced((pe, simd), cycles, need, spec,
                                  _threshold_rom_in_logic(memories)))
    if not priced:
        raise ThresherError(f"no PE x SIMD array can run {network.name!r}")
    hard = [p for p in priced if p.hard_fit]
    fitting = [p for p in hard if p.logic <= margin * p.logic_available]
    # a wide threshold ROM in logic does not route: tried only when nothing else fits
    fitting = [p for p in fitting if p.logic_thresholds <= MAX_LOGIC_THRESHOLD_BITS] or fitting
    if not fitting:
        near = [p for p in hard if p.logic <= refuse_over * p.logic_available]
        if near:
            return [min(near, key=lambda p: (p.logic, p.cycles)).array]
        worst = min(hard, key=lambda p: p.logic) if hard else \
            min(priced, key=lambda p: (p.over, p.logic))
        detail = ", ".join(f"{k} {v['used']:,} needed of {v['available']:,}"
                           for k, v in worst.need.items())
        raise ThresherError(f"{network.name!r} does not fit {board} ({spec.device}) even at "
                            f"pe={worst.array[0]} simd={worst.array[1]}: {detail}; choose a "
                            f"larger board")
    def earns(p):
        # against every smaller array, each doubling of lanes saves ``gain`` of the cycles
        return all(p.cycles <= q.cycles * (1 - gain) ** math.log2(p.lanes / q.lanes)
                   for q in priced if q.lanes < p.lanes)

    efficient = [p for p in fitting if earns(p)] or fitting
    fewest = min(p.cycles for p in efficient)
    best = min((p for p in efficient if p.cycles <= fewest * (1 + slack)),
               key=lambda p: (max(p.array), p.lanes, p.cycles))
    smaller = [p for p in fitting if p.logic < best.logic]
    front = [p for p in smaller
             if not any(q.cycles <= p.cycles and q.logic <= p.logic and
                        (q.cycles, q.logic) != (p.cycles, p.logic) for q in smaller)]
    front.sort(key=lambda p: (-p.logic, p.cycles))
    return [best.array] + [p.array for p in front]


class _Priced:
    """One array with its cycles and estimated resources."""

    def __init__(self, array, cycles, need, spec, logic_thresholds=0):
        self.array, self.cycles, self.need = array, cycles, need
        self.logic_thresholds = logic_thresholds      # threshold ROM bits in logic
        self.lanes = array[0] * array[1]
        self.logic = need[spec.logic]["used"]
        self.logic_available = need[spec.logic]["available"]
        others = [v for k, v in need.items() if k != spec.logic]
        self.hard_fit = all(v["used"] <= v["available"] for v in others)
        # how far over the device the hard resources are: for the refusal message
        self.over = max(v["used"] / max(v["available"], 1) for v in others)
