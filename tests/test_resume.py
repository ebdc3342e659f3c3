"""`netspec train --resume` after a real SIGKILL ends bit-identical to a run that was never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

TINY = Path(__file__).parent / "fixtures" / "train" / "tiny.yaml"
ARGS = ["--max-iter", "240", "--snapshot", "20", "--display", "10", "--test-interval", "60", "--progress", "plain"]


def _train(tmp: Path, out: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "netspec.cli", "train", str(TINY), "-o", str(tmp / out),
            "--compile-cache", str(tmp / "jax-cache"), *ARGS, *extra]


def _final_state(run: Path, step: int) -> dict:
    mgr = ocp.CheckpointManager((run / "checkpoints").absolute(),
                                options=ocp.CheckpointManagerOptions(read_only=True, create=False))
    try:
        state = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore())).state
        meta = mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    finally:
        mgr.close()
    return {"state": state, "meta": dict(meta)}


def _metrics(run: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["kind"], r["iter"], r.get("loss"), r.get("lr"), json.dumps(r["outputs"], sort_keys=True)) for r in rows]


def test_resume_after_sigkill_is_bit_identical(tmp_path: Path) -> None:
    reference = subprocess.run(_train(tmp_path, "a"), capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr[-3000:]

    killed = subprocess.Popen(_train(tmp_path, "b"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = tmp_path / "b" / "checkpoints"
    deadline = time.monotonic() + 240
    try:
        # Kill mid-run: once two checkpoints exist, at an arbitrary point of the next stretch.
        while time.monotonic() < deadline and killed.poll() is None:
            if ckpts.is_dir() and len([p for p in ckpts.iterdir() if p.name.isdigit()]) >= 2:
                time.sleep(0.05)
                break
            time.sleep(0.005)
        os.kill(killed.pid, signal.SIGKILL)
        assert killed.wait(timeout=30) == -signal.SIGKILL
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.wait()
    steps = sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
    assert steps and steps[-1] < 240, f"the run was not cut short (checkpoints {steps})"

    resumed = subprocess.run(_train(tmp_path, "b", "--resume"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from iteration {steps[-1]}" in resumed.stdout

    a, b = _final_state(tmp_path / "a", 240), _final_state(tmp_path / "b", 240)
    leaves_a, tree_a = jax.tree.flatten(a["state"])
    leaves_b, tree_b = jax.tree.flatten(b["state"])
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b):  # params, batch stats, optimizer history, step, key: every bit
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()
    assert a["meta"]["data"] == b["meta"]["data"] and a["meta"]["iteration"] == 240
    # The logs continue where the checkpoint left off: same losses, lrs and test outputs throughout.
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")
    assert len(json.loads((tmp_path / "b" / "run.json").read_text())["resumed"]) == 1


def test_ctrl_c_checkpoints_where_the_run_is_and_exits_130(tmp_path: Path) -> None:
    run = tmp_path / "c"
    proc = subprocess.Popen(_train(tmp_path, "c", "--max-iter", "100000", "--snapshot", "0", "--test-interval", "0"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if (run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").read_text().count('"train"') >= 3:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err[-2000:]
    last = out.splitlines()[-1]
    assert last.startswith("interrupted at iteration ") and last.endswith("; continue with --resume")
    stopped = int(last.split()[3].rstrip(";"))
    assert stopped >= 20
    assert sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit()) == [stopped]
    assert _final_state(run, stopped)["meta"]["iteration"] == stopped
