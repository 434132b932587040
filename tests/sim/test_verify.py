"""Random verification (sim/verify.py): reproducible cases, agreement, and failures saved so that
they can be re-run."""

import json

import numpy as np
import pytest

from thresher.model_tools import golden
from thresher.model_tools.errors import ThresherError
from thresher.sim.verify import random_case, verify_random


def test_random_case_is_reproducible():
    cases = [random_case(np.random.default_rng([0, i])) for i in range(20)]
    assert cases == [random_case(np.random.default_rng([0, i])) for i in range(20)]
    assert len({str(c) for c in cases}) > 10
    with pytest.raises(ThresherError, match="positive number"):
        verify_random(0)


@pytest.mark.slow
def test_verify_random_reports_and_saves_failures(tmp_path, monkeypatch, progress_events):
    """A random case passes; then a deliberately wrong golden makes one fail and be saved."""
    lines = []
    results = verify_random(1, seed=0, out_dir=tmp_path, log=lines.append)
    assert all(r.ok or r.unsupported for r in results), lines
    assert "agree" in lines[-1] and "pysim" in lines[0]
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
    assert "FAILED" in lines[-1]
    from thresher.model_tools.ir import IntegerNetwork
    net = IntegerNetwork.load(saved)
    x = np.load(saved / "input.npy")
    assert np.array_equal(np.load(saved / "outputs.npz")["verilator"], real(net, x))
    exec(json.loads((saved / "case.json").read_text())["reproduce"], {})   # runs as written
