"""Caffe's fillers (include/caffe/filler.hpp), on Caffe-layout shapes, seeded by a JAX key.

Fans come from the Caffe layout: fan_in = count / shape[0], fan_out = count / shape[1] (count for
1-D blobs). So for a Deconvolution (C_in, C_out/g, k, k) weight "fan_in" is really the output side,
exactly as in Caffe. The distributions are Caffe's, not the nearest jax.nn.initializers:
msra is a plain (untruncated) normal, xavier is uniform with variance 1/n.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from netspec.layers.common import FillerParameter

Shape = tuple[int, ...]


def fans(shape: Shape) -> tuple[float, float]:
    n = math.prod(shape)
    if not shape or n == 0:
        return 1.0, 1.0
    fan_in = n / shape[0]
    fan_out = n / shape[1] if len(shape) > 1 else float(n)
    return fan_in, fan_out


def _norm(f: FillerParameter, shape: Shape) -> float:
    fan_in, fan_out = fans(shape)
    return {"FAN_IN": fan_in, "FAN_OUT": fan_out, "AVERAGE": (fan_in + fan_out) / 2}[f.variance_norm]


def _constant(f: FillerParameter, key: jax.Array, shape: Shape) -> jax.Array:
    return jnp.full(shape, f.value, jnp.float32)


def _uniform(f: FillerParameter, key: jax.Array, shape: Shape) -> jax.Array:
    if f.min > f.max:
        raise ValueError(f"uniform filler needs min <= max, got {f.min} > {f.max}")
    return jax.random.uniform(key, shape, jnp.float32, f.min, f.max)


def _gaussian(f: FillerParameter, key: jax.Array, shape: Shape) -> jax.Array:
    kv, km = jax.random.split(key)
    w = f.mean + f.std * jax.random.normal(kv, shape, jnp.float32)
    if f.sparse >= 0:
        # Caffe keeps each entry with probability sparse / num_outputs (shape[0]).
        if not shape:
            raise ValueError("a sparse gaussian filler needs a blob with at least one axis")
        keep = jax.random.bernoulli(km, min(1.0, f.sparse / shape[0]), shape)
        w = w * keep
    return w


def _positive_unitball(f: FillerParameter, key: jax.Array, shape: Shape) -> jax.Array:
    w = jax.random.uniform(key, shape, jnp.float32)
    rows = w.reshape(shape[0], -1) if shape else w.reshape(1, -1)
    return (rows / rows.sum(axis=1, keepdims=True)).reshape(shape)


def _xavier(f: FillerParameter, key: jax.Array, shape: Shape) -> jax.Array:
    a = math.sqrt(3.0 / _norm(f, shape))
    return jax.random.uniform(key, shape, jnp.float32, -a, a)


def _msra(f: FillerParameter, key: jax.Array, shape: Shape) -> jax.Array:
    return math.sqrt(2.0 / _norm(f, shape)) * jax.random.normal(key, shape, jnp.float32)


def bilinear_kernel(size: int) -> np.ndarray:
    """The K×K bilinear upsampling kernel: f = ⌈K/2⌉, c = (K−1)/(2f), w = (1−|x/f−c|)(1−|y/f−c|)."""
    f = math.ceil(size / 2)
    c = (size - 1) / (2.0 * f)
    t = 1 - np.abs(np.arange(size) / f - c)
    return np.outer(t, t).astype(np.float32)


def _bilinear(f: FillerParameter, key: jax.Array, shape: Shape) -> jax.Array:
    if len(shape) != 4 or shape[2] != shape[3]:
        raise ValueError(f"the bilinear filler needs a 4-D blob with a square kernel, got {shape}")
    return jnp.broadcast_to(jnp.asarray(bilinear_kernel(shape[3])), shape)


FILLERS: dict[str, Callable[[Any, jax.Array, Shape], jax.Array]] = {
    "constant": _constant,
    "uniform": _uniform,
    "gaussian": _gaussian,
    "positive_unitball": _positive_unitball,
    "xavier": _xavier,
    "msra": _msra,
    "bilinear": _bilinear,
}


def fill(f: FillerParameter, key: jax.Array, shape: Shape) -> jax.Array:
    """One blob in Caffe's layout, float32."""
    return FILLERS[f.type](f, key, tuple(shape))
