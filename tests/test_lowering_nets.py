"""Whole nets: hand-written Flax LeNet and ResNet-18 with copied weights give the compiled spec's logits;
every spec in specs/ initialises exactly check's parameter count (jax.eval_shape: nothing allocated) and
traces to check's output shapes; shared parameters; bfloat16."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

import netspec
from netspec.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "lowering"
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


# --- hand-written Flax models (also used by tools/bench_lowering.py) ---------------------------------

class FlaxLeNet(nn.Module):
    """Caffe's LeNet the way one writes it in Flax: NHWC throughout, NHWC flatten. `dtype`: Flax's
    computation dtype (parameters stay float32), for tools/bench_accel.py's bfloat16 rows."""
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.Conv(20, (5, 5), padding="VALID", dtype=self.dtype, name="conv1")(x)
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.Conv(50, (5, 5), padding="VALID", dtype=self.dtype, name="conv2")(x)
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(500, dtype=self.dtype, name="ip1")(x))
        return nn.Dense(10, dtype=self.dtype, name="ip2")(x)


class _Block(nn.Module):
    channels: int
    stride: int
    project: bool
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        bn = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5,
                               dtype=self.dtype)
        conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype)
        s = (self.stride, self.stride)
        y = conv(self.channels, (3, 3), s, padding=((1, 1), (1, 1)), name="conv_a")(x)
        y = nn.relu(bn(name="bn_a")(y))
        y = conv(self.channels, (3, 3), padding=((1, 1), (1, 1)), name="conv_b")(y)
        y = bn(name="bn_b")(y)
        if self.project:
            x = conv(self.channels, (1, 1), s, padding="VALID", name="conv_p")(x)
            x = bn(name="bn_p")(x)
        return nn.relu(x + y)


class FlaxResNet18(nn.Module):
    """CIFAR ResNet-18 (32×32 input), Flax idioms: nn.BatchNorm with scale and bias, NHWC. `dtype` as
    in FlaxLeNet."""
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.Conv(64, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, dtype=self.dtype, name="conv1")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                                 name="bn1")(x))
        cin = 64
        for stage, c in enumerate((64, 128, 256, 512)):
            for b in range(2):
                stride = 2 if stage > 0 and b == 0 else 1
                x = _Block(c, stride, stride != 1 or cin != c, self.dtype, name=f"res{stage + 2}{'ab'[b]}")(x, train)
                cin = c
        x = x.mean(axis=(1, 2))
        return nn.Dense(10, dtype=self.dtype, name="fc10")(x)


