"""One place per layer kind: each IR kind carries its golden step, its ``info`` row and its
fingerprint beside its definition (``model_tools.ir``); the golden engine, the report and
``hw.board.frame.network_hash`` call those instead of per-kind chains.

The network hash is what a board reports and the host checks, so it must not move: it is compared
with a frozen copy of the function as it was before the kinds carried their fingerprints, on the
built-in models, grouped/average-pool networks, residual networks (handbuilt and folded from
Brevitas) and networks with a typed input and host ops.
"""

from __future__ import annotations

import dataclasses
import hashlib
import typing

import numpy as np
import pytest

from thresher.hw.board.frame import network_hash
from thresher.model_tools import golden, ir
from thresher.model_tools.builtin import DEFAULT_MODEL, TFC_MODEL
from thresher.model_tools.ir import (Add, AvgPool, Conv, Dense, Dequant, HostOp, InputQuantizer,
                                     IntegerNetwork, MaxPool, Thresholds, identity_thresholds)
from thresher.model_tools.load import load_model
from thresher.model_tools.netgen import random_input, random_network
from thresher.model_tools.report import layer_rows

from app.test_residual_cli import residual_net  # tests/app: the handbuilt skip-over-two-convs network


def _frozen_network_hash(network) -> int:
    """``hw.board.frame.network_hash`` as it was before the layer kinds carried their fingerprints
    (a verbatim copy): the hash every existing board and network record was made with."""
    h = hashlib.sha256()

    def put(*items):
        for item in items:
            if isinstance(item, np.ndarray):
                h.update(str(item.dtype).encode() + str(item.shape).encode())
                h.update(np.ascontiguousarray(item).tobytes())
            else:
                h.update(repr(item).encode())

    def thresholds(t):
        if t is None:
            put(None)
        else:
            put(t.values, t.direction, t.offset, t.step)

    put(network.input.in_shape, network.input.out_shape)
    thresholds(network.input.thresholds)
    put("input_type", network.input.input_type)
    for i, layer in enumerate(network.layers):
        put(type(layer).__name__, layer.in_shape, layer.out_shape)
        if network.sources(i) != (i - 1,):   # a graph's wiring; chains keep their hashes
            put("inputs", network.sources(i))
        if getattr(layer, "shifts", (0, 0)) != (0, 0):    # an add's alignment
            put("shifts", layer.shifts)
        if hasattr(layer, "weights"):
            put(layer.weights)
        if hasattr(layer, "activation") and type(layer).__name__ != "MaxPool":
            thresholds(layer.activation)
        for attr in ("stride", "pads", "kernel"):
            if hasattr(layer, attr):
                put(getattr(layer, attr))
        if getattr(layer, "groups", 1) != 1:     # grouped/depthwise conv, average pool (groups = C);
            put("groups", layer.groups)          # groups = 1 keeps earlier networks' hashes
        if hasattr(layer, "divisor"):
            put("divisor", layer.divisor)
    for op in network.host:    # the host ops after the dequantization (Softmax, ArgMax, TopK, ...)
        put("host", op.kind, op.in_shape, op.out_shape, op.axis, op.keepdims,
            op.select_last_index, op.k, op.largest, op.output, op.flatten)
    return int.from_bytes(h.digest()[:4], "little")


GROUPED_SPEC = (("gconv", 8, 3, 1, 1, 4), ("gconv", 8, 3, 2, 0, 2), ("avgpool", 2, 1), ("dense", 3))


