"""Live progress: a rich progress bar on a terminal, Caffe-style plain lines elsewhere.

The plain lines keep the exact shapes Caffe's `tools/extra/parse_log.py` reads ("Iteration N",
"lr = X", "Train net output #k: name = v", "Test net output #k: name = v"), so existing log tooling
works on `train.log`. Extra information (epoch, images/s, ETA) sits inside the parentheses Caffe
uses for its own speed figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol, TextIO


@dataclass(frozen=True)
class TrainStatus:
    """One display step."""

    iteration: int
    max_iter: int
    epoch: float
    loss: float
    outputs: Mapping[str, float]
    loss_weights: Mapping[str, float]
    lr: float
    images_per_s: float | None  # None until a display interval has been timed
    eta_s: float | None


@dataclass(frozen=True)
class EvalStatus:
    """One test pass: every test-net output averaged over test_iter batches."""

    iteration: int
    outputs: Mapping[str, float]
    loss_weights: Mapping[str, float] = field(default_factory=dict)


def fmt(v: float) -> str:
    """Numbers as Caffe logs them (C++ stream default: 6 significant digits)."""
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return f"{v:.6g}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def output_text(name: str, value: float, loss_weights: Mapping[str, float]) -> str:
    """`name = v`, with Caffe's `(* w = w*v loss)` for loss outputs."""
    text = f"{name} = {fmt(value)}"
    weight = loss_weights.get(name, 0.0)
    if weight:
        text += f" (* {fmt(weight)} = {fmt(weight * value)} loss)"
    return text


def output_lines(kind: str, outputs: Mapping[str, float], loss_weights: Mapping[str, float]) -> list[str]:
    return [f"    {kind} net output #{k}: {output_text(name, value, loss_weights)}"
            for k, (name, value) in enumerate(outputs.items())]


def train_lines(s: TrainStatus) -> list[str]:
    speed = f", {s.images_per_s:.0f} img/s, ETA {fmt_duration(s.eta_s)}" if s.images_per_s else ""
    head = f"Iteration {s.iteration} (epoch {s.epoch:.2f}{speed}), loss = {fmt(s.loss)}"
    return [head, *output_lines("Train", s.outputs, s.loss_weights), f"Iteration {s.iteration}, lr = {fmt(s.lr)}"]


def eval_lines(s: EvalStatus) -> list[str]:
    return [f"Iteration {s.iteration}, Testing net (#0)", *output_lines("Test", s.outputs, s.loss_weights)]


class Display(Protocol):
    def start(self, start_iter: int, max_iter: int, title: str) -> None: ...
    def step(self, iteration: int) -> None: ...
    def train(self, status: TrainStatus) -> None: ...
    def test(self, status: EvalStatus) -> None: ...
    def note(self, text: str) -> None: ...
    def close(self) -> None: ...


class PlainDisplay:
    """Caffe-like lines, written through `emit` (a log file, stdout, or both)."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit

    def start(self, start_iter: int, max_iter: int, title: str) -> None:
        self.emit(title)

    def step(self, iteration: int) -> None:
        pass

    def train(self, status: TrainStatus) -> None:
        for line in train_lines(status):
            self.emit(line)

    def test(self, status: EvalStatus) -> None:
        for line in eval_lines(status):
            self.emit(line)

    def note(self, text: str) -> None:
        self.emit(text)

    def close(self) -> None:
        pass


class RichDisplay:
    """A live bar (iteration, epoch, loss, accuracy, lr, images/s, ETA); test results print above it."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console

        self.console = Console(file=stream)
        self._progress = None
        self._task = None
        self._acc = ""

    def start(self, start_iter: int, max_iter: int, title: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.console.print(f"[bold]{title}")
        self._progress = Progress(
            TextColumn("[bold blue]iter"), MofNCompleteColumn(), BarColumn(bar_width=30),
            TextColumn("{task.fields[stats]}"), console=self.console, transient=False, refresh_per_second=4)
        self._progress.start()
        self._task = self._progress.add_task("train", total=max_iter, completed=start_iter, stats="compiling…")

    def step(self, iteration: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=iteration)

    def train(self, status: TrainStatus) -> None:
        speed = f"  {status.images_per_s:,.0f} img/s  ETA {fmt_duration(status.eta_s)}" if status.images_per_s else ""
        stats = f"epoch {status.epoch:.2f}  loss {fmt(status.loss)}{self._acc}  lr {fmt(status.lr)}{speed}"
        if self._progress is not None:
            self._progress.update(self._task, completed=status.iteration, stats=stats)

    def test(self, status: EvalStatus) -> None:
        accs = {k: v for k, v in status.outputs.items() if "loss" not in k}
        parts = "  ".join(f"{k} {v:.2%}" if 0 <= v <= 1 else f"{k} {fmt(v)}" for k, v in status.outputs.items())
        self.console.print(f"[green]test @ {status.iteration}[/]  {parts}")
        if accs:
            name, value = next(iter(accs.items()))
            self._acc = f"  test {name} {value:.2%}"

    def note(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class NullDisplay(PlainDisplay):
    def __init__(self) -> None:
        super().__init__(lambda line: None)


class Tee:
    """Send every display call to several displays (the terminal and train.log)."""

    def __init__(self, *displays: Display) -> None:
        self.displays = displays

    def start(self, start_iter: int, max_iter: int, title: str) -> None:
        for d in self.displays:
            d.start(start_iter, max_iter, title)

    def step(self, iteration: int) -> None:
        for d in self.displays:
            d.step(iteration)

    def train(self, status: TrainStatus) -> None:
        for d in self.displays:
            d.train(status)

    def test(self, status: EvalStatus) -> None:
        for d in self.displays:
            d.test(status)

    def note(self, text: str) -> None:
        for d in self.displays:
            d.note(text)

    def close(self) -> None:
        for d in self.displays:
            d.close()


def make_display(mode: str, stream: TextIO) -> Display:
    """The terminal display for `--progress MODE` ("auto": rich on a terminal, plain lines otherwise)."""
    if mode == "auto":
        mode = "rich" if stream.isatty() else "plain"
    if mode == "rich":
        return RichDisplay(stream)
    if mode == "plain":
        def emit(line: str) -> None:
            stream.write(line + "\n")
            stream.flush()

        return PlainDisplay(emit)
    return NullDisplay()
