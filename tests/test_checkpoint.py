"""Orbax checkpoints of training states: round trip, keep-last-N-and-best, atomicity under SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from netspec.errors import NetspecError
from netspec.train.checkpoint import Checkpointer, read_variables, resolve_checkpoint


def _state(step: int) -> dict:
    return {
        "params": {"conv1": {"0": jnp.full((3, 3), float(step)), "1": jnp.arange(3.0)}},
        "batch_stats": {},
        "opt_state": ({"conv1": {"0": jnp.zeros((0,)), "1": jnp.ones(3) * step}},),
        "step": jnp.asarray(step, jnp.int32),
        "key": jax.random.key_data(jax.random.key(step)),
    }


def test_round_trip_keeps_zero_size_leaves_and_meta(tmp_path: Path) -> None:
    ck = Checkpointer(tmp_path / "ck")
    ck.save(7, _state(7), {"iteration": 7, "data": {"epoch": 1, "position": 3}})
    got, meta = ck.restore(7, _state(0))
    ck.close()
    assert meta["iteration"] == 7 and meta["data"] == {"epoch": 1, "position": 3}
    assert meta["format"] == "netspec-checkpoint/1"
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(_state(7))):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert got["opt_state"][0]["conv1"]["0"].shape == (0,)


def test_keeps_last_n_and_the_best(tmp_path: Path) -> None:
    ck = Checkpointer(tmp_path / "ck", keep_last=2)
    for step, score in [(1, 0.5), (2, 0.9), (3, None), (4, 0.7), (5, None)]:
        ck.save(step, _state(step), {"iteration": step}, score=score)
    assert ck.all_steps() == [2, 4, 5]  # 4 and 5 are the last two, 2 scored best
    assert ck.latest_step() == 5
    ck.close()


def test_read_variables_finds_the_latest_checkpoint_of_a_run(tmp_path: Path) -> None:
    ck = Checkpointer(tmp_path / "run" / "checkpoints")
    ck.save(3, _state(3), {"iteration": 3})
    ck.save(4, _state(4), {"iteration": 4})
    ck.close()
    assert resolve_checkpoint(tmp_path / "run") == (tmp_path / "run" / "checkpoints", 4)
    assert resolve_checkpoint(tmp_path / "run" / "checkpoints" / "3") == (tmp_path / "run" / "checkpoints", 3)
    variables, where = read_variables(tmp_path / "run")
    assert "iteration 4" in where
    np.testing.assert_array_equal(variables["params"]["conv1"]["0"], np.full((3, 3), 4.0))
    with pytest.raises(NetspecError, match="no checkpoint"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(NetspecError, match="not found"):
        resolve_checkpoint(tmp_path / "nope")


_WRITER = textwrap.dedent("""
    import sys
    import jax.numpy as jnp
    from pathlib import Path
    from netspec.train.checkpoint import Checkpointer
    ck = Checkpointer(Path(sys.argv[1]), keep_last=100)
    for step in range(1, 1000):
        big = jnp.full((4, 1024, 1024), float(step))  # 16 MB: the write takes a while
        ck.save(step, {"params": {"w": big}, "step": jnp.asarray(step)}, {"iteration": step})
        print(step, flush=True)
""")


def test_sigkill_during_a_write_leaves_the_previous_checkpoint_loadable(tmp_path: Path) -> None:
    folder = tmp_path / "ck"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "1"  # one complete checkpoint exists
        deadline = time.monotonic() + 60
        caught = False
        while time.monotonic() < deadline and not caught:
            # Orbax writes into "<step>.orbax-checkpoint-tmp*" and renames it when complete.
            caught = any("tmp" in p.name for p in folder.iterdir())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert caught, "never saw a checkpoint being written"
    ck = Checkpointer(folder)
    latest = ck.latest_step()
    assert latest is not None and latest >= 1
    target = {"params": {"w": jnp.zeros((4, 1024, 1024))}, "step": jnp.asarray(0)}
    got, meta = ck.restore(latest, target)
    ck.close()
    assert meta["iteration"] == latest and int(got["step"]) == latest
    assert float(got["params"]["w"].min()) == float(got["params"]["w"].max()) == float(latest)
    assert not any("tmp" in p.name for p in folder.iterdir())  # start-up removed the half-written one
