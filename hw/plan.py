"""How an :class:`~model_tools.ir.IntegerNetwork` maps onto the overlay engine (pure Python + numpy).

The engine (see ``docs/architecture.md``) is one PE x SIMD MAC array reused stage by stage, with the
feature maps in an on-chip RAM of ``V = max(PE, SIMD)``-lane words. This module decides, for a given
network and array shape, everything that does not depend on Amaranth: the geometry and loop counts of
every stage, where each feature map lives, the widths of every datapath, and the cycle model.

Memory layout of a feature map (C, H, W): pixel-major, ``GV = ceil(C / V)`` words per pixel, channel
``c`` of pixel ``p = h * W + w`` in word ``base + p * GV + c // V``, lane ``c % V``.

The layers form a graph (:meth:`~model_tools.ir.IntegerNetwork.sources`). The feature RAM is
``feature_regions`` regions of ``region_words`` words (the largest stored map); every stored tensor
(the input, -1, takes region 0) gets the lowest region free when its stage starts and keeps it until
its last reader has run (:meth:`Plan._allocate`), so a residual block's input stays alive across the
branch. A chain alternates between two regions: the ping-pong layout. A stage reads its source's
region, whichever earlier stage wrote it. An im2col first layer keeps the input in its tap memories
only, so a network whose later layers read the input too runs its first conv as a regular stage.

Loop nest of every stage (one array cycle per innermost iteration, never a stall)::

    for oh in Ho: for ow in Wo: for g in NG: for ky in KH: for kx in KW: for cg in NC: issue

* MAC stage, regular: ``NG = ceil(Cout / PE)``, ``(KH, KW) = kernel``, ``NC = ceil(Cin / SIMD)``;
  lanes over SIMD input channels of one kernel tap. A dense layer is a conv whose kernel covers its
  whole (C, H, W) input.
* MAC stage, im2col (the first layer when it is a conv with ``Cin % SIMD != 0``): the input loader
  writes every window in full, so lanes run over the flattened (ky, kx, c) window:
  ``KH = KW = 1``, ``NC = ceil(kh * kw * Cin / SIMD)``.
* Max-pool stage: ``NG = ceil(C / SIMD)`` channel groups, ``(KH, KW) = kernel``, ``NC = 1``.
* A max pool with stride = kernel and no padding right after a MAC layer with an activation is
  *fused* into that stage: the loop walks the conv output and the write-back keeps the running
  maximum of each pooled pixel in a one-pooled-row buffer, writing the feature RAM on the window's
  last pixel. The pool then costs no cycles.
* Channelwise stage (:attr:`Stage.channelwise`): a layer whose every output channel reads its
  own input channel only (:meth:`~model_tools.ir.Conv.channel_weights`: a depthwise conv, an
  average pool's window sum, an add) runs with *lanes over channels*: ``NG = ceil(C / PE)``
  groups of PE channels, one tap per cycle (``(KH, KW) = kernel``, ``NC = 1``). Each feature
  word read supplies PE channels of one pixel straight to the PE rows (the array's lane
  ``(k, 0)`` takes channel ``k`` of the group instead of the shared activation, see
  :class:`hw.mac_array.MACArray`), so ``PE`` MACs a cycle, none wasted by design: a
  depthwise layer takes ``pixels * ceil(C / PE) * kh * kw`` cycles, not the ``C``-fold of a
  dense conv with zero cross-channel weights. The weights are those of the lane ``(k, 0)``
  (the window sum's all 1, the add's ``2^ka, 2^kb``); the accumulators, thresholds and
  write-back are a MAC stage's.
* An :class:`~model_tools.ir.Add` ``y = a * 2^ka + b * 2^kb`` is a channelwise stage of two
  taps, ``NC = 2``: tap 0 reads ``a``'s region (``in_base``), tap 1 ``b``'s (``in_base2``), the
  same word of each.
* A grouped convolution that mixes channels (``1 < groups``, not depthwise) runs as the dense
  conv whose weights between different groups are zero (:func:`lower_layer`): ``G`` times the
  MACs of the grouped conv, the same accumulators, hence the same thresholds.

The cycle model, the weight ROM images and the resource estimate all read the lowered stage
(``Stage.layer``), so the RTL cycle counter still equals :func:`predict_cycles` and the estimate
prices the weights actually stored (zeros included); ``Stage.source`` is the network's own layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model_tools.errors import ThresherError
from ..model_tools.ir import Add, Conv, Dense, IntegerNetwork, MaxPool, signed_bits
from .devices import BRAM_BITS, LC_PER_BRAM

__all__ = ["Stage", "Plan", "predict_cycles", "mac_bound_cycles", "ceil_div", "lower_layer",
           "is_channelwise", "START_CYCLES", "GAP_CYCLES", "END_CYCLES"]

# The cycle model's constants: the RTL's cycle counter must equal predict_cycles exactly
# (tests/hw/test_accelerator.py and tests/hw/test_input.py check it on every network they run).
START_CYCLES = 1     # start pulse -> busy (the generator starts on the next cycle)
GAP_CYCLES = 5       # per stage: the last issue reaches the feature RAM write port 5 cycles later
END_CYCLES = 3       # from the end of the last stage to done, besides one cycle per output beat


def ceil_div(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def _is_pow2(n) -> bool:
    return isinstance(n, int) and n >= 1 and (n & (n - 1)) == 0


def _geometry(shape) -> tuple[int, int, int]:
    """Physical (C, H, W) of a stage's tensor: 1-D tensors are C channels of one pixel."""
    shape = tuple(int(d) for d in shape)
    if len(shape) == 3:
        return shape
    return (int(np.prod(shape)), 1, 1)


