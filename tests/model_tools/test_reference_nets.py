"""The issue's reference networks (``reference_nets``: MLPerf Tiny ResNet-8, DS-CNN, FC
auto-encoder, MobileNetV1-style, FINN's CNV/LFC/SFC/TFC, UNSW-NB15 MLP, jet tagger) as real Brevitas
exports with random weights and random batch-norm: imported, folded, and the golden engine compared
with qonnx's executor within 1e-4 of the largest output (the issue's tolerance, as the other tests
use); the small chain networks also through ``thresher run --engine rtl``, bit for bit equal to
golden.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
from brevitas_factory import export, reference
from reference_nets import (
    NETS,
    Flat,
    _conv,
    _in_s8,
    _lin,
    _relu,
    build,
    calibrate,
    inputs,
)
from thresher.model_tools import ThresherError, golden, load_model
from thresher.model_tools.ir import Add, Conv
from thresher.sim.app.cli import main
from torch import nn


def _check(path, x, net=None):
    net = net or load_model(path)
    ref = reference(path, x)
    out = golden.run(net, x)
    assert out.shape == ref.shape and out.dtype == np.float32
    assert np.ptp(ref, axis=0).max() > 0                 # the outputs depend on the input
    err = float(np.abs(out - ref).max())
    assert err <= 1e-4 * max(float(np.abs(ref).max()), 1e-12), err
    return net


@pytest.mark.parametrize("name", list(NETS))
def test_reference_net_matches_qonnx(name, tmp_path):
    path, shape, kind = build(name, tmp_path)
    net = _check(path, inputs(kind, shape, 6, 7))
    dtype = NETS[name][3]
    assert net.input.input_type == dtype
    assert net.is_chain == (not name.startswith("resnet8"))
    if name.startswith("resnet8"):
        assert sum(isinstance(layer, Add) for layer in net.layers) == 3
    if name == "ds_cnn":
        convs = [layer for layer in net.layers if isinstance(layer, Conv)]
        assert convs[0].pads == (4, 1, 5, 1)         # the ZeroPad2d folded into the stem conv
        assert [c.groups for c in convs[1::2]] == [64] * 4


def test_resnet8_uint8_through_input_type(tmp_path):
    """The same export without its annotation, typed by ``load_model(..., input_type="UINT8")``."""
    path, shape, kind = build("resnet8_uint8", tmp_path)
    model = onnx.load(str(path))
    del model.graph.quantization_annotation[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(model, str(plain))
    with pytest.raises(ThresherError, match="--input-type"):
        load_model(plain)
    x = inputs(kind, shape, 4, 3)
    net = _check(plain, x, load_model(plain, input_type="UINT8"))
    assert np.array_equal(golden.run(net, x), golden.run(load_model(path), x))


@pytest.mark.parametrize("name", ["tfc_2w2a", "sfc_1w1a", "unsw_nb15",
                                  pytest.param("jet_tagger", marks=pytest.mark.slow)])
def test_small_chain_nets_rtl_equals_golden(name, tmp_path, capsys):
    path, shape, kind = build(name, tmp_path)
    x = inputs(kind, shape, 2, 11)
    np.save(tmp_path / "x.npy", x)
    code = main(["run", str(path), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"),
                 "--engine", "rtl"])
    assert code == 0, capsys.readouterr().err
    assert np.array_equal(np.load(tmp_path / "y.npy"), golden.run(load_model(path), x))


def test_ds_cnn_cycles_against_the_mac_bound(tmp_path):
    """The array ``build`` would pick for DS-CNN on the ULX3S-85F: its predicted cycles (printed,
    ``pytest -s``) can be no fewer than the MAC bound of that array."""
    from thresher.hw.build import predict_build
    from thresher.hw.plan import mac_bound_cycles
    net = load_model(build("ds_cnn", tmp_path)[0])
    p = predict_build(net, "ulx3s-85f")
    bound = mac_bound_cycles(net, p["pe"], p["simd"])
    assert bound == p["mac_bound_cycles"] and bound * p["pe"] * p["simd"] >= net.macs
    print(f"\nDS-CNN on ulx3s-85f: PE={p['pe']} x SIMD={p['simd']} at {p['clock_mhz']} MHz, "
          f"{p['cycles_per_inference']} cycles/inference vs MAC bound {bound} "
          f"({p['cycles_per_inference'] / bound:.2f}x), {p['inferences_per_s']} inferences/s")
    assert p["cycles_per_inference"] >= bound


# -- Pad (PyTorch ZeroPad2d, Keras 'same' padding) folded into the Conv ---------------------------


def _padded_net(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(_in_s8(), nn.ZeroPad2d((0, 1, 2, 0)), _conv(1, 3, (3, 2), stride=(2, 1)),
                          nn.BatchNorm2d(3), _relu(3), Flat(), _lin(3 * 4 * 7, 4))
    calibrate(model, torch.from_numpy(inputs("normal", (1, 1, 8, 7), 64, 1)), 0)
    path = tmp_path / "pad.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export(model, path, (1, 1, 8, 7), dynamo=False)
    return path


def _edit_pad(path, fn, suffix):
    model = onnx.load(str(path))
    pad = next(n for n in model.graph.node if n.op_type == "Pad")
    fn(model, pad)
    out = path.with_name(f"pad_{suffix}.onnx")
    onnx.save(model, str(out))
    return out


def _set_init(model, name, value):
    init = next(i for i in model.graph.initializer if i.name == name)
    init.CopyFrom(onnx.numpy_helper.from_array(np.asarray(value, dtype=onnx.numpy_helper.to_array(
        init).dtype).reshape(onnx.numpy_helper.to_array(init).shape), name))


def test_zero_pad_folds_into_conv(tmp_path):
    path = _padded_net(tmp_path)
    assert "Pad" in [n.op_type for n in onnx.load(str(path)).graph.node]
    net = _check(path, inputs("normal", (1, 1, 8, 7), 16, 2))
    assert net.layers[0].pads == (2, 0, 0, 1)


def test_pad_other_than_zeros_into_a_conv_is_refused(tmp_path):
    path = _padded_net(tmp_path)

    def reflect(model, pad):
        for a in pad.attribute:
            if a.name == "mode":
                a.s = b"reflect"

    def one(model, pad):
        _set_init(model, pad.input[2], 1.0)

    def channels(model, pad):
        _set_init(model, pad.input[1], [0, 1, 2, 0, 0, 0, 0, 1])

    for fn, suffix, words in ((reflect, "reflect", "mode reflect"), (one, "one", "value 1.0"),
                              (channels, "channels", "H and W")):
        with pytest.raises(ThresherError, match=words) as info:
            load_model(_edit_pad(path, fn, suffix))
        assert "(Pad)" in str(info.value)