class FlaxMixedConv(nn.Module):
    """tests/fixtures/lowering/mixed_conv.yaml: strided, dilated and grouped convolutions, NHWC."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        pad1 = ((1, 1), (1, 1))
        x = nn.relu(nn.Conv(32, (3, 3), padding=pad1, name="conv1")(x))
        x = nn.relu(nn.Conv(64, (3, 3), (2, 2), padding=pad1, name="conv2")(x))
        x = nn.relu(nn.Conv(64, (3, 3), padding=((2, 2), (2, 2)), kernel_dilation=(2, 2), name="conv3")(x))
        x = nn.relu(nn.Conv(128, (3, 3), (2, 2), padding=pad1, feature_group_count=4, name="conv4")(x))
        return nn.Dense(10, name="fc10")(x.mean(axis=(1, 2)))


# --- weight copying: Caffe blobs -> hand-written Flax variables ------------------------------------

def _conv(w: np.ndarray) -> jnp.ndarray:
    return jnp.asarray(w.transpose(2, 3, 1, 0))


def lenet_flax_variables(blobs: dict[str, list[np.ndarray]]) -> dict[str, Any]:
    w1 = blobs["ip1"][0].reshape(500, 50, 4, 4).transpose(2, 3, 1, 0).reshape(800, 500)  # CHW -> HWC rows
    return {"params": {
        "conv1": {"kernel": _conv(blobs["conv1"][0]), "bias": jnp.asarray(blobs["conv1"][1])},
        "conv2": {"kernel": _conv(blobs["conv2"][0]), "bias": jnp.asarray(blobs["conv2"][1])},
        "ip1": {"kernel": jnp.asarray(w1), "bias": jnp.asarray(blobs["ip1"][1])},
        "ip2": {"kernel": jnp.asarray(blobs["ip2"][0].T), "bias": jnp.asarray(blobs["ip2"][1])}}}


def resnet18_flax_variables(blobs: dict[str, list[np.ndarray]]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    stats: dict[str, Any] = {}

    def bn(caffe: str, into_p: dict[str, Any], into_s: dict[str, Any], name: str) -> None:
        mean_sum, var_sum, f = blobs[f"{caffe}_bn"]
        into_s[name] = {"mean": jnp.asarray(mean_sum / f[0]), "var": jnp.asarray(var_sum / f[0])}
        into_p[name] = {"scale": jnp.asarray(blobs[f"{caffe}_scale"][0]),
                        "bias": jnp.asarray(blobs[f"{caffe}_scale"][1])}

    params["conv1"] = {"kernel": _conv(blobs["conv1"][0])}
    bn("conv1", params, stats, "bn1")
    for stage in range(4):
        for b in "ab":
            n = f"res{stage + 2}{b}"
            p: dict[str, Any] = {}
            s: dict[str, Any] = {}
            for branch, suffix in (("branch2a", "a"), ("branch2b", "b"), ("branch1", "p")):
                caffe = f"{n}_{branch}"
                if caffe in blobs:
                    p[f"conv_{suffix}"] = {"kernel": _conv(blobs[caffe][0])}
                    bn(caffe, p, s, f"bn_{suffix}")
            params[n], stats[n] = p, s
    params["fc10"] = {"kernel": jnp.asarray(blobs["fc10"][0].T), "bias": jnp.asarray(blobs["fc10"][1])}
    return {"params": params, "batch_stats": stats}


def mixed_conv_flax_variables(blobs: dict[str, list[np.ndarray]]) -> dict[str, Any]:
    params = {f"conv{i}": {"kernel": _conv(blobs[f"conv{i}"][0]), "bias": jnp.asarray(blobs[f"conv{i}"][1])}
              for i in range(1, 5)}
    params["fc10"] = {"kernel": jnp.asarray(blobs["fc10"][0].T), "bias": jnp.asarray(blobs["fc10"][1])}
    return {"params": params}


def randomize(model: netspec.lowering.Model, variables: dict[str, Any], seed: int) -> dict[str, Any]:
    """Random Caffe blobs everywhere (BN statistics with a non-trivial factor f)."""
    rs = np.random.RandomState(seed)
    blobs = netspec.caffe_blobs(model, variables)
    new = {}
    for layer, arrays in blobs.items():
        if model.param_info[f"{layer}/0"].collection == "batch_stats":
            f = np.float32(rs.uniform(0.5, 3))
            c = arrays[0].shape[0]
            new[layer] = [rs.randn(c).astype(np.float32) * 0.1 * f, rs.uniform(0.5, 2, c).astype(np.float32) * f,
                          np.array([f], np.float32)]
        else:
            new[layer] = [(rs.randn(*a.shape) / math.sqrt(max(1, a[0].size))).astype(np.float32) for a in arrays]
    return netspec.set_caffe_blobs(model, variables, new)


def _close(a: Any, b: Any, tol: float) -> None:
    """max |a − b| ≤ tol · max(1, max |b|): tol is relative to the scale of the logits."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert np.max(np.abs(a - b)) <= tol * max(1.0, np.max(np.abs(b))), np.max(np.abs(a - b))


# --- the comparisons --------------------------------------------------------------------------------
# "Identical logits" means equal up to float32 rounding, not bit for bit: the two models compute the same
# sums in different but equivalent orders. netspec's InnerProduct flattens in Caffe's C,H,W order (a
# transpose, then a dot with the (N, K) weight) where Flax flattens H,W,C against a permuted kernel, so
# XLA accumulates the K products in another order; Caffe's BatchNorm then Scale is (x−μ)·rsqrt(σ²+ε)·γ+β
# with μ, σ² read as mean_sum/f, var_sum/f, where nn.BatchNorm folds γ into the rsqrt factor; global AVE
# pooling is a windowed sum times 1/(H·W) where the Flax model calls mean. Each tolerance is about 10x
# the difference observed on XLA:CPU with jax 0.10.2 (noted beside it, relative to the logits' scale).

