"""Find the first layer whose output goes non-finite, by re-running one batch un-jitted.

The compiled step only sees the loss. To say *where* the numbers broke, the failing batch is run
again eagerly (`jax.disable_jit`) through a copy of the net that returns every top blob, and the
layers are scanned in execution order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from netspec.lowering.model import Model, NetModule


@dataclass(frozen=True)
class NonFinite:
    """Where a forward pass first produced NaN/Inf."""

    layer: str
    type: str
    blob: str
    nan: int
    inf: int
    size: int
    bad_params: tuple[str, ...]  # the layer's own parameter blobs that were already non-finite

    def describe(self) -> str:
        what = []
        if self.nan:
            what.append(f"{self.nan} NaN")
        if self.inf:
            what.append(f"{self.inf} Inf")
        text = (f"layer '{self.layer}' ({self.type}) is the first whose output went non-finite: top '{self.blob}' "
                f"has {' and '.join(what)} of {self.size} values")
        if self.bad_params:
            text += f"; its parameters {', '.join(self.bad_params)} were already non-finite"
        return text


def every_blob_module(model: Model) -> NetModule:
    """The model's module returning every blob by its graph id (in-place writes are distinct ids)."""
    graph = model.graph
    ids = {b: b for b in graph.blob_names}
    tops = tuple(t for n in graph.nodes for t in n.tops)
    return NetModule(model.module.steps, ids, tops, model.module.dtype, model.module.conv_impl,
                     model.module.spatial_layout)


def _count(x: Any) -> tuple[int, int, int]:
    a = np.asarray(jnp.asarray(x, jnp.float32)) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else None
    if a is None:
        return 0, 0, int(np.size(x))
    return int(np.isnan(a).sum()), int(np.isinf(a).sum()), int(a.size)


def first_nonfinite(model: Model, variables: Mapping[str, Any], inputs: Mapping[str, Any], train: bool,
                    rng: jax.Array | None) -> tuple[NonFinite | None, Any]:
    """(the first non-finite layer or None, the updated batch_stats) for one forward pass, run eagerly."""
    module = every_blob_module(model)
    flax_vars = {k: v for k, v in variables.items() if v or k == "params"}
    with jax.disable_jit():
        if train and flax_vars.get("batch_stats"):
            blobs, mutated = module.apply(flax_vars, dict(inputs), True, rng, mutable=["batch_stats"])
            stats = dict(mutated["batch_stats"])
        else:
            blobs = module.apply(flax_vars, dict(inputs), train, rng)
            stats = variables.get("batch_stats", {})
    params = variables.get("params", {})
    for node in model.graph.nodes:  # inputs too: the data itself may hold NaN
        for t in node.tops:
            nan, inf, size = _count(blobs[t])
            if nan or inf:
                own = params.get(node.name, {})
                bad = tuple(f"{node.name}/{k}" for k, v in own.items() if not bool(np.isfinite(np.asarray(v)).all()))
                return NonFinite(node.name, node.kind.type_name, model.graph.blob_names[t], nan, inf, size, bad), stats
    return None, stats