def _range_with_zero(lo, hi):
    return min(int(lo), 0), max(int(hi), 0)


def lower_layer(layer):
    """``layer`` as a stage the engine has. A *channelwise* layer (one whose
    :meth:`~model_tools.ir.Conv.channel_weights` are not None: a depthwise conv, a window sum, an
    add) is returned as is and runs as a channelwise stage; a grouped convolution that mixes
    channels becomes the equivalent ``groups = 1`` :class:`Conv` (zero cross-group weights),
    bit-exact on every input; other layers are returned unchanged."""
    if isinstance(layer, Conv) and layer.groups != 1 and layer.channel_weights() is None:
        w = layer.dense_weights()
        # stored weights: a bipolar grouped conv gains zeros, so it needs 2-bit signed weights
        bits = layer.weight_bits if layer.weight_bits > 1 else \
            signed_bits(min(int(w.min()), 0), max(int(w.max()), 0))
        return Conv(layer.name, w, layer.in_shape, layer.out_shape, layer.in_range, bits,
                    layer.activation, stride=layer.stride, pads=layer.pads)
    return layer


def is_channelwise(layer) -> bool:
    """Whether ``layer`` runs as a channelwise stage (lanes over channels)."""
    return not isinstance(layer, MaxPool) and layer.channel_weights() is not None