def test_lenet_matches_hand_written_flax() -> None:
    model = netspec.compile(FIXTURES / "lenet.yaml", "TEST", batch=16)
    v = randomize(model, model.init(0), 1)
    rs = np.random.RandomState(2)
    x = rs.randn(16, 1, 28, 28).astype(np.float32)
    label = rs.randint(0, 10, 16)
    ours = model.apply(v, {"data": x, "label": label}, blobs=("ip2", "loss"))
    flax_vars = lenet_flax_variables(netspec.caffe_blobs(model, v))
    logits = FlaxLeNet().apply(flax_vars, x.transpose(0, 2, 3, 1))
    _close(ours["ip2"], logits, 5e-6)  # observed 4.7e-7
    ref_loss = -np.mean(np.asarray(jax.nn.log_softmax(logits))[np.arange(16), label])
    _close(ours["loss"], ref_loss, 1e-6)  # observed 0


@pytest.mark.parametrize("train", [False, True])
def test_resnet18_matches_hand_written_flax(train: bool) -> None:
    model = netspec.compile(FIXTURES / "resnet18_cifar.yaml", "TRAIN", batch=4)
    v = randomize(model, model.init(0), 3)
    x = np.random.RandomState(4).randn(4, 3, 32, 32).astype(np.float32)
    inputs = {"data": x, "label": np.zeros(4)}
    ours = model.apply(v, inputs, train=train, blobs=("fc10",))["fc10"]
    flax_vars = resnet18_flax_variables(netspec.caffe_blobs(model, v))
    theirs = FlaxResNet18().apply(flax_vars, x.transpose(0, 2, 3, 1), train=train,
                                  mutable=["batch_stats"] if train else False)
    _close(ours, theirs[0] if train else theirs, 1e-5 if train else 4e-6)  # observed 8.6e-7 / 3.3e-7


def test_strided_dilated_grouped_net_matches_hand_written_flax() -> None:
    model = netspec.compile(FIXTURES / "mixed_conv.yaml", "TRAIN", batch=4)
    v = randomize(model, model.init(0), 5)
    x = np.random.RandomState(6).randn(4, 3, 32, 32).astype(np.float32)
    ours = model.apply(v, {"data": x, "label": np.zeros(4)}, blobs=("fc10",))["fc10"]
    theirs = FlaxMixedConv().apply(mixed_conv_flax_variables(netspec.caffe_blobs(model, v)), x.transpose(0, 2, 3, 1))
    _close(ours, theirs, 1e-6)  # observed 0: no BatchNorm, and a 1×1 pooled blob flattens alike


def _loss_and_grads(model: netspec.lowering.Model, v: dict[str, Any], inputs: dict[str, Any]) -> Any:
    def loss(p: Any) -> Any:
        out, _ = model.apply_train({"params": p, "batch_stats": v["batch_stats"]}, inputs)
        return model.loss(out)

    return jax.jit(jax.value_and_grad(loss), compiler_options=model.compiler_options)(v["params"])


@pytest.mark.parametrize("name,shape,classes", [("lenet", (1, 28, 28), 10), ("mixed_conv", (3, 32, 32), 10),
                                                ("resnet18_cifar", (3, 32, 32), 10)])
