"""The run folder: `runs/NAME/` with the resolved spec, metrics (JSONL + CSV), curves, checkpoints, summary.

Layout::

    spec.yaml          the spec as trained: blocks expanded, solver and data sections fully resolved
    run.json           how the run was started: command, versions, backend, precision, seed, spec hash
    train.log          the plain Caffe-style log (parse_log.py-compatible lines)
    metrics.jsonl      one JSON object per display step ("train") and test pass ("test")
    metrics.csv        the same rows as CSV, one column per metric
    curves.png         loss and accuracy curves
    checkpoints/       Orbax checkpoints, one folder per iteration (last N and the best)
    summary.json       the final result
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from netspec.errors import Diagnostic, NetspecError
from netspec.files import write_atomically

CHECKPOINTS = "checkpoints"


def _has_checkpoints(path: Path) -> bool:
    ckpt = path / CHECKPOINTS
    return ckpt.is_dir() and any(p.name.isdigit() for p in ckpt.iterdir())


def choose_run_dir(name: str, runs_root: Path, output: Path | None, resume: bool) -> Path:
    """Where a run lives. A fresh run never reuses a folder holding checkpoints; `resume` requires one."""
    if output is not None:
        if output.exists() and not output.is_dir():
            raise NetspecError([Diagnostic(
                "error", f"--output {output}: a file, not a folder",
                hint="name a folder for the run's files (it is created if missing)")])
        if resume and not _has_checkpoints(output):
            raise NetspecError([Diagnostic("error", f"--resume: {output} holds no checkpoint to resume from")])
        if not resume and _has_checkpoints(output):
            raise NetspecError([Diagnostic(
                "error", f"{output} already holds a run with checkpoints",
                hint="pass --resume to continue it, or choose another --output")])
        return output
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "run"
    if runs_root.exists() and not runs_root.is_dir():
        raise NetspecError([Diagnostic("error", f"{runs_root}: a file where the folder of runs should be",
                                       hint="move it, or name the run's folder with --output DIR")])
    if resume:
        candidates = [p for p in runs_root.glob(f"{safe}*") if p.is_dir() and _is_run_of(p.name, safe)
                      and _has_checkpoints(p)]
        if not candidates:
            raise NetspecError([Diagnostic("error", f"--resume: no run of '{safe}' with checkpoints under "
                                                    f"{runs_root}/", hint="name the run folder with --output DIR")])
        return max(candidates, key=lambda p: (p / CHECKPOINTS).stat().st_mtime)
    path, n = runs_root / safe, 1
    while path.exists() and any(path.iterdir()):
        n += 1
        path = runs_root / f"{safe}-{n}"
    return path


def _is_run_of(folder: str, name: str) -> bool:
    rest = folder[len(name):]
    return rest == "" or (rest.startswith("-") and rest[1:].isdigit())


@dataclass(frozen=True)
class MetricColumns:
    """CSV columns, fixed when the run starts (the nets' output names are known by then)."""

    train: tuple[str, ...]
    test: tuple[str, ...]

    @property
    def header(self) -> list[str]:
        return (["kind", "iter", "epoch", "seconds", "lr", "loss", "images_per_s"]
                + [f"train/{n}" for n in self.train] + [f"test/{n}" for n in self.test])

    def row(self, record: Mapping[str, Any]) -> list[Any]:
        outputs = record.get("outputs", {})
        prefix = record["kind"]
        values = {f"{prefix}/{k}": v for k, v in outputs.items()}
        return [record.get(k, "") for k in ("kind", "iter", "epoch", "seconds", "lr", "loss", "images_per_s")] + \
            [values.get(c, "") for c in self.header[7:]]


class RunFolder:
    """Writes one run's files. Metric writes are flushed at once, so a killed run keeps its history."""

    def __init__(self, path: Path, columns: MetricColumns) -> None:
        self.path = path
        self.columns = columns
        try:
            path.mkdir(parents=True, exist_ok=True)
            self._log = open(path / "train.log", "a", encoding="utf-8")
        except OSError as e:  # read-only, no such parent, a file on the way: the user's to fix
            at = f" ({e.filename})" if e.filename and Path(e.filename) != path else ""
            why = f"{e.strerror or e}{at}"
            raise NetspecError([Diagnostic("error", f"cannot write the run folder {path}: {why}",
                                           hint="choose a writable folder with --output DIR")]) from None

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    def write_json(self, name: str, data: Mapping[str, Any]) -> None:
        write_atomically(self.path / name, json.dumps(data, indent=2, default=str) + "\n")

    def write_text(self, name: str, text: str) -> None:
        write_atomically(self.path / name, text)

    def log(self, line: str) -> None:
        self._log.write(line + "\n")
        self._log.flush()

    def start_metrics(self, resume_from: int | None) -> None:
        """Begin metrics.jsonl/csv; on resume, drop the rows the resumed run will write again."""
        rows = self.read_metrics() if resume_from is not None else []
        rows = [r for r in rows if resume_from is not None and r.get("iter", 0) < resume_from]
        write_atomically(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(self.columns.header)
        writer.writerows(self.columns.row(r) for r in rows)
        write_atomically(self.path / "metrics.csv", buf.getvalue())
        self._jsonl = open(self.path / "metrics.jsonl", "a", encoding="utf-8")
        self._csv_file = open(self.path / "metrics.csv", "a", encoding="utf-8", newline="")
        self._csv = csv.writer(self._csv_file)

    def record(self, record: Mapping[str, Any]) -> None:
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        self._csv.writerow(self.columns.row(record))
        self._csv_file.flush()

    def read_metrics(self) -> list[dict[str, Any]]:
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return []
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
        return rows

    def close(self) -> None:
        for f in (getattr(self, "_jsonl", None), getattr(self, "_csv_file", None), self._log):
            if f is not None:
                f.close()


def plot_curves(rows: Sequence[Mapping[str, Any]], path: Path, title: str = "") -> None:
    """curves.png: training loss (and test losses) on the left, test accuracies on the right."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    train = [r for r in rows if r.get("kind") == "train"]
    test = [r for r in rows if r.get("kind") == "test"]
    fig = Figure(figsize=(10, 4), dpi=100)
    ax_loss, ax_acc = fig.subplots(1, 2)
    if train:
        ax_loss.plot([r["iter"] for r in train], [r["loss"] for r in train], label="train loss (smoothed)")
    for name in _names(test, lambda n: "loss" in n):
        pts = [(r["iter"], r["outputs"][name]) for r in test if name in r["outputs"]]
        ax_loss.plot(*zip(*pts), marker="o", ms=3, label=f"test {name}")
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("loss")
    ax_loss.set_yscale("log")
    ax_loss.grid(True, alpha=0.3)
    if ax_loss.get_legend_handles_labels()[0]:
        ax_loss.legend(fontsize=8)
    acc_names = _names(test, lambda n: "loss" not in n)
    for name in acc_names:
        pts = [(r["iter"], r["outputs"][name]) for r in test if name in r["outputs"]]
        ax_acc.plot(*zip(*pts), marker="o", ms=3, label=f"test {name}")
    ax_acc.set_xlabel("iteration")
    ax_acc.set_ylabel("accuracy")
    ax_acc.grid(True, alpha=0.3)
    if ax_acc.get_legend_handles_labels()[0]:
        ax_acc.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)


def _names(rows: Iterable[Mapping[str, Any]], keep: Any) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        for n in r.get("outputs", {}):
            if keep(n):
                seen.setdefault(n)
    return list(seen)
