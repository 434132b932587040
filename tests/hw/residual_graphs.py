"""Random hand-built residual IR graphs for the RTL tests (numpy only).

``graph_network(seed, in_shape, spec)`` with ``spec`` a list of layers, each reading the previous
one unless it names its source (``src``: a layer index, -1 the input quantizer's output):
``("conv", cout, k, stride, pad[, src])``, ``("dense", cout[, src])``, ``("pool", k, stride[, src])``
(max) and ``("add", a, b[, shifts[, act]])`` (``act=False``: no thresholds, only as the last layer).
The last MAC layer gets no activation unless it is an add with ``act=True``. Weights are 2..4-bit,
activations of the kinds of :mod:`model_tools.netgen` (bipolar, narrow signed, unsigned), the input
quantizer unsigned or narrow signed with direction +1. The graph is
:func:`model_tools.netgen.random_network`'s (no variety), its layers named by kind and index.
"""

from __future__ import annotations

import dataclasses

from thresher.model_tools.ir import Conv, Dense
from thresher.model_tools.netgen import ACT_KINDS, random_network


def graph_network(seed, in_shape, spec, *, name="graph"):
    net = random_network(seed, in_shape, spec, weight_bits=(2, 3, 4), input_kinds=ACT_KINDS[2:],
                         input_direction=1, name=name, variety=0)
    kinds = {Conv: "conv", Dense: "dense"}
    layers = tuple(dataclasses.replace(layer, name=f"{kinds[type(layer)]}{i}")
                   if type(layer) in kinds else layer for i, layer in enumerate(net.layers))
    return dataclasses.replace(net, layers=layers)