def test_batch_minor_layout_trains_identically(name: str, shape: tuple[int, ...], classes: int) -> None:
    """The batch-minor ("chwn") spatial layout changes speed only: the same loss and gradients as channels-last,
    through every layer of the three nets (grouped, strided, dilated and 1x1 convolutions, BatchNorm, Scale,
    Eltwise, MAX and global AVE pooling, InnerProduct on a batch-minor bottom).

    In float64: in float32 the two layouts round differently, and with BatchNorm at batch 2 an activation
    near 0 can land on either side of a ReLU kink, which moves a whole gradient term (ResNet-18's res5a
    weight gradient by 2.4%, in one layout or the other depending on the compile options)."""
    path = FIXTURES / f"{name}.yaml"
    with jax.enable_x64(True):
        nhwc = netspec.compile(path, "TRAIN", batch=2, spatial_layout="nhwc", dtype="float64")
        chwn = netspec.compile(path, "TRAIN", batch=2, spatial_layout="chwn", dtype="float64")
        v = jax.tree.map(lambda a: np.asarray(a, np.float64), randomize(nhwc, nhwc.init(0), 7))
        rs = np.random.RandomState(8)
        inputs = {"data": rs.randn(2, *shape), "label": rs.randint(0, classes, 2)}
        (la, ga), (lb, gb) = _loss_and_grads(nhwc, v, inputs), _loss_and_grads(chwn, v, inputs)
    _close(lb, la, 1e-12)
    for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gb), strict=True):
        assert a.dtype == b.dtype == np.float64
        _close(b, a, 1e-12)


def test_lenet_picks_the_batch_minor_layout_for_training_on_the_cpu() -> None:
    """Without oneDNN ("planned"); with it, "auto" keeps channels-last for oneDNN's NHWC kernels."""
    train = netspec.compile(FIXTURES / "lenet.yaml", "TRAIN", batch=64, conv_impl="planned")
    cpu = jax.default_backend() == "cpu"
    assert train.spatial_layout == ("chwn" if cpu else "nhwc")
    auto = netspec.compile(FIXTURES / "lenet.yaml", "TRAIN", batch=64)
    assert auto.spatial_layout == ("nhwc" if auto.conv_library else train.spatial_layout)
    assert netspec.compile(FIXTURES / "lenet.yaml", "TEST", batch=64).spatial_layout == "nhwc"  # inference
    assert netspec.compile(FIXTURES / "lenet.yaml", "TRAIN", batch=256, conv_impl="planned").spatial_layout == "nhwc"
    assert netspec.compile(FIXTURES / "lenet.yaml", "TRAIN", batch=64, conv_impl="xla").spatial_layout == "nhwc"
    assert netspec.compile(FIXTURES / "mixed_conv.yaml", "TRAIN", batch=64).spatial_layout == "nhwc"
    with pytest.raises(netspec.NetspecError, match="spatial_layout"):
        netspec.compile(FIXTURES / "lenet.yaml", spatial_layout="nchw")
    # A layer written for channels-last only (Deconvolution) would need conversions: the net stays channels-last.
    with_deconv = LENET_LIKE + (
        "  - {name: up, type: Deconvolution, bottom: conv2, top: up, convolution_param: {num_output: 4, kernel_size: 2,"
        " stride: 2}}\n")
    assert netspec.compile(load_spec("<a>.yaml", LENET_LIKE), "TRAIN", conv_impl="planned").spatial_layout == \
        train.spatial_layout
    assert netspec.compile(load_spec("<b>.yaml", with_deconv), "TRAIN", conv_impl="planned").spatial_layout == "nhwc"


LENET_LIKE = """
name: lenet-like
layer:
  - {name: data, type: Input, top: data, input_param: {shape: {dim: [64, 1, 28, 28]}}}
  - {name: conv1, type: Convolution, bottom: data, top: conv1, convolution_param: {num_output: 20, kernel_size: 5}}
  - {name: pool1, type: Pooling, bottom: conv1, top: pool1, pooling_param: {pool: MAX, kernel_size: 2, stride: 2}}
  - {name: conv2, type: Convolution, bottom: pool1, top: conv2, convolution_param: {num_output: 50, kernel_size: 5}}
"""


# --- every spec: parameter counts and output shapes without allocating -------------------------------

