"""Progress: silent by default, one line per start and end (and per quarter of a bar) in logs."""

import io

from thresher.model_tools import progress


def test_silent_unless_a_reporter_listens():
    assert progress.bar(10, "x") is None
    with progress.step("nothing to see"):
        pass
    progress.note("nobody hears this")


def test_log_lines_for_steps_bars_and_notes():
    out = io.StringIO()
    with progress.reporting(progress.StderrReporter(out, live=False)):
        with progress.step("synthesis"):
            pass
        update = progress.bar(8, "batch")
        update(1)
        update(8)            # crosses three quarters at once: one line
        progress.note("stepping down")
    lines = out.getvalue().splitlines()
    assert lines[0] == "thresher: synthesis ..."
    assert lines[1].startswith("thresher: synthesis: done in ")
    assert lines[2] == "thresher: batch: 0/8"
    assert lines[3].startswith("thresher: batch: 8/8 in ")
    assert lines[4] == "thresher: stepping down"
    assert len(lines) == 5


def test_a_failed_step_says_it_stopped():
    out = io.StringIO()
    with progress.reporting(progress.StderrReporter(out, live=False)):
        try:
            with progress.step("place and route"):
                raise RuntimeError("no room")
        except RuntimeError:
            pass
    assert out.getvalue().splitlines()[-1].startswith("thresher: place and route: stopped in ")