def shifted_residual_net() -> IntegerNetwork:
    """A one-channel average pool (groups = 1), an add with a shift, a raw add at the end and host
    ops: the corners of the old hash (``groups`` left out at 1, ``shifts`` left out at (0, 0))."""
    rng = np.random.default_rng(3)
    inq = InputQuantizer((1, 6, 6), (1, 6, 6), identity_thresholds("UINT2"), "UINT2")
    avg = AvgPool("avg", (1, 6, 6), (1, 6, 6), (3, 3), (1, 1), (1, 1, 1, 1), (0, 3), 9,
                  Thresholds([[2, 9, 20]], [1], 0))
    c = Conv("c", rng.integers(-2, 3, (1, 1, 1, 1)), (1, 6, 6), (1, 6, 6), (0, 3), 3,
             Thresholds([[-1, 1, 4]], [-1], 0))
    add = Add("add", (1, 6, 6), (1, 6, 6), inputs=(0, 1), in_ranges=((0, 3), (0, 3)),
              shifts=(0, 2), activation=Thresholds([[1, 5, 9]], [1], 0))
    pool = MaxPool("pool", (1, 6, 6), (1, 3, 3), (2, 2), (2, 2), in_range=(0, 3))
    fc = Dense("fc", rng.integers(-2, 2, (4, 9)), (1, 3, 3), (4,), (0, 3), 2, None)
    raw = Add("raw", (4,), (4,), inputs=(4, 4), in_ranges=(fc.acc_range, fc.acc_range))
    host = (HostOp("Softmax", (4,), (4,)), HostOp("ArgMax", (4,), (1,)))
    return IntegerNetwork(inq, (avg, c, add, pool, fc, raw), Dequant(np.ones(4), np.zeros(4)),
                          (4,), name="shifted", host=host)


def _resnet8(tmp_path):
    """MLPerf Tiny's ResNet-8 shape, folded from Brevitas (tests/model_tools/test_residual.py)."""
    from test_residual import _export, resnet8_small
    return load_model(_export(resnet8_small, (1, 3, 16, 16), tmp_path, "resnet8"))


NETWORKS = {
    "default": lambda tmp: load_model(DEFAULT_MODEL),
    "tfc": lambda tmp: load_model(TFC_MODEL),
    "grouped_avg": lambda tmp: random_network(0, (4, 9, 9), GROUPED_SPEC, variety=0),
    "random_pools": lambda tmp: random_network(
        5, (2, 10, 10), (("conv", 4, 3, 1, 1), ("pool", 2, 2), ("conv", 6, 3, 1, 1), ("dense", 4)),
        variety=1.0),
    "residual_handbuilt": lambda tmp: residual_net(),
    "residual_shifted_host": lambda tmp: shifted_residual_net(),
    "resnet8_folded": _resnet8,
}


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kinds")
    return {name: make(tmp) for name, make in NETWORKS.items()}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_network_hash_is_unchanged(name, networks):
    net = networks[name]
    assert network_hash(net) == _frozen_network_hash(net)


def test_the_networks_cover_every_kind_and_the_graph_corners(networks):
    """What the frozen-hash comparison stands on: every kind, grouped and depthwise convs, a
    one-channel average pool, shifted and unshifted adds, skips, typed inputs, host ops."""
    layers = [layer for net in networks.values() for layer in net.layers]
    assert {type(layer) for layer in layers} == set(ir.LAYER_KINDS)
    assert any(isinstance(l, Conv) and l.groups > 1 for l in layers)
    assert any(isinstance(l, AvgPool) and l.groups == 1 for l in layers)
    assert any(isinstance(l, AvgPool) and l.groups > 1 for l in layers)
    assert any(isinstance(l, Add) and l.shifts != (0, 0) for l in layers)
    assert any(isinstance(l, Add) and l.shifts == (0, 0) for l in layers)
    assert not networks["resnet8_folded"].is_chain and networks["default"].is_chain
    assert any(net.host for net in networks.values())
    assert any(net.input.input_type for net in networks.values())


def test_layer_union_and_kind_registry_agree():
    """``ir.Layer`` (the type) and ``ir.LAYER_KINDS`` (what load, the report and the hash iterate)
    name the same kinds, so a new kind cannot be added to one and not the other."""
    assert set(typing.get_args(ir.Layer)) == set(ir.LAYER_KINDS)


FINGERPRINTED = ir.LAYER_KINDS + (InputQuantizer, HostOp, IntegerNetwork)


def _unaccounted(kind) -> set[str]:
    """Dataclass fields of ``kind`` neither in its fingerprint nor excluded with a reason."""
    names = {f.name for f in dataclasses.fields(kind)}
    return names - set(kind.fingerprint_fields()) - set(kind.FINGERPRINT_EXCLUDED)


