"""Element-wise layers; they work in either layout (PReLU maps its channel axis)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from netspec.layers.common import FillerParameter
from netspec.lowering.base import Ctx, Lowering, axis_of
from netspec.spec import LayerSpec


def _leaky(x: Any, slope: Any) -> Any:
    """max(x, 0) + slope * min(x, 0) with Caffe's ReLU/PReLU backward, top_diff * ((x > 0) + slope * (x <= 0)):
    at x == 0 the gradient is the slope. (jnp.maximum splits the tie and gives half of it there, and costs two
    compares, two selects and a divide per element of every gradient; this is one select on x > 0.)"""
    return jnp.where(x > 0, x, x * slope)


def relu(ctx: Ctx, x: Any) -> tuple[Any, ...]:
    slope = ctx.msg("relu_param").negative_slope
    if slope == 0:
        return (jax.nn.relu(x),)  # Caffe's rule too, with max(x, 0) forward: a NaN input stays NaN
    return (_leaky(x, jnp.asarray(slope, x.dtype)),)


def _prelu_fillers(layer: LayerSpec) -> tuple[FillerParameter, ...]:
    return (layer.messages["prelu_param"].filler,)


def prelu(ctx: Ctx, x: Any) -> tuple[Any, ...]:
    a = ctx.params[0]
    if not ctx.msg("prelu_param").channel_shared:
        shape = [1] * x.ndim
        shape[axis_of(ctx.layout, x.ndim, 1)] = a.shape[0]
        a = a.reshape(shape)
    else:
        a = a.reshape(())
    return (_leaky(x, a.astype(x.dtype)),)


def elu(ctx: Ctx, x: Any) -> tuple[Any, ...]:
    alpha = ctx.msg("elu_param").alpha
    # expm1 of the clamped input keeps the unused branch finite (no inf*0 in the gradient).
    return (jnp.where(x > 0, x, alpha * jnp.expm1(jnp.minimum(x, 0))),)


def sigmoid(ctx: Ctx, x: Any) -> tuple[Any, ...]:
    return (jax.nn.sigmoid(x),)


def tanh(ctx: Ctx, x: Any) -> tuple[Any, ...]:
    return (jnp.tanh(x),)


def bnll(ctx: Ctx, x: Any) -> tuple[Any, ...]:
    return (jax.nn.softplus(x),)  # log(1 + e^x) without overflow for large x


def absval(ctx: Ctx, x: Any) -> tuple[Any, ...]:
    return (jnp.abs(x),)


def power(ctx: Ctx, x: Any) -> tuple[Any, ...]:
    p = ctx.msg("power_param")
    base = x * p.scale + p.shift if (p.scale, p.shift) != (1.0, 0.0) else x
    if p.power == 1.0:
        return (base,)
    if p.power == 2.0:
        return (base * base,)
    if p.power == 0.0:
        return (jnp.ones_like(x),)
    return (jnp.power(base, jnp.asarray(p.power, x.dtype)),)


def dropout(ctx: Ctx, x: Any) -> tuple[Any, ...]:
    p = ctx.msg("dropout_param")
    rate = p.dropout_ratio
    if not ctx.train:
        # Caffe scales at test time only when training did not (scale_train: false).
        return (x if p.scale_train else x * (1 - rate),)
    if rate == 0:
        return (x,)
    keep = jax.random.bernoulli(ctx.key(), 1 - rate, x.shape)
    scale = 1 / (1 - rate) if p.scale_train else 1.0
    return (jnp.where(keep, x * jnp.asarray(scale, x.dtype), 0),)


LOWERINGS = (
    Lowering("ReLU", relu),
    Lowering("PReLU", prelu, fillers=_prelu_fillers),
    Lowering("ELU", elu),
    Lowering("Sigmoid", sigmoid),
    Lowering("TanH", tanh),
    Lowering("BNLL", bnll),
    Lowering("AbsVal", absval),
    Lowering("Power", power),
    Lowering("Dropout", dropout),
)
