"""Softmax, SoftmaxWithLoss, Accuracy, EuclideanLoss: always computed in float32.

Scores are viewed as (outer, C, inner) around the softmax axis and labels as (outer, inner), the
way Caffe walks them, so N×C×H×W per-pixel losses work unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from netspec.layers.spatial import canonical_axis
from netspec.lowering.base import Ctx, Lowering, axis_of

LOG_FLT_MIN = float(np.log(np.finfo(np.float32).tiny))


def softmax(ctx: Ctx, x: Any) -> tuple[Any, ...]:
    axis = axis_of(ctx.layout, x.ndim, canonical_axis(ctx.msg("softmax_param").axis, x.ndim))
    return (jax.nn.softmax(x, axis=axis),)


def _split(x: Any, axis: int) -> tuple[Any, int]:
    outer, inner = math.prod(x.shape[:axis]), math.prod(x.shape[axis + 1:])
    return x.reshape(outer, x.shape[axis], inner), inner


def _normalizer(loss_param: Any, outer: int, inner: int, valid: Any) -> Any:
    mode = loss_param.normalization
    if mode is None:
        mode = "BATCH_SIZE" if loss_param.normalize is False else "VALID"
    if mode == "VALID" and loss_param.ignore_label is None:
        mode = "FULL"
    value = {"FULL": outer * inner, "BATCH_SIZE": outer, "NONE": 1}.get(mode)
    if value is None:
        return jnp.maximum(valid.sum().astype(jnp.float32), 1.0)
    return jnp.float32(max(value, 1))


def softmax_with_loss(ctx: Ctx, x: Any, label: Any) -> tuple[Any, ...]:
    axis = canonical_axis(ctx.msg("softmax_param").axis, x.ndim)
    lp = ctx.msg("loss_param")
    scores, inner = _split(x, axis)
    labels = label.reshape(scores.shape[0], inner).astype(jnp.int32)
    logp = jax.nn.log_softmax(scores, axis=1)
    valid = (labels != lp.ignore_label) if lp.ignore_label is not None else jnp.ones(labels.shape, bool)
    safe = jnp.where(valid, jnp.clip(labels, 0, scores.shape[1] - 1), 0)
    picked = jnp.take_along_axis(logp, safe[:, None, :], axis=1)[:, 0, :]
    # Caffe clamps p at FLT_MIN in the forward pass only; its gradient is the plain p − onehot.
    picked = picked + jax.lax.stop_gradient(jnp.maximum(picked, LOG_FLT_MIN) - picked)
    total = -jnp.sum(jnp.where(valid, picked, 0.0))
    loss = total / _normalizer(lp, scores.shape[0], inner, valid)
    if len(ctx.layer.top) > 1:
        return (loss, jax.nn.softmax(x, axis=axis))
    return (loss,)


def accuracy(ctx: Ctx, x: Any, label: Any) -> tuple[Any, ...]:
    p = ctx.msg("accuracy_param")
    axis = canonical_axis(p.axis, x.ndim)
    scores, inner = _split(x, axis)
    classes = scores.shape[1]
    labels = label.reshape(scores.shape[0], inner).astype(jnp.int32)
    valid = (labels != p.ignore_label) if p.ignore_label is not None else jnp.ones(labels.shape, bool)
    safe = jnp.where(valid, jnp.clip(labels, 0, classes - 1), 0)
    true_score = jnp.take_along_axis(scores, safe[:, None, :], axis=1)
    # Caffe counts every class scoring >= the true one, itself included: ties count against you.
    better = jnp.sum(scores >= true_score, axis=1) - 1
    correct = jnp.logical_and(valid, better < p.top_k)
    count = valid.sum()
    acc = jnp.where(count > 0, correct.sum() / jnp.maximum(count, 1), 0.0).astype(jnp.float32)
    if len(ctx.layer.top) == 1:
        return (acc,)
    onehot = jax.nn.one_hot(safe, classes, dtype=jnp.float32) * valid[..., None]
    per_count = onehot.sum(axis=(0, 1))
    per_correct = (onehot * correct[..., None]).sum(axis=(0, 1))
    return (acc, jnp.where(per_count > 0, per_correct / jnp.maximum(per_count, 1), 0.0))


def euclidean_loss(ctx: Ctx, a: Any, b: Any) -> tuple[Any, ...]:
    d = a - b.reshape(a.shape)
    return (jnp.sum(d * d) / (2 * a.shape[0]),)


LOWERINGS = (
    Lowering("Softmax", softmax, cast="float32"),
    Lowering("SoftmaxWithLoss", softmax_with_loss, wants="nchw", cast="float32"),
    Lowering("Accuracy", accuracy, wants="nchw", cast="float32"),
    Lowering("EuclideanLoss", euclidean_loss, wants="nchw", cast="float32"),
)
