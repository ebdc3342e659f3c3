"""The public lowering API on Caffe's LeNet: compile, init, apply, loss, multipliers, blob round trip."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

import netspec
from netspec.spec import load_spec

LENET = Path(__file__).parent / "fixtures" / "lowering" / "lenet.yaml"


@pytest.fixture(scope="module")
def lenet() -> netspec.lowering.Model:
    return netspec.compile(LENET, "TRAIN", input_shapes={"data": (8, 1, 28, 28), "label": (8,)})


def _batch(n: int = 8) -> dict[str, np.ndarray]:
    rs = np.random.RandomState(0)
    return {"data": rs.randn(n, 1, 28, 28).astype(np.float32), "label": np.arange(n) % 10}


def test_attributes(lenet: netspec.lowering.Model) -> None:
    assert lenet.phase == "TRAIN"
    assert lenet.input_shapes == {"data": (8, 1, 28, 28), "label": (8,)}
    assert lenet.output_names == ("loss",)
    assert lenet.loss_weights == {"loss": 1.0}
    info = lenet.param_info["ip1/0"]
    assert info.caffe_shape == (500, 800) and info.lr_mult == 1.0 and info.learnable
    assert lenet.param_info["conv1/1"].lr_mult == 2.0
    assert lenet.lr_mults()["conv2"] == {"0": 1.0, "1": 2.0}
    assert lenet.decay_mults()["ip2"] == {"0": 1.0, "1": 1.0}


def test_init_shapes_and_fillers(lenet: netspec.lowering.Model) -> None:
    v = lenet.init(0)
    assert set(v) == {"params", "batch_stats"}
    assert v["params"]["conv1"]["0"].shape == (5, 5, 1, 20)  # HWIO inside
    assert v["params"]["ip1"]["0"].shape == (500, 800)
    assert not np.any(np.asarray(v["params"]["ip1"]["1"]))  # constant 0 bias
    a = np.sqrt(3.0 / 800)  # xavier FAN_IN on ip1's Caffe layout (500, 800)
    w = np.asarray(v["params"]["ip1"]["0"])
    assert np.abs(w).max() <= a and np.abs(w).max() > 0.9 * a
    again = lenet.init(0)
    assert np.array_equal(np.asarray(again["params"]["conv2"]["0"]), np.asarray(v["params"]["conv2"]["0"]))
    other = lenet.init(1)
    assert not np.array_equal(np.asarray(other["params"]["conv2"]["0"]), np.asarray(v["params"]["conv2"]["0"]))


def test_apply_loss_and_grad(lenet: netspec.lowering.Model) -> None:
    v = lenet.init(0)
    out = lenet.apply(v, _batch())
    assert set(out) == {"loss"} and out["loss"].shape == ()
    assert 1.5 < float(lenet.loss(out)) < 4.0

    def f(p: dict) -> jax.Array:
        return lenet.loss(lenet.apply({"params": p, "batch_stats": {}}, _batch(), train=True))

    g = jax.jit(jax.grad(f))(v["params"])
    assert jax.tree.structure(g) == jax.tree.structure(v["params"])
    assert all(np.isfinite(np.asarray(x)).all() and np.abs(np.asarray(x)).sum() > 0 for x in jax.tree.leaves(g))


def test_test_phase_has_accuracy() -> None:
    m = netspec.compile(LENET, "TEST", batch=8)
    out = m.apply(m.init(0), _batch())
    assert set(out) == {"accuracy", "loss"}
    assert 0.0 <= float(out["accuracy"]) <= 1.0


def test_single_array_needs_single_input(lenet: netspec.lowering.Model) -> None:
    with pytest.raises(ValueError, match="pass a dict"):
        lenet.apply(lenet.init(0), _batch()["data"])


def test_caffe_blobs_round_trip(lenet: netspec.lowering.Model) -> None:
    v = lenet.init(3)
    blobs = netspec.caffe_blobs(lenet, v)
    assert [b.shape for b in blobs["conv2"]] == [(50, 20, 5, 5), (50,)]
    rs = np.random.RandomState(1)
    new = {k: [rs.randn(*b.shape).astype(np.float32) for b in bs] for k, bs in blobs.items()}
    v2 = netspec.set_caffe_blobs(lenet, v, new)
    back = netspec.caffe_blobs(lenet, v2)
    for k in new:
        for a, b in zip(new[k], back[k]):
            np.testing.assert_array_equal(a, b)


def test_set_caffe_blobs_reports_every_mismatch(lenet: netspec.lowering.Model) -> None:
    v = lenet.init(0)
    bad = {"conv1": [np.zeros((20, 2, 5, 5)), np.zeros(20)], "ip2": [np.zeros((10, 400)), np.zeros(10)],
           "nope": [np.zeros(1)]}
    with pytest.raises(ValueError) as e:
        netspec.set_caffe_blobs(lenet, v, bad)
    text = str(e.value)
    assert "conv1" in text and "(20, 1, 5, 5)" in text and "(20, 2, 5, 5)" in text
    assert "ip2" in text and "(10, 500)" in text and "nope" in text


def test_apply_takes_train_and_rng_positionally(lenet: netspec.lowering.Model) -> None:
    """The issue's signature apply(variables, inputs, train=False, rng=None): both positional or keyword."""
    v = lenet.init(0)
    key = jax.random.PRNGKey(4)
    by_position = lenet.apply(v, _batch(), True, key)
    by_keyword = lenet.apply(v, _batch(), train=True, rng=key)
    np.testing.assert_array_equal(np.asarray(by_position["loss"]), np.asarray(by_keyword["loss"]))
    with pytest.raises(TypeError):
        lenet.apply(v, _batch(), False, None, ("loss",))  # `blobs` stays keyword-only