@pytest.mark.parametrize("kind", FINGERPRINTED, ids=lambda k: k.__name__)
def test_every_field_is_fingerprinted_or_excluded_with_a_reason(kind):
    names = {f.name for f in dataclasses.fields(kind)}
    hashed = set(kind.fingerprint_fields())
    excluded = kind.FINGERPRINT_EXCLUDED
    assert not hashed & set(excluded), f"{kind.__name__}: both hashed and excluded"
    missing = _unaccounted(kind)
    assert not missing, f"{kind.__name__}: fields {missing} neither fingerprinted nor excluded"
    assert set(excluded) <= names, f"{kind.__name__}: excludes fields it does not have"
    for field, reason in excluded.items():
        assert isinstance(reason, str) and len(reason.split()) >= 4, (kind.__name__, field)
    for field in hashed:     # every fingerprinted name is readable on the class (field or property)
        assert field in names or hasattr(kind, field), (kind.__name__, field)


def test_a_new_field_left_out_of_the_fingerprint_is_caught():
    """What the check above guards against: a kind grown by a field that nobody declared."""
    @dataclasses.dataclass(frozen=True, eq=False)
    class DilatedConv(Conv):
        dilation: tuple[int, int] = (1, 1)

    assert _unaccounted(DilatedConv) == {"dilation"}


def _with_layer(net, i, layer):
    layers = list(net.layers)
    layers[i] = layer
    return IntegerNetwork(net.input, tuple(layers), net.output, net.output_shape, net.name, net.host)


def test_fingerprinted_fields_change_the_hash_and_excluded_ones_do_not():
    net = shifted_residual_net()
    avg, c, add, pool, fc, _ = net.layers
    h = network_hash(net)
    for i, layer in ((1, dataclasses.replace(c, weights=c.weights + 1)),
                     (2, dataclasses.replace(add, shifts=(1, 0))),
                     (0, dataclasses.replace(avg, divisor=8)),
                     (3, dataclasses.replace(pool, pads=(0, 0, 1, 1), out_shape=(1, 3, 3))),
                     (1, dataclasses.replace(c, activation=None))):
        assert network_hash(_with_layer(net, i, layer)) != h, layer
    for i, layer in ((1, dataclasses.replace(c, name="renamed")),
                     (2, dataclasses.replace(add, in_ranges=((0, 7), (0, 7)))),
                     (4, dataclasses.replace(fc, weight_bits=5)),
                     (3, dataclasses.replace(pool, in_range=(-1, 3)))):
        assert network_hash(_with_layer(net, i, layer)) == h, layer


@pytest.mark.parametrize("name", ["grouped_avg", "random_pools", "residual_shifted_host"])
def test_golden_steps_are_the_engines_functions(name, networks):
    """``layer.golden`` is the layer's function on a batch: forward is that, stage by stage."""
    net = networks[name]
    x = random_input(1, net, 3) if name != "residual_shifted_host" else \
        np.random.default_rng(0).integers(0, 4, (3, 1, 6, 6)).astype(np.float32)
    q = golden.quantize_input(net, golden.check_input(net, x))
    stages = golden.forward(net, q, keep=True)
    for i, layer in enumerate(net.layers):
        args = [stages[j] if j >= 0 else q for j in net.sources(i)]
        assert len(args) == layer.arity
        want = layer.accumulate(*(a.reshape((3,) + layer.in_shape) for a in args))
        if layer.activation is not None:
            want = golden.apply_thresholds(layer.activation, want)
        assert np.array_equal(layer.golden(*args), want)
        assert np.array_equal(stages[i], want)


@pytest.mark.parametrize("name", list(NETWORKS))
def test_info_rows_are_the_layers_descriptions(name, networks):
    net = networks[name]
    rows = layer_rows(net)
    for layer, row in zip(net.layers, rows[1:]):
        described = layer.describe()
        assert {k: row[k] for k in described} == described
        assert row["macs"] == layer.macs and row["params"] == layer.params
        assert row["layer"] == layer.name
