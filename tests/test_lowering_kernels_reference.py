"""netspec.kernels.conv's matmul formulations (taps, im2col) against the float64 NumPy Caffe reference.

"auto" reaches them only for shapes too big for a unit test (choose_plan), so one net is compiled with
conv_impl="taps" and im2col is called through conv2d_planned with a chunked plan, all in float64. L = Σ y·G is bilinear in (x, W, b), so the central difference
(L(θ+d) − L(θ−d)) / 2 is exactly ⟨∇L, d⟩ for any step d: the reference's float64 differences check the
custom VJP's input and weight gradients with no truncation error, up to float64 rounding. One jitted
forward-and-VJP per case keeps each case to one compilation (about 1.4 s of XLA compile for the taps
VJP, 0.7 s for im2col's: the bulk of these tests' time).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import yaml

import netspec
import reference
from netspec.kernels.conv import Plan, conv2d_planned
from netspec.spec import load_spec

CASES = {
    # groups, stride, dilation, a rectangular kernel and pads past its extent on one axis
    "grouped": ({"num_output": 6, "kernel_h": 3, "kernel_w": 2, "stride": [2, 1], "pad": [2, 3], "dilation": [1, 2],
                 "group": 2}, (3, 4, 7, 6)),
    "depthwise": ({"num_output": 4, "kernel_size": 3, "pad": 1, "stride": 2, "group": 4}, (3, 4, 5, 6)),
}
FLOAT64_TOL = 1e-11


def _layer(case: str) -> Any:
    """The parsed convolution_param of a case (checked, so its defaults are Caffe's)."""
    param, shape = CASES[case]
    spec = {"name": "k", "layer": [
        {"name": "in", "type": "Input", "top": "data", "input_param": {"shape": {"dim": list(shape)}}},
        {"name": "L", "type": "Convolution", "bottom": "data", "top": "y", "convolution_param": param}]}
    return load_spec("<k>.yaml", yaml.safe_dump(spec))


def _reference(case: str, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return reference.convolution(_layer(case).layers[1].messages["convolution_param"], x, w, b)


def _check(case: str, run: Callable[..., Any], rs: np.random.RandomState) -> None:
    """run(x, w, b, cotangent) -> (y, dx, dw, db), all Caffe layout, float64."""
    param, shape = CASES[case]
    w_shape = (param["num_output"], shape[1] // param["group"], *((3, 2) if case == "grouped" else (3, 3)))
    x, w, b = rs.randn(*shape), rs.randn(*w_shape), rs.randn(param["num_output"])
    want = _reference(case, x, w, b)
    cot = rs.randn(*want.shape)
    y, gx, gw, gb = (np.asarray(a) for a in run(x, w, b, cot))
    np.testing.assert_allclose(y, want, rtol=0, atol=FLOAT64_TOL * np.abs(want).max())
    for _ in range(2):
        dx, dw, db = rs.randn(*x.shape), rs.randn(*w.shape), rs.randn(*b.shape)
        fd = (np.vdot(_reference(case, x + dx, w + dw, b + db), cot)
              - np.vdot(_reference(case, x - dx, w - dw, b - db), cot)) / 2
        ad = np.vdot(gx, dx) + np.vdot(gw, dw) + np.vdot(gb, db)
        assert abs(fd - ad) <= FLOAT64_TOL * max(1.0, abs(ad)), (fd, ad)


def test_forced_taps_net_matches_reference() -> None:
    """A net compiled with conv_impl="taps": all three passes per-tap matmuls over the whole batch."""
    with jax.enable_x64(True):
        model = netspec.compile(_layer("grouped"), dtype="float64", conv_impl="taps")
        v = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), model.init(0))
        # The forced formulation really runs: matmuls, and no XLA convolution anywhere.
        x0 = jnp.zeros(CASES["grouped"][1], jnp.float64)
        assert "conv_general_dilated" not in str(jax.make_jaxpr(model.apply)(v, x0))

        @jax.jit
        def forward_vjp(params: Any, x: Any, cot: Any) -> tuple[Any, ...]:
            y, vjp = jax.vjp(lambda p, xx: model.apply({"params": p, "batch_stats": {}}, xx)["y"], params, x)
            return (y, *vjp(cot))

        def run(x: Any, w: Any, b: Any, cot: Any) -> tuple[Any, ...]:
            params = netspec.set_caffe_blobs(model, v, {"L": [w, b]})["params"]  # float64 stays float64
            y, gp, gx = forward_vjp(params, x, cot)
            gw, gb = netspec.caffe_blobs(model, {"params": gp, "batch_stats": {}})["L"]
            return y, gx, gw, gb

        _check("grouped", run, np.random.RandomState(0))


def test_chunked_im2col_matches_reference() -> None:
    """conv2d_planned with im2col for all three passes, looping over the 3-image batch in chunks of 2
    (so with a remainder), on a strided depthwise convolution."""
    param, _ = CASES["depthwise"]
    plan = Plan.uniform("im2col", 2)
    with jax.enable_x64(True):
        @jax.jit
        def run(x: Any, w: Any, b: Any, cot: Any) -> tuple[Any, ...]:
            def forward(xx: Any, ww: Any, bb: Any) -> Any:  # Caffe layouts outside, NHWC / HWIO inside
                y = conv2d_planned(xx.transpose(0, 2, 3, 1), ww.transpose(2, 3, 1, 0), plan, stride=(2, 2),
                                   padding=((1, 1), (1, 1)), groups=param["group"])
                return (y + bb).transpose(0, 3, 1, 2)

            y, vjp = jax.vjp(forward, x, w, b)
            return (y, *vjp(cot))

        _check("depthwise", run, np.random.RandomState(1))
