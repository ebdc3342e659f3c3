"""`netspec test`: the TEST net over test batches, every scalar output averaged (Caffe's `caffe test`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from netspec.errors import Diagnostic, NetspecError


@dataclass(frozen=True)
class EvalResult:
    outputs: dict[str, float]
    loss_weights: dict[str, float]
    iterations: int
    batch_size: int
    top1: str | None


def scalar_names(model: Any) -> list[str]:
    """The net's scalar outputs (losses, accuracies) in Caffe's output order."""
    shapes = model.report.shapes
    ids = {model.graph.blob_names[b]: b for b in model.graph.outputs}
    return [n for n in model.output_names if n in ids and shapes[ids[n]] == ()] + \
        [n for n in model.loss_weights if n not in ids]


def load_for_test(model: Any, path: Path, seed: int = 0) -> tuple[dict[str, Any], Any]:
    """Variables for evaluation: every layer from `path`; a shape mismatch is an error (as in Caffe)."""
    import jax

    from netspec.train.weights import load_weights

    fresh = jax.jit(model.init)(jax.random.PRNGKey(seed))
    variables, report = load_weights(model, fresh, path)
    if report.mismatched:
        raise NetspecError([Diagnostic("error", f"cannot load layer '{layer}' from {report.source}: {why}")
                            for layer, why in report.mismatched])
    if not report.loaded:
        raise NetspecError([Diagnostic("error", f"{report.source} has no layer of this net",
                                       hint="check that the weights belong to this spec")])
    return variables, report


def evaluate(model: Any, variables: Mapping[str, Any], batches: Any, iterations: int, feed_names: tuple[str, ...],
             on_batch: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, float]:
    """Average every scalar output over `iterations` batches (in float64 on the host, as Caffe sums)."""
    import jax

    names = scalar_names(model)

    @functools.partial(jax.jit, compiler_options=model.compiler_options)
    def forward(v: Any, inputs: Any) -> dict[str, Any]:
        out = model.apply(v, inputs, train=False)
        return {k: out[k].astype("float32") for k in names}

    totals = dict.fromkeys(names, 0.0)
    for i in range(iterations):
        batch = next(batches)
        got = jax.device_get(forward(variables, {k: batch[k] for k in feed_names}))
        values = {k: float(got[k]) for k in names}
        if on_batch is not None:
            on_batch(i, values)
        for k, v in values.items():
            totals[k] += v
    return {k: totals[k] / iterations for k in names}
