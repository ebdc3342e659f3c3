"""Concat, Eltwise, Flatten, Reshape, Split, Slice.

Concat, Slice, Eltwise and Split work in either layout (the axis is mapped); Flatten and Reshape
reinterpret Caffe's row-major buffer, so they take NCHW bottoms.
"""

from __future__ import annotations

import functools
from typing import Any

import jax.numpy as jnp

from netspec.layers.merge import Reshape as ReshapeRule
from netspec.layers.spatial import canonical_axis
from netspec.lowering.base import Ctx, Lowering, axis_of


def concat(ctx: Ctx, *xs: Any) -> tuple[Any, ...]:
    p = ctx.msg("concat_param")
    axis = canonical_axis(p.concat_dim if p.concat_dim is not None else p.axis, xs[0].ndim)
    if len(xs) == 1:
        return (xs[0],)
    return (jnp.concatenate(xs, axis=axis_of(ctx.layout, xs[0].ndim, axis)),)


def eltwise(ctx: Ctx, *xs: Any) -> tuple[Any, ...]:
    p = ctx.msg("eltwise_param")
    if p.operation == "PROD":
        return (functools.reduce(lambda a, b: a * b, xs),)
    if p.operation == "MAX":
        # Caffe's rule, which its backward follows: the gradient goes to one argmax; a tie between bottoms
        # 0 and 1 goes to bottom 1, later bottoms win only when strictly greater. (jnp.maximum would split
        # a tie's gradient in halves.) Eltwise takes two bottoms or more (layers.merge.Eltwise.bottoms).
        y = jnp.where(xs[0] > xs[1], xs[0], xs[1])
        for x in xs[2:]:
            y = jnp.where(x > y, x, y)
        return (y,)
    coeff = p.coeff or (1.0,) * len(xs)
    terms = [x if c == 1.0 else x * jnp.asarray(c, x.dtype) for x, c in zip(xs, coeff)]
    return (functools.reduce(lambda a, b: a + b, terms),)


def flatten(ctx: Ctx, x: Any) -> tuple[Any, ...]:
    p = ctx.msg("flatten_param")
    a = canonical_axis(p.axis, x.ndim)
    e = canonical_axis(p.end_axis, x.ndim, "end_axis")
    return (x.reshape(*x.shape[:a], -1, *x.shape[e + 1:]),)


def reshape(ctx: Ctx, x: Any) -> tuple[Any, ...]:
    (shape,) = ReshapeRule.infer(ctx.layer, (tuple(x.shape),))
    return (x.reshape(shape),)


def split(ctx: Ctx, x: Any) -> tuple[Any, ...]:
    return (x,) * len(ctx.layer.top)


def slice_(ctx: Ctx, x: Any) -> tuple[Any, ...]:
    p = ctx.msg("slice_param")
    axis = canonical_axis(p.slice_dim if p.slice_dim is not None else p.axis, x.ndim)
    n = len(ctx.layer.top)
    size = x.shape[axis_of(ctx.layout, x.ndim, axis)]
    points = list(p.slice_point) or [size // n * i for i in range(1, n)]
    return tuple(jnp.split(x, points, axis=axis_of(ctx.layout, x.ndim, axis)))


LOWERINGS = (
    Lowering("Concat", concat, cast="none"),
    Lowering("Eltwise", eltwise),
    Lowering("Flatten", flatten, wants="nchw", cast="none"),
    Lowering("Reshape", reshape, wants="nchw", cast="none"),
    Lowering("Split", split, cast="none"),
    Lowering("Slice", slice_, cast="none"),
)
