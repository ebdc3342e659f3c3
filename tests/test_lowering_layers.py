"""Every lowered layer type against the float64 NumPy Caffe reference (tests/reference.py).

Each case compiles a two-layer net (Input -> layer under test), loads random Caffe-layout blobs with
set_caffe_blobs and compares every top. `via_nhwc` routes 4-D bottoms through an identity 1×1 MAX
pool first, so layers that accept either layout are also exercised on channels-last blobs.
Tolerance: max |lowered − reference| ≤ 1e-5 · max(1, max |reference|) in float32.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import netspec
import reference
from netspec.lowering import LOWERINGS
from netspec.layers import REGISTRY
from netspec.spec import load_spec

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True)
TOL = 1e-5


def compile_layer(layer: dict[str, Any], shapes: list[tuple[int, ...]], via_nhwc: bool = False,
                  phase: str = "TEST", dtype: str = "float32") -> tuple[netspec.lowering.Model, Any]:
    names = [f"b{i}" for i in range(len(shapes))]
    layers: list[dict[str, Any]] = [{"name": "in", "type": "Input", "top": names,
                                     "input_param": {"shape": [{"dim": list(s)} for s in shapes]}}]
    bottoms = list(names)
    if via_nhwc:
        for i, s in enumerate(shapes):
            if len(s) == 4:
                layers.append({"name": f"id{i}", "type": "Pooling", "bottom": names[i], "top": f"n{i}",
                               "pooling_param": {"kernel_size": 1}})
                bottoms[i] = f"n{i}"
    layers.append({**layer, "name": "L", "bottom": bottoms})
    spec = load_spec("<case>.yaml", yaml.safe_dump({"name": "case", "layer": layers}))
    model = netspec.compile(spec, phase, dtype=dtype)
    return model, model.graph.node("L").layer


def random_blobs(model: netspec.lowering.Model, rs: np.random.RandomState) -> dict[str, list[np.ndarray]]:
    out = {}
    for row in model.report.rows:
        if not row.blobs or row.name != "L":
            continue
        arrays = [np.asarray(rs.randn(*b.shape), np.float32) for b in row.blobs]
        if row.type == "BatchNorm":
            arrays[1] = np.abs(arrays[1]) + 0.1
            arrays[2] = np.abs(arrays[2]) + 0.5
        out[row.name] = arrays
    return out


def check_layer(layer: dict[str, Any], shapes: list[tuple[int, ...]], *, via_nhwc: bool = False,
                seed: int = 0, inputs: list[np.ndarray] | None = None) -> dict[str, np.ndarray]:
    model, spec = compile_layer(layer, shapes, via_nhwc)
    rs = np.random.RandomState(seed)
    xs = inputs or [np.asarray(rs.randn(*s), np.float32) for s in shapes]
    blobs = random_blobs(model, rs)
    variables = netspec.set_caffe_blobs(model, model.init(0), blobs)
    out = model.apply(variables, {f"b{i}": x for i, x in enumerate(xs)})
    want = reference.forward(spec, xs, blobs.get("L", []))
    tops = [model.graph.blob_names[t] for t in model.graph.node("L").tops]
    assert len(tops) == len(want)
    for name, ref in zip(tops, want):
        got = np.asarray(out[name], np.float64)
        assert got.shape == ref.shape, (name, got.shape, ref.shape)
        err = np.max(np.abs(got - ref)) if ref.size else 0.0
        assert err <= TOL * max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0), (name, err)
    return out


def test_every_registered_type_has_a_lowering() -> None:
    assert set(REGISTRY) <= set(LOWERINGS), set(REGISTRY) - set(LOWERINGS)


# --- convolution --------------------------------------------------------------------------------------

@st.composite
def conv_cases(draw: st.DrawFn) -> tuple[dict[str, Any], tuple[int, ...]]:
    g = draw(st.sampled_from([1, 1, 2, 3]))
    cin, cout = g * draw(st.integers(1, 3)), g * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 9))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 9))
    p: dict[str, Any] = {"num_output": cout, "group": g, "bias_term": draw(st.booleans()),
                         "kernel_h": kh, "kernel_w": kw, "pad_h": ph, "pad_w": pw,
                         "stride_h": draw(st.integers(1, 3)), "stride_w": draw(st.integers(1, 3)),
                         "dilation": [dh, dw]}
    return p, (draw(st.integers(1, 2)), cin, h, w)


@SETTINGS
@given(conv_cases())
def test_convolution(case: tuple[dict[str, Any], tuple[int, ...]]) -> None:
    p, shape = case
    check_layer({"type": "Convolution", "convolution_param": p}, [shape])


@SETTINGS
@given(conv_cases())
def test_deconvolution(case: tuple[dict[str, Any], tuple[int, ...]]) -> None:
    p, shape = case
    n, c, h, w = shape
    ext = [p["dilation"][0] * (p["kernel_h"] - 1) + 1, p["dilation"][1] * (p["kernel_w"] - 1) + 1]
    assume(p["stride_h"] * (h - 1) + ext[0] - 2 * p["pad_h"] >= 1)
    assume(p["stride_w"] * (w - 1) + ext[1] - 2 * p["pad_w"] >= 1)
    check_layer({"type": "Deconvolution", "convolution_param": p}, [shape])


def test_convolution_square_fields_and_impl_xla() -> None:
    layer = {"type": "Convolution", "convolution_param": {"num_output": 4, "kernel_size": 3, "pad": 1,
                                                          "stride": 2}}
    check_layer(layer, [(2, 3, 7, 6)])


# --- pooling ------------------------------------------------------------------------------------------

@st.composite
def pool_cases(draw: st.DrawFn) -> tuple[dict[str, Any], tuple[int, ...], bool]:
    pool = draw(st.sampled_from(["MAX", "AVE"]))
    if draw(st.integers(0, 5)) == 0:
        p: dict[str, Any] = {"pool": pool, "global_pooling": True}
        return p, (2, 3, draw(st.integers(1, 6)), draw(st.integers(1, 6))), False
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    p = {"pool": pool, "kernel_h": kh, "kernel_w": kw, "stride_h": draw(st.integers(1, 3)),
         "stride_w": draw(st.integers(1, 3)), "pad_h": draw(st.integers(0, kh - 1)),
         "pad_w": draw(st.integers(0, kw - 1)), "round_mode": draw(st.sampled_from(["CEIL", "FLOOR"]))}
    h = draw(st.integers(max(1, kh - 2 * p["pad_h"]), 9))
    w = draw(st.integers(max(1, kw - 2 * p["pad_w"]), 9))
    return p, (2, 3, h, w), pool == "MAX" and draw(st.booleans())


@settings(max_examples=30, deadline=None, derandomize=True)
@given(pool_cases())
def test_pooling(case: tuple[dict[str, Any], tuple[int, ...], bool]) -> None:
    p, shape, mask = case
    top = ["y", "mask"] if mask else ["y"]
    if p["pool"] == "AVE" and not p.get("global_pooling"):
        # A ceil window starting past an unpadded input has pool_size 0: Caffe divides 0 by 0.
        assume(all(_start_inside(shape[2 + i], p[f"kernel_{a}"], p[f"stride_{a}"], p[f"pad_{a}"],
                                 p["round_mode"] == "CEIL") for i, a in enumerate("hw")))
    try:
        compile_layer({"type": "Pooling", "top": top, "pooling_param": p}, [shape])
    except netspec.NetspecError:
        assume(False)  # a window that does not fit: check rejects it, as Caffe does
    check_layer({"type": "Pooling", "top": top, "pooling_param": p}, [shape])


def _start_inside(size: int, k: int, s: int, p: int, ceil: bool) -> bool:
    return (reference._pooled(size, k, s, p, ceil) - 1) * s - p < size


@pytest.mark.parametrize("h,k,s,p,ceil", [(5, 2, 2, 1, "CEIL"), (6, 3, 2, 0, "CEIL"), (7, 3, 2, 1, "CEIL"),
                                          (4, 3, 3, 2, "CEIL"), (6, 3, 2, 1, "FLOOR"), (6, 4, 3, 0, "FLOOR")])
@pytest.mark.parametrize("pool", ["MAX", "AVE"])
def test_pooling_overhang_cases(h: int, k: int, s: int, p: int, ceil: str, pool: str) -> None:
    """Hand-picked windows that overhang the padded input (ceil) or leave a tail unread (floor)."""
    check_layer({"type": "Pooling", "pooling_param": {"pool": pool, "kernel_size": k, "stride": s, "pad": p,
                                                      "round_mode": ceil}}, [(1, 2, h, h + 1)])


def test_stochastic_pooling_test_phase() -> None:
    x = np.abs(np.random.RandomState(0).randn(2, 3, 7, 7)).astype(np.float32)
    x[0, 0, :3, :3] = 0  # an all-zero window outputs 0
    check_layer({"type": "Pooling", "pooling_param": {"pool": "STOCHASTIC", "kernel_size": 3, "stride": 2}},
                [(2, 3, 7, 7)], inputs=[x])


def test_stochastic_pooling_train_samples_window_elements() -> None:
    model, _ = compile_layer({"type": "Pooling", "pooling_param": {"pool": "STOCHASTIC", "kernel_size": 2,
                                                                   "stride": 2}}, [(1, 1, 4, 4)])
    x = np.array([[[[0, 5, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]]]], np.float32)
    out = model.apply(model.init(0), x, train=True, rng=jax.random.PRNGKey(3))["L"]
    np.testing.assert_array_equal(np.asarray(out)[0, 0], [[5, 1], [0, 0]])


# --- inner product ------------------------------------------------------------------------------------

@SETTINGS
@given(st.sampled_from([(2, 3, 4, 5), (3, 7), (2, 3, 5)]), st.integers(-2, 2), st.booleans(), st.booleans(),
       st.integers(1, 6), st.booleans())
def test_inner_product(shape: tuple[int, ...], axis: int, transpose: bool, bias: bool, n: int,
                       via_nhwc: bool) -> None:
    assume(-len(shape) <= axis < len(shape))
    check_layer({"type": "InnerProduct", "inner_product_param": {"num_output": n, "axis": axis,
                                                                 "transpose": transpose, "bias_term": bias}},
                [shape], via_nhwc=via_nhwc)


# --- element-wise -------------------------------------------------------------------------------------

NEURONS = [
    {"type": "ReLU"}, {"type": "ReLU", "relu_param": {"negative_slope": 0.1}},
    {"type": "PReLU"}, {"type": "PReLU", "prelu_param": {"channel_shared": True}},
    {"type": "ELU", "elu_param": {"alpha": 0.7}}, {"type": "Sigmoid"}, {"type": "TanH"}, {"type": "BNLL"},
    {"type": "AbsVal"}, {"type": "Power", "power_param": {"power": 2.0, "scale": 0.5, "shift": 3.0}},
    {"type": "Power", "power_param": {"power": 0.5, "scale": 0.1, "shift": 2.0}},
    {"type": "Power", "power_param": {"power": 3.0, "scale": -1.5, "shift": 0.5}},
    {"type": "Dropout"}, {"type": "Dropout", "dropout_param": {"dropout_ratio": 0.3, "scale_train": False}},
]


@pytest.mark.parametrize("layer", NEURONS, ids=[f"{l['type']}-{i}" for i, l in enumerate(NEURONS)])
@pytest.mark.parametrize("shape,via_nhwc", [((2, 3, 5, 4), False), ((2, 3, 5, 4), True), ((4, 6), False)])
def test_neurons(layer: dict[str, Any], shape: tuple[int, ...], via_nhwc: bool) -> None:
    check_layer(layer, [shape], via_nhwc=via_nhwc)


def test_bnll_large_inputs_are_finite() -> None:
    x = np.array([[-200.0, -30.0, 0.0, 30.0, 200.0]], np.float32)
    out = check_layer({"type": "BNLL"}, [(1, 5)], inputs=[x])
    assert np.isfinite(np.asarray(out["L"])).all()


def test_dropout_train_is_inverted_and_seeded() -> None:
    model, _ = compile_layer({"type": "Dropout", "dropout_param": {"dropout_ratio": 0.25}}, [(4, 1000)])
    x = np.ones((4, 1000), np.float32)
    v = model.init(0)
    a = np.asarray(model.apply(v, x, train=True, rng=jax.random.PRNGKey(1))["L"])
    b = np.asarray(model.apply(v, x, train=True, rng=jax.random.PRNGKey(1))["L"])
    c = np.asarray(model.apply(v, x, train=True, rng=jax.random.PRNGKey(2))["L"])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(np.unique(a)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((a == 0).mean() - 0.25) < 0.03
    with pytest.raises(ValueError, match="rng"):
        model.apply(v, x, train=True)


# --- normalisation ------------------------------------------------------------------------------------

@pytest.mark.parametrize("region", ["ACROSS_CHANNELS", "WITHIN_CHANNEL"])
@pytest.mark.parametrize("size", [1, 3, 5])
@pytest.mark.parametrize("via_nhwc", [False, True])
def test_lrn(region: str, size: int, via_nhwc: bool) -> None:
    check_layer({"type": "LRN", "lrn_param": {"local_size": size, "alpha": 0.3, "beta": 0.75, "k": 2.0,
                                              "norm_region": region}}, [(2, 7, 5, 4)], via_nhwc=via_nhwc)


@pytest.mark.parametrize("shape", [(3, 4, 5, 2), (6, 5)])
@pytest.mark.parametrize("via_nhwc", [False, True])
def test_batch_norm_global_stats(shape: tuple[int, ...], via_nhwc: bool) -> None:
    check_layer({"type": "BatchNorm", "batch_norm_param": {"eps": 1e-3}}, [shape], via_nhwc=via_nhwc)


def test_batch_norm_zero_factor_means_zero_stats() -> None:
    model, _ = compile_layer({"type": "BatchNorm"}, [(2, 3)])
    x = np.random.RandomState(0).randn(2, 3).astype(np.float32)
    out = model.apply(model.init(0), x)["L"]  # fresh blobs are all 0: μ = 0, σ² = 0
    np.testing.assert_allclose(np.asarray(out), x / np.sqrt(1e-5), rtol=1e-5)


@pytest.mark.parametrize("shape", [(3, 4, 5, 2), (6, 5), (4, 3, 1, 1)])
@pytest.mark.parametrize("via_nhwc", [False, True])
def test_batch_norm_train_updates_like_caffe(shape: tuple[int, ...], via_nhwc: bool) -> None:
    model, spec = compile_layer({"type": "BatchNorm", "batch_norm_param": {"moving_average_fraction": 0.9}},
                                [shape], via_nhwc=via_nhwc, phase="TRAIN")
    rs = np.random.RandomState(1)
    x = (rs.randn(*shape) * 3 + 1).astype(np.float32)
    blobs = random_blobs(model, rs)
    v = netspec.set_caffe_blobs(model, model.init(0), blobs)
    out, stats = model.apply_train(v, x)
    want, new = reference.forward_bn(spec.messages["batch_norm_param"], x.astype(np.float64),
                                     [b.astype(np.float64) for b in blobs["L"]], batch_stats=True)
    np.testing.assert_allclose(np.asarray(out["L"]), want, rtol=1e-4, atol=1e-4)
    for i, w in enumerate(new):
        np.testing.assert_allclose(np.asarray(stats["L"][str(i)]), w, rtol=1e-5, atol=1e-5)
    # apply(train=True) normalises the same way but leaves the statistics alone.
    out2 = model.apply(v, x, train=True)
    np.testing.assert_allclose(np.asarray(out2["L"]), np.asarray(out["L"]), rtol=1e-6)
    # A TEST-phase apply uses the stored statistics.
    test = model.apply({**v, "batch_stats": stats}, x)["L"]
    ref_test = reference.forward_bn(spec.messages["batch_norm_param"], x.astype(np.float64), new, False)[0]
    np.testing.assert_allclose(np.asarray(test), ref_test, rtol=1e-4, atol=1e-4)


SCALE_CASES = [
    ({}, [(2, 3, 4, 5)]), ({"bias_term": True}, [(2, 3, 4, 5)]), ({"axis": 0, "num_axes": 2}, [(2, 3, 4, 5)]),
    ({"axis": 2, "num_axes": -1, "bias_term": True}, [(2, 3, 4, 5)]), ({"num_axes": 0}, [(2, 3, 4, 5)]),
    ({"axis": -1}, [(2, 3, 4, 5)]), ({}, [(2, 3, 4, 5), (3,)]), ({}, [(2, 3, 4, 5), (3, 4)]),
    ({"axis": 0}, [(2, 3, 4, 5), (2, 3)]), ({"axis": 0, "bias_term": True}, [(2, 3, 4, 5), (2, 3, 4)]),
    ({}, [(2, 3, 4, 5), ()]), ({}, [(4, 6)]), ({"bias_term": True}, [(4, 6), (6,)]),
]


@pytest.mark.parametrize("param,shapes", SCALE_CASES)
@pytest.mark.parametrize("via_nhwc", [False, True])
def test_scale(param: dict[str, Any], shapes: list[tuple[int, ...]], via_nhwc: bool) -> None:
    check_layer({"type": "Scale", "scale_param": param}, shapes, via_nhwc=via_nhwc)


@pytest.mark.parametrize("param,shapes", [(p, s) for p, s in SCALE_CASES if "bias_term" not in p])
@pytest.mark.parametrize("via_nhwc", [False, True])
def test_bias(param: dict[str, Any], shapes: list[tuple[int, ...]], via_nhwc: bool) -> None:
    check_layer({"type": "Bias", "bias_param": param}, shapes, via_nhwc=via_nhwc)


# --- softmax, losses, accuracy ------------------------------------------------------------------------

@pytest.mark.parametrize("shape,axis", [((3, 5), 1), ((2, 4, 3, 2), 1), ((2, 4, 3, 2), -1), ((2, 4, 3, 2), 2),
                                        ((2, 4, 3, 2), 0)])
@pytest.mark.parametrize("via_nhwc", [False, True])
def test_softmax(shape: tuple[int, ...], axis: int, via_nhwc: bool) -> None:
    check_layer({"type": "Softmax", "softmax_param": {"axis": axis}}, [shape], via_nhwc=via_nhwc)


def _labels(rs: np.random.RandomState, shape: tuple[int, ...], classes: int, ignore: int | None) -> np.ndarray:
    lab = rs.randint(0, classes, size=shape).astype(np.float32)
    if ignore is not None:
        lab[rs.rand(*shape) < 0.3] = ignore
    return lab


@SETTINGS
@given(st.sampled_from([None, "FULL", "VALID", "BATCH_SIZE", "NONE"]), st.sampled_from([None, 1, 255]),
       st.sampled_from([((4, 5), (4,)), ((2, 3, 4, 2), (2, 1, 4, 2)), ((2, 3, 4, 2), (2, 4, 2))]),
       st.booleans(), st.booleans())
def test_softmax_with_loss(norm: str | None, ignore: int | None, shapes: Any, two_tops: bool,
                           via_nhwc: bool) -> None:
    rs = np.random.RandomState(0)
    (xs, ls) = shapes
    x = (rs.randn(*xs) * 3).astype(np.float32)
    lp: dict[str, Any] = {}
    if norm:
        lp["normalization"] = norm
    if ignore is not None:
        lp["ignore_label"] = ignore
    top = ["loss", "prob"] if two_tops else ["loss"]
    check_layer({"type": "SoftmaxWithLoss", "top": top, "loss_param": lp}, [xs, ls], via_nhwc=via_nhwc,
                inputs=[x, _labels(rs, ls, xs[1], ignore)])


def test_softmax_with_loss_deprecated_normalize_and_clamp() -> None:
    x = np.array([[0.0, 200.0], [200.0, 0.0]], np.float32)  # p(label) underflows: log clamps at FLT_MIN
    lab = np.array([0.0, 0.0], np.float32)
    out = check_layer({"type": "SoftmaxWithLoss", "loss_param": {"normalize": False}}, [(2, 2), (2,)],
                      inputs=[x, lab])
    assert np.isclose(float(out["L"]), -np.log(np.finfo(np.float32).tiny) / 2, rtol=1e-5)


@SETTINGS
@given(st.integers(1, 4), st.sampled_from([None, 0, 2]), st.booleans(), st.booleans())
def test_accuracy(top_k: int, ignore: int | None, per_class: bool, spatial: bool) -> None:
    rs = np.random.RandomState(top_k)
    xs, ls = ((3, 5, 2, 3), (3, 2, 3)) if spatial else ((12, 5), (12,))
    x = rs.randint(0, 3, size=xs).astype(np.float32)  # many ties: they count against you
    p: dict[str, Any] = {"top_k": top_k}
    if ignore is not None:
        p["ignore_label"] = ignore
    top = ["acc", "per_class"] if per_class else ["acc"]
    check_layer({"type": "Accuracy", "top": top, "accuracy_param": p}, [xs, ls],
                inputs=[x, _labels(rs, ls, 5, ignore)])


def test_accuracy_ties_count_against() -> None:
    x = np.array([[1.0, 1.0, 0.0]], np.float32)
    out = check_layer({"type": "Accuracy"}, [(1, 3), (1,)], inputs=[x, np.array([0.0], np.float32)])
    assert float(out["L"]) == 0.0


@pytest.mark.parametrize("shapes", [[(3, 4), (3, 4)], [(2, 3, 2, 2), (2, 12)]])
@pytest.mark.parametrize("via_nhwc", [False, True])
def test_euclidean_loss(shapes: list[tuple[int, ...]], via_nhwc: bool) -> None:
    check_layer({"type": "EuclideanLoss"}, shapes, via_nhwc=via_nhwc)


# --- joins, splits and reshapes -----------------------------------------------------------------------

@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1])
@pytest.mark.parametrize("via_nhwc", [False, True])
def test_concat(axis: int, via_nhwc: bool) -> None:
    a = [2, 3, 4, 5]
    b = list(a)
    b[axis] += 2
    check_layer({"type": "Concat", "concat_param": {"axis": axis}}, [tuple(a), tuple(b), tuple(a)],
                via_nhwc=via_nhwc)


def test_concat_mixed_layouts_and_concat_dim() -> None:
    layer = {"type": "Concat", "concat_param": {"concat_dim": 1}}
    check_layer(layer, [(2, 3, 4, 5), (2, 1, 4, 5)], via_nhwc=False)
    model, spec = compile_layer({"type": "Concat"}, [(2, 3), (2, 4)])
    assert model.apply(model.init(0), {"b0": np.ones((2, 3)), "b1": np.ones((2, 4))})["L"].shape == (2, 7)


@pytest.mark.parametrize("param", [{}, {"coeff": [0.5, -2.0, 3.0]}, {"operation": "PROD"},
                                   {"operation": "MAX"}])
@pytest.mark.parametrize("via_nhwc", [False, True])
def test_eltwise(param: dict[str, Any], via_nhwc: bool) -> None:
    check_layer({"type": "Eltwise", "eltwise_param": param}, [(2, 3, 4, 5)] * 3, via_nhwc=via_nhwc)


@pytest.mark.parametrize("param", [{}, {"axis": 2}, {"axis": 0, "end_axis": 1}, {"axis": 1, "end_axis": 2}])
@pytest.mark.parametrize("via_nhwc", [False, True])
def test_flatten(param: dict[str, Any], via_nhwc: bool) -> None:
    check_layer({"type": "Flatten", "flatten_param": param}, [(2, 3, 4, 5)], via_nhwc=via_nhwc)


@pytest.mark.parametrize("param", [{"shape": {"dim": [0, -1]}}, {"shape": {"dim": [2, 5, 4, 3]}},
                                   {"shape": {"dim": [-1, 2]}, "axis": 1, "num_axes": 1},
                                   {"shape": {"dim": [1]}, "axis": -1, "num_axes": 0}])
@pytest.mark.parametrize("via_nhwc", [False, True])
def test_reshape(param: dict[str, Any], via_nhwc: bool) -> None:
    check_layer({"type": "Reshape", "reshape_param": param}, [(2, 6, 5, 2)], via_nhwc=via_nhwc)


@pytest.mark.parametrize("via_nhwc", [False, True])
def test_split(via_nhwc: bool) -> None:
    check_layer({"type": "Split", "top": ["s0", "s1", "s2"]}, [(2, 3, 4, 5)], via_nhwc=via_nhwc)


@pytest.mark.parametrize("param,ntops", [({}, 3), ({"axis": 2, "slice_point": [1, 3]}, 3),
                                         ({"axis": -1, "slice_point": [2]}, 2), ({"slice_dim": 0}, 2),
                                         ({"axis": 3}, 5)])
@pytest.mark.parametrize("via_nhwc", [False, True])
def test_slice(param: dict[str, Any], ntops: int, via_nhwc: bool) -> None:
    check_layer({"type": "Slice", "top": [f"t{i}" for i in range(ntops)], "slice_param": param}, [(2, 6, 4, 10)],
                via_nhwc=via_nhwc)


def test_integer_labels_survive_slices() -> None:
    model, _ = compile_layer({"type": "Slice", "top": ["a", "b"], "slice_param": {"axis": 0}}, [(4,)],
                             dtype="bfloat16")
    out = model.apply(model.init(0), np.array([1001, 1003, 7, 9], np.int32))
    np.testing.assert_array_equal(np.asarray(out["a"]), [1001, 1003])
