"""jax.grad of small whole nets against central finite differences, in float64.

Two nets together use every differentiable layer type; the loss is the Caffe total loss of the
TRAIN-phase forward (BatchNorm on batch statistics). Directional derivatives along random
directions in (parameters, input) space must match (f(θ+εd) − f(θ−εd)) / 2ε.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import netspec
from netspec.spec import load_spec

CONV_NET = """
name: grad_conv
layer:
  - {name: in, type: Input, top: [data, label], input_param: {shape: [{dim: [2, 4, 7, 6]}, {dim: [2]}]}}
  - {name: c1, type: Convolution, bottom: data, convolution_param: {num_output: 6, kernel_size: 3, pad: 1,
     group: 2}}
  - {name: bn, type: BatchNorm, bottom: c1, top: c1}
  - {name: sc, type: Scale, bottom: c1, top: c1, scale_param: {bias_term: true}}
  - {name: pr, type: PReLU, bottom: c1, top: c1}
  - {name: c2, type: Convolution, bottom: c1, convolution_param: {num_output: 4, kernel_h: 3, kernel_w: 2,
     dilation: 2, pad: 2, stride: 2}}
  - {name: lrn, type: LRN, bottom: c2, lrn_param: {local_size: 3, alpha: 0.5}}
  - {name: mp, type: Pooling, bottom: lrn, pooling_param: {pool: MAX, kernel_size: 3, stride: 2}}
  - {name: up, type: Deconvolution, bottom: mp, convolution_param: {num_output: 4, kernel_size: 3, stride: 2,
     pad: 1, group: 2}}
  - {name: ap, type: Pooling, bottom: up, pooling_param: {pool: AVE, kernel_size: 2, stride: 2, pad: 1}}
  - {name: lrn2, type: LRN, bottom: ap, lrn_param: {local_size: 3, norm_region: WITHIN_CHANNEL, alpha: 0.5}}
  - {name: ip, type: InnerProduct, bottom: lrn2, inner_product_param: {num_output: 5}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip, label]}
"""

MIX_NET = """
name: grad_mix
layer:
  - {name: in, type: Input, top: [data, target], input_param: {shape: [{dim: [3, 6, 2, 3]}, {dim: [3, 10]}]}}
  - {name: split, type: Split, bottom: data, top: [s1, s2, s3]}
  - {name: elu, type: ELU, bottom: s1, top: e}
  - {name: sig, type: Sigmoid, bottom: s2, top: g}
  - {name: tanh, type: TanH, bottom: s3, top: t}
  - {name: bnll, type: BNLL, bottom: t, top: t}
  - {name: prod, type: Eltwise, bottom: [e, g], top: p, eltwise_param: {operation: PROD}}
  - {name: max, type: Eltwise, bottom: [p, t], top: m, eltwise_param: {operation: MAX}}
  - {name: sum, type: Eltwise, bottom: [m, g, e], top: u, eltwise_param: {coeff: [1.5, -0.5, 2.0]}}
  - {name: abs, type: AbsVal, bottom: u, top: a}
  - {name: pow, type: Power, bottom: a, top: a, power_param: {power: 1.5, scale: 0.7, shift: 0.2}}
  - {name: relu, type: ReLU, bottom: a, top: a, relu_param: {negative_slope: 0.1}}
  - {name: slice, type: Slice, bottom: a, top: [a1, a2], slice_param: {slice_point: [2]}}
  - {name: cat, type: Concat, bottom: [a2, a1, g], top: c, concat_param: {axis: 1}}
  - {name: bias, type: Bias, bottom: c, top: c}
  - {name: bn, type: BatchNorm, bottom: c, top: c}
  - {name: flat, type: Flatten, bottom: c, top: f}
  - {name: resh, type: Reshape, bottom: f, top: r, reshape_param: {shape: {dim: [0, 12, -1]}}}
  - {name: sm, type: Softmax, bottom: r, top: sm, softmax_param: {axis: 2}}
  - {name: ip, type: InnerProduct, bottom: sm, top: y, inner_product_param: {num_output: 10}}
  - {name: ip2, type: InnerProduct, bottom: y, top: z, inner_product_param: {num_output: 4, transpose: true}}
  - {name: l2, type: EuclideanLoss, bottom: [y, target], top: l2, loss_weight: 0.5}
  - {name: zsum, type: Scale, bottom: z, top: zs, scale_param: {axis: 0, num_axes: 0}, loss_weight: 0.3}
