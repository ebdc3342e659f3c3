"""Caffe's fillers: distributions, fans from the Caffe layout, sparsity, bilinear values, layer defaults."""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np
import pytest
import yaml

import netspec
from netspec.layers.common import FillerParameter
from netspec.lowering.fillers import bilinear_kernel, fans, fill
from netspec.spec import load_spec

KEY = jax.random.PRNGKey(0)


def _fill(shape: tuple[int, ...], **kw: Any) -> np.ndarray:
    return np.asarray(fill(FillerParameter(**kw), KEY, shape), np.float64)


def test_fans_follow_caffe_layout() -> None:
    assert fans((20, 3, 5, 5)) == (75, 500)      # conv (O, I, kh, kw)
    assert fans((500, 800)) == (800, 500)        # InnerProduct (N, K)
    assert fans((16, 4, 3, 3)) == (36, 144)      # deconv (C_in, C_out, k, k): "fan_in" is the output side
    assert fans((7,)) == (1, 7)  # count / shape[0]; fan_out = count for 1-D blobs
    assert fans((8, 2, 3, 3, 3)) == (54, 216)    # 3-D conv (O, I/g, kd, kh, kw): the same rule in any rank
    assert fans((8, 4, 5)) == (20, 40)           # 1-D conv (O, I, k)


def test_constant_uniform_gaussian() -> None:
    assert np.all(_fill((3, 4), type="constant", value=2.5) == 2.5)
    u = _fill((200, 100), type="uniform", min=-2.0, max=3.0)
    assert u.min() >= -2 and u.max() <= 3 and abs(u.mean() - 0.5) < 0.05
    g = _fill((200, 100), type="gaussian", mean=1.0, std=0.5)
    assert abs(g.mean() - 1.0) < 0.02 and abs(g.std() - 0.5) < 0.02


def test_sparse_gaussian_keeps_sparse_over_num_outputs() -> None:
    g = _fill((50, 400), type="gaussian", std=1.0, sparse=10)
    assert abs((g != 0).mean() - 10 / 50) < 0.01


@pytest.mark.parametrize("norm", ["FAN_IN", "FAN_OUT", "AVERAGE"])
@pytest.mark.parametrize("shape", [(64, 32, 3, 3), (300, 200), (32, 16, 3, 3, 3)])
def test_xavier_and_msra_scale(norm: str, shape: tuple[int, ...]) -> None:
    fi, fo = fans(shape)
    n = {"FAN_IN": fi, "FAN_OUT": fo, "AVERAGE": (fi + fo) / 2}[norm]
    x = _fill(shape, type="xavier", variance_norm=norm)
    a = math.sqrt(3 / n)
    assert np.abs(x).max() <= a and np.abs(x).max() > 0.99 * a
    assert abs(x.var() * n - 1) < 0.05
    m = _fill(shape, type="msra", variance_norm=norm)
    assert abs(m.std() / math.sqrt(2 / n) - 1) < 0.03
    assert np.abs(m).max() > 3 * math.sqrt(2 / n)  # a plain normal, not truncated at 2σ


def test_positive_unitball() -> None:
    w = _fill((6, 3, 2, 2), type="positive_unitball")
    assert (w >= 0).all()
    np.testing.assert_allclose(w.reshape(6, -1).sum(axis=1), 1.0, rtol=1e-6)


def test_bilinear_kernel_values() -> None:
    t = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(bilinear_kernel(4), np.outer(t, t))
    # K = 5: f = 3, c = 4/6
    t5 = 1 - np.abs(np.arange(5) / 3 - 4 / 6)
    np.testing.assert_allclose(bilinear_kernel(5), np.outer(t5, t5), rtol=1e-6)
    w = _fill((3, 2, 4, 4), type="bilinear")
    assert all(np.allclose(w[i, j], np.outer(t, t)) for i in range(3) for j in range(2))
    with pytest.raises(ValueError):
        _fill((3, 2, 4, 3), type="bilinear")


def _model(layers: list[dict[str, Any]], shape: tuple[int, ...] = (2, 4, 6, 6)) -> netspec.lowering.Model:
    spec = {"name": "f", "layer": [{"name": "data", "type": "Input", "top": "data",
                                    "input_param": {"shape": {"dim": list(shape)}}}] + layers}
    return netspec.compile(load_spec("<f>.yaml", yaml.safe_dump(spec)))


def test_layer_defaults_and_reproducibility() -> None:
    layers = [
        {"name": "conv", "type": "Convolution", "convolution_param": {"num_output": 3, "kernel_size": 3}},
        {"name": "prelu", "type": "PReLU"},
        {"name": "bn", "type": "BatchNorm"},
        {"name": "scale", "type": "Scale", "scale_param": {"bias_term": True}},
        {"name": "bias", "type": "Bias"},
        {"name": "ip", "type": "InnerProduct", "inner_product_param": {"num_output": 5}},
    ]
    m = _model(layers)
    blobs = netspec.caffe_blobs(m, m.init(0))
    assert not blobs["conv"][0].any() and not blobs["conv"][1].any()  # Caffe: no filler = constant 0
    assert np.all(blobs["prelu"][0] == 0.25)
    assert [b.tolist() for b in blobs["bn"]] == [[0, 0, 0], [0, 0, 0], [0]]
    assert np.all(blobs["scale"][0] == 1) and not blobs["scale"][1].any()
    assert not blobs["bias"][0].any() and not blobs["ip"][0].any()


