"""LRN, BatchNorm, Scale and Bias.

BatchNorm is Caffe's, not Flax's: normalisation only, with three state blobs (mean·f, var·f, f)
kept in the `batch_stats` collection. With batch statistics (use_global_stats false, i.e. unset
and train=True) it normalises with the batch mean and biased variance and updates
f ← maf·f + 1, mean_sum ← maf·mean_sum + μ, var_sum ← maf·var_sum + m/(m−1)·σ²; with global
statistics it uses μ = mean_sum/f, σ² = var_sum/f (0 when f = 0). Statistics run in (at least) float32.
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
from jax import lax

from netspec.layers.common import FillerParameter
from netspec.layers.spatial import canonical_axis
from netspec.lowering.base import Ctx, Lowering, axis_of, broadcast_operand, caffe_shape, convert
from netspec.spec import LayerSpec


def lrn(ctx: Ctx, x: Any) -> tuple[Any, ...]:
    p = ctx.msg("lrn_param")
    n, half = p.local_size, (p.local_size - 1) // 2
    sq = x * x
    if p.norm_region == "ACROSS_CHANNELS":
        c = axis_of(ctx.layout, 4, 1)
        window = tuple(n if i == c else 1 for i in range(4))
        pads = tuple((half, half) if i == c else (0, 0) for i in range(4))
        s = lax.reduce_window(sq, 0.0, lax.add, window, (1,) * 4, pads)
        return (x * jnp.power(p.k + (p.alpha / n) * s, jnp.asarray(-p.beta, x.dtype)),)
    # WITHIN_CHANNEL: Caffe's AVE pool of x² (pad (n−1)/2, so every divisor is n²); k is ignored.
    h, w = axis_of(ctx.layout, 4, 2), axis_of(ctx.layout, 4, 3)
    window = tuple(n if i in (h, w) else 1 for i in range(4))
    pads = tuple((half, half) if i in (h, w) else (0, 0) for i in range(4))
    s = lax.reduce_window(sq, 0.0, lax.add, window, (1,) * 4, pads) / (n * n)
    return (x * jnp.power(1 + p.alpha * s, jnp.asarray(-p.beta, x.dtype)),)


def _uses_batch_stats(ctx: Ctx) -> bool:
    flag = ctx.msg("batch_norm_param").use_global_stats
    return not flag if flag is not None else ctx.train


def batch_norm(ctx: Ctx, x: Any) -> tuple[tuple[Any, ...], tuple[Any, ...] | None]:
    p = ctx.msg("batch_norm_param")
    c = axis_of(ctx.layout, x.ndim, 1) if x.ndim > 1 else 0
    axes = tuple(i for i in range(x.ndim) if i != c)
    bshape = tuple(x.shape[c] if i == c else 1 for i in range(x.ndim))
    acc = jnp.promote_types(x.dtype, jnp.float32)
    xf = x.astype(acc)
    mean_sum, var_sum, factor = (s.astype(acc) for s in ctx.state)
    if _uses_batch_stats(ctx):
        mu = xf.mean(axis=axes)
        centred = xf - mu.reshape(bshape)
        var = (centred * centred).mean(axis=axes)
        m = math.prod(x.shape) // x.shape[c]
        correction = m / (m - 1) if m > 1 else 1.0
        maf = p.moving_average_fraction
        new = tuple(v.astype(old.dtype) for v, old in zip(
            (maf * mean_sum + mu, maf * var_sum + correction * var, maf * factor + 1), ctx.state))
    else:
        f = factor[0]
        inv = jnp.where(f == 0, 0.0, 1.0 / jnp.where(f == 0, 1.0, f))
        mu, var = mean_sum * inv, var_sum * inv
        centred = xf - mu.reshape(bshape)
        new = None
    y = centred * lax.rsqrt(var + p.eps).reshape(bshape)
    return (y.astype(x.dtype),), new


def _broadcast(ctx: Ctx, x: Any, operand: Any, axis_field: int, num_axes: int, second: bool) -> Any:
    xs = caffe_shape(x, ctx.layout)
    if second:
        operand = convert(operand, ctx.layout, "nchw")
        if operand.ndim == 0:
            return operand
        axis = canonical_axis(axis_field, len(xs))
    else:
        axis = canonical_axis(axis_field, len(xs)) if (num_axes != 0 or xs) else 0
        if operand.ndim == 0:
            return operand
    return broadcast_operand(operand, xs, axis, ctx.layout)


def _scale_fillers(layer: LayerSpec) -> tuple[FillerParameter, ...]:
    p = layer.messages["scale_param"]
    own = () if len(layer.bottom) > 1 else (p.filler,)
    return own + ((p.bias_filler,) if p.bias_term else ())


def scale(ctx: Ctx, x: Any, *rest: Any) -> tuple[Any, ...]:
    p = ctx.msg("scale_param")
    params = list(ctx.params)
    s = rest[0] if rest else params.pop(0)
    y = x * _broadcast(ctx, x, s, p.axis, p.num_axes, bool(rest))
    if p.bias_term:
        y = y + _broadcast(ctx, x, params[0], p.axis, p.num_axes, False)
    return (y,)


def _bias_fillers(layer: LayerSpec) -> tuple[FillerParameter, ...]:
    return () if len(layer.bottom) > 1 else (layer.messages["bias_param"].filler,)


def bias(ctx: Ctx, x: Any, *rest: Any) -> tuple[Any, ...]:
    p = ctx.msg("bias_param")
    b = rest[0] if rest else ctx.params[0]
    return (x + _broadcast(ctx, x, b, p.axis, p.num_axes, bool(rest)),)


LOWERINGS = (
    Lowering("LRN", lrn, wants="spatial"),
    Lowering("BatchNorm", batch_norm, stateful=True),
    Lowering("Scale", scale, fillers=_scale_fillers),
    Lowering("Bias", bias, fillers=_bias_fillers),
)
