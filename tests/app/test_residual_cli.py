"""A network with a residual add on the command line: the golden engine and the RTL run it, the
same to the bit, and ``info`` shows the wiring and the feature RAM's regions."""

import numpy as np

from thresher.model_tools import IntegerNetwork, golden
from thresher.model_tools.ir import (Add, Conv, Dense, Dequant, InputQuantizer, Thresholds,
                                     identity_thresholds)
from thresher.sim.app.cli import main


def residual_net() -> IntegerNetwork:
    """UINT2 input (1, 4, 4) -> conv -> conv -> add(input, conv) -> dense: a skip over two convs."""
    rng = np.random.default_rng(0)
    inq = InputQuantizer((1, 4, 4), (1, 4, 4), identity_thresholds("UINT2"), "UINT2")
    c1 = Conv("c1", rng.integers(-1, 2, (2, 1, 3, 3)), (1, 4, 4), (2, 4, 4), (0, 3), 2,
              Thresholds([[-2, 0, 2], [-1, 1, 3]], [1, -1], 0), pads=(1, 1, 1, 1))
    c2 = Conv("c2", rng.integers(-1, 2, (1, 2, 3, 3)), (2, 4, 4), (1, 4, 4), (0, 3), 2,
              Thresholds([[-3, 0, 3]], [1], 0), pads=(1, 1, 1, 1))
    add = Add("add", (1, 4, 4), (1, 4, 4), inputs=(-1, 1), in_ranges=((0, 3), (0, 3)),
              activation=Thresholds([[1, 3, 5]], [1], 0))
    fc = Dense("fc", rng.integers(-2, 2, (3, 16)), (1, 4, 4), (3,), (0, 3), 2, None)
    return IntegerNetwork(inq, (c1, c2, add, fc), Dequant(np.full(3, 0.5), np.zeros(3)), (3,),
                          name="residual")


def test_residual_network_runs_golden_and_rtl_alike(tmp_path, capsys):
    net = residual_net()
    net.save(tmp_path / "net")
    x = np.random.default_rng(1).integers(0, 4, (5, 1, 4, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)

    code = main(["run", str(tmp_path / "net"), str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y.npy"), "--engine", "golden"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert np.array_equal(np.load(tmp_path / "y.npy"), golden.run(net, x))

    code = main(["run", str(tmp_path / "net"), str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y_rtl.npy"), "--engine", "rtl", "--pe", "2", "--simd", "4"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert np.array_equal(np.load(tmp_path / "y_rtl.npy"), np.load(tmp_path / "y.npy"))

    code = main(["info", str(tmp_path / "net")])
    out, err = capsys.readouterr()
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("add "))
    assert "input, c2" in row                    # the "from" column names both operands
    # the input stays live across the two convs: three regions, not the chain's two
    budget = next(line for line in out.splitlines() if line.startswith("feature RAM:"))
    assert budget.startswith("feature RAM: 3 regions"), budget
