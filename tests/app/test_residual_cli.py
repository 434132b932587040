"""A network with a residual add on the command line: the golden engine runs it, the hardware
engines refuse it with exit 2 and one line (the overlay has no add stage yet)."""

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


def test_residual_network_runs_golden_and_is_refused_by_hardware(tmp_path, capsys):
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
                 str(tmp_path / "y_rtl.npy"), "--engine", "rtl"])
    out, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1, err
    assert "residual adds run in the golden engine only" in err and "add" in err
    assert not (tmp_path / "y_rtl.npy").exists()

    code = main(["info", str(tmp_path / "net")])
    out, err = capsys.readouterr()
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("add "))
    assert "input, c2" in row                    # the "from" column names both operands
    assert "no hardware plan" in out and "golden engine only" in out
