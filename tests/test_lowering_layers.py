"""Every lowered layer type against the float64 NumPy Caffe reference (tests/reference.py).

Each case compiles a small net (Input -> layer under test), loads random Caffe-layout blobs with
set_caffe_blobs and compares every top. Shapes, layer parameters and input values are all drawn by
hypothesis: values come from a `Values` draw (a RandomState seed, a magnitude spanning 10⁻² to
30, and for the layers that decide ties by rule, small integers full of exact ties). `via`
routes 4-D bottoms through an identity 1×1 MAX pool first, in a net compiled with that spatial layout
("nhwc" or "chwn"), so layers that accept any layout are also exercised on channels-last and
batch-minor blobs.

Error metric (per top): max |lowered − reference| / max(max |reference|, FLT_MIN) ≤ 1e-5 in
float32, relative to the top's largest magnitude, so tiny outputs get no absolute slack. Input
values are restricted only where Caffe's own float computation is undefined or ill-conditioned;
each restriction says why next to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import jax
import numpy as np
import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import netspec
import reference
from netspec.layers import REGISTRY
from netspec.lowering import LOWERINGS
from netspec.spec import load_spec

# JAX compiles every new shape, so each example costs a compile: few examples, small sizes.
SETTINGS = settings(max_examples=20, deadline=None, derandomize=True)
FEW = settings(max_examples=12, deadline=None, derandomize=True)
TOL = 1e-5
FLT_MIN = float(np.finfo(np.float32).tiny)
# What `via` draws: False (bottoms as fed, Caffe's order) or a spatial layout to route 4-D bottoms through.
VIA = st.sampled_from([False, "nhwc", "chwn"])


# --- drawing values -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Values:
    """How to fill inputs and blobs: a seed, a magnitude, and whether to draw tie-heavy integers."""

    seed: int
    scale: float
    ties: bool = False

    def rs(self) -> np.random.RandomState:
        return np.random.RandomState(self.seed)

    def array(self, rs: np.random.RandomState, shape: tuple[int, ...]) -> np.ndarray:
        raw = rs.randint(-3, 4, size=shape) if self.ties else rs.randn(*shape)
        return np.asarray(raw * self.scale, np.float32)


def values(ties: bool = False, lo: float = -2.0, hi: float = math.log10(30.0)) -> st.SearchStrategy[Values]:
    """Values with magnitude 10^U(lo, hi); with `ties`, half the draws are small integers."""
    return st.builds(Values, st.integers(0, 2**32 - 1), st.floats(lo, hi).map(lambda e: float(10.0 ** e)),
                     st.booleans() if ties else st.just(False))


def shapes(min_ndim: int = 1, max_ndim: int = 4, side: int = 5) -> st.SearchStrategy[tuple[int, ...]]:
    return st.lists(st.integers(1, side), min_size=min_ndim, max_size=max_ndim).map(tuple)


def rel_err(got: Any, ref: np.ndarray) -> float:
    got = np.asarray(got, np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    if ref.size == 0:
        return 0.0
    return float(np.max(np.abs(got - ref))) / max(float(np.max(np.abs(ref))), FLT_MIN)


# --- running one layer --------------------------------------------------------------------------------

def compile_layer(layer: dict[str, Any], shapes: list[tuple[int, ...]], via: Any = False,
                  phase: str = "TEST", dtype: str = "float32") -> tuple[netspec.lowering.Model, Any]:
    names = [f"b{i}" for i in range(len(shapes))]
    layers: list[dict[str, Any]] = [{"name": "in", "type": "Input", "top": names,
                                     "input_param": {"shape": [{"dim": list(s)} for s in shapes]}}]
    bottoms = list(names)
    if via:
        for i, s in enumerate(shapes):
            if len(s) == 4:
                layers.append({"name": f"id{i}", "type": "Pooling", "bottom": names[i], "top": f"n{i}",
                               "pooling_param": {"kernel_size": 1}})
                bottoms[i] = f"n{i}"
    layers.append({**layer, "name": "L", "bottom": bottoms})
    spec = load_spec("<case>.yaml", yaml.safe_dump({"name": "case", "layer": layers}))
    model = netspec.compile(spec, phase, dtype=dtype, spatial_layout=via or None)
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


def load_blobs(model: netspec.lowering.Model, blobs: dict[str, list[np.ndarray]]) -> dict[str, Any]:
    """Variables holding exactly `blobs` (every blob of L): no jitted filler init to compile."""
    return netspec.set_caffe_blobs(model, {"params": {}, "batch_stats": {}}, blobs)


def tops_of(model: netspec.lowering.Model) -> list[str]:
    return [model.graph.blob_names[t] for t in model.graph.node("L").tops]


def check_layer(layer: dict[str, Any], shapes: list[tuple[int, ...]], *, via: Any = False,
                vals: Values = Values(0, 1.0), inputs: list[np.ndarray] | None = None,
                tol: float = TOL) -> dict[str, np.ndarray]:
    """Lowered forward (TEST, train=False) vs reference.forward on every top of layer L."""
    model, spec = compile_layer(layer, shapes, via)
    rs = vals.rs()
    xs = inputs if inputs is not None else [vals.array(rs, s) for s in shapes]
    blobs = random_blobs(model, rs)
    out = model.apply(load_blobs(model, blobs), {f"b{i}": x for i, x in enumerate(xs)})
    want = reference.forward(spec, xs, blobs.get("L", []))
    tops = tops_of(model)
    assert len(tops) == len(want)
    for name, ref in zip(tops, want):
        err = rel_err(out[name], ref)
        assert err <= tol, (name, err)
    return out


def test_every_registered_type_has_a_lowering() -> None:
    assert set(REGISTRY) <= set(LOWERINGS), set(REGISTRY) - set(LOWERINGS)


# --- convolution --------------------------------------------------------------------------------------

@st.composite
def conv_cases(draw: st.DrawFn) -> tuple[dict[str, Any], tuple[int, ...]]:
    g = draw(st.sampled_from([1, 1, 2, 3]))
    cin, cout = g * draw(st.integers(1, 3)), g * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    # Caffe puts no bound on pad: pads beyond the kernel (output rows of pure bias) are legal.
    ph, pw = draw(st.integers(0, 4)), draw(st.integers(0, 4))
    lo_h, lo_w = max(1, dh * (kh - 1) + 1 - 2 * ph), max(1, dw * (kw - 1) + 1 - 2 * pw)
    h, w = draw(st.integers(lo_h, lo_h + 6)), draw(st.integers(lo_w, lo_w + 6))
    p: dict[str, Any] = {"num_output": cout, "group": g, "bias_term": draw(st.booleans()),
                         "kernel_h": kh, "kernel_w": kw, "pad_h": ph, "pad_w": pw,
                         "stride_h": draw(st.integers(1, 3)), "stride_w": draw(st.integers(1, 3)),
                         "dilation": [dh, dw]}
    return p, (draw(st.integers(1, 2)), cin, h, w)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(conv_cases(), VIA, values())
def test_convolution(case: tuple[dict[str, Any], tuple[int, ...]], via: str | bool, vals: Values) -> None:
    """In a "chwn" net the layer runs netspec.kernels.conv.conv2d_batch_minor on the blob as it is."""
    p, shape = case
    check_layer({"type": "Convolution", "convolution_param": p}, [shape], via=via, vals=vals)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(conv_cases(), values())
def test_deconvolution(case: tuple[dict[str, Any], tuple[int, ...]], vals: Values) -> None:
    p, shape = case
    n, c, h, w = shape
    ext = [p["dilation"][0] * (p["kernel_h"] - 1) + 1, p["dilation"][1] * (p["kernel_w"] - 1) + 1]
    assume(p["stride_h"] * (h - 1) + ext[0] - 2 * p["pad_h"] >= 1)
    assume(p["stride_w"] * (w - 1) + ext[1] - 2 * p["pad_w"] >= 1)
    check_layer({"type": "Deconvolution", "convolution_param": p}, [shape], vals=vals)


def test_convolution_square_fields_and_impl_xla() -> None:
    layer = {"type": "Convolution", "convolution_param": {"num_output": 4, "kernel_size": 3, "pad": 1,
                                                          "stride": 2}}
    check_layer(layer, [(2, 3, 7, 6)])


# --- pooling ------------------------------------------------------------------------------------------

@st.composite
def pool_cases(draw: st.DrawFn, pool: str, mask: bool) -> tuple[dict[str, Any], tuple[int, ...], bool]:
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    if draw(st.integers(0, 5)) == 0:
        p: dict[str, Any] = {"pool": pool, "global_pooling": True}
        return p, (n, c, draw(st.integers(1, 6)), draw(st.integers(1, 6))), False  # no mask top
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    # Caffe allows any pad below the kernel (PyTorch stops at k/2); STOCHASTIC takes no pad.
    stochastic = pool == "STOCHASTIC"
    p = {"pool": pool, "kernel_h": kh, "kernel_w": kw, "stride_h": draw(st.integers(1, 3)),
         "stride_w": draw(st.integers(1, 3)), "pad_h": 0 if stochastic else draw(st.integers(0, kh - 1)),
         "pad_w": 0 if stochastic else draw(st.integers(0, kw - 1)),
         "round_mode": draw(st.sampled_from(["CEIL", "FLOOR"]))}
    h = draw(st.integers(max(1, kh - 2 * p["pad_h"]), 9))
    w = draw(st.integers(max(1, kw - 2 * p["pad_w"]), 9))
    return p, (n, c, h, w), mask


@pytest.mark.parametrize("pool,mask", [("MAX", False), ("MAX", True), ("AVE", False), ("STOCHASTIC", False)])
@settings(max_examples=12, deadline=None, derandomize=True)
@given(st.data(), VIA, values(ties=True))
def test_pooling(pool: str, mask: bool, data: st.DataObject, via: str | bool, vals: Values) -> None:
    """Tie-heavy inputs are kept for MAX: the argmax top must pick the first maximum, as Caffe's
    strict `>` scan does. A global-pooling draw has no mask top."""
    p, shape, mask = data.draw(pool_cases(pool, mask), label="case")
    top = ["y", "mask"] if mask else ["y"]
    if p["pool"] == "AVE" and not p.get("global_pooling"):
        # A ceil window starting past an unpadded input has pool_size 0: Caffe divides 0 by 0.
        assume(all(_start_inside(shape[2 + i], p[f"kernel_{a}"], p[f"stride_{a}"], p[f"pad_{a}"],
                                 p["round_mode"] == "CEIL") for i, a in enumerate("hw")))
    try:
        compile_layer({"type": "Pooling", "top": top, "pooling_param": p}, [shape], via)
    except netspec.NetspecError:
        assume(False)  # a window that does not fit: check rejects it, as Caffe does
    x = vals.array(vals.rs(), shape)
    if p["pool"] == "STOCHASTIC":
        # Σx²/Σx is a probability-weighted mean only for x ≥ 0 (Caffe feeds it ReLU outputs); mixed
        # signs let Σx cancel to ~0, where the quotient is ill-conditioned.
        x = np.abs(x)
    check_layer({"type": "Pooling", "top": top, "pooling_param": p}, [shape], via=via, inputs=[x])


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
@given(shapes(1, 4), st.data(), st.booleans(), st.booleans(), st.integers(1, 6), VIA, values())
def test_inner_product(shape: tuple[int, ...], data: st.DataObject, transpose: bool, bias: bool, n: int,
                       via: str | bool, vals: Values) -> None:
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    check_layer({"type": "InnerProduct", "inner_product_param": {"num_output": n, "axis": axis,
                                                                 "transpose": transpose, "bias_term": bias}},
                [shape], via=via, vals=vals)


# --- element-wise -------------------------------------------------------------------------------------

def _opt(name: str, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """{} (Caffe's default) or {name: a drawn value}."""
    return st.one_of(st.just({}), strategy.map(lambda v: {name: v}))


def _merge(*parts: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(*parts).map(lambda ds: {k: v for d in ds for k, v in d.items()})


NEURON_PARAMS: dict[str, tuple[str | None, st.SearchStrategy[dict[str, Any]]]] = {
    "ReLU": ("relu_param", _opt("negative_slope", st.floats(-1, 1))),
    "PReLU": ("prelu_param", _opt("channel_shared", st.booleans())),
    "ELU": ("elu_param", _opt("alpha", st.floats(0, 3))),
    "Sigmoid": (None, st.just({})),
    "TanH": (None, st.just({})),
    "BNLL": (None, st.just({})),
    "AbsVal": (None, st.just({})),
    "Dropout": ("dropout_param", _opt("dropout_ratio", st.floats(0, 0.9))),
    "Dropout/scale_train=false": ("dropout_param", st.floats(0, 0.9).map(
        lambda r: {"dropout_ratio": r, "scale_train": False})),
}


@pytest.mark.parametrize("kind", sorted(NEURON_PARAMS))
@FEW
@given(st.data(), values(ties=True))
def test_neurons(kind: str, data: st.DataObject, vals: Values) -> None:
    """Ties (exact zeros, repeated values) are harmless here and exercise ReLU/AbsVal kinks."""
    field, params = NEURON_PARAMS[kind]
    shape = data.draw(shapes(2 if kind == "PReLU" else 1, 4), label="shape")  # PReLU needs a channel axis
    layer: dict[str, Any] = {"type": kind.split("/")[0]}
    if field is not None:
        layer[field] = data.draw(params, label=field)
    check_layer(layer, [shape], via=len(shape) == 4 and data.draw(VIA, label="via"), vals=vals)


def _vjp(model: netspec.lowering.Model, variables: dict[str, Any], xs: list[np.ndarray],
         dy: np.ndarray) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Gradients of <top of L, dy> with respect to the inputs and the parameters."""
    top = tops_of(model)[0]

    def f(inputs: list[Any], params: Any) -> Any:
        v = {**variables, "params": params}
        return model.apply(v, {f"b{i}": x for i, x in enumerate(inputs)})[top]

    _, pull = jax.vjp(f, [np.asarray(x) for x in xs], variables["params"])
    dxs, dparams = pull(np.asarray(dy, np.float32))
    return [np.asarray(d) for d in dxs], dparams


@pytest.mark.parametrize("kind", ["ReLU", "leaky ReLU", "PReLU", "Eltwise MAX"])
@FEW
@given(shapes(2, 4), st.integers(2, 3), st.integers(0, 2**32 - 1))
def test_kink_gradients_follow_caffe(kind: str, shape: tuple[int, ...], n: int, seed: int) -> None:
    """At a kink (x == 0, or tied Eltwise MAX bottoms) Caffe's backward gives the whole gradient to the
    side its forward comparison picked. Inputs are small integers, so exact zeros and ties are everywhere."""
    vals = Values(seed, 1.0, ties=True)
    rs = vals.rs()
    slope = float(rs.uniform(-1, 1))
    layer: dict[str, Any] = {
        "ReLU": {"type": "ReLU"},
        "leaky ReLU": {"type": "ReLU", "relu_param": {"negative_slope": slope}},
        "PReLU": {"type": "PReLU", "prelu_param": {"channel_shared": bool(seed % 2)}},
        "Eltwise MAX": {"type": "Eltwise", "eltwise_param": {"operation": "MAX"}},
    }[kind]
    shapes_ = [shape] * (n if kind == "Eltwise MAX" else 1)
    model, spec = compile_layer(layer, shapes_)
    xs = [vals.array(rs, s) for s in shapes_]
    xs[0].flat[0] = xs[-1].flat[0] = 0.0  # a kink in every draw: a zero, and a tie of the first and last bottoms
    blobs = random_blobs(model, rs)
    variables = load_blobs(model, blobs)
    dy = np.asarray(rs.randn(*shape), np.float32)
    dxs, dparams = _vjp(model, variables, xs, dy)
    x64, dy64 = [np.asarray(x, np.float64) for x in xs], np.asarray(dy, np.float64)
    if kind == "Eltwise MAX":
        want = reference.eltwise_max_backward(x64, dy64)
    elif kind == "PReLU":
        (slope_blob,) = blobs["L"]
        dx, dslope = reference.prelu_backward(spec.messages["prelu_param"], x64[0],
                                              np.asarray(slope_blob, np.float64), dy64)
        want = [dx]
        got_slope = np.asarray(jax.tree_util.tree_leaves(dparams)[0]).reshape(-1)
        assert rel_err(got_slope, dslope) <= TOL
    else:
        want = [reference.relu_backward(spec.messages["relu_param"], x64[0], dy64)]
    for got, ref in zip(dxs, want):
        assert rel_err(got, ref) <= TOL, kind


@SETTINGS
@given(shapes(1, 4), st.sampled_from([0.0, 1.0, 2.0, 3.0, -1.0, 0.5, 1.5, -0.5, 2.5]),
       st.floats(0.1, 3) | st.just(1.0), st.sampled_from([-1.0, 1.0]), st.floats(-3, 3) | st.just(0.0),
       VIA, values())
def test_power(shape: tuple[int, ...], pw: float, scale_abs: float, sign: float, shift: float,
               via: str | bool, vals: Values) -> None:
    scale = sign * scale_abs
    x = vals.array(vals.rs(), shape)
    if pw != int(pw) or pw < 0:
        # A fractional power of a negative base is NaN and a negative power of ~0 is unbounded, in
        # Caffe as anywhere: draw the base shift + scale·x in [0.5, 3.5) instead.
        base = 0.5 + 3 * np.random.RandomState(vals.seed).rand(*shape)
        x = ((base - shift) / scale).astype(np.float32)
    layer = {"type": "Power", "power_param": {"power": pw, "scale": scale, "shift": shift}}
    check_layer(layer, [shape], via=via if len(shape) == 4 else False, inputs=[x])


def test_bnll_large_inputs_are_finite() -> None:
    x = np.array([[-200.0, -30.0, 0.0, 30.0, 200.0]], np.float32)
    out = check_layer({"type": "BNLL"}, [(1, 5)], inputs=[x])
    assert np.isfinite(np.asarray(out["L"])).all()


# Few examples: each one compiles the random-bit generator for its shape (seconds on XLA:CPU).
@settings(max_examples=6, deadline=None, derandomize=True)
@given(shapes(1, 3, side=6), st.floats(0, 0.9), st.booleans(), st.integers(0, 2**31 - 1), values())
def test_dropout_train_keeps_or_zeroes_each_element(shape: tuple[int, ...], ratio: float, scale_train: bool,
                                                    key: int, vals: Values) -> None:
    """TRAIN: every output is 0 or x·1/(1−p) (x with scale_train false), dropped at rate ≈ p."""
    model, _ = compile_layer({"type": "Dropout", "dropout_param": {"dropout_ratio": ratio,
                                                                   "scale_train": scale_train}},
                             [shape], phase="TRAIN")
    x = vals.array(vals.rs(), shape)
    x[x == 0] = vals.scale  # randn draws no exact zero; keep "kept" and "dropped" distinguishable
    out = np.asarray(model.apply(load_blobs(model, {}), x, train=True, rng=jax.random.PRNGKey(key))["L"], np.float64)
    kept = out != 0
    s = 1 / (1 - ratio) if scale_train else 1.0
    want = x.astype(np.float64) * s
    assert rel_err(np.where(kept, out, 0), np.where(kept, want, 0)) <= TOL
    n, dropped = x.size, int((~kept).sum())
    # Binomial(n, p): 6 standard deviations (plus one for rounding) is a bound no seed should break.
    assert abs(dropped - n * ratio) <= 6 * math.sqrt(n * ratio * (1 - ratio)) + 1, (dropped, n, ratio)


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
@FEW
@given(st.sampled_from([1, 3, 5, 7]),
       st.floats(1e-4, 2), st.floats(0.1, 1.5), st.floats(0.5, 3),
       st.tuples(st.integers(1, 2), st.integers(1, 8), st.integers(1, 5), st.integers(1, 5)),
       VIA, values())
def test_lrn(region: str, size: int, alpha: float, beta: float, k: float, shape: tuple[int, ...],
             via: str | bool, vals: Values) -> None:
    """local_size is odd (Caffe CHECKs it) and may exceed C or H, W (the window then spans padding)."""
    check_layer({"type": "LRN", "lrn_param": {"local_size": size, "alpha": alpha, "beta": beta, "k": k,
                                              "norm_region": region}}, [shape], via=via, vals=vals)


@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
@pytest.mark.parametrize("use_global", [None, True, False])
@settings(max_examples=8, deadline=None, derandomize=True)
@given(shapes(2, 4), st.floats(0, 1), st.sampled_from([1e-5, 1e-3, 0.1]), st.booleans(), st.floats(-3, 3), VIA,
       values(lo=-1.0))
def test_batch_norm(use_global: bool | None, phase: str, shape: tuple[int, ...], maf: float, eps: float,
                    zero_factor: bool, offset: float, via: str | bool, vals: Values) -> None:
    """Both use_global_stats values (and unset) in both phases: TRAIN runs apply_train, TEST apply.

    Input x = scale·(randn + offset) with |offset| ≤ 3 and scale ≥ 0.1: a channel whose mean is
    many standard deviations from 0, or whose spread is far below √eps, makes x − μ a float32
    cancellation (error ≈ ε·|μ|/σ relative to the output), which no float32 BatchNorm avoids."""
    p: dict[str, Any] = {"moving_average_fraction": maf, "eps": eps}
    if use_global is not None:
        p["use_global_stats"] = use_global
    model, spec = compile_layer({"type": "BatchNorm", "batch_norm_param": p}, [shape], via, phase)
    rs = vals.rs()
    x = ((rs.randn(*shape) + offset) * vals.scale).astype(np.float32)
    blobs = random_blobs(model, rs)
    if zero_factor:
        blobs["L"][2][:] = 0  # a fresh blob: Caffe's μ = σ² = 0
    v = load_blobs(model, blobs)
    batch = use_global is False or (use_global is None and phase == "TRAIN")
    want, new = reference.forward_bn(spec.messages["batch_norm_param"], x.astype(np.float64),
                                     [b.astype(np.float64) for b in blobs["L"]], batch_stats=batch)
    if phase == "TEST":
        assert rel_err(model.apply(v, x)["L"], want) <= TOL
        return
    out, stats = model.apply_train(v, x)
    assert rel_err(out["L"], want) <= TOL
    for i, w in enumerate(new):
        assert rel_err(stats["L"][str(i)], w) <= TOL, i
    # apply(train=True) normalises the same way but leaves the statistics alone.
    assert rel_err(model.apply(v, x, train=True)["L"], np.asarray(out["L"], np.float64)) <= 1e-6
    # Afterwards, global statistics are the updated sums.
    test = model.apply({**v, "batch_stats": stats}, x)["L"]
    ref_test = reference.forward_bn(spec.messages["batch_norm_param"], x.astype(np.float64),
                                    [np.asarray(s, np.float64) for s in new], use_global is False)[0]
    # The updated statistics can leave x − μ a cancellation: one value per channel (σ² = 0) divides
    # float32 rounding of x and μ by √eps. Allow that rounding, amplified, and no more.
    factor = float(new[2][0])
    mu, var = (new[0] / factor, new[1] / factor) if factor else (0 * new[0], 0 * new[1])
    amp = (np.max(np.abs(x)) + np.max(np.abs(mu))) / np.sqrt(np.min(var) + eps)
    rounding = 4 * np.finfo(np.float32).eps * amp / max(float(np.max(np.abs(ref_test))), FLT_MIN)
    assert rel_err(test, ref_test) <= max(TOL, rounding)


def test_batch_norm_zero_factor_means_zero_stats() -> None:
    model, _ = compile_layer({"type": "BatchNorm"}, [(2, 3)])
    x = np.random.RandomState(0).randn(2, 3).astype(np.float32)
    out = model.apply(model.init(0), x)["L"]  # fresh blobs are all 0: μ = 0, σ² = 0
    np.testing.assert_allclose(np.asarray(out), x / np.sqrt(1e-5), rtol=1e-5)


@st.composite
def scale_cases(draw: st.DrawFn, bias_term: bool, two: bool) -> tuple[dict[str, Any], list[tuple[int, ...]], bool]:
    """Scale/Bias by a learned blob (num_axes −1, 0, or a count) or by a second bottom (shape
    x[axis:axis+k], or 0-d), from a positive or negative axis."""
    shape = draw(shapes(1, 4))
    nd = len(shape)
    axis = draw(st.integers(-nd, nd - 1))
    a = axis % nd
    p: dict[str, Any] = {"axis": axis}
    if two:
        k = draw(st.integers(0, nd - a))
        bottoms = [shape, shape[a:a + k]]
    else:
        p["num_axes"] = draw(st.integers(-1, nd - a))
        bottoms = [shape]
    if bias_term and draw(st.booleans()):
        p["bias_term"] = True
    return p, bottoms, draw(VIA) if nd == 4 else False


@pytest.mark.parametrize("two", [False, True], ids=["blob", "bottom"])
@pytest.mark.parametrize("kind", ["Scale", "Bias"])
@FEW
@given(st.data(), values())
def test_scale_and_bias(kind: str, two: bool, data: st.DataObject, vals: Values) -> None:
    p, bottoms, via = data.draw(scale_cases(kind == "Scale", two), label="case")
    check_layer({"type": kind, f"{kind.lower()}_param": p}, bottoms, via=via, vals=vals)


# --- softmax, losses, accuracy ------------------------------------------------------------------------

@SETTINGS
@given(shapes(1, 4), st.data(), values())
def test_softmax(shape: tuple[int, ...], data: st.DataObject, vals: Values) -> None:
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    via = len(shape) == 4 and data.draw(VIA, label="via")
    check_layer({"type": "Softmax", "softmax_param": {"axis": axis}}, [shape], via=via, vals=vals)


@st.composite
def label_cases(draw: st.DrawFn, max_classes: int = 5) -> tuple[tuple[int, ...], int, tuple[int, ...]]:
    """(scores shape, axis, label shape): labels hold outer×inner values, shaped as Caffe nets
    shape them (the class axis removed, kept as 1, or flattened)."""
    shape = list(draw(shapes(1, 4, side=3)))
    nd = len(shape)
    axis = draw(st.integers(-nd, nd - 1))
    a = axis % nd
    shape[a] = draw(st.integers(1, max_classes))
    outer, inner = tuple(shape[:a]), tuple(shape[a + 1:])
    label = draw(st.sampled_from([outer + inner, outer + (1,) + inner, (math.prod(outer + inner),)]))
    return tuple(shape), axis, label


def _labels(rs: np.random.RandomState, shape: tuple[int, ...], classes: int, ignore: int | None) -> np.ndarray:
    lab = rs.randint(0, classes, size=shape).astype(np.float32)
    if ignore is not None:
        lab[rs.rand(*shape) < 0.3] = ignore
    return lab


def _compiles(layer: dict[str, Any], bottoms: list[tuple[int, ...]]) -> bool:
    try:
        compile_layer(layer, bottoms)
    except netspec.NetspecError:
        return False
    return True


@pytest.mark.parametrize("norm", [None, "FULL", "VALID", "BATCH_SIZE", "NONE"])
@settings(max_examples=6, deadline=None, derandomize=True)
@given(label_cases(), st.sampled_from([None, True, False]), st.sampled_from([None, 0, 1, 255]), st.booleans(),
       VIA, values())
def test_softmax_with_loss(norm: str | None, case: tuple[tuple[int, ...], int, tuple[int, ...]],
                           normalize: bool | None, ignore: int | None, two_tops: bool, via: str | bool,
                           vals: Values) -> None:
    """Draws whose loss is ill-conditioned in float32 (see _loss_condition) are skipped. The FLT_MIN
    clamp has its own test below."""
    xs, axis, ls = case
    lp: dict[str, Any] = {}
    if norm:
        lp["normalization"] = norm
    if normalize is not None:
        lp["normalize"] = normalize
    if ignore is not None:
        lp["ignore_label"] = ignore
    top = ["loss", "prob"] if two_tops else ["loss"]
    layer = {"type": "SoftmaxWithLoss", "top": top, "loss_param": lp, "softmax_param": {"axis": axis}}
    rs = vals.rs()
    x = vals.array(rs, xs)
    labels = _labels(rs, ls, xs[axis], ignore)
    assume(_loss_condition(x, axis, labels, ignore) <= 50)
    check_layer(layer, [xs, ls], via=via, inputs=[x, labels])


def _loss_condition(x: np.ndarray, axis: int, labels: np.ndarray, ignore: int | None) -> float:
    """Σ (1 + |x_label| + max|x|) / Σ −log p_label over the counted positions.

    float32 rounds each position's log-softmax by about ε·(1 + |x_label| + max|x|) (the subtraction
    and the log of a sum near 1), so ε times this ratio is the loss's inherent relative error. When
    every counted label is predicted with p ≈ 1 the loss is tiny and the ratio explodes: Caffe's
    float32 loss is then as inexact as ours. Ratio ≤ 50 keeps that error below 1e-5/3."""
    a = axis % x.ndim
    scores = np.moveaxis(x.astype(np.float64), a, -1).reshape(-1, x.shape[a])
    lab = labels.reshape(-1).astype(int)
    keep = lab != ignore if ignore is not None else np.ones(lab.shape, bool)
    if not keep.any():
        return 0.0
    scores, lab = scores[keep], lab[keep]
    top = scores.max(axis=1)
    picked = scores[np.arange(len(lab)), lab]
    loss = np.sum(top + np.log(np.exp(scores - top[:, None]).sum(axis=1)) - picked)
    size = np.sum(1 + np.abs(picked) + np.abs(scores).max(axis=1))
    return 0.0 if loss == 0 else float(size / loss)


def test_softmax_with_loss_deprecated_normalize_and_clamp() -> None:
    x = np.array([[0.0, 200.0], [200.0, 0.0]], np.float32)  # p(label) underflows: log clamps at FLT_MIN
    lab = np.array([0.0, 0.0], np.float32)
    out = check_layer({"type": "SoftmaxWithLoss", "loss_param": {"normalize": False}}, [(2, 2), (2,)],
                      inputs=[x, lab])
    assert np.isclose(float(out["L"]), -np.log(np.finfo(np.float32).tiny) / 2, rtol=1e-5)


@SETTINGS
@given(label_cases(), st.data(), st.sampled_from([None, 0, 2, 255]), st.booleans(), values(ties=True))
def test_accuracy(case: tuple[tuple[int, ...], int, tuple[int, ...]], data: st.DataObject, ignore: int | None,
                  per_class: bool, vals: Values) -> None:
    """Tie-heavy scores included on purpose: ties count against the true class, on both sides."""
    xs, axis, ls = case
    classes = xs[axis]
    top_k = data.draw(st.integers(1, classes), label="top_k")
    p: dict[str, Any] = {"top_k": top_k, "axis": axis}
    if ignore is not None:
        p["ignore_label"] = ignore
    top = ["acc", "per_class"] if per_class else ["acc"]
    rs = vals.rs()
    x = vals.array(rs, xs)
    check_layer({"type": "Accuracy", "top": top, "accuracy_param": p}, [xs, ls],
                inputs=[x, _labels(rs, ls, classes, ignore)])


def test_accuracy_ties_count_against() -> None:
    x = np.array([[1.0, 1.0, 0.0]], np.float32)
    out = check_layer({"type": "Accuracy"}, [(1, 3), (1,)], inputs=[x, np.array([0.0], np.float32)])
    assert float(out["L"]) == 0.0


@SETTINGS
@given(shapes(1, 4), st.booleans(), VIA, values())
def test_euclidean_loss(shape: tuple[int, ...], flat_second: bool, via: str | bool, vals: Values) -> None:
    """The second bottom may have another shape with the same count (Caffe compares counts)."""
    other = (shape[0], math.prod(shape[1:])) if flat_second else shape
    check_layer({"type": "EuclideanLoss"}, [shape, other], via=via, vals=vals)


# --- joins, splits and reshapes -----------------------------------------------------------------------

@SETTINGS
@given(shapes(1, 4), st.data(), st.booleans(), values())
def test_concat(shape: tuple[int, ...], data: st.DataObject, legacy: bool, vals: Values) -> None:
    nd = len(shape)
    axis = data.draw(st.integers(-nd, nd - 1), label="axis")
    sizes = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=3), label="sizes")
    bottoms = [tuple(n if i == axis % nd else d for i, d in enumerate(shape)) for n in sizes]
    p = {"concat_dim": axis % nd} if legacy else {"axis": axis}
    via = nd == 4 and data.draw(VIA, label="via")
    check_layer({"type": "Concat", "concat_param": p}, bottoms, via=via, vals=vals, tol=0.0)


def test_concat_mixed_layouts_and_concat_dim() -> None:
    layer = {"type": "Concat", "concat_param": {"concat_dim": 1}}
    check_layer(layer, [(2, 3, 4, 5), (2, 1, 4, 5)], via=False)
    model, spec = compile_layer({"type": "Concat"}, [(2, 3), (2, 4)])
    assert model.apply(model.init(0), {"b0": np.ones((2, 3)), "b1": np.ones((2, 4))})["L"].shape == (2, 7)


@pytest.mark.parametrize("op", ["SUM", "PROD", "MAX"])
@settings(max_examples=8, deadline=None, derandomize=True)
@given(shapes(1, 4), st.integers(2, 3), st.data(), values(ties=True))
def test_eltwise(op: str, shape: tuple[int, ...], n: int, data: st.DataObject, vals: Values) -> None:
    """Ties are harmless for MAX's value; SUM with coefficients may cancel to ~0 at some elements,
    which the per-top relative metric tolerates as Caffe's float32 sum would."""
    p: dict[str, Any] = {} if op == "SUM" and data.draw(st.booleans(), label="default") else {"operation": op}
    if op == "SUM" and data.draw(st.booleans(), label="has_coeff"):
        p["coeff"] = data.draw(st.lists(st.floats(-3, 3), min_size=n, max_size=n), label="coeff")
    via = len(shape) == 4 and data.draw(VIA, label="via")
    check_layer({"type": "Eltwise", "eltwise_param": p}, [shape] * n, via=via, vals=vals)


@SETTINGS
@given(shapes(1, 4), st.data(), values())
def test_flatten(shape: tuple[int, ...], data: st.DataObject, vals: Values) -> None:
    nd = len(shape)
    axis = data.draw(st.integers(-nd, nd - 1), label="axis")
    end = data.draw(st.integers(axis % nd, nd - 1), label="end")
    end_axis = end - nd if data.draw(st.booleans(), label="negative_end") else end
    via = nd == 4 and data.draw(VIA, label="via")
    check_layer({"type": "Flatten", "flatten_param": {"axis": axis, "end_axis": end_axis}}, [shape],
                via=via, vals=vals, tol=0.0)


def _factorise(n: int) -> list[int]:
    out, f = [], 2
    while n > 1:
        while n % f == 0:
            out.append(f)
            n //= f
        f += 1
    return out


@st.composite
def reshape_cases(draw: st.DrawFn) -> tuple[dict[str, Any], tuple[int, ...]]:
    """Keep a prefix of x[start:end] (as 0, "copy", or as itself), regroup the rest's count at
    random, and maybe let one dim be −1 (infer)."""
    shape = draw(shapes(1, 4))
    nd = len(shape)
    # Caffe's defaults (axis 0, num_axes −1: the whole shape) half the time, else any legal pair.
    axis = draw(st.just(0) | st.integers(-(nd + 1), nd))
    start = axis if axis >= 0 else nd + 1 + axis
    num_axes = draw(st.just(-1) | st.integers(-1, nd - start))
    end = nd if num_axes == -1 else start + num_axes
    kept = draw(st.integers(0, end - start))
    dims = [0 if draw(st.booleans()) else d for d in shape[start:start + kept]]
    primes = draw(st.permutations(_factorise(math.prod(shape[start + kept:end]))))
    groups = draw(st.integers(0 if not primes else 1, 3))  # a count of 1 may become no axes at all
    cuts = sorted(draw(st.lists(st.integers(0, len(primes)), min_size=max(groups - 1, 0),
                                max_size=max(groups - 1, 0))))
    bounds = [0, *cuts, len(primes)]
    dims += [math.prod(primes[lo:hi]) for lo, hi in zip(bounds, bounds[1:])] if groups else []
    if dims and draw(st.booleans()):
        dims[draw(st.integers(0, len(dims) - 1))] = -1
    return {"shape": {"dim": dims}, "axis": axis, "num_axes": num_axes}, shape


@SETTINGS
@given(reshape_cases(), VIA, values())
def test_reshape(case: tuple[dict[str, Any], tuple[int, ...]], via: str | bool, vals: Values) -> None:
    p, shape = case
    check_layer({"type": "Reshape", "reshape_param": p}, [shape], via=via if len(shape) == 4 else False,
                vals=vals, tol=0.0)


@FEW
@given(shapes(1, 4), st.integers(1, 3), VIA, values())
def test_split(shape: tuple[int, ...], ntops: int, via: str | bool, vals: Values) -> None:
    check_layer({"type": "Split", "top": [f"s{i}" for i in range(ntops)]}, [shape],
                via=via if len(shape) == 4 else False, vals=vals, tol=0.0)


@SETTINGS
@given(shapes(1, 4), st.data(), values())
def test_slice(shape: tuple[int, ...], data: st.DataObject, vals: Values) -> None:
    nd = len(shape)
    axis = data.draw(st.integers(-nd, nd - 1), label="axis")
    a = axis % nd
    ntops = data.draw(st.integers(1, 4), label="ntops")
    full = list(shape)
    if data.draw(st.booleans(), label="explicit_points"):
        full[a] = data.draw(st.integers(ntops, 8), label="size")
        pts = sorted(data.draw(st.sets(st.integers(1, full[a] - 1), min_size=ntops - 1, max_size=ntops - 1),
                               label="slice_point")) if ntops > 1 else []
        p: dict[str, Any] = {"slice_point": pts}
    else:
        full[a] = ntops * data.draw(st.integers(1, 3), label="part")  # equal parts
        p = {}
    p.update({"slice_dim": a} if data.draw(st.booleans(), label="legacy") else {"axis": axis})
    via = nd == 4 and data.draw(VIA, label="via")
    check_layer({"type": "Slice", "top": [f"t{i}" for i in range(ntops)], "slice_param": p}, [tuple(full)],
                via=via, vals=vals, tol=0.0)


def test_integer_labels_survive_slices() -> None:
    model, _ = compile_layer({"type": "Slice", "top": ["a", "b"], "slice_param": {"axis": 0}}, [(4,)],
                             dtype="bfloat16")
    out = model.apply(model.init(0), np.array([1001, 1003, 7, 9], np.int32))
    np.testing.assert_array_equal(np.asarray(out["a"]), [1001, 1003])


# --- data layers --------------------------------------------------------------------------------------

@st.composite
def data_cases(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, tuple[int, ...]], set[str]]:
    """(layer, input_shapes for check, the tops fed at apply time). Unfed tops are DummyData's, with
    constant fillers: random ones draw from JAX's RNG, which no NumPy reference reproduces (their
    distributions and per-forward refills are tests/test_fillers.py's)."""
    kind = draw(st.sampled_from(["Input", "DummyData", "MemoryData", "Data", "ImageData", "HDF5Data"]))
    n = draw(st.integers(1, 3))
    image = (n, draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    given_shapes: dict[str, tuple[int, ...]] = {}
    if kind in ("Input", "DummyData"):
        ntops = draw(st.integers(1, 3))
        tops = [f"t{i}" for i in range(ntops)]
        dims = draw(st.lists(shapes(1, 4), min_size=1, max_size=1) | st.lists(shapes(1, 4), min_size=ntops,
                                                                               max_size=ntops))
        if kind == "Input":
            layer: dict[str, Any] = {"input_param": {"shape": [{"dim": list(d)} for d in dims]}}
            return {"type": kind, "top": tops, **layer}, given_shapes, set(tops)
        constant = st.floats(-5, 5, width=32).map(lambda v: {"type": "constant", "value": v})
        fillers = draw(st.lists(constant, max_size=1) | st.lists(constant, min_size=ntops, max_size=ntops))
        p: dict[str, Any] = {"data_filler": fillers}
        if draw(st.booleans()) and all(len(d) == 4 for d in dims):  # legacy num/channels/height/width
            p.update({f: [d[i] for d in dims] for i, f in enumerate(["num", "channels", "height", "width"])})
        else:
            p["shape"] = [{"dim": list(d)} for d in dims]
        fed = set(draw(st.lists(st.sampled_from(tops), max_size=ntops)))
        return {"type": kind, "top": tops, "dummy_data_param": p}, given_shapes, fed
    # HDF5Data takes one or two tops here; a third is test_hdf5_data_extra_tops below.
    tops = ["data", "label"][:draw(st.integers(1, 2))]
    if kind == "MemoryData":
        layer = {"memory_data_param": dict(zip(["batch_size", "channels", "height", "width"], image))}
    elif kind == "ImageData":
        layer = {"image_data_param": {"batch_size": n, "is_color": image[1] == 3, "new_height": image[2],
                                      "new_width": image[3]}}
        image = (n, 3 if image[1] == 3 else 1, image[2], image[3])
    else:
        key = "data_param" if kind == "Data" else "hdf5_data_param"
        layer = {key: {"batch_size": n}}
        given_shapes["data"] = image
    return {"type": kind, "top": tops, **layer}, given_shapes, set(tops)


@SETTINGS
@given(data_cases(), values())
def test_data_layers(case: tuple[dict[str, Any], dict[str, tuple[int, ...]], set[str]], vals: Values) -> None:
    """Fed tops come out bit for bit; an unfed DummyData top is its constant filler's value."""
    layer, input_shapes, fed = case
    spec = load_spec("<case>.yaml", yaml.safe_dump({"name": "case", "layer": [{**layer, "name": "L"}]}))
    model = netspec.compile(spec, "TEST", input_shapes=input_shapes)
    node = model.graph.node("L")
    rs = vals.rs()
    shapes_by_top = {model.graph.blob_names[t]: tuple(model.report.shapes[t]) for t in node.tops}
    feed = {t: vals.array(rs, shapes_by_top[t]) for t in sorted(fed)}
    out = model.apply(load_blobs(model, {}), feed)
    want = reference.data_layer(node.layer, feed, [shapes_by_top[t] for t in node.layer.top])
    assert len(want) == len(node.layer.top)
    for name, ref in zip(node.layer.top, want):
        assert rel_err(out[name], ref) == 0.0, name


def test_hdf5_data_extra_tops() -> None:
    """Caffe's HDF5Data has one top per dataset, as many as the file holds; each shape is given."""
    spec = load_spec("<case>.yaml", yaml.safe_dump({"name": "case", "layer": [
        {"name": "L", "type": "HDF5Data", "top": ["x", "y", "z"], "hdf5_data_param": {"batch_size": 2}}]}))
    model = netspec.compile(spec, "TEST", input_shapes={"x": (2, 3), "y": (2,), "z": (2, 5)})
    feed = {"x": np.ones((2, 3), np.float32), "y": np.zeros(2, np.float32), "z": np.full((2, 5), 2, np.float32)}
    out = model.apply(model.init(0), feed)
    for k, v in feed.items():
        np.testing.assert_array_equal(np.asarray(out[k]), v)
    # Without the third dataset's shape, check says which top lacks one (it once dropped it silently).
    with pytest.raises(netspec.NetspecError, match="the shape of 'z' comes from the HDF5Data layer's files"):
        netspec.compile(spec, "TEST", input_shapes={"x": (2, 3), "y": (2,)})


# --- coverage -----------------------------------------------------------------------------------------

HYPOTHESIS_TESTS: dict[str, Callable[..., None]] = {
    "Convolution": test_convolution, "Deconvolution": test_deconvolution, "Pooling": test_pooling,
    "InnerProduct": test_inner_product, **{k.split("/")[0]: test_neurons for k in NEURON_PARAMS}, "Power": test_power,
    "LRN": test_lrn, "BatchNorm": test_batch_norm, "Scale": test_scale_and_bias, "Bias": test_scale_and_bias,
    "Softmax": test_softmax, "SoftmaxWithLoss": test_softmax_with_loss, "Accuracy": test_accuracy,
    "EuclideanLoss": test_euclidean_loss, "Concat": test_concat, "Eltwise": test_eltwise,
    "Flatten": test_flatten, "Reshape": test_reshape, "Split": test_split, "Slice": test_slice,
    **{k: test_data_layers for k in reference.DATA_TYPES},
}


def test_every_lowered_type_has_a_hypothesis_test() -> None:
    """A new lowering must come with a reference function and a hypothesis comparison here."""
    assert set(LOWERINGS) <= set(HYPOTHESIS_TESTS), set(LOWERINGS) - set(HYPOTHESIS_TESTS)
    assert all(getattr(t, "is_hypothesis_test", False) for t in HYPOTHESIS_TESTS.values())
    dispatched = set(reference.TABLE) | set(reference.DATA_TYPES)
    assert set(LOWERINGS) <= dispatched, set(LOWERINGS) - dispatched
