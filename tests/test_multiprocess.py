"""Two `netspec train` processes on 127.0.0.1 (gloo CPU collectives, two devices each) train as one.

Each test starts real processes (`--coordinator 127.0.0.1:PORT --num-processes 2 --process-id I`, a
free port picked at run time), waits for them with a timeout, and kills whatever is left in `finally`.
Parameters are compared with a single-process run of the same global batch: equal to float32
tolerance (the all-reduce sums the 4 devices' gradients in another order; see test_distributed.py).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from conftest import CliResult, run_cli
from netspec.train.checkpoint import read_variables

PLAIN = Path(__file__).parent / "fixtures" / "train" / "plain.yaml"
OFF = ["--compile-cache", "off", "--progress", "plain"]
RTOL, ATOL = 1e-4, 1e-6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_env() -> dict[str, str]:
    """Two CPU devices a process, gloo between processes. Pinned to the CPU: on a machine with one GPU
    every process would take that GPU, and the one-process reference must run where the runs it is
    compared with run."""
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": "2", "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    return env


def _reference(args: list[str]) -> CliResult:
    """`netspec ARGS` as a one-process CPU run (the baseline of a comparison)."""
    done = subprocess.run([sys.executable, "-m", "netspec.cli", *args], capture_output=True, text=True,
                          env=_cpu_env(), timeout=240)
    return CliResult(done.returncode, done.stdout, done.stderr)


class Procs:
    """The processes of one multi-process run, with their output files."""

    def __init__(self, tmp: Path, tag: str) -> None:
        self.tmp, self.tag = tmp, tag
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], port: int, n: int = 2, peer_timeout: int = 20,
              ids: list[int] | None = None) -> None:
        """Processes `ids` (default all) of an `n`-process run; output in files, by position in `procs`."""
        env = _cpu_env()
        for k, i in enumerate(range(n) if ids is None else ids):
            cmd = [sys.executable, "-m", "netspec.cli", "train", *OFF, *args, "--coordinator",
                   f"127.0.0.1:{port}", "--num-processes", str(n), "--process-id", str(i), "--peer-timeout",
                   str(peer_timeout)]
            with open(self.out(k), "wb") as out, open(self.err(k), "wb") as err:
                # A session of its own: cleanup can end the process and its training child together.
                self.procs.append(subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=self.tmp,
                                                   start_new_session=True))

    def out(self, i: int) -> Path:
        return self.tmp / f"{self.tag}-{i}.out"

    def err(self, i: int) -> Path:
        return self.tmp / f"{self.tag}-{i}.err"

    def text(self, i: int) -> tuple[str, str]:
        return self.out(i).read_text(), self.err(i).read_text()

    def wait(self, timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        return [p.wait(timeout=max(0.1, deadline - time.monotonic())) for p in self.procs]

    def kill_all(self) -> None:
        for p in self.procs:
            if p.poll() is None or _group_alive(p.pid):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if p.poll() is None:
                p.wait(timeout=30)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


@contextmanager
def processes(tmp: Path, tag: str) -> Iterator[Procs]:
    procs = Procs(tmp, tag)
    try:
        yield procs
    finally:
        procs.kill_all()


def _assert_same_params(run: Path, reference: Path) -> None:
    got, _ = read_variables(run)
    want, _ = read_variables(reference)
    assert got["params"].keys() == want["params"].keys()
    for layer, blobs in want["params"].items():
        for i, x in blobs.items():
            np.testing.assert_allclose(got["params"][layer][i], x, rtol=RTOL, atol=ATOL,
                                       err_msg=f"{layer}/{i}")


def _losses(run: Path) -> list[float]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["kind"] == "train"]


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path: Path) -> None:
    run = tmp_path / "two"
    # A fixed seed: two free-running runs are compared (see test_distributed.py on near-ties).
    args = [str(PLAIN), "-o", str(run), "--max-iter", "12", "--display", "1", "--test-interval", "6",
            "--test-iter", "4"]
    with processes(tmp_path, "two") as procs:
        procs.start(args, _free_port())
        reference = _reference(["train", *args[:1], "-o", str(tmp_path / "one"), *args[3:], "--devices", "1",
                                *OFF])
        codes = procs.wait(timeout=240)
    assert reference.rc == 0, reference.err
    (out0, err0), (out1, err1) = procs.text(0), procs.text(1)
    assert codes == [0, 0], (err0[-2000:], err1[-2000:])
    # Process 0 logs the run and writes its folder; process 1 prints only its summary line.
    assert "plain: 12 iterations, batch 16" in out0 and "x4 ->" in out0
    # gloo's connection lines ("[Gloo] Rank 0 is connected to 1 peer ranks. ..."), which its C++ code prints
    # to the standard output at every new set of connections, are not shown.
    assert "Gloo" not in out0 + out1 and "peer ranks" not in out0 + out1, (out0, out1)
    lines1 = out1.splitlines()

    def untimed(line: str) -> str:
        return re.sub(r"[\d.]+ s", "T s", line)

    assert [untimed(x) for x in lines1] == [untimed(out0.splitlines()[-1])]
    assert out0.splitlines()[-1].startswith("test accuracy")
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["devices"], summary["processes"], summary["iterations"]) == (4, 2, 12)
    info = json.loads((run / "run.json").read_text())
    assert len(info["devices"]) == 4 and info["command"][-6:] == ["--num-processes", "2", "--process-id", "0",
                                                                   "--peer-timeout", "20"]
    assert sorted(p.name for p in run.iterdir() if p.name.endswith(".tmp")) == []
    # Same losses at every step and same parameters at the end as one process with the same global batch.
    np.testing.assert_allclose(_losses(run), _losses(tmp_path / "one"), rtol=RTOL)
    _assert_same_params(run, tmp_path / "one")
    tests = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"test"' in x]
    ref_tests = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()
                 if '"test"' in x]
    assert [t["outputs"]["accuracy"] for t in tests] == [t["outputs"]["accuracy"] for t in ref_tests]


def _checkpoints(run: Path) -> list[int]:
    folder = run / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


@pytest.mark.slow
def test_a_killed_process_stops_the_other_with_a_clear_error_and_the_run_resumes(tmp_path: Path) -> None:
    run, peer_timeout, max_iter = tmp_path / "run", 5, 60
    # The relaunch reads the first launch's compiled programs from a persistent cache (saves seconds).
    args = [str(PLAIN), "-o", str(run), "--max-iter", str(max_iter), "--snapshot", "10", "--display", "50",
            "--test-interval", "0", "--test-iter", "0", "--compile-cache", str(tmp_path / "cache")]
    with processes(tmp_path, "first") as procs:
        procs.start(args, _free_port(), peer_timeout=peer_timeout)
        deadline = time.monotonic() + 240
        while not _checkpoints(run) and time.monotonic() < deadline and procs.procs[0].poll() is None:
            time.sleep(0.05)
        assert _checkpoints(run), procs.text(0)
        os.kill(procs.procs[1].pid, signal.SIGKILL)  # process 1 dies (its training child follows it)
        killed = time.monotonic()
        code = procs.procs[0].wait(timeout=peer_timeout + 60)
        took = time.monotonic() - killed
        out0, err0 = procs.text(0)
    assert _checkpoints(run)[-1] < max_iter, "the run ended before the kill"
    assert code == 1, err0
    assert took < peer_timeout + 30, took
    last = _checkpoints(run)[-1]
    # Either JAX's heartbeat check or the broken gloo stream of a collective in flight notices first.
    assert re.search(r"^error: process 0: (process 1 of this run stopped responding \(no heartbeat for "
                     rf"{peer_timeout} s\)|the connection to another process of this run broke during a "
                     r"collective)", err0, re.M), err0
    # JAX's runtime log of the ending (barriers, heartbeats, a stack trace) is replaced by that one error.
    assert "Barrier" not in err0 and "coordination_service" not in err0 and "Terminating process" not in err0
    assert f"the last checkpoint is iteration {last} ({run / 'checkpoints' / str(last)}); start every " \
           f"process again with --resume -o {run}" in err0
    assert "Check failure stack trace" not in err0 and "@     0x" not in err0 and "Traceback" not in err0

    with processes(tmp_path, "resumed") as procs:
        procs.start([*args, "--resume"], _free_port(), peer_timeout=peer_timeout)
        reference = _reference(["train", *OFF, *args[:1], "-o", str(tmp_path / "one"), *args[3:-2],
                                "--devices", "1"])
        codes = procs.wait(timeout=240)
        (out0, err0), (_, err1) = procs.text(0), procs.text(1)
    assert reference.rc == 0, reference.err
    assert codes == [0, 0], (err0[-2000:], err1[-2000:])
    assert f"resumed from iteration {last}" in out0 and "compiled in" in out0
    assert "from the compilation cache)" in out0, out0
    assert json.loads((run / "summary.json").read_text())["iterations"] == max_iter
    _assert_same_params(run, tmp_path / "one")


@pytest.mark.slow
def test_ctrl_c_stops_the_coordinator_at_once_and_the_other_process_says_so(tmp_path: Path) -> None:
    """Ctrl-C on process 0 (SIGINT to its terminal's process group) ends it at once: no interrupt checkpoint,
    which would be a collective write process 1 never joins. Process 1 notices the coordinator is gone."""
    run = tmp_path / "run"
    args = [str(PLAIN), "-o", str(run), "--max-iter", "100000", "--snapshot", "0", "--display", "0",
            "--test-interval", "0", "--test-iter", "0"]
    with processes(tmp_path, "coord") as procs:
        procs.start(args, _free_port(), peer_timeout=30)
        deadline = time.monotonic() + 240
        while "compiled in" not in procs.text(0)[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # a few steps in: both processes are inside collectives
        os.killpg(procs.procs[0].pid, signal.SIGINT)
        pressed = time.monotonic()
        code0 = procs.procs[0].wait(timeout=30)
        took0 = time.monotonic() - pressed
        code1 = procs.procs[1].wait(timeout=60)
        took1 = time.monotonic() - pressed
        (_, err0), (_, err1) = procs.text(0), procs.text(1)
    assert (code0, code1) == (130, 1), (err0, err1)
    assert took0 < 10 and took1 < 20, (took0, took1)  # not the 30 s heartbeat timeout
    assert err0.strip() == ("interrupted: process 0 stopped; the others stop within --peer-timeout (30 s); "
                            "the last checkpoint: none yet; continue with --resume")
    assert "error: process 1: lost the coordinator (process 0), which died or became unreachable" in err1, \
        err1
    assert "hint: no checkpoint was written; start every process again" in err1
    assert "Check failure stack trace" not in err1 and "Traceback" not in err1


def test_partial_multi_process_flags_are_a_usage_error_before_anything_starts(tmp_path: Path) -> None:
    done = run_cli(["train", str(PLAIN), "-o", str(tmp_path / "r"), "--coordinator", "127.0.0.1:1", *OFF])
    assert done.rc == 1 and "--num-processes, --process-id missing" in done.err
    done = run_cli(["train", str(PLAIN), "-o", str(tmp_path / "r"), "--coordinator", "localhost",
                    "--num-processes", "2", "--process-id", "2", *OFF])
    assert done.rc == 1
    assert "--coordinator 'localhost': expected HOST:PORT" in done.err
    assert "--process-id 2: must be in 0..1 for --num-processes 2" in done.err
    assert not (tmp_path / "r").exists()


def test_an_unreachable_coordinator_is_a_clear_error(tmp_path: Path) -> None:
    """Process 1 of 2 whose coordinator never comes up gives up after --join-timeout, and says why."""
    port = _free_port()
    started = time.monotonic()
    with processes(tmp_path, "alone") as procs:
        procs.start([str(PLAIN), "-o", str(tmp_path / "r"), "--join-timeout", "3"], port, ids=[1])
        code = procs.wait(timeout=120)[0]
        out, err = procs.text(0)
    assert code == 1, err
    assert time.monotonic() - started < 60
    assert f"error: process 1: could not join the run: no answer from the coordinator at 127.0.0.1:{port} " \
           "(DEADLINE_EXCEEDED" in err, err
    assert "hint: start all 2 processes within --join-timeout (3 s) of each other" in err
    assert "Check failure stack trace" not in err and "Traceback" not in err and out == ""


AGREE = """
import random, sys, time
from pathlib import Path
from netspec.train.distributed import Cluster, agree, agree_seed, start
topology = start(Cluster("127.0.0.1:{port}", 2, int(sys.argv[1]), peer_timeout=20, init_timeout=60), None)
mine = f"runs/plain-{{random.randrange(10**9)}}"
seed = agree_seed(topology, Path(sys.argv[2]), None, {{}})["seed"]
print("ROW", topology.process_index, topology.process_count, topology.data_index, mine, agree(topology, mine), seed,
      flush=True)
"""


def test_processes_agree_on_process_0s_run_folder_and_clock_seed(tmp_path: Path) -> None:
    """Each process picks a run folder and (without random_seed) a seed by itself; all take process 0's."""
    spec = tmp_path / "plain.yaml"
    spec.write_text(PLAIN.read_text().replace(", random_seed: 3}", "}"))
    assert "random_seed" not in spec.read_text()
    script = AGREE.format(port=_free_port())
    env = _cpu_env()
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i), str(spec)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
             for i in (0, 1)]
    try:
        done = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in done]
    # gloo writes its own connection lines to stdout from other threads, even into the middle of a line:
    # find the row by its marker and shape rather than by line.
    found = [re.search(r"ROW (\d+) (\d+) (\d+) (runs/plain-\d+) (runs/plain-\d+) (\d+)", out) for out, _ in done]
    assert all(found), [out for out, _ in done]
    rows = [m.groups() for m in found if m]
    (i0, n0, b0, mine0, got0, seed0), (i1, n1, b1, mine1, got1, seed1) = rows
    assert (i0, n0, b0, i1, n1, b1) == ("0", "2", "0", "1", "2", "1")  # process i holds block i of a batch
    assert mine0 != mine1 and got0 == got1 == mine0
    assert seed0 == seed1 and int(seed0) >= 0
