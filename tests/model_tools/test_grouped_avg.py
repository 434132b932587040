"""Grouped convs and average pools in the IR: golden semantics, network.json round trip, the
network hash and the ``thresher info`` rows."""

import numpy as np
import pytest

from thresher.hw.board.frame import network_hash
from thresher.model_tools import golden
from thresher.model_tools.ir import AvgPool, Conv, IntegerNetwork
from thresher.model_tools.netgen import random_input, random_network
from thresher.model_tools.report import layer_rows

SPEC = (("gconv", 8, 3, 1, 1, 4), ("gconv", 8, 3, 2, 0, 2), ("avgpool", 2, 1),
        ("dense", 3))


def _net(seed=0):
    return random_network(seed, (4, 9, 9), SPEC, variety=0)


def test_grouped_conv_is_the_per_group_convolution():
    net = _net()
    layer = net.layers[0]
    a = np.random.default_rng(0).integers(-2, 3, size=(3, 4, 9, 9))
    y = layer.accumulate(a)
    # reference: each group on its own, as separate plain convolutions
    for g in range(4):
        part = Conv("p", layer.weights[2 * g:2 * g + 2], (1, 9, 9), (2, 9, 9), layer.in_range,
                    layer.weight_bits, None, stride=layer.stride, pads=layer.pads)
        assert np.array_equal(y[:, 2 * g:2 * g + 2], part.accumulate(a[:, g:g + 1]))
    lo, hi = layer.channel_acc_range()
    assert np.all(y.max(axis=(0, 2, 3)) <= hi) and np.all(y.min(axis=(0, 2, 3)) >= lo)


def test_avgpool_is_the_window_sum():
    avg = _net().layers[2]
    a = np.random.default_rng(1).integers(-3, 4, size=(2,) + avg.in_shape)
    want = sum(a[:, :, i:i + avg.out_shape[1], j:j + avg.out_shape[2]]
               for i in range(2) for j in range(2))
    assert np.array_equal(avg.accumulate(a), want)


def test_save_load_round_trip_and_hash(tmp_path):
    net = _net()
    net.save(tmp_path)
    back = IntegerNetwork.load(tmp_path)
    assert [type(l).__name__ for l in back.layers] == ["Conv", "Conv", "AvgPool", "Dense"]
    assert [getattr(l, "groups", None) for l in back.layers[:3]] == [4, 2, 8]
    assert back.layers[2].divisor == 4
    x = random_input(0, net, 4)
    assert np.array_equal(golden.run_integer(back, x), golden.run_integer(net, x))
    assert network_hash(back) == network_hash(net)
    other = _net(1)
    assert network_hash(other) != network_hash(net)


def test_invalid_groups_are_refused():
    w = np.ones((4, 3, 3, 3), dtype=np.int64)
    with pytest.raises(ValueError, match="groups"):
        Conv("c", w, (6, 5, 5), (4, 3, 3), (0, 1), 2, None, groups=4)
    with pytest.raises(ValueError, match="give"):
        AvgPool("a", (4, 5, 5), (4, 3, 3), (2, 2), (2, 2), (0, 0, 0, 0), (0, 1), 4)


def test_info_rows_show_groups_and_average():
    rows = layer_rows(_net())
    kinds = [r["kind"] for r in rows[1:]]
    assert kinds[0] == "Conv 3x3/1 depthwise"          # groups == Cin (channel multiplier 2)
    assert kinds[1] == "Conv 3x3/2 groups 2"
    assert kinds[2] == "AvgPool 2x2/1 /4"
    net = _net()
    g0, g1, avg = net.layers[:3]
    assert rows[1]["macs"] == int(np.prod(g0.out_shape)) * 1 * 9      # Cin / groups = 1
    assert rows[2]["macs"] == int(np.prod(g1.out_shape)) * 4 * 9      # Cin / groups = 4
    assert rows[1]["params"] == 8 * 1 * 9 and rows[2]["params"] == 8 * 4 * 9
    assert rows[3]["macs"] == int(np.prod(avg.out_shape)) * 4 and rows[3]["params"] == 0
    assert rows[3]["w_bits"] == "-"