@pytest.mark.parametrize("seed", [np.int64(7), np.int32(7), np.uint8(7)], ids=lambda s: type(s).__name__)
def test_init_takes_numpy_integers(lenet: netspec.lowering.Model, seed: np.integer) -> None:
    got = netspec.caffe_blobs(lenet, lenet.init(seed))["conv1"][0]
    np.testing.assert_array_equal(got, netspec.caffe_blobs(lenet, lenet.init(7))["conv1"][0])
    np.testing.assert_array_equal(got, netspec.caffe_blobs(lenet, lenet.init(jax.random.PRNGKey(7)))["conv1"][0])


SMALL = """
name: small
layer:
  - {name: in, type: Input, top: data, input_param: {shape: {dim: [2, 3, 5, 5]}}}
  - {name: conv, type: Convolution, bottom: data, top: conv, convolution_param: {num_output: 4, kernel_size: 3}}
  - {name: bn, type: BatchNorm, bottom: conv, top: conv}
  - {name: ip, type: InnerProduct, bottom: conv, top: ip, inner_product_param: {num_output: 3}}
"""


def test_set_caffe_blobs_keeps_float64_exactly() -> None:
    """set_caffe_blobs casts to the dtype the variables hold, so it inverts caffe_blobs for float64 too
    (parameters in their stored layouts and BatchNorm state alike)."""
    model = netspec.compile(load_spec("<small>.yaml", SMALL))
    rs = np.random.RandomState(2)
    with jax.enable_x64(True):
        v64 = jax.tree.map(lambda a: jax.numpy.asarray(a, jax.numpy.float64), model.init(0))
        new = {k: [rs.randn(*b.shape) for b in bs] for k, bs in netspec.caffe_blobs(model, v64).items()}
        v2 = netspec.set_caffe_blobs(model, v64, new)
        assert all(x.dtype == np.float64 for x in jax.tree.leaves(v2))
        back = netspec.caffe_blobs(model, v2)
        for k in new:
            for a, b in zip(new[k], back[k]):
                assert b.dtype == np.float64
                np.testing.assert_array_equal(a, b)
    # float32 variables still get float32 arrays from float64 blobs.
    v32 = netspec.set_caffe_blobs(model, model.init(0), new)
    assert all(x.dtype == np.float32 for x in jax.tree.leaves(v32))


def test_compiler_options_follow_the_convolutions_and_apply_works_under_an_outer_jit() -> None:
    mixed_spec = LENET.parent / "mixed_conv.yaml"
    mixed = netspec.compile(mixed_spec, "TRAIN", batch=2)
    if jax.default_backend() == "cpu":  # 32- and 64-channel convs: XLA's own, YNNPACK's reductions in a train step
        assert mixed.compiler_options == {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}
        assert netspec.compile(mixed_spec, "TEST", batch=2).compiler_options == {
            "xla_cpu_experimental_ynn_fusion_type": ""}
    assert netspec.compile(LENET, "TEST", batch=2).compiler_options == {}
    assert netspec.compile(mixed_spec, "TRAIN", batch=2, conv_impl="xla").compiler_options == {}
    v = mixed.init(0)
    x = {"data": np.random.RandomState(0).randn(2, 3, 32, 32).astype(np.float32), "label": np.array([1, 7])}
    alone = mixed.loss(mixed.apply_train(v, x)[0])
    # Inside an outer jit (a train step) the model's own jit must not carry options: JAX refuses nested ones.
    step = jax.jit(jax.value_and_grad(lambda p: mixed.loss(mixed.apply_train(dict(v, params=p), x)[0])),
                   compiler_options=mixed.compiler_options)
    loss, grads = step(v["params"])
    np.testing.assert_allclose(loss, alone, rtol=1e-5)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    # Likewise when every argument is a constant closed over by the outer jit (no tracer among them).
    np.testing.assert_allclose(jax.jit(lambda: mixed.loss(mixed.apply_train(v, x)[0]))(), alone, rtol=1e-5)