def test_init_is_seeded_per_layer_name() -> None:
    conv = {"name": "conv", "type": "Convolution",
            "convolution_param": {"num_output": 3, "kernel_size": 3, "weight_filler": {"type": "msra"}}}
    extra = {"name": "first", "type": "Convolution", "bottom": "data", "top": "other",
             "convolution_param": {"num_output": 2, "kernel_size": 1, "weight_filler": {"type": "gaussian"}}}
    a = netspec.caffe_blobs(_model([conv]), _model([conv]).init(5))["conv"][0]
    b = netspec.caffe_blobs(_model([conv]), _model([conv]).init(5))["conv"][0]
    m2 = _model([extra, {**conv, "bottom": "data"}])
    c = netspec.caffe_blobs(m2, m2.init(5))["conv"][0]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)  # adding another layer does not change this one
    assert not np.array_equal(a, netspec.caffe_blobs(_model([conv]), _model([conv]).init(6))["conv"][0])


def test_deconv_fans_use_caffe_layout() -> None:
    deconv = {"name": "up", "type": "Deconvolution",
              "convolution_param": {"num_output": 64, "kernel_size": 4, "stride": 2,
                                    "weight_filler": {"type": "xavier"}}}
    m = _model([deconv], shape=(1, 8, 5, 5))
    w = netspec.caffe_blobs(m, m.init(0))["up"][0]
    assert w.shape == (8, 64, 4, 4)
    a = math.sqrt(3 / (64 * 16))  # fan_in = count / shape[0] = 64·4·4 on Caffe's (C_in, C_out, k, k)
    assert np.abs(w).max() <= a and np.abs(w).max() > 0.98 * a


# --- DummyData: Caffe refills a random top on every forward ------------------------------------------

DUMMY = """
name: dummy
layer:
  - {name: dd, type: DummyData, top: [g, u, x, c],
     dummy_data_param: {shape: [{dim: [40, 6, 5, 5]}, {dim: [3000]}, {dim: [50, 8, 3, 3]}, {dim: [2, 3]}],
       data_filler: [{type: gaussian, mean: 2, std: 0.5}, {type: uniform, min: -1, max: 3}, {type: xavier},
                     {type: constant, value: 1.5}]}}
  - {name: sh, type: DummyData, top: [s1, s2],
     dummy_data_param: {shape: {dim: [20, 50]}, data_filler: {type: gaussian, std: 2, sparse: 5}}}
"""


def test_dummy_data_draws_its_filler_every_forward() -> None:
    """Each distinct apply signature compiles the RNG kernels anew (seconds on XLA:CPU), so this test
    keeps to three: TEST with a key, TEST without, TRAIN with a key."""
    m = netspec.compile(load_spec("<d>.yaml", DUMMY), "TEST")
    v = m.init(0)
    k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
    a = {k: np.asarray(x, np.float64) for k, x in m.apply(v, {}, False, k1).items()}
    assert {k: x.shape for k, x in a.items()} == {"g": (40, 6, 5, 5), "u": (3000,), "x": (50, 8, 3, 3),
                                                   "c": (2, 3), "s1": (20, 50), "s2": (20, 50)}
    assert abs(a["g"].mean() - 2) < 0.05 and abs(a["g"].std() - 0.5) < 0.02
    assert a["u"].min() >= -1 and a["u"].max() <= 3 and abs(a["u"].mean() - 1) < 0.1
    assert abs(a["u"].var() - 16 / 12) < 0.1
    bound = math.sqrt(3 / (8 * 3 * 3))  # xavier FAN_IN on the top's own shape: count / shape[0]
    assert np.abs(a["x"]).max() <= bound and np.abs(a["x"]).max() > 0.99 * bound
    np.testing.assert_array_equal(a["c"], np.full((2, 3), 1.5))
    # One filler for both tops (Caffe's rule): the same distribution, independent draws. Sparse gaussian
    # keeps an entry with probability sparse / shape[0] = 5 / 20.
    assert not np.array_equal(a["s1"], a["s2"])
    for s in (a["s1"], a["s2"]):
        assert abs((s != 0).mean() - 0.25) < 0.05 and abs(s[s != 0].std() - 2) < 0.3
    # A new key is a new draw (Caffe refills every forward); the same key repeats it; no key means PRNGKey(0).
    assert not np.array_equal(np.asarray(m.apply(v, {}, False, k2)["g"]), a["g"])
    np.testing.assert_array_equal(np.asarray(m.apply(v, {}, False, k1)["g"]), a["g"])
    unkeyed = np.asarray(m.apply(v, {})["u"])
    np.testing.assert_array_equal(np.asarray(m.apply(v, {})["u"]), unkeyed)
    np.testing.assert_array_equal(np.asarray(m.apply(v, {}, False, jax.random.PRNGKey(0))["u"]), unkeyed)
    # TRAIN draws the same way: the values depend on (key, layer name, top index) only.
    train = netspec.compile(load_spec("<d>.yaml", DUMMY), "TRAIN")
    np.testing.assert_array_equal(np.asarray(train.apply(v, {}, True, k1)["s2"]), a["s2"])


def test_dummy_data_filler_count_follows_caffe() -> None:
    spec = load_spec("<d>.yaml", """
name: d
layer:
  - {name: dd, type: DummyData, top: [a, b, c], dummy_data_param: {shape: {dim: [2]},
     data_filler: [{type: gaussian}, {type: uniform}]}}
""")
    with pytest.raises(netspec.NetspecError, match="2 data_filler for 3 tops"):
        netspec.compile(spec)
