"""Caffe's fillers (include/caffe/filler.hpp), on Caffe-layout shapes, seeded by a JAX key.

Fans come from the Caffe layout: fan_in = count / shape[0], fan_out = count / shape[1] (count for
1-D blobs). So for a Deconvolution (C_in, C_out/g, k, k) weight "fan_in" is really the output side,
exactly as in Caffe. The distributions are Caffe's, not the nearest jax.nn.initializers:
msra is a plain (untruncated) normal, xavier is uniform with variance 1/n.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping, Sequence

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


def bilinear_kernel(size: int) -> np.ndarray:
    """The K×K bilinear upsampling kernel: f = ⌈K/2⌉, c = (K−1)/(2f), w = (1−|x/f−c|)(1−|y/f−c|)."""
    f = math.ceil(size / 2)
    c = (size - 1) / (2.0 * f)
    t = 1 - np.abs(np.arange(size) / f - c)
    return np.outer(t, t).astype(np.float32)


# Which base draws each filler transforms: "u" uniform [0, 1), "z" standard normal, "b" a second
# uniform for the sparse-gaussian keep mask.
def draws(f: FillerParameter) -> tuple[str, ...]:
    if f.type in ("uniform", "xavier", "positive_unitball"):
        return ("u",)
    if f.type == "gaussian":
        return ("z", "b") if f.sparse >= 0 else ("z",)
    if f.type == "msra":
        return ("z",)
    return ()


def transform(f: FillerParameter, base: Mapping[str, jax.Array], shape: Shape) -> jax.Array:
    """One blob in Caffe's layout (float32) from its base draws."""
    t = f.type
    if t == "constant":
        return jnp.full(shape, f.value, jnp.float32)
    if t == "uniform":
        if f.min > f.max:
            raise ValueError(f"uniform filler needs min <= max, got {f.min} > {f.max}")
        return f.min + (f.max - f.min) * base["u"]
    if t == "xavier":
        a = math.sqrt(3.0 / _norm(f, shape))
        return (2 * base["u"] - 1) * a
    if t == "msra":
        return math.sqrt(2.0 / _norm(f, shape)) * base["z"]
    if t == "gaussian":
        w = f.mean + f.std * base["z"]
        if f.sparse >= 0:
            # Caffe keeps each entry with probability sparse / num_outputs (shape[0]).
            if not shape:
                raise ValueError("a sparse gaussian filler needs a blob with at least one axis")
            w = w * (base["b"] < min(1.0, f.sparse / shape[0]))
        return w
    if t == "positive_unitball":
        rows = base["u"].reshape(shape[0] if shape else 1, -1)
        return (rows / rows.sum(axis=1, keepdims=True)).reshape(shape)
    if t == "bilinear":
        if len(shape) != 4 or shape[2] != shape[3]:
            raise ValueError(f"the bilinear filler needs a 4-D blob with a square kernel, got {shape}")
        return jnp.broadcast_to(jnp.asarray(bilinear_kernel(shape[3])), shape)
    raise ValueError(f"unknown filler type {t!r}")


CHUNK = 4096


def fill_many(requests: Sequence[tuple[int, int, FillerParameter, Shape]], root: jax.Array) -> list[jax.Array]:
    """Fill many blobs at once. A request is (layer seed, blob index, filler, Caffe shape).

    A blob's values depend only on (root, layer seed, blob index): its base draws come in chunks of
    CHUNK numbers, chunk j keyed by fold_in(root, layer seed, blob index, j). All chunks of one kind
    are drawn by a single vmapped call, so a net of any size compiles three RNG kernels, not one
    per blob (XLA:CPU takes seconds per threefry kernel).
    """
    plan: dict[str, list[tuple[int, int, int]]] = {"u": [], "z": [], "b": []}
    where: list[dict[str, tuple[int, int]]] = []
    for seed, index, f, shape in requests:
        n = math.prod(shape)
        spots = {}
        for kind in draws(f):
            chunks = -(-n // CHUNK)
            spots[kind] = (len(plan[kind]), n)
            plan[kind].extend((seed, index if kind != "b" else index + (1 << 16), j) for j in range(chunks))
        where.append(spots)
    pools = {kind: _draw(kind, ids, root) for kind, ids in plan.items() if ids}
    out = []
    for (seed, index, f, shape), spots in zip(requests, where):
        base = {k: pools[k][first:first + -(-n // CHUNK)].reshape(-1)[:n].reshape(shape)
                for k, (first, n) in spots.items()}
        out.append(transform(f, base, tuple(shape)))
    return out


def _draw(kind: str, ids: list[tuple[int, int, int]], root: jax.Array) -> jax.Array:
    table = jnp.asarray(np.array(ids, np.uint32))

    def one(row: jax.Array) -> jax.Array:
        k = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(root, row[0]), row[1]), row[2])
        if kind == "z":
            return jax.random.normal(k, (CHUNK,), jnp.float32)
        return jax.random.uniform(k, (CHUNK,), jnp.float32)

    return jax.vmap(one)(table)


def fill(f: FillerParameter, key: jax.Array, shape: Shape) -> jax.Array:
    """One blob in Caffe's layout, float32 (a single-request fill_many keyed by `key`)."""
    return fill_many([(0, 0, f, tuple(shape))], key)[0]
