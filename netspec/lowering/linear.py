"""InnerProduct: flatten from `axis` in Caffe's C,H,W order, then y = x·Wᵀ + b.

The weight stays in Caffe's (num_output, K) layout (or (K, num_output) with `transpose`); XLA's
dot_general contracts either side without a copy, so there is no reason to store Flax's (K, N).
Blobs arrive in NCHW (the driver transposes a channels-last bottom first), so K is in C,H,W order
and Caffe weights import unchanged.
"""

from __future__ import annotations

import math
from typing import Any

from jax import lax

from netspec.layers.common import FillerParameter
from netspec.layers.spatial import canonical_axis
from netspec.lowering.base import Ctx, Lowering
from netspec.spec import LayerSpec


def _fillers(layer: LayerSpec) -> tuple[FillerParameter, ...]:
    p = layer.messages["inner_product_param"]
    return (p.weight_filler, p.bias_filler) if p.bias_term else (p.weight_filler,)


def inner_product(ctx: Ctx, x: Any) -> tuple[Any, ...]:
    p = ctx.msg("inner_product_param")
    axis = canonical_axis(p.axis, x.ndim)
    lead = x.shape[:axis]
    flat = x.reshape(math.prod(lead), -1)
    w = ctx.params[0]
    contract = 0 if p.transpose else 1  # W is (K, N) when transposed, else (N, K)
    y = lax.dot_general(flat, w, (((1,), (contract,)), ((), ())))
    if p.bias_term:
        y = y + ctx.params[1]
    return (y.reshape(*lead, p.num_output),)


LOWERINGS = (Lowering("InnerProduct", inner_product, wants="nchw", fillers=_fillers),)
