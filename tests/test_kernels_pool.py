"""netspec.kernels.pool.max_pool2d: the same values as lax.reduce_window and the same gradient as JAX's
derivative of it (first maximum in raster order, Caffe's rule), ties and overlapping windows included."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax

import netspec
from netspec.kernels.pool import max_pool2d

LENET = Path(__file__).parent / "fixtures" / "lowering" / "lenet.yaml"


def _reference(xp: jax.Array, kernel: tuple[int, int], stride: tuple[int, int]) -> jax.Array:
    return lax.reduce_window(xp, -jnp.inf, lax.max, (1, *kernel, 1), (1, *stride, 1), "VALID")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9), st.integers(1, 3), st.integers(1, 4),
       st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.booleans(), st.integers(0, 2**31 - 1))
def test_values_and_gradient_match_reduce_window(n: int, h: int, w: int, c: int, kh: int, kw: int, sh: int,
                                                 sw: int, ties: bool, seed: int) -> None:
    kh, kw = min(kh, h), min(kw, w)
    rng = np.random.default_rng(seed)
    # Small integers make ties common: the gradient must pick the first maximum, not share it.
    x = rng.integers(0, 3, (n, h, w, c)) if ties else rng.standard_normal((n, h, w, c))
    xp = jnp.asarray(x, jnp.float32)
    y = max_pool2d(xp, (kh, kw), (sh, sw))
    want = _reference(xp, (kh, kw), (sh, sw))
    np.testing.assert_array_equal(np.asarray(y), np.asarray(want))
    g = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
    (dx,) = jax.vjp(lambda v: max_pool2d(v, (kh, kw), (sh, sw)), xp)[1](g)
    (dref,) = jax.vjp(lambda v: _reference(v, (kh, kw), (sh, sw)), xp)[1](g)
    np.testing.assert_allclose(np.asarray(dx), np.asarray(dref), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("h,w,k", [(4, 6, 2), (6, 9, 3), (2, 2, 2), (4, 3, 1), (5, 6, 2)])
@pytest.mark.parametrize("ties", [False, True])
def test_windows_that_tile_the_input(h: int, w: int, k: int, ties: bool) -> None:
    """stride == kernel over an exact multiple takes the one-pass gradient (5x6 with 2x2/2 does not tile)."""
    rng = np.random.default_rng(h * 100 + w * 10 + k)
    x = rng.integers(0, 2, (2, h, w, 3)) if ties else rng.standard_normal((2, h, w, 3))
    xp = jnp.asarray(x, jnp.float32)
    g = jnp.asarray(rng.standard_normal(_reference(xp, (k, k), (k, k)).shape), jnp.float32)
    (dx,) = jax.vjp(lambda v: max_pool2d(v, (k, k), (k, k)), xp)[1](g)
    (dref,) = jax.vjp(lambda v: _reference(v, (k, k), (k, k)), xp)[1](g)
    np.testing.assert_array_equal(np.asarray(dx), np.asarray(dref))


def test_a_tie_sends_the_gradient_to_the_first_maximum_only() -> None:
    x = jnp.asarray([[1.0, 5.0], [5.0, 5.0]]).reshape(1, 2, 2, 1)
    (dx,) = jax.vjp(lambda v: max_pool2d(v, (2, 2), (2, 2)), x)[1](jnp.ones((1, 1, 1, 1)))
    assert np.asarray(dx).ravel().tolist() == [0.0, 1.0, 0.0, 0.0]


def test_bfloat16_and_jit() -> None:
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 6, 6, 3)), jnp.bfloat16)
    f = jax.jit(lambda v: jnp.sum(max_pool2d(v, (3, 3), (2, 2)).astype(jnp.float32)))
    dx = jax.grad(f)(x)
    # One hit per window: 2x2 windows, 2 images, 3 channels.
    assert dx.dtype == jnp.bfloat16 and float(jnp.sum(dx.astype(jnp.float32))) == 2 * 2 * 2 * 3


@pytest.mark.parametrize("backend, kernel", [("cpu", True), ("gpu", False), ("tpu", False)])
def test_the_max_pool_kernel_is_used_on_the_cpu_only(monkeypatch: pytest.MonkeyPatch, backend: str,
                                                      kernel: bool) -> None:
    """The lowering reads the backend at trace time: off the CPU, JAX's own derivative of reduce_window
    (select_and_gather_add and its transpose) remains in the gradient."""
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    model = netspec.compile(LENET, "TRAIN", batch=2)
    v = jax.eval_shape(lambda: model.init(0))
    inputs = {"data": jax.ShapeDtypeStruct((2, 1, 28, 28), jnp.float32),
              "label": jax.ShapeDtypeStruct((2,), jnp.int32)}

    def loss(params: dict, x: dict) -> jax.Array:
        out, _ = model.apply_train({**v, "params": params}, x)
        return model.loss(out)

    text = str(jax.make_jaxpr(jax.grad(loss))(v["params"], inputs))
    assert ("select_and_" not in text) is kernel
