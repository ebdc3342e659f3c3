"""Orbax checkpoints of a whole training state, written atomically; keep the last N and the best.

A checkpoint is one folder per iteration under `RUN/checkpoints/`, holding two items:

- `state`: params, batch_stats, optimizer state, the iteration and the RNG key data (a pytree);
- `meta`: JSON with the iteration, the data iterator's state, the spec's SHA-256 and the best score.

Orbax writes each checkpoint into a temporary folder and renames it into place when complete
(`AtomicRenameTemporaryPath`), so a process killed mid-write leaves only a temporary folder, which
`latest_step()` never returns and the next start-up deletes (`cleanup_tmp_directories`).

Zero-size arrays (the optimizer's empty slots for frozen blobs) cannot be stored by Orbax; they are
left out on save and rebuilt from the target's shapes on restore.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from netspec.errors import Diagnostic, NetspecError

PyTree = Any
FORMAT = "netspec-checkpoint/1"


def _drop_empty(tree: PyTree) -> PyTree:
    return jax.tree.map(lambda x: None if np.size(x) == 0 else x, tree)


def _abstract(tree: PyTree) -> PyTree:
    return jax.tree.map(lambda x: None if np.size(x) == 0 else ocp.utils.to_shape_dtype_struct(x), tree)


def _refill_empty(restored: PyTree, target: PyTree) -> PyTree:
    """Put the zero-size leaves of `target` back into `restored` (which has None there)."""
    leaves, treedef = jax.tree.flatten(target)
    got = treedef.flatten_up_to(restored)
    return treedef.unflatten([t if np.size(t) == 0 else g for t, g in zip(leaves, got)])


class Checkpointer:
    """Save and restore full training states in one run's checkpoint folder."""

    def __init__(self, directory: Path, keep_last: int = 3, read_only: bool = False) -> None:
        policy = pp.AnyPreservationPolicy([
            pp.LatestN(max(1, keep_last)),
            pp.BestN(get_metric_fn=lambda m: m["score"], reverse=False, n=1,
                     keep_checkpoints_without_metrics=False),
        ])
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy, enable_async_checkpointing=False, cleanup_tmp_directories=not read_only,
            read_only=read_only, create=not read_only)
        self.directory = directory
        self._mgr = ocp.CheckpointManager(directory.absolute(), options=options)

    def latest_step(self) -> int | None:
        return self._mgr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._mgr.all_steps())

    def save(self, step: int, state: PyTree, meta: Mapping[str, Any], score: float | None = None) -> None:
        """Write the checkpoint for `step` (blocking; durable once this returns). `score`: higher is
        better; the best-scoring checkpoint is kept beside the last N."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(_drop_empty(state)),
                                  meta=ocp.args.JsonSave({"format": FORMAT, **meta}))
        self._mgr.save(step, args=args, metrics=None if score is None else {"score": float(score)}, force=True)
        self._mgr.wait_until_finished()

    def restore(self, step: int, target: PyTree) -> tuple[PyTree, dict[str, Any]]:
        """The state saved at `step`, laid out (shapes, dtypes, shardings) like `target`, and its meta."""
        args = ocp.args.Composite(state=ocp.args.StandardRestore(_abstract(target)), meta=ocp.args.JsonRestore())
        got = self._mgr.restore(step, args=args)
        return _refill_empty(got.state, target), dict(got.meta)

    def read_meta(self, step: int) -> dict[str, Any]:
        got = self._mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(got.meta)

    def close(self) -> None:
        self._mgr.close()


def resolve_checkpoint(path: Path) -> tuple[Path, int]:
    """(checkpoints folder, step) for a run folder, a checkpoints folder, or one step's folder.

    A run or checkpoints folder means its latest checkpoint."""
    path = Path(path)
    if not path.exists():
        raise NetspecError([Diagnostic("error", f"checkpoint not found: {path}")])
    if path.is_dir() and path.name.isdigit() and (path / "state").is_dir():
        return path.parent, int(path.name)
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    steps = sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()
                   and (p / "state").is_dir()) if folder.is_dir() else []
    if not steps:
        raise NetspecError([Diagnostic("error", f"no checkpoint in {path}",
                                       hint="give a run folder, its checkpoints/ folder, one checkpoint "
                                            "folder, or a .caffemodel")])
    return folder, steps[-1]


def read_variables(path: Path) -> tuple[dict[str, Any], str]:
    """{"params": ..., "batch_stats": ...} as numpy from a netspec checkpoint (no model needed), and a
    description of where they came from."""
    folder, step = resolve_checkpoint(path)
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # Orbax warns that a read-only manager is read-only
    try:
        mgr = ocp.CheckpointManager(folder.absolute(),
                                    options=ocp.CheckpointManagerOptions(read_only=True, create=False),
                                    item_handlers={"state": ocp.StandardCheckpointHandler()})
        try:
            # Onto this process's first device: a run on 8 devices (or hosts) is read back on any machine,
            # where Orbax would otherwise insist on the writer's devices.
            here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=here),
                                  mgr.item_metadata(step)["state"])
            got = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
        finally:
            mgr.close()
    finally:
        absl.setLevel(level)
    state = got.state
    variables = {k: jax.tree.map(np.asarray, state.get(k) or {}) for k in ("params", "batch_stats")}
    return variables, f"{folder / str(step)} (iteration {step})"
