"""Campaigns (sim/campaign.py, sim/verify.py): the same cases and verdicts in this process, in a
pool of local processes and on a real Dask cluster (``distributed.LocalCluster``, worker
processes); a task whose process dies is reported as dead and the campaign goes on.

The dying tasks below are real module-level functions that the worker processes import from this
file (spawned processes get the test session's ``sys.path``)."""

import json
import os
import sys

import pytest

from thresher.model_tools.errors import ThresherError
from thresher.sim.app.cli import main
from thresher.sim.campaign import Campaign, TaskFailure
from thresher.sim.verify import verify_case, verify_random

SEED, N = 2, 3   # three small cases (an MLP among them): seconds each, once Verilator has built


# -- test-only tasks (imported by the workers) -----------------------------------------------------

def square(i):
    if i == 4:
        raise ValueError("four is not allowed")
    return i * i


def square_or_die(i):
    if i == 2:
        os._exit(3)           # the whole worker process goes, as a segfault would
    return square(i)


def verify_or_die(seed, i, **options):
    """``verify_case``, except that case 1's process dies."""
    if i == 1:
        os._exit(3)
    return verify_case(seed, i, **options)


def build_jobs(_):
    return os.environ.get("THRESHER_BUILD_JOBS")


# -- a real cluster --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of two single-threaded worker processes. The scheduler gives a task up
    after it has been on a dying worker twice (instead of four times): fewer restarts."""
    dask = pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as c:
            yield c.scheduler_address


# -- the executor ----------------------------------------------------------------------------------

def test_campaign_results_and_failures_on_every_executor(cluster):
    tasks = [(i,) for i in range(6)]
    expected = {0: 0, 1: 1, 2: 4, 3: 9, 5: 25}
    for campaign in (Campaign(), Campaign(workers=1), Campaign(workers=2),
                     Campaign(scheduler=cluster)):
        with campaign:
            got = dict(campaign.run(square, tasks))
        assert {i: v for i, v in got.items() if i != 4} == expected, campaign.describe()
        assert isinstance(got[4], TaskFailure) and not got[4].died
        assert "ValueError: four is not allowed" in got[4].message
        assert "ValueError" in got[4].detail


def test_pool_workers_share_the_compile_jobs(monkeypatch):
    """Each worker compiles on its share of the cores; a THRESHER_BUILD_JOBS the user set wins."""
    from thresher.sim.campaign import default_workers
    monkeypatch.delenv("THRESHER_BUILD_JOBS", raising=False)
    for workers in (1, 2):
        with Campaign(workers=workers) as campaign:
            got = {v for _, v in campaign.run(build_jobs, [(i,) for i in range(4)])}
        assert got == {str(max(1, default_workers() // workers))}, workers
    monkeypatch.setenv("THRESHER_BUILD_JOBS", "3")
    with Campaign(workers=2) as campaign:
        assert {v for _, v in campaign.run(build_jobs, [(0,), (1,)])} == {"3"}


def test_a_dying_task_is_reported_and_the_others_complete(cluster):
    tasks = [(i,) for i in range(6)]
    for campaign in (Campaign(workers=1), Campaign(workers=2), Campaign(scheduler=cluster)):
        with campaign:
            got = dict(campaign.run(square_or_die, tasks))
        where = campaign.describe()
        assert sorted(got) == list(range(6)), where
        assert isinstance(got[2], TaskFailure) and got[2].died, (where, got[2])
        assert "died" in got[2].message, where
        # a task beside the dead one in its pool, or queued on its worker, is not blamed
        assert {i: got[i] for i in (0, 1, 3, 5)} == {0: 0, 1: 1, 3: 9, 5: 25}, where
        assert not got[4].died, where
    with Campaign(workers=1) as campaign:
        assert "exit status 3" in dict(campaign.run(square_or_die, [(2,)]))[0].message


def test_campaign_options_are_checked(monkeypatch, capsys):
    with pytest.raises(ThresherError, match="not both"):
        Campaign(workers=2, scheduler="tcp://localhost:8786")
    with pytest.raises(ThresherError, match="positive"):
        Campaign(workers=0)
    monkeypatch.setitem(sys.modules, "distributed", None)     # as if the extra were missing
    assert main(["verify", "--random", "1", "--scheduler", "tcp://localhost:8786"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("thresher: error: ") and "thresher[cluster]" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["verify", "--random", "1", "--workers", "2", "--scheduler", "x"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


# -- verify as a campaign --------------------------------------------------------------------------

def _cases(out_dir):
    """verify.json's cases without what depends on the run (time, where it was saved)."""
    data = json.loads((out_dir / "verify.json").read_text())
    return [{k: v for k, v in case.items() if k not in ("seconds", "saved")}
            for case in data["results"]], data


@pytest.mark.slow
def test_verify_is_the_same_on_one_process_two_and_a_cluster(tmp_path, cluster, capsys):
    runs = {"1": ["--workers", "1"], "2": ["--workers", "2"], "dask": ["--scheduler", cluster]}
    cases = {}
    for name, where in runs.items():
        code = main(["verify", "--random", str(N), "--seed", str(SEED), *where,
                     "-o", str(tmp_path / name)])
        out = capsys.readouterr().out
        assert code == 0, out
        assert f"{N} passed, 0 failed" in out
        cases[name], data = _cases(tmp_path / name)
        assert data["executor"]["executor"] == {"1": "processes", "2": "processes",
                                                "dask": "dask"}[name]
    assert cases["1"] == cases["2"] == cases["dask"]
    first = cases["1"]
    assert [(c["seed"], c["index"]) for c in first] == [(SEED, i) for i in range(N)]
    for c in first:
        assert c["verdict"] == "pass" and c["cycles"] == c["predicted_cycles"] > 0
        assert c["engines"][:3] == ["golden", "verilator", "verilator+stalls"]
        assert c["layers"] and c["layer_kinds"] and c["command"] == \
            f"thresher verify --case {SEED}:{c['index']}"
        assert {"in_shape", "spec", "pe", "simd", "input_range"} <= set(c)
    assert "pysim" in first[0]["engines"]       # case 0 (every fifth) runs pysim too


@pytest.mark.slow
def test_verify_reports_a_dead_case_and_goes_on(tmp_path, cluster):
    for name, where in (("pool", dict(workers=2)), ("dask", dict(scheduler=cluster))):
        lines = []
        out = tmp_path / name
        results = verify_random(N, SEED, out, pysim_every=0, log=lines.append,
                                task=verify_or_die, **where)
        assert [r.verdict for r in results] == ["pass", "died", "pass"], lines
        dead = results[1]
        assert "died" in dead.message and "DIED" in "\n".join(lines)
        assert "1 died" in lines[-1]
        case = json.loads((out / f"case-{SEED}-1" / "case.json").read_text())
        assert case["verdict"] == "died" and case["command"] == f"thresher verify --case {SEED}:1"
        assert (out / f"case-{SEED}-1" / "network.json").exists()   # drawn again from its seed
        cases, data = _cases(out)
        assert data["died"] == 1 and data["pass"] == 2
        assert [c["verdict"] for c in cases] == ["pass", "died", "pass"]
