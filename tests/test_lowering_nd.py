"""N-D Convolution and Deconvolution (1-D, 2-D through Caffe's `axis`, 3-D) against the float64 NumPy
reference (tests/reference.py convolution_nd / deconvolution_nd), their blobs in Caffe's layout, their
fillers, and a small 3-D net whose channels-last internals stay invisible.

Error metric as in test_lowering_layers.py: max |lowered − reference| / max(max |reference|, FLT_MIN) ≤ 1e-5.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import netspec
import reference
from netspec.spec import load_spec

SETTINGS = settings(max_examples=10, deadline=None, derandomize=True)
TOL = 1e-5


def _model(layers: list[dict[str, Any]], shape: tuple[int, ...], phase: str = "TEST") -> netspec.lowering.Model:
    spec = {"name": "nd", "layer": [{"name": "in", "type": "Input", "top": "data",
                                     "input_param": {"shape": {"dim": list(shape)}}}, *layers]}
    return netspec.compile(load_spec("<nd>.yaml", yaml.safe_dump(spec)), phase)


def _random_blobs(model: netspec.lowering.Model, rs: np.random.RandomState) -> dict[str, list[np.ndarray]]:
    return {layer: [rs.randn(*a.shape).astype(np.float32) for a in arrays]
            for layer, arrays in netspec.caffe_blobs(model, model.init(0)).items()}


def _assert_close(got: Any, ref: np.ndarray) -> None:
    got = np.asarray(got, np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    if ref.size:
        err = float(np.max(np.abs(got - ref))) / max(float(np.max(np.abs(ref))), float(np.finfo(np.float32).tiny))
        assert err <= TOL, err


@st.composite
def nd_cases(draw: st.DrawFn, transposed: bool) -> tuple[dict[str, Any], tuple[int, ...]]:
    """A conv_param and a bottom: 1 to 3 spatial axes after Caffe's channel `axis` (1, 2 or negative),
    per-axis kernel/stride/pad/dilation (pads past the kernel included), groups, bias or not."""
    n = draw(st.integers(1, 3))
    lead = draw(st.sampled_from([(2,), (2,), (1, 3)]))  # (1, 3): axis 2, the leading axes are all batch
    g = draw(st.sampled_from([1, 2]))
    cin, cout = g * draw(st.integers(1, 3)), g * draw(st.integers(1, 2))
    k = [draw(st.integers(1, 3)) for _ in range(n)]
    s = [draw(st.integers(1, 3)) for _ in range(n)]
    d = [draw(st.integers(1, 2)) for _ in range(n)]
    ext = [dd * (kk - 1) + 1 for kk, dd in zip(k, d)]
    if transposed:
        p = [draw(st.integers(0, (e - 1 + ss) // 2)) for e, ss in zip(ext, s)]
        size = [draw(st.integers(1, 4 if n == 3 else 6)) for _ in range(n)]
    else:
        p = [draw(st.integers(0, e + 1)) for e in ext]
        low = [max(1, e - 2 * pp) for e, pp in zip(ext, p)]  # the padded input must hold the dilated kernel
        size = [draw(st.integers(lo, lo + (3 if n == 3 else 6))) for lo in low]
    if transposed:  # Deconvolution's output s·(in−1) + ext − 2p must be at least 1
        size = [max(sz, -(-(2 * pp - e + 1) // ss) + 1) for sz, e, pp, ss in zip(size, ext, p, s)]
    axis = len(lead)
    param: dict[str, Any] = {"num_output": cout, "group": g, "bias_term": draw(st.booleans())}
    one = draw(st.booleans())  # the single-value form of each repeated field, when all axes agree
    for field, values, default in (("kernel_size", k, None), ("stride", s, 1), ("pad", p, 0), ("dilation", d, 1)):
        if one and len(set(values)) == 1:
            if values[0] != default:
                param[field] = values[0]
        else:
            param[field] = values
    if axis != 1 or draw(st.booleans()):
        param["axis"] = draw(st.sampled_from([axis, axis - (axis + 1 + n)]))  # canonical or negative
    return param, (*lead, cin, *size)


def _check(kind: str, param: dict[str, Any], shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    model = _model([{"name": "L", "type": kind, "bottom": "data", "top": "y", "convolution_param": param}], shape)
    rs = np.random.RandomState(seed)
    blobs = _random_blobs(model, rs)["L"]
    x = rs.randn(*shape).astype(np.float32)
    v = netspec.set_caffe_blobs(model, model.init(0), {"L": blobs})
    got = model.apply(v, x)["y"]
    p = model.graph.node("L").layer.messages["convolution_param"]
    fn = reference.convolution_nd if kind == "Convolution" else reference.deconvolution_nd
    want = fn(p, x.astype(np.float64), blobs[0].astype(np.float64),
              blobs[1].astype(np.float64) if len(blobs) > 1 else None)
    assert tuple(model.report.shapes[model.graph.node("L").tops[0]]) == want.shape  # check's shape rule agrees
    _assert_close(got, want)
    return want


@SETTINGS
@given(nd_cases(transposed=False))
def test_convolution_nd(case: tuple[dict[str, Any], tuple[int, ...]]) -> None:
    _check("Convolution", *case)


@SETTINGS
@given(nd_cases(transposed=True))
def test_deconvolution_nd(case: tuple[dict[str, Any], tuple[int, ...]]) -> None:
    _check("Deconvolution", *case)


@pytest.mark.parametrize("kind", ["Convolution", "Deconvolution"])
@pytest.mark.parametrize("param, shape", [
    ({"num_output": 4, "kernel_size": [3, 2, 3], "stride": [2, 1, 1], "pad": [1, 0, 2], "dilation": [1, 2, 1],
      "group": 2}, (2, 4, 5, 6, 5)),                                         # 3-D, every field per axis
    ({"num_output": 3, "kernel_size": 4, "stride": 3, "pad": 5}, (2, 2, 7)),  # 1-D, pad past the kernel
    ({"num_output": 3, "kernel_size": 3, "axis": 2, "pad": 1}, (2, 3, 4, 5, 3)),  # 2-D over (N·3) images
    ({"num_output": 2, "kernel_size": 2, "axis": -2, "stride": 2}, (2, 3, 2, 5)),  # 1-D over (N·3) rows
])
def test_named_nd_cases(kind: str, param: dict[str, Any], shape: tuple[int, ...]) -> None:
    _check(kind, param, shape, seed=1)


def test_reference_nd_agrees_with_the_2d_reference() -> None:
    """The N-D reference is a second transcription; on 4-D blobs it must equal the 2-D one."""
    model = _model([{"name": "L", "type": "Convolution", "bottom": "data", "convolution_param": {
        "num_output": 4, "kernel_h": 3, "kernel_w": 2, "stride": [2, 1], "pad": [1, 2], "dilation": [1, 2],
        "group": 2}}], (2, 4, 7, 6))
    p = model.graph.node("L").layer.messages["convolution_param"]
    rs = np.random.RandomState(0)
    x, w, b = rs.randn(2, 4, 7, 6), rs.randn(4, 2, 3, 2), rs.randn(4)
    np.testing.assert_allclose(reference.convolution_nd(p, x, w, b), reference.convolution(p, x, w, b), atol=1e-12)
    wd = rs.randn(4, 2, 3, 2)
    np.testing.assert_allclose(reference.deconvolution_nd(p, x, wd, b), reference.deconvolution(p, x, wd, b),
                               atol=1e-12)


# --- blobs: counts, Caffe layout, round trip, fillers ---------------------------------------------------

ND_LAYERS = [
    {"name": "c3", "type": "Convolution", "bottom": "data", "top": "c3",
     "convolution_param": {"num_output": 6, "kernel_size": [3, 2, 1], "group": 2, "pad": 1,
                           "weight_filler": {"type": "xavier"}, "bias_filler": {"type": "constant", "value": 0.5}}},
    {"name": "up", "type": "Deconvolution", "bottom": "c3", "top": "up",
     "convolution_param": {"num_output": 4, "kernel_size": 2, "stride": 2, "group": 2,
                           "weight_filler": {"type": "msra", "variance_norm": "FAN_OUT"}}},
    {"name": "c1", "type": "Convolution", "bottom": "up", "top": "c1",
     "convolution_param": {"num_output": 3, "kernel_size": 3, "axis": 3, "bias_term": False,
                           "weight_filler": {"type": "gaussian", "std": 0.1}}},
]
ND_SHAPE = (2, 4, 3, 4, 5)


@pytest.fixture(scope="module")
def nd_model() -> tuple[netspec.lowering.Model, dict[str, Any]]:
    model = _model(ND_LAYERS, ND_SHAPE)
    return model, model.init(0)


def test_nd_param_count_layout_and_round_trip(nd_model: tuple[netspec.lowering.Model, dict[str, Any]]) -> None:
    model, v = nd_model
    learnable = sum(math.prod(x.shape) for x in jax.tree.leaves(v["params"]))
    assert learnable == model.report.learnable_params == 6 * 2 * 3 * 2 * 1 + 6 + 6 * 2 * 2 * 2 * 2 + 4 + 3 * 10 * 3
    blobs = netspec.caffe_blobs(model, v)
    # Caffe's layouts: conv (O, I/g, k0, k1, ...), deconv (I, O/g, k0, k1, ...). up is (2, 4, 6, 10, 14), so
    # axis 3 makes c1 a 1-D convolution over the last axis with 10 channels and N·4·6 as its batch.
    assert [b.shape for b in blobs["c3"]] == [(6, 2, 3, 2, 1), (6,)]
    assert [b.shape for b in blobs["up"]] == [(6, 2, 2, 2, 2), (4,)]
    assert [b.shape for b in blobs["c1"]] == [(3, 10, 3)]
    assert [tuple(b.shape) for b in model.report.row("c3").blobs] == [(6, 2, 3, 2, 1), (6,)]
    assert v["params"]["c3"]["0"].shape == (3, 2, 1, 2, 6)  # stored (k0, k1, k2, I/g, O), conv2d's HWIO in 3-D
    rs = np.random.RandomState(1)
    new = {k: [rs.randn(*b.shape).astype(np.float32) for b in bs] for k, bs in blobs.items()}
    back = netspec.caffe_blobs(model, netspec.set_caffe_blobs(model, v, new))
    for k in new:
        for a, b in zip(new[k], back[k]):
            np.testing.assert_array_equal(a, b)
    # The whole chain against the reference, layer after layer, in Caffe's N,C,D,H,W order.
    x = rs.randn(*ND_SHAPE)
    out = model.apply(netspec.set_caffe_blobs(model, v, new), x.astype(np.float32), blobs=("c3", "up", "c1"))
    p = {n: model.graph.node(n).layer.messages["convolution_param"] for n in ("c3", "up", "c1")}
    c3 = reference.convolution_nd(p["c3"], x.astype(np.float32).astype(np.float64), *new["c3"])
    up = reference.deconvolution_nd(p["up"], c3, *new["up"])
    c1 = reference.convolution_nd(p["c1"], up, new["c1"][0], None)
    for name, want in (("c3", c3), ("up", up), ("c1", c1)):
        _assert_close(out[name], want)


def test_nd_fillers_use_caffe_fans(nd_model: tuple[netspec.lowering.Model, dict[str, Any]]) -> None:
    """xavier/msra on N-D weights: fan_in = count / shape[0], fan_out = count / shape[1] of the Caffe blob."""
    model, v = nd_model
    blobs = netspec.caffe_blobs(model, v)
    w = blobs["c3"][0]                      # (6, 2, 3, 2, 1): fan_in = 2·3·2·1 = 12
    a = math.sqrt(3 / 12)
    assert np.abs(w).max() <= a and np.abs(w).max() > 0.8 * a
    np.testing.assert_array_equal(blobs["c3"][1], np.full(6, 0.5, np.float32))
    w = blobs["up"][0]                      # (6, 2, 2, 2, 2) FAN_OUT: count / shape[1] = 6·8 = 48
    std = math.sqrt(2 / 48)
    assert abs(float(w.std()) - std) < 0.25 * std and abs(float(w.mean())) < 0.25 * std


# --- a small 3-D net: channels-last inside, Caffe order outside ------------------------------------------

NET_3D = [
    {"name": "c", "type": "Convolution", "bottom": "data", "top": "c",
     "convolution_param": {"num_output": 4, "kernel_size": 3, "pad": 1, "stride": [1, 2, 1]}},
    {"name": "bn", "type": "BatchNorm", "bottom": "c", "top": "c"},
    {"name": "sc", "type": "Scale", "bottom": "c", "top": "c", "scale_param": {"bias_term": True}},
    {"name": "relu", "type": "ReLU", "bottom": "c", "top": "c"},
    {"name": "slice", "type": "Slice", "bottom": "c", "top": ["s1", "s2"], "slice_param": {"axis": 1}},
    {"name": "sum", "type": "Eltwise", "bottom": ["s1", "s2"], "top": "e", "eltwise_param": {"coeff": [1, -2]}},
    {"name": "cat", "type": "Concat", "bottom": ["e", "c"], "top": "cat"},
    {"name": "sm", "type": "Softmax", "bottom": "cat", "top": "sm"},
    {"name": "ip", "type": "InnerProduct", "bottom": "sm", "top": "ip", "inner_product_param": {"num_output": 3}},
]


@pytest.mark.parametrize("phase, train", [("TEST", False), ("TRAIN", True)])
def test_3d_net_layers_see_caffe_order(phase: str, train: bool) -> None:
    model = _model(NET_3D, (2, 3, 4, 5, 3), phase)
    rs = np.random.RandomState(2)
    blobs = _random_blobs(model, rs)
    blobs["bn"] = [rs.randn(4).astype(np.float32), rs.uniform(0.5, 2, 4).astype(np.float32), np.array([2.0], np.float32)]
    v = netspec.set_caffe_blobs(model, model.init(0), blobs)
    x = rs.randn(2, 3, 4, 5, 3).astype(np.float32)
    out = model.apply(v, x, train, blobs=("c", "cat", "sm", "ip"))
    layer = {n.name: n.layer for n in model.graph.nodes}
    f64 = {k: [np.asarray(a, np.float64) for a in arrs] for k, arrs in blobs.items()}
    c = reference.convolution_nd(layer["c"].messages["convolution_param"], x.astype(np.float64), *f64["c"])
    c, _ = reference.forward_bn(layer["bn"].messages["batch_norm_param"], c, f64["bn"], batch_stats=train)
    c = np.maximum(reference.scale(layer["sc"].messages["scale_param"], c, f64["sc"][0], f64["sc"][1], False), 0)
    s1, s2 = reference.slice_(layer["slice"].messages["slice_param"], c, 2)
    cat = np.concatenate([s1 - 2 * s2, c], axis=1)
    sm = reference.softmax(1, cat)
    ip = reference.inner_product(layer["ip"].messages["inner_product_param"], sm, *f64["ip"])
    for name, want in (("c", c), ("cat", cat), ("sm", sm), ("ip", ip)):
        _assert_close(out[name], want)
