"""``thresher explore`` (sim/app/explore.py): real builds of a tiny network on the iCEBreaker, two
at a time in local processes; explore.json, explore.html and the Pareto front."""

import json

import pytest

from board_nets import tiny_network
from thresher.hw.resources import array_candidates
from thresher.sim.app.cli import main
from thresher.sim.app.explore import _pareto


def test_pareto_front_keeps_what_nothing_beats():
    rows = [dict(point=p, built=True, meets_timing=ok, logic_used=lc, inferences_per_s=ips)
            for p, lc, ips, ok in [("a", 100, 10, True), ("b", 200, 30, True),
                                   ("c", 250, 20, True), ("d", 300, 30, True),
                                   ("e", 50, 99, False), ("f", 400, 50, True)]]
    rows.append(dict(point="g", built=False))
    assert _pareto(rows) == {"a", "b", "f"}   # c, d are beaten by b; e missed its clock


@pytest.mark.slow
def test_explore_builds_points_and_writes_the_front(tmp_path, capsys):
    net = tiny_network()
    net.save(tmp_path / "tiny")
    pick = array_candidates(net, "icebreaker")[0]
    arrays = [pick] + [a for a in [(2, 4), (1, 2), (1, 1)] if a != pick][:2]
    out = tmp_path / "sweep"
    code = main(["explore", str(tmp_path / "tiny"), "--board", "icebreaker", "--arrays",
                 ",".join(f"{p}x{s}" for p, s in arrays), "--workers", "2", "-o", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert "inferences/s" in stdout and "3 of 3 points built" in stdout

    data = json.loads((out / "explore.json").read_text())
    rows = data["points"]
    assert [(r["pe"], r["simd"]) for r in rows] == arrays
    for r in rows:
        assert r["built"] and r["fits"] and r["seed"] == 1 and r["target_clock_mhz"] is None
        assert r["fmax_mhz"] > 0 and r["clock_mhz"] > 0 and r["logic_resource"] == "ICESTORM_LC"
        assert 0 < r["logic_used"] <= r["logic_available"]
        assert r["inferences_per_s"] == pytest.approx(r["clock_mhz"] * 1e6
                                                      / r["cycles_per_inference"], rel=1e-3)
        assert {"report.json", "top.bin"} <= {f.name for f in (out / r["point"]).iterdir()}
        report = json.loads((out / r["point"] / "report.json").read_text())
        assert (report["pe"], report["simd"]) == (r["pe"], r["simd"])   # no step-down
    front = {r["point"] for r in rows if r["pareto"]}
    assert front and data["front"] and set(data["front"]) == front
    assert front == _pareto(rows)
    picked = [r for r in rows if r["build_pick"]]
    assert [(r["pe"], r["simd"]) for r in picked] == [pick]
    assert data["build_pick"]["point"] == picked[0]["point"]

    page = (out / "explore.html").read_text()
    assert page.count("<svg") == 1 and "<script" not in page
    assert "stroke-dasharray" in page           # the front, drawn
    assert page.count("<circle") >= len(rows)

    # build --explore builds the fastest point that met its clock, and the board runs it as fast
    met = [r for r in rows if r["meets_timing"]]
    fastest = max(met, key=lambda r: r["inferences_per_s"])
    code = main(["build", str(tmp_path / "tiny"), "--board", "icebreaker", "--explore", str(out),
                 "-o", str(tmp_path / "picked")])
    assert code == 0, capsys.readouterr()
    report = json.loads((tmp_path / "picked" / "report.json").read_text())
    assert (report["pe"], report["simd"]) == (fastest["pe"], fastest["simd"])
    assert report["meets_timing"] and report["clock_mhz"] == fastest["clock_mhz"]
    assert report["inferences_per_s"] == pytest.approx(fastest["inferences_per_s"], rel=1e-3)

    # a sweep of another board, or of another network, is refused
    capsys.readouterr()
    assert main(["build", str(tmp_path / "tiny"), "--board", "upduino-v3", "--explore", str(out),
                 "-o", str(tmp_path / "other")]) == 2
    assert "that sweep is for icebreaker" in capsys.readouterr().err
    assert main(["build", "default", "--board", "icebreaker", "--explore", str(out),
                 "-o", str(tmp_path / "other")]) == 2
    assert "another network" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_a_point_listed_twice_is_refused(tmp_path, capsys):
    net = tiny_network()
    net.save(tmp_path / "tiny")
    code = main(["explore", str(tmp_path / "tiny"), "--board", "icebreaker", "--arrays",
                 "2x4,1x1,2x4", "-o", str(tmp_path / "sweep")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "point pe2-simd4" in err and "twice" in err, err
    assert not (tmp_path / "sweep").exists()
