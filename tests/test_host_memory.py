"""netspec.train.host_memory: glibc keeps a large scratch buffer mapped between steps once `netspec train`
asks it to, and only then. The allocator setting is process-wide, so each check runs in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from netspec.train.host_memory import MMAP_THRESHOLD_MAX, wants_resident_scratch

ROOT = Path(__file__).parents[1]
WIDE = Path(__file__).parent / "fixtures" / "train" / "wide.yaml"

# Page faults of the second use of a freed 64 MiB buffer (what XLA:CPU's next step does with its scratch).
REUSE = textwrap.dedent("""
    import ctypes, resource, sys
    from netspec.train.host_memory import keep_scratch_resident
    set_ = keep_scratch_resident() if sys.argv[1] == "tuned" else None
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    n = 64 << 20
    p = libc.malloc(n); ctypes.memset(p, 1, n); libc.free(p)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    p = libc.malloc(n); ctypes.memset(p, 1, n); libc.free(p)
    print(set_, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def test_only_a_cpu_step_with_scratch_above_glibcs_threshold_is_tuned() -> None:
    linux = sys.platform.startswith("linux")
    assert wants_resident_scratch("cpu", MMAP_THRESHOLD_MAX + 1, {}) is linux
    assert not wants_resident_scratch("cpu", MMAP_THRESHOLD_MAX, {})  # glibc reuses heap memory up to here
    assert not wants_resident_scratch("gpu", 10 * MMAP_THRESHOLD_MAX, {})
    assert not wants_resident_scratch("cpu", 10 * MMAP_THRESHOLD_MAX, {"NETSPEC_MALLOC": "glibc"})


def test_the_setting_removes_the_page_faults_of_reusing_a_large_buffer() -> None:
    faults = {}
    for mode in ("glibc", "tuned"):
        done = subprocess.run([sys.executable, "-c", REUSE, mode], capture_output=True, text=True, timeout=60,
                              cwd=ROOT)
        assert done.returncode == 0, done.stderr
        set_, n = done.stdout.rsplit(maxsplit=1)
        faults[mode] = int(n)
        if mode == "tuned":
            assert set_ != "None"  # this is a glibc host
    pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert faults["glibc"] >= pages // 2  # fresh mmap pages every time
    assert faults["tuned"] < pages // 20  # the freed heap memory, still mapped


@pytest.mark.slow
def test_netspec_train_applies_it_for_a_large_step_and_records_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "netspec.cli", "train", str(WIDE), "-o", str(run),
                           "--batch-size", "512", "--max-iter", "2", "--test-iter", "0", "--progress", "none",
                           "--compile-cache", "off"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 0, done.stderr
    info = json.loads((run / "run.json").read_text())
    expected = {"M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": 2**31 - 1} if sys.platform.startswith("linux") else None
    assert info["host_malloc"] == expected