def _conv_shapes(jaxpr: Any) -> list[tuple[tuple[int, ...], ...]]:
    """(lhs, rhs, output) shapes of every convolution in a jaxpr, nested ones (jit, custom_vjp, scan) too."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            found.append(tuple(tuple(v.aval.shape) for v in (*eqn.invars[:2], eqn.outvars[0])))
        for param in eqn.params.values():
            inner = getattr(param, "jaxpr", param)
            if hasattr(inner, "eqns"):
                found += _conv_shapes(inner)
    return found


def test_a_narrow_first_layer_is_planned_for_the_program_it_is_in() -> None:
    # mixed_conv.yaml's conv1 (3 -> 32) alone would leave YNNPACK's convolutions on, under which XLA's weight
    # gradient is slow; in this net its wide layers turn them off, and there XLA's is the fastest (item 11 of
    # docs/performance.md). The step must run conv1's weight gradient as that convolution: x (N, 32, 32, 3)
    # against dy (N, 32, 32, 32) into the (3, 3, 3, 32) kernel. (netspec's own plan: "auto" hands these layers to
    # oneDNN where it is installed.)
    mixed = netspec.compile(LENET.parent / "mixed_conv.yaml", "TRAIN", batch=4, conv_impl="planned")
    assert mixed.module.xla_convs == bool(mixed.compiler_options) == (jax.default_backend() == "cpu")
    assert not netspec.compile(LENET, "TRAIN", batch=4).module.xla_convs  # LeNet keeps YNNPACK's
    v = mixed.init(0)
    x = {"data": np.zeros((4, 3, 32, 32), np.float32), "label": np.zeros(4, np.int32)}
    step = jax.make_jaxpr(jax.grad(lambda p: mixed.loss(mixed.apply_train(dict(v, params=p), x)[0])))
    conv1_weight_grad = ((4, 32, 32, 3), (4, 32, 32, 32), (3, 3, 3, 32))
    assert (conv1_weight_grad in _conv_shapes(step(v["params"]).jaxpr)) == mixed.module.xla_convs


def test_alexnets_grouped_layers_run_xlas_grouped_convolution() -> None:
    # conv2 (5x5, two groups of 48 channels) puts AlexNet on XLA's own convolutions, where XLA's grouped forward
    # is 2.5x faster than the im2col matmuls chosen for it before (docs/performance.md item 12): the forward
    # must hold it as one grouped convolution, x (1, 27, 27, 96) against the (5, 5, 48, 256) kernel.
    alex = netspec.compile(Path(__file__).parents[1] / "specs" / "alexnet.yaml", "TEST", batch=1, conv_impl="planned")
    v = jax.eval_shape(lambda: alex.init(0))
    x = {"data": jax.ShapeDtypeStruct((1, 3, 227, 227), np.float32)}
    forward = jax.make_jaxpr(lambda v, x: alex.apply(v, x))(v, x)
    assert ((1, 27, 27, 96), (5, 5, 48, 256), (1, 27, 27, 256)) in _conv_shapes(forward.jaxpr)


def _library_fusions(hlo: str) -> list[set[str]]:
    """The HLO opcodes inside each YNNPACK fusion of an optimized module's text."""
    bodies: dict[str, set[str]] = {}
    name = None
    for line in hlo.splitlines():
        head = re.match(r"^%?([\w.\-]+) \(.*\{$", line)
        if head:
            name = head.group(1)
            bodies[name] = set()
        elif name and (op := re.search(r" = \S+ ([\w\-]+)\(", line)):
            bodies[name].add(op.group(1))
    calls = [re.search(r"calls=%?([\w.\-]+)", line) for line in hlo.splitlines() if "__ynn_fusion" in line]
    return [bodies[c.group(1)] for c in calls if c]


@pytest.mark.slow
def test_a_train_step_hands_only_its_reductions_to_the_library() -> None:
    # BatchNorm's sums run 10x faster as YNNPACK reductions than as XLA's reduce-window trees, but a fusion that
    # pulled a convolution in would run it on YNNPACK's (the slow one; docs/performance.md item 10).
    spec = LENET.parent / "resnet18_cifar.yaml"
    model = netspec.compile(spec, "TRAIN", batch=8)
    if jax.default_backend() != "cpu":
        assert model.compiler_options == {}  # the options are XLA:CPU's
        return
    v = model.init(0)
    x = {"data": np.zeros((8, 3, 32, 32), np.float32), "label": np.zeros(8, np.int32)}

    def loss(p: dict) -> jax.Array:
        return model.loss(model.apply_train(dict(v, params=p), x)[0])

    hlo = jax.jit(jax.grad(loss), compiler_options=model.compiler_options).lower(v["params"]).compile().as_text()
    fusions = _library_fusions(hlo)
    assert len(fusions) >= 40  # two or more per BatchNorm
    assert all("reduce" in ops and not ops & {"convolution", "dot"} for ops in fusions), fusions