@dataclass(frozen=True)
class Stage:
    """One layer as the engine runs it (see the module docstring for the loop nest)."""

    index: int
    layer: object
    kind: str                          # "mac" or "pool"
    im2col: bool
    in_geom: tuple[int, int, int]      # (C, H, W) of the input as stored
    out_geom: tuple[int, int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pad_tl: tuple[int, int]            # (top, left)
    loops: tuple[int, int, int, int]   # (NG, KH, KW, NC)
    in_words: int                      # GV of the input
    out_words: int                     # GV of the output
    in_base: int
    out_base: int
    to_output: bool                    # writes the output memory (the last MAC stage)
    in_range: tuple[int, int]          # values the stage reads (padding 0 included for MACs)
    acc_bound: tuple[int, int]         # bound of every partial sum (MAC stages)
    weight_width: int                  # stored bits per weight (MAC stages)
    bipolar: bool
    levels: int                        # thresholds per channel (0: raw accumulators / pool)
    offset: int
    step: int
    conv_geom: tuple[int, int, int]    # (C, Ho, Wo) the loop nest walks (before a fused pool)
    pool: tuple[int, int] | None       # fused max-pool kernel (= stride), applied in write-back
    source: object = None              # the network's layer (``layer`` is it lowered, if need be)
    channelwise: bool = False          # lanes over channels (depthwise conv, window sum, add)
    add: bool = False                  # an Add: its second tap (cg = 1) reads ``in_base2``
    in_base2: int = 0                  # base of an add's second input (its first is ``in_base``)
    reads: tuple[int, ...] = ()        # the tensors it reads (layer indices, -1 the input)
    writes: int = 0                    # the tensor it writes (its layer, or its fused pool's)

    @property
    def pixels(self) -> int:
        """Output pixels the loop nest walks."""
        return self.conv_geom[1] * self.conv_geom[2]

    @property
    def issue_cycles(self) -> int:
        return self.pixels * int(np.prod(self.loops))

    @property
    def taps_per_pixel(self) -> int:
        return int(np.prod(self.loops[1:]))

    @property
    def weights(self) -> np.ndarray:
        """The weights the stage multiplies: a MAC layer's (Cout, Cin, kh, kw), or a channelwise
        layer's (C, taps) (:meth:`~model_tools.ir.Conv.channel_weights`)."""
        return self.layer.channel_weights() if self.channelwise else self.layer.weights


class Plan:
    """Everything the hardware generator needs to know about ``network`` on a PE x SIMD array.

    Parameters
    ----------
    network : IntegerNetwork
    pe, simd : int
        Output channels and input elements per cycle; powers of two.
    input_range : (int, int)
        Range of the raw integer input values (e.g. (0, 255) for 8-bit pixels).
    input_mode : "raw" or "levels"
        ``"raw"``: the input beats are raw integers in ``input_range``, quantized in hardware.
        ``"levels"``: the host quantizes (``golden.quantize_input``) and the beats are the integer
        levels (any raw input, floats included); there is no input quantizer.
    input_stage : "auto", "rom" or "compare"
        How a raw input is quantized: a lookup ROM indexed by ``raw - lo`` (per channel), or the
        parallel comparator bank; ``"auto"`` takes the cheaper (:meth:`input_stage_costs`).

    Attributes
    ----------
    V : int
        Lanes of a feature-RAM word, ``max(pe, simd)``.
    stages : tuple of Stage
    act_width : int
        Signed bits of every activation value the array reads (the true integers, 0 included for
        padding): the widest of the input and every stored map.
    feature_regions, region_words, feature_depth : int
        The feature RAM: regions (by liveness, at least 2) of ``region_words`` words, in all
        ``feature_depth`` words (see :attr:`feature_budget`).
    peak_live_words : int
        The most words of feature maps alive at once.
    feat_width : int
        Signed bits per lane of the feature RAM: the maps it stores (not the im2col input).
    tap_width : int
        Signed bits per value of the im2col tap memories (the input quantizer's levels).
    weight_width : int
        Signed bits of a decoded weight (the MAC array's weight input).
    acc_width : int
        Signed accumulator bits: the worst-case bound of any partial sum of any layer.
    cmp_width : int
        Comparator bits (``acc_width + 1``: a negated accumulator and clamped thresholds fit).
    out_width : int
        Signed bits of an output beat.
    raw_width : int
        Signed bits of an input beat (a raw value, or a level in ``"levels"`` mode).
    input_stage : str
        ``"rom"``, ``"compare"`` or ``"none"`` (levels mode).
    level_width : int
        Bits of an input-ROM word (the unsigned count ``0 .. L``).
    """

    def __init__(self, network: IntegerNetwork, pe: int, simd: int, input_range=(0, 255), *,
                 fuse_pools: bool = True, input_mode: str = "raw", input_stage: str = "auto"):
        if not isinstance(network, IntegerNetwork):
            raise TypeError(f"network must be an IntegerNetwork, not {type(network).__name__}")
        for name, v in (("pe", pe), ("simd", simd)):
            if not _is_pow2(v):
                raise ThresherError(f"{name} must be a power of two, not {v!r}")
        lo, hi = (int(v) for v in input_range)
        if lo > hi:
            raise ThresherError(f"input_range must be (lo, hi) with lo <= hi, not {input_range!r}")
        self.network, self.pe, self.simd, self.input_range = network, pe, simd, (lo, hi)
        self.fuse_pools = bool(fuse_pools)
        if input_mode not in ("raw", "levels"):
            raise ThresherError(f"input_mode must be 'raw' or 'levels', not {input_mode!r}")
        if input_stage not in ("auto", "rom", "compare"):
            raise ThresherError(f"input_stage must be 'auto', 'rom' or 'compare', not "
                                f"{input_stage!r}")
        self.V = max(pe, simd)
        self.input_mode = input_mode
        q = network.input.thresholds
        self.level_width = max(1, int(q.levels).bit_length())
        if input_mode == "levels":
            self.in_thresholds = None
            self.raw_width = signed_bits(*_range_with_zero(*network.input.out_range))
            self.input_stage = "none"
        else:
            self.in_thresholds = network.input.integer_thresholds(lo, hi)
            self.raw_width = signed_bits(min(lo, 0), hi)
            if input_stage == "auto":
                costs = self.input_stage_costs()
                input_stage = "rom" if costs["rom"] < costs["compare"] else "compare"
            self.input_stage = input_stage
        self._build()

    #: Largest input ROM considered (words): 16 kbit-ish, beyond that the comparators win anyway.
    MAX_INPUT_ROM_WORDS = 16384

    @property
    def input_rom_words(self) -> int:
        """Words of the input lookup ROM: one per (quantizer channel, raw value)."""
        lo, hi = self.input_range
        return self.network.input.thresholds.channels * (hi - lo + 1)

    def input_stage_costs(self) -> dict:
        """Rough logic-cell cost of each raw-input stage: ``{"rom": .., "compare": ..}``.

        Comparators: ``L`` of ``raw_width + 1`` bits plus the count adder tree and the threshold
        ROM (in logic: one word per channel). ROM: its block RAMs at ``devices.LC_PER_BRAM`` each (an
        address adder and the output register besides).
        """
        t = self.network.input.thresholds
        L, cw = t.levels, self.raw_width + 1
        compare = L * (cw + 1) + t.channels * (1 + L * cw) / 16
        words = self.input_rom_words
        if words > self.MAX_INPUT_ROM_WORDS:
            rom = float("inf")
        else:
            bits = words * self.level_width
            rom = max(1, ceil_div(bits, BRAM_BITS)) * LC_PER_BRAM + self.raw_width * 2
        return {"rom": rom, "compare": compare}

    # ------------------------------------------------------------------------------------------

    def _build(self):
        net, pe, simd, V = self.network, self.pe, self.simd, self.V
        layers = tuple(lower_layer(layer) for layer in net.layers)
        n = len(layers)
        srcs = [net.sources(i) for i in range(n)]
        readers = {j: [i for i in range(n) if j in srcs[i]] for j in range(-1, n)}
        mac_idx = [i for i, l in enumerate(layers) if not isinstance(l, MaxPool)]
        last_mac = mac_idx[-1] if mac_idx else None
        self.output_mode = "acc" if layers and last_mac == len(layers) - 1 else "feature"

        # physical geometry of the loader's target: the first stage's input
        if layers and isinstance(layers[0], Dense):
            geom = _geometry((int(np.prod(layers[0].in_shape)),))
        elif layers:
            geom = _geometry(layers[0].in_shape)
        else:
            geom = _geometry(net.input.out_shape)
        if int(np.prod(geom)) != int(np.prod(net.input.out_shape)):
            raise ThresherError(f"first layer input {geom} does not match the input quantizer "
                                f"output {net.input.out_shape}")
        self.load_geom = geom
        rng = net.input.out_range
        stored = [rng]
        # im2col keeps the input in the tap memories only: not when a later layer reads it too
        self.im2col = bool(layers) and isinstance(layers[0], Conv) and \
            not is_channelwise(layers[0]) and geom[0] % simd != 0 and \
            readers[-1] == [0]
        # every stored tensor (-1: the input): its physical geometry and value range
        maps = {-1: (geom, rng)}
        stages, words_needed = [], [geom[1] * geom[2] * ceil_div(geom[0], V)]

        skip = set()
        for i, layer in enumerate(layers):
            if i in skip:
                continue
            geom, rng = maps[srcs[i][0]]
            C, H, W = geom
            gv_in = ceil_div(C, V)
            pool = None
            add = isinstance(layer, Add)
            if isinstance(layer, MaxPool):
                if len(layer.in_shape) != 3 or tuple(layer.in_shape) != geom:
                    raise ThresherError(f"{layer.name}: input {layer.in_shape} does not match the "
                                        f"stored feature map {geom}")
                out = _geometry(layer.out_shape)
                kh, kw = layer.kernel
                loops = (ceil_div(C, simd), kh, kw, 1)
                stride, pad_tl = layer.stride, layer.pads[:2]
                kind, im2col, acc_bound, wbits, bip, levels, offset, step = \
                    "pool", False, (0, 0), 0, False, 0, 0, 1
                channelwise = False
                out_rng = rng
            else:
                channelwise = is_channelwise(layer)
                if add:
                    gb, rb = maps[srcs[i][1]]
                    if gb != geom or int(np.prod(geom)) != int(np.prod(layer.in_shape)):
                        raise ThresherError(f"{layer.name}: adds tensors stored as {geom} and "
                                            f"{gb}; the add stage needs both in one layout of "
                                            f"{layer.in_shape}")
                    kh = kw = 1
                    stride, pad_tl = (1, 1), (0, 0)
                    out = geom
                elif isinstance(layer, Dense):
                    if int(np.prod(layer.in_shape)) != C * H * W:
                        raise ThresherError(f"{layer.name}: input {layer.in_shape} does not match "
                                            f"the stored feature map {geom}")
                    kh, kw, stride, pad_tl = H, W, (1, 1), (0, 0)
                    out = (layer.out_channels, 1, 1)
                else:
                    if tuple(layer.in_shape) != geom:
                        raise ThresherError(f"{layer.name}: input {layer.in_shape} does not match "
                                            f"the stored feature map {geom}")
                    kh, kw = layer.kernel
                    stride, pad_tl = layer.stride, layer.pads[:2]
                    out = _geometry(layer.out_shape)
                # the values each term reads, 0 included (padding): per tap for an add (its two
                # inputs), one range for all terms otherwise
                if add:
                    ra, rb = _range_with_zero(*rng), _range_with_zero(*rb)
                    lo_col, hi_col = np.array([ra[0], rb[0]]), np.array([ra[1], rb[1]])
                    a_rng = (min(ra[0], rb[0]), max(ra[1], rb[1]))
                else:
                    a_rng = _range_with_zero(min(rng[0], layer.in_range[0]),
                                             max(rng[1], layer.in_range[1]))
                    lo_col, hi_col = a_rng
                cout = layer.out_channels
                im2col = i == 0 and self.im2col
                ng = ceil_div(cout, pe)
                # channelwise: lanes over channels, PE channels and one tap (an add's input) a
                # cycle; otherwise SIMD input elements of one tap (im2col: of the whole window)
                w = layer.channel_weights() if channelwise else layer.weights
                loops = (ng, 1, 1, 2) if add else (ng, kh, kw, 1) if channelwise else \
                    (ng, 1, 1, ceil_div(kh * kw * C, simd)) if im2col else \
                    (ng, kh, kw, ceil_div(C, simd))
                wf = w.reshape(cout, -1)
                tlo = np.minimum(wf * lo_col, wf * hi_col).sum(axis=1)
                thi = np.maximum(wf * lo_col, wf * hi_col).sum(axis=1)
                acc_bound = (int(min(tlo.min(), 0)), int(max(thi.max(), 0)))
                if add:     # and the add's own exact range (its declared input ranges)
                    acc_bound = (min(acc_bound[0], layer.acc_range[0]),
                                 max(acc_bound[1], layer.acc_range[1]))
                bip = not channelwise and layer.weight_bits == 1 and \
                    bool(np.all(np.abs(w) == 1))
                wbits = 1 if bip else signed_bits(min(int(w.min()), 0), max(int(w.max()), 0))
                kind = "mac"
                act = layer.activation
                if act is None:
                    if i != len(layers) - 1:
                        raise ThresherError(f"{layer.name}: only the last layer may have no "
                                            "activation")
                    levels, offset, step = 0, 0, 1
                    out_rng = acc_bound
                else:
                    levels, offset, step = act.levels, act.offset, act.step
                    out_rng = act.out_range
                    stored.append(out_rng)
            if not add and out != _geometry(layer.out_shape):
                raise ThresherError(f"{layer.name}: output shape {layer.out_shape} unexpected")
            conv_geom = out
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            writes = i
            if (self.fuse_pools and kind == "mac" and layer.activation is not None and
                    isinstance(nxt, MaxPool) and tuple(nxt.kernel) == tuple(nxt.stride) and
                    not any(nxt.pads) and tuple(nxt.in_shape) == out and
                    srcs[i + 1] == (i,) and readers[i] == [i + 1]):
                pool = tuple(int(k) for k in nxt.kernel)
                out = _geometry(nxt.out_shape)
                if out != (conv_geom[0], conv_geom[1] // pool[0], conv_geom[2] // pool[1]):
                    raise ThresherError(f"{nxt.name}: output shape {nxt.out_shape} unexpected")
                skip.add(i + 1)
                writes = i + 1
            to_output = kind == "mac" and i == len(layers) - 1
            stages.append(dict(
                conv_geom=conv_geom, pool=pool, index=len(stages), layer=layer, kind=kind,
                source=net.layers[i],
                im2col=kind == "mac" and im2col, in_geom=geom, channelwise=channelwise,
                out_geom=out, kernel=(int(kh), int(kw)), stride=tuple(int(s) for s in stride),
                pad_tl=tuple(int(p) for p in pad_tl), loops=tuple(int(x) for x in loops),
                in_words=gv_in, out_words=ceil_div(out[0], V), to_output=to_output,
                in_range=rng if kind == "pool" else a_rng, acc_bound=acc_bound,
                weight_width=int(wbits), bipolar=bip, levels=int(levels), offset=int(offset),
                step=int(step), add=add, reads=tuple(dict.fromkeys(srcs[i])), writes=writes))
            if not to_output:
                words_needed.append(out[1] * out[2] * ceil_div(out[0], V))
            maps[writes] = (out, out_rng)
            geom, rng = out, out_rng
        self.pool_buffer_depth = max([s["out_geom"][2] * s["loops"][0] for s in stages
                                      if s["pool"]], default=0)

        self.region_words = max(words_needed)
        self._allocate(stages)
        self.stages = tuple(Stage(**s) for s in stages)

        self.act_width = max(signed_bits(*_range_with_zero(*r)) for r in stored)
        # the input of an im2col first layer lives only in the tap memories: the feature RAM
        # (and the pool buffer) hold the later, usually much narrower, maps
        in_feature = stored[1:] if self.im2col else stored
        self.tap_width = signed_bits(*_range_with_zero(*stored[0]))
        self.feat_width = max([signed_bits(*_range_with_zero(*r)) for r in in_feature],
                              default=self.tap_width)
        macs = [s for s in self.stages if s.kind == "mac"]
        self.weight_width = max([2 if s.bipolar else s.weight_width for s in macs], default=2)
        # real ranges of what meets in a multiplier (weights as decoded, activations with 0)
        self.weight_range = (min([min(int(np.min(s.weights)), 0) for s in macs], default=0),
                             max([max(int(np.max(s.weights)), 0) for s in macs], default=0))
        self.mac_act_range = (min([s.in_range[0] for s in macs], default=0),
                              max([s.in_range[1] for s in macs], default=0))
        self.acc_width = max([signed_bits(*s.acc_bound) for s in macs], default=2)
        self.cmp_width = self.acc_width + 1
        self.levels = max([s.levels for s in macs], default=0)
        if self.output_mode == "acc":
            last = self.stages[-1]
            self.out_width = (signed_bits(*last.acc_bound) if last.levels == 0 and
                              last.layer.activation is None else self.act_width)
            self.out_geom = last.out_geom
            self.out_depth = last.loops[0] * last.pixels
        else:
            self.out_width = self.act_width
            self.out_geom = geom
            self.out_depth = 0
        self.out_base = self.stages[-1].out_base if self.stages else 0   # feature-mode readout
        self.n_in = int(np.prod(net.input.in_shape))
        self.n_out = int(np.prod(self.out_geom))

    def _allocate(self, stages):
        """Give every stage's output a region of ``region_words`` words of the feature RAM, held
        until its last reader has run (the lowest region free at the time), and set the stages'
        ``in_base``, ``in_base2`` and ``out_base``. The input takes region 0. A chain alternates
        between regions 0 and 1 (the ping-pong layout); at least two regions always exist. The
        last MAC stage writes the output RAM: it holds no region (its ``out_base``, unused, is a
        free region, or 0)."""
        R, V = self.region_words, self.V
        last = {}
        for k, s in enumerate(stages):
            for t in s["reads"]:
                last[t] = k
        g = self.load_geom
        words = {-1: 0 if self.im2col else g[1] * g[2] * ceil_div(g[0], V)}
        held, top, peak = {-1: 0}, 1, words[-1]
        for k, s in enumerate(stages):
            used = set(held.values())
            r = next(r for r in range(len(used) + 1) if r not in used)
            s["in_base"] = held[s["reads"][0]] * R
            s["in_base2"] = held[s["reads"][-1]] * R
            s["out_base"] = r * R
            if not s["to_output"]:
                o = s["out_geom"]
                words[s["writes"]] = o[1] * o[2] * ceil_div(o[0], V)
                held[s["writes"]] = r
                top = max(top, r + 1)
            peak = max(peak, sum(words[t] for t in held))
            for t in [t for t in held if last.get(t, -1) <= k and k < len(stages) - 1]:
                del held[t]
        self.feature_regions = max(2, top)
        for s in stages:
            if s["out_base"] >= self.feature_regions * R:
                s["out_base"] = 0
        self.feature_depth = self.feature_regions * R
        self.peak_live_words = peak

    @property
    def feature_budget(self) -> dict:
        """The feature RAM's budget: ``regions`` of ``region_words`` words each (``words`` in
        all, ``bits`` with ``V`` lanes of ``feat_width``), and ``peak_words``: the most words of
        feature maps alive at once (the input, unless im2col, included)."""
        return {"regions": self.feature_regions, "region_words": self.region_words,
                "words": self.feature_depth, "peak_words": self.peak_live_words,
                "bits": self.feature_depth * self.V * self.feat_width}

    # ------------------------------------------------------------------------------------------

    def stage_cycles(self) -> list[int]:
        return [s.issue_cycles + GAP_CYCLES for s in self.stages]

    def predict_cycles(self) -> int:
        """Cycles from ``start`` to ``done`` with an always-ready output consumer."""
        return START_CYCLES + sum(self.stage_cycles()) + self.n_out + END_CYCLES


def predict_cycles(network: IntegerNetwork, pe: int, simd: int, input_range=(0, 255), *,
                   fuse_pools: bool = True, input_mode: str = "raw") -> int:
    """Cycle model of one inference (``start`` to ``done``, input already loaded)."""
    return Plan(network, pe, simd, input_range, fuse_pools=fuse_pools,
                input_mode=input_mode).predict_cycles()


def mac_bound_cycles(network: IntegerNetwork, pe: int, simd: int) -> int:
    """``sum over MAC layers of ceil(MACs / (pe * simd))``: no engine of that size can do better."""
    return sum(ceil_div(layer.macs, pe * simd) for layer in network.mac_layers)
