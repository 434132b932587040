"""Random verification (sim/verify.py): reproducible cases, agreement, and failures saved so that
they can be re-run."""

import json

import numpy as np
import pytest

from thresher.model_tools import golden
from thresher.model_tools.errors import ThresherError
from thresher.sim.app.cli import main
from thresher.sim.verify import _network, _stall_seed, random_case, verify_random


def test_random_case_is_reproducible():
    cases = [random_case(np.random.default_rng([0, i])) for i in range(20)]
    assert cases == [random_case(np.random.default_rng([0, i])) for i in range(20)]
    assert len({str(c) for c in cases}) > 10
    with pytest.raises(ThresherError, match="positive number"):
        verify_random(0)
    with pytest.raises(ThresherError, match="non-negative"):
        verify_random(1, seed=-1)


def test_a_case_depends_on_its_seed_and_index_only():
    """Network, inputs and stall pattern come from (seed, i): whoever draws them, in any order."""
    a = [_network(4, i, 3) for i in (2, 0, 1)]
    b = [_network(4, i, 3) for i in (0, 1, 2)]
    for (case_a, net_a, x_a), (case_b, net_b, x_b) in zip(a, [b[2], b[0], b[1]]):
        assert case_a == case_b and np.array_equal(x_a, x_b)
        assert np.array_equal(golden.run_integer(net_a, x_a), golden.run_integer(net_b, x_b))
    stalls = {_stall_seed(s, i) for s in range(3) for i in range(50)}
    assert len(stalls) == 150 and _stall_seed(1, 7) == _stall_seed(1, 7)


def test_random_cases_include_residual_graphs():
    """Some cases draw a residual block (an add of two earlier layers, identity or 1x1 strided
    shortcut, shifted or not, the add last or not); each builds into a graph network."""
    cases = [random_case(np.random.default_rng([0, i])) for i in range(80)]
    graphs = [c for c in cases if any(s[0] == "add" for s in c["spec"])]
    assert 8 <= len(graphs) <= 30
    assert any(s[0] == "add" and s[1:3] != (len(c["spec"]) - 2, 0) for c in graphs
               for s in c["spec"])
    assert any(len(s) == 6 and s[0] == "conv" and s[2] == 1 and s[3] == 2 for c in graphs
               for s in c["spec"])
    assert any(c["spec"][-1][0] == "add" for c in graphs)
    assert any(s[0] == "add" and any(s[3]) for c in graphs for s in c["spec"])
    for i in range(80):
        case, net, _ = _network(0, i, 1)
        assert net.is_chain == (case not in graphs)


def test_a_residual_case_passes_under_verilator():
    """Case 8 of seed 3 (a 1x1 stride-2 shortcut from the input quantizer's output, the add last
    without thresholds) matches golden and the cycle model; verify.json's rows name the add's
    and the shortcut's inputs."""
    from thresher.sim.toolchain import unavailable_reason
    from thresher.sim.verify import verify_case
    if unavailable_reason() is not None:
        pytest.skip(unavailable_reason())
    result = verify_case(3, 8, pysim_every=0)
    assert result.ok, result.message
    assert result.cycles == result.predicted
    rows = result.to_json()["layers"]
    assert [r["kind"] for r in rows] == ["Conv", "Conv", "Add"]
    assert [r.get("inputs") for r in rows] == [None, [-1], [1, 0]]
    assert rows[2]["activation"] is False and rows[1]["kernel"] == [1, 1]


@pytest.mark.slow
def test_verify_random_reports_and_saves_failures(tmp_path, monkeypatch, progress_events):
    """A random case passes; then a deliberately wrong golden makes one fail and be saved."""
    lines = []
    results = verify_random(1, seed=0, out_dir=tmp_path, log=lines.append)
    assert all(r.ok or r.unsupported for r in results), lines
    assert "this process" in lines[0] and "pysim" in lines[1] and "agree" in lines[-1]
    entry = json.loads((tmp_path / "verify.json").read_text())["results"][0]
    assert entry["verdict"] == "pass" and entry["engines"][-1] == "pysim"
    bars = [e for e in progress_events if e[0] == "bar" and e[1] == "verify"]
    assert [(total, updates) for _, _, total, updates in bars] == [(1, [1])]

    real = golden.run_integer
    monkeypatch.setattr(golden, "run_integer", lambda net, x: real(net, x) + 1)
    lines = []
    results = verify_random(1, seed=0, out_dir=tmp_path, pysim_every=0, log=lines.append)
    assert not results[0].ok and "verilator != golden" in results[0].message
    saved = results[0].saved
    assert saved and {"network.json", "network.npz", "input.npy", "case.json",
                      "outputs.npz"} <= {p.name for p in saved.iterdir()}
    assert "FAILED" in lines[-1] and "thresher verify --case 0:0" in lines[1]
    case = json.loads((saved / "case.json").read_text())
    assert case["command"] == "thresher verify --case 0:0" and case["verdict"] == "fail"
    from thresher.model_tools.ir import IntegerNetwork
    net = IntegerNetwork.load(saved)
    x = np.load(saved / "input.npy")
    assert np.array_equal(np.load(saved / "outputs.npz")["verilator"], real(net, x))
    exec(json.loads((saved / "case.json").read_text())["reproduce"], {})   # runs as written


@pytest.mark.slow
def test_verify_case_runs_one_case_again(tmp_path, capsys):
    """``--case SEED:I`` is case I of ``--random N --seed SEED``, alone, in this process."""
    assert main(["verify", "--random", "2", "--seed", "0", "--workers", "1",
                 "-o", str(tmp_path / "all")]) == 0
    assert main(["verify", "--case", "0:1", "-o", str(tmp_path / "one")]) == 0
    out = capsys.readouterr().out
    assert "1 passed, 0 failed" in out and "1 case of seed 0 on this process" in out
    every = json.loads((tmp_path / "all" / "verify.json").read_text())["results"]
    (one,) = json.loads((tmp_path / "one" / "verify.json").read_text())["results"]
    drop = lambda c: {k: v for k, v in c.items() if k != "seconds"}   # noqa: E731
    assert drop(one) == drop(every[1])
    assert main(["verify", "--case", "0"]) == 2
    assert "give SEED:I" in capsys.readouterr().err