@pytest.mark.skipif(not SPECS, reason="specs/ is not populated yet")
@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_spec_param_count_and_shapes(path: Path) -> None:
    spec = netspec.load_spec(path)
    for phase in ("TRAIN", "TEST"):
        model = netspec.compile(spec, phase, batch=1)
        shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0))
        learnable = sum(math.prod(x.shape) for x in jax.tree.leaves(shapes["params"]))
        state = sum(math.prod(x.shape) for x in jax.tree.leaves(shapes["batch_stats"]))
        assert (learnable, state) == (model.report.learnable_params, model.report.state)
        assert jax.tree.structure(model.lr_mults()) == jax.tree.structure(shapes["params"])
    ins = {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in model.input_shapes.items()}
    out = jax.eval_shape(lambda v, x: model.apply(v, x), shapes, ins)
    by_name = {model.graph.blob_names[b]: model.report.shapes[b] for b in model.graph.outputs}
    assert {k: tuple(o.shape) for k, o in out.items() if k in by_name} == by_name


# --- parameter sharing --------------------------------------------------------------------------------

SIAMESE = """
name: siamese
layer:
  - {name: in, type: Input, top: [a, b], input_param: {shape: [{dim: [2, 3, 6, 6]}, {dim: [2, 3, 6, 6]}]}}
  - {name: conv_a, type: Convolution, bottom: a, top: fa, param: [{name: w, lr_mult: 3}, {name: bias}],
     convolution_param: {num_output: 4, kernel_size: 3, weight_filler: {type: gaussian}}}
  - {name: conv_b, type: Convolution, bottom: b, top: fb, param: [{name: w}, {name: bias, decay_mult: 0}],
     convolution_param: {num_output: 4, kernel_size: 3}}
  - {name: ip_a, type: InnerProduct, bottom: fa, top: ya, param: {name: ip, share_mode: PERMISSIVE},
     inner_product_param: {num_output: 8, bias_term: false, weight_filler: {type: gaussian}}}
  - {name: ip_b, type: InnerProduct, bottom: fb, top: yb, param: {name: ip, share_mode: PERMISSIVE},
     inner_product_param: {num_output: 8, bias_term: false, transpose: true}}
"""


def test_shared_params_are_one_array() -> None:
    model = netspec.compile(load_spec("<siamese>.yaml", SIAMESE))
    v = model.init(0)
    assert set(v["params"]) == {"conv_a", "ip_a"}
    assert model.param_info["conv_b/0"].owner == "conv_a/0"
    assert model.param_info["conv_b/0"].lr_mult == 3.0 and model.param_info["conv_b/1"].decay_mult == 0.0
    assert model.lr_mults() == {"conv_a": {"0": 3.0, "1": 1.0}, "ip_a": {"0": 1.0}}
    x = np.random.RandomState(0).randn(2, 3, 6, 6).astype(np.float32)
    out = model.apply(v, {"a": x, "b": x})
    blobs = netspec.caffe_blobs(model, v)
    # PERMISSIVE: ip_b reads ip_a's 512 numbers as its own (K, N) = (64, 8) blob, row-major as in Caffe.
    fb = np.asarray(model.apply(v, {"a": x, "b": x}, blobs=("fb",))["fb"]).reshape(2, 64)
    _close(out["yb"], fb @ blobs["ip_a"][0].reshape(64, 8), 2e-6)  # observed 1.3e-7 (NumPy's float32 dot)
    np.testing.assert_array_equal(blobs["conv_a"][0], blobs["conv_b"][0])
    np.testing.assert_array_equal(blobs["ip_a"][0].ravel(), blobs["ip_b"][0].ravel())
    # The gradient of the shared weight is the sum over both users.
    g = jax.grad(lambda p: jnp.sum(model.apply({"params": p, "batch_stats": {}}, {"a": x, "b": 2 * x})["ya"]))(
        v["params"])
    assert set(g) == {"conv_a", "ip_a"}
    # Writing a sharer's blob writes the one array.
    new = np.ones((4, 3, 3, 3), np.float32)
    v2 = netspec.set_caffe_blobs(model, v, {"conv_b": [new, blobs["conv_b"][1]]})
    np.testing.assert_array_equal(netspec.caffe_blobs(model, v2)["conv_a"][0], new)