"""

# N-D convolutions: 3-D with groups and per-axis geometry, a 3-D deconvolution, a 2-D convolution over the
# last two axes through Caffe's `axis` 2 (the leading N×C are all batch), then a 1-D one after a reshape;
# BatchNorm, Scale and PReLU in between see channels-last 5-D blobs.
ND_NET = """
name: grad_nd
layer:
  - {name: in, type: Input, top: [data, label], input_param: {shape: [{dim: [2, 4, 4, 5, 3]}, {dim: [2]}]}}
  - {name: c3, type: Convolution, bottom: data, convolution_param: {num_output: 6, kernel_size: [3, 2, 2], pad: 1,
     stride: [1, 2, 1], dilation: [1, 1, 2], group: 2}}
  - {name: bn, type: BatchNorm, bottom: c3, top: c3}
  - {name: sc, type: Scale, bottom: c3, top: c3, scale_param: {bias_term: true}}
  - {name: pr, type: PReLU, bottom: c3, top: c3}
  - {name: up, type: Deconvolution, bottom: c3, convolution_param: {num_output: 4, kernel_size: 2, stride: [2, 1, 2],
     group: 2}}
  - {name: c2, type: Convolution, bottom: up, convolution_param: {num_output: 3, kernel_size: 3, axis: 2, stride: 2}}
  - {name: r, type: Reshape, bottom: c2, reshape_param: {shape: {dim: [0, 12, -1]}}}
  - {name: c1, type: Convolution, bottom: r, convolution_param: {num_output: 4, kernel_size: 3, stride: 2, pad: 1}}
  - {name: ip, type: InnerProduct, bottom: c1, inner_product_param: {num_output: 5}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [ip, label]}
"""


def _setup(text: str, seed: int) -> tuple[netspec.lowering.Model, dict[str, Any], dict[str, Any]]:
    model = netspec.compile(load_spec("<grad>.yaml", text), "TRAIN", dtype="float64")
    rs = np.random.RandomState(seed)
    blobs = {}
    for layer, arrays in netspec.caffe_blobs(model, model.init(0)).items():
        if model.param_info[f"{layer}/0"].collection == "batch_stats":
            blobs[layer] = arrays
        else:
            blobs[layer] = [rs.uniform(-1, 1, a.shape) * (0.2 if a.ndim > 1 else 1.0) + (0.25 if layer == "pr" else 0)
                            for a in arrays]
    variables = netspec.set_caffe_blobs(model, model.init(0), blobs)
    variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
    inputs = {}
    for name, shape in model.input_shapes.items():
        if name == "label":
            inputs[name] = jnp.asarray(rs.randint(0, 5, shape), jnp.float64)
        else:
            inputs[name] = jnp.asarray(rs.randn(*shape), jnp.float64)
    return model, variables, inputs


@pytest.mark.parametrize("text", [CONV_NET, MIX_NET, ND_NET], ids=["conv", "mix", "nd"])
def test_grad_matches_central_differences(text: str) -> None:
    with jax.enable_x64(True):
        model, variables, inputs = _setup(text, 0)
        data_key = "data"

        def f(params: Any, x: Any) -> jax.Array:
            out = model.apply({"params": params, "batch_stats": variables["batch_stats"]},
                              {**inputs, data_key: x}, train=True)
            return model.loss(out).astype(jnp.float64)

        f = jax.jit(f)
        params, x = variables["params"], inputs[data_key]
        gp, gx = jax.grad(f, argnums=(0, 1))(params, x)
        assert all(np.abs(np.asarray(g)).sum() > 0 for g in jax.tree.leaves(gp)), "a parameter gets no gradient"
        rs = np.random.RandomState(1)
        eps = 1e-5
        for _ in range(3):
            dp = jax.tree.map(lambda a: jnp.asarray(rs.randn(*a.shape)), params)
            dx = jnp.asarray(rs.randn(*x.shape))
            plus = f(jax.tree.map(lambda a, d: a + eps * d, params, dp), x + eps * dx)
            minus = f(jax.tree.map(lambda a, d: a - eps * d, params, dp), x - eps * dx)
            fd = float(plus - minus) / (2 * eps)
            ad = sum(float(jnp.vdot(g, d)) for g, d in zip(jax.tree.leaves(gp), jax.tree.leaves(dp)))
            ad += float(jnp.vdot(gx, dx))
            assert abs(fd - ad) <= 1e-6 * max(1.0, abs(ad)), (fd, ad)


def test_softmax_loss_gradient_ignores_the_clamp() -> None:
    """Caffe's backward is p − onehot even where the forward clamped p at FLT_MIN."""
    model = netspec.compile(load_spec("<g>.yaml", """
name: clamp
layer:
  - {name: in, type: Input, top: [x, label], input_param: {shape: [{dim: [1, 2]}, {dim: [1]}]}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [x, label]}
"""))
    g = jax.grad(lambda x: model.loss(model.apply(model.init(0), {"x": x, "label": jnp.zeros(1)})))(
        jnp.array([[0.0, 200.0]]))
    np.testing.assert_allclose(np.asarray(g), [[-1.0, 1.0]], atol=1e-6)
