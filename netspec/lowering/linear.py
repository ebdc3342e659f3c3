"""InnerProduct: flatten from `axis` in Caffe's C,H,W order, then y = x·Wᵀ + b.

The weight stays in Caffe's (num_output, K) layout (or (K, num_output) with `transpose`); XLA's
dot_general contracts either side without a copy, so there is no reason to store Flax's (K, N).
K is in Caffe's C,H,W order, so Caffe weights import unchanged: a channels-last bottom is transposed
back to NCHW first, and a batch-minor (C, H, W, N) one (netspec.lowering.base) already has K as its
leading axes, so the layer is y^T = W·X on its (K, N) view with no transpose of the input.
"""

from __future__ import annotations

import math
from typing import Any

from jax import lax

from netspec.layers.common import FillerParameter
from netspec.layers.spatial import canonical_axis
from netspec.lowering.base import Ctx, Lowering, convert
from netspec.spec import LayerSpec


def _fillers(layer: LayerSpec) -> tuple[FillerParameter, ...]:
    p = layer.messages["inner_product_param"]
    return (p.weight_filler, p.bias_filler) if p.bias_term else (p.weight_filler,)


def inner_product(ctx: Ctx, x: Any) -> tuple[Any, ...]:
    p = ctx.msg("inner_product_param")
    axis = canonical_axis(p.axis, x.ndim)
    w = ctx.params[0]
    contract = 0 if p.transpose else 1  # W is (K, N) when transposed, else (N, K)
    if ctx.layout == "chwn" and axis == 1 and x.ndim >= 3:
        # (N, num_output) = (W·X)^T; LeNet step at b64 1.07x faster than transposing X to (N, K) first
        # (docs/performance.md item 9).
        y = lax.dot_general(w, x.reshape(-1, x.shape[-1]), (((contract,), (0,)), ((), ()))).T
        if p.bias_term:
            y = y + ctx.params[1]
        return (y,)
    x = convert(x, ctx.layout, "nchw")
    lead = x.shape[:axis]
    flat = x.reshape(math.prod(lead), -1)
    y = lax.dot_general(flat, w, (((1,), (contract,)), ((), ())))
    if p.bias_term:
        y = y + ctx.params[1]
    return (y.reshape(*lead, p.num_output),)


LOWERINGS = (Lowering("InnerProduct", inner_product, wants="any", fillers=_fillers),)