def test_shared_conv_gradient_sums_both_branches() -> None:
    model = netspec.compile(load_spec("<siamese>.yaml", SIAMESE))
    v = model.init(0)
    rs = np.random.RandomState(1)
    a, b = rs.randn(2, 3, 6, 6).astype(np.float32), rs.randn(2, 3, 6, 6).astype(np.float32)

    def loss(p: Any, xa: Any, xb: Any) -> jax.Array:
        out = model.apply({"params": p, "batch_stats": {}}, {"a": xa, "b": xb}, blobs=("fa", "fb"))
        return jnp.sum(out["fa"] ** 2) + jnp.sum(out["fb"] ** 2)

    both = jax.grad(loss)(v["params"], a, b)["conv_a"]["0"]
    only_a = jax.grad(loss)(v["params"], a, np.zeros_like(b))["conv_a"]["0"]
    only_b = jax.grad(loss)(v["params"], np.zeros_like(a), b)["conv_a"]["0"]
    _close(both, np.asarray(only_a) + np.asarray(only_b), 1e-6)  # observed 0


# --- bfloat16 -----------------------------------------------------------------------------------------

SMALL_BN = """
name: small
layer:
  - {name: in, type: Input, top: [data, label], input_param: {shape: [{dim: [4, 3, 8, 8]}, {dim: [4]}]}}
  - {name: conv, type: Convolution, convolution_param: {num_output: 8, kernel_size: 3, pad: 1,
     weight_filler: {type: msra}}}
  - {name: bn, type: BatchNorm, bottom: conv, top: conv}
  - {name: scale, type: Scale, bottom: conv, top: conv, scale_param: {bias_term: true}}
  - {name: relu, type: ReLU, bottom: conv, top: conv}
  - {name: pool, type: Pooling, bottom: conv, pooling_param: {pool: AVE, kernel_size: 3, stride: 2}}
  - {name: fc, type: InnerProduct, bottom: pool, inner_product_param: {num_output: 5, weight_filler: {type: xavier}}}
  - {name: loss, type: SoftmaxWithLoss, bottom: [fc, label]}
"""


def test_bfloat16_computes_in_bf16_with_float32_params_and_loss() -> None:
    spec = load_spec("<small>.yaml", SMALL_BN)
    f32 = netspec.compile(spec, "TRAIN")
    bf16 = netspec.compile(spec, "TRAIN", dtype="bfloat16")
    v = randomize(f32, f32.init(0), 5)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(bf16.init(0)))
    rs = np.random.RandomState(6)
    inputs = {"data": rs.randn(4, 3, 8, 8).astype(np.float32), "label": rs.randint(0, 5, 4)}
    a = f32.apply(v, inputs, train=True, blobs=("fc", "loss", "pool"))
    b = bf16.apply(v, inputs, train=True, blobs=("fc", "loss", "pool"))
    assert b["pool"].dtype == jnp.bfloat16 and b["loss"].dtype == jnp.float32
    _close(b["fc"], a["fc"], 0.05)  # bfloat16's 8-bit mantissa: observed 5.3e-3
    assert abs(float(a["loss"]) - float(b["loss"])) < 1e-3 * max(1.0, abs(float(a["loss"])))  # observed 9.1e-5
    g = jax.grad(lambda p: bf16.loss(bf16.apply({"params": p, "batch_stats": v["batch_stats"]}, inputs,
                                                train=True)))(v["params"])
    assert all(x.dtype == jnp.float32 and np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(g))
    _, stats = bf16.apply_train(v, inputs)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(stats))


def test_unknown_blob_and_bad_options() -> None:
    model = netspec.compile(FIXTURES / "lenet.yaml", "TEST", batch=2)
    with pytest.raises(ValueError, match="unknown blob"):
        model.apply(model.init(0), {"data": np.zeros((2, 1, 28, 28)), "label": np.zeros(2)}, blobs=("nope",))
    with pytest.raises(netspec.NetspecError, match="dtype"):
        netspec.compile(FIXTURES / "lenet.yaml", dtype="float16")
    with pytest.raises(netspec.NetspecError, match="conv_impl"):
        netspec.compile(FIXTURES / "lenet.yaml", conv_impl="cudnn")


def test_yaml_fixture_is_valid_yaml() -> None:
    assert yaml.safe_load((FIXTURES / "resnet18_cifar.yaml").read_text())["name"] == "ResNet-18-CIFAR"
