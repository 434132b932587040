"""``thresher bench finn``: FINN's CNV networks from Brevitas' definitions, built as a user would,
beside BNN-PYNQ's figures. The ULX3S-85F rows take minutes of place and route (a benchmark, not a
test); here the path through export, load and the build's refusal on a board they cannot fit."""

import numpy as np
import pytest

pytest.importorskip("brevitas_examples")


def test_cnv_rows_say_why_a_board_gets_no_bitstream(tmp_path, capsys):
    from thresher.model_tools import golden
    from thresher.model_tools.load import load_network
    from thresher.sim.app.bench import FINN_BNN_PYNQ, bench_finn, format_finn
    from thresher.sim.app.cli import main
    rows = bench_finn(tmp_path, "icebreaker", say=lambda *_: None)
    assert [r["network"] for r in rows] == ["cnv_1w1a", "cnv_2w2a"]
    for r in rows:
        assert "does not fit icebreaker" in r["refused"] and "choose a larger board" in r["refused"]
        assert r["finn_images_per_s"] == FINN_BNN_PYNQ[r["network"]]
        assert r["macs"] == 59_461_376                # FINN's CNV: 59.5 M multiply-accumulates
    table = format_finn(rows)
    assert "no bitstream" in table and "9,150" in table and "2,580" in table
    # the exported networks are the ones the rows describe: they fold and run
    net = load_network(tmp_path / "cnv_1w1a.onnx")
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    assert golden.run_integer(net, golden.quantize_input(net, x)).shape == (1, 10)
    # an unknown board is one line, exit 2, before any export
    capsys.readouterr()
    assert main(["bench", "finn", "--board", "no-such-board", "--out", str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
