"""Property tests for the spatial shape rules against brute-force window enumeration (Caffe's rules)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from netspec.layers.base import ShapeError
from netspec.layers.conv import Convolution, ConvolutionParameter, Deconvolution
from netspec.layers.pool import Pooling, PoolingParameter, pooled_size
from netspec.spec import LayerSpec

PROPS = settings(max_examples=150, deadline=None)


def conv_layer(k: int, s: int, p: int, d: int = 1, n_out: int = 4, kind: str = "Convolution") -> LayerSpec:
    msg = ConvolutionParameter(num_output=n_out, kernel_size=(k,), stride=(s,), pad=(p,), dilation=(d,))
    return LayerSpec(name="c", type=kind, bottom=("x",), top=("c",), messages={"convolution_param": msg})


def pool_layer(k: int | tuple[int, int], s: int, p: int, round_mode: str = "CEIL", **extra: Any) -> LayerSpec:
    size = {"kernel_size": k} if isinstance(k, int) else {"kernel_h": k[0], "kernel_w": k[1]}
    msg = PoolingParameter(stride=s, pad=p, round_mode=round_mode, **size, **extra)
    return LayerSpec(name="p", type="Pooling", bottom=("x",), top=("p",), messages={"pooling_param": msg})


def conv_out(n: int, k: int, s: int, p: int, d: int = 1) -> int | None:
    """Convolution's output width on an n-wide input, or None when the rule rejects it."""
    try:
        return Convolution.infer(conv_layer(k, s, p, d), ((1, 2, n, n),))[0][-1]
    except ShapeError:
        return None


def pool_out(n: int, k: int, s: int, p: int, ceil: bool = True) -> int | None:
    try:
        return Pooling.infer(pool_layer(k, s, p, "CEIL" if ceil else "FLOOR"), ((1, 2, n, n),))[0][-1]
    except ShapeError:
        return None


# ----------------------------------------------------------------------------------------------
# brute-force oracles: enumerate the windows one by one


def conv_windows(n: int, k: int, s: int, p: int, d: int = 1) -> int:
    """Windows of extent d(k-1)+1 starting at -p, -p+s, ... that lie inside the padded input [-p, n+p)."""
    ext = d * (k - 1) + 1
    count, start = 0, -p
    while start + ext <= n + p:
        count += 1
        start += s
    return count


def caffe_pool_windows(n: int, k: int, s: int, p: int, ceil: bool = True) -> int:
    """Caffe's pooling windows, enumerated. Windows start at -p, -p+s, ...; FLOOR keeps those that fit
    the padded input [-p, n+p); CEIL adds windows until one reaches its end, so the last may hang over
    (the first counts as following a window one stride earlier). With padding, a last window that would
    start in the bottom/right padding (at or after n) is dropped."""
    starts: list[int] = []
    start = -p
    while (start - s + k < n + p) if ceil else (start + k <= n + p):
        starts.append(start)
        start += s
    if p > 0 and starts and starts[-1] >= n:
        starts.pop()
    return len(starts)


# ----------------------------------------------------------------------------------------------
# convolution


@PROPS
@given(n=st.integers(1, 64), k=st.integers(1, 11), s=st.integers(1, 5), p=st.integers(0, 5), d=st.integers(1, 3))
def test_conv_floor_formula_counts_the_window_positions(n: int, k: int, s: int, p: int, d: int) -> None:
    windows = conv_windows(n, k, s, p, d)
    out = conv_out(n, k, s, p, d)
    assert (out is not None) == (windows >= 1)  # a size exactly when the kernel fits the padded input
    if out is not None:
        assert out == windows >= 1


@PROPS
@given(n=st.integers(1, 64), k=st.integers(1, 11), s=st.integers(1, 5), p=st.integers(0, 5), d=st.integers(1, 3))
def test_conv_output_is_monotone_in_the_input_size(n: int, k: int, s: int, p: int, d: int) -> None:
    a, b = conv_out(n, k, s, p, d), conv_out(n + 1, k, s, p, d)
    assert a is None or (b is not None and b >= a)


@PROPS
@given(n=st.integers(1, 64), k=st.integers(1, 9), s=st.integers(1, 4), p=st.integers(0, 4), d=st.integers(1, 3))
def test_deconvolution_inverts_convolution_when_the_division_is_exact(n: int, k: int, s: int, p: int, d: int) -> None:
    ext = d * (k - 1) + 1
    assume(n + 2 * p >= ext)
    m = conv_out(n, k, s, p, d)
    assert m is not None
    deconv = conv_layer(k, s, p, d, kind="Deconvolution")
    lost = (n + 2 * p - ext) % s  # input rows the convolution never read; they do not come back
    if n - lost < 1:
        with pytest.raises(ShapeError, match="output rows would be"):
            Deconvolution.infer(deconv, ((1, 4, m, m),))
        return
    back = Deconvolution.infer(deconv, ((1, 4, m, m),))[0]
    assert back == (1, 4, n - lost, n - lost)
    if lost == 0:
        assert back[-1] == n


def test_conv_examples() -> None:
    assert conv_out(227, 11, 4, 0) == 55  # AlexNet conv1
    assert conv_out(224, 7, 2, 3) == 112  # ResNet/GoogLeNet conv1
    assert conv_out(64, 3, 2, 1) == 32  # netscope #25: convolution floors ...
    assert pool_out(64, 3, 2, 1) == 33  # ... where pooling with the same numbers rounds up
    assert conv_out(5, 3, 1, 0, d=3) is None  # dilated extent 7 > 5


# ----------------------------------------------------------------------------------------------
# pooling


@PROPS
@given(n=st.integers(1, 64), k=st.integers(1, 8), s=st.integers(1, 5), p=st.integers(0, 7), ceil=st.booleans())
@example(n=5, k=2, s=2, p=1, ceil=True)
@example(n=112, k=3, s=2, p=1, ceil=True)
@example(n=5, k=1, s=3, p=0, ceil=True)
def test_pooling_rule_equals_caffe_window_enumeration(n: int, k: int, s: int, p: int, ceil: bool) -> None:
    assume(p < k)  # Caffe: CHECK_LT(pad, kernel)
    windows = caffe_pool_windows(n, k, s, p, ceil)
    assert max(pooled_size(n, k, s, p, ceil), 0) == windows
    out = pool_out(n, k, s, p, ceil)
    assert (out is not None) == (windows >= 1)
    if out is not None:
        assert out == windows


@PROPS
@given(n=st.integers(1, 64), k=st.integers(1, 8), s=st.integers(1, 5), p=st.integers(0, 7), ceil=st.booleans())
def test_pooling_output_is_monotone_and_ceil_never_below_floor(n: int, k: int, s: int, p: int, ceil: bool) -> None:
    assume(p < k)
    a, b = pool_out(n, k, s, p, ceil), pool_out(n + 1, k, s, p, ceil)
    assert a is None or (b is not None and b >= a)
    floor, up = pool_out(n, k, s, p, False), pool_out(n, k, s, p, True)
    assert floor is None or (up is not None and floor <= up <= floor + 1)


@PROPS
@given(n=st.integers(1, 64), k=st.integers(2, 8), s=st.integers(1, 5), p=st.integers(1, 7))
def test_padded_pooling_windows_start_inside_the_image(n: int, k: int, s: int, p: int) -> None:
    assume(p < k and n + 2 * p >= k)
    out = pool_out(n, k, s, p)
    assert out is not None and -p + (out - 1) * s < n  # Caffe's clip: the last window starts inside


@pytest.mark.parametrize("shape, kwargs, expect", [
    # caffe/src/caffe/test/test_pooling_layer.cpp
    ((2, 3, 6, 5), {"k": 3, "s": 2, "p": 0}, (2, 3, 3, 2)),  # TestSetup
    ((2, 3, 6, 5), {"k": 3, "s": 2, "p": 1}, (2, 3, 4, 3)),  # TestSetupPadded
    ((2, 3, 6, 5), {"k": 3, "s": 2, "p": 0, "round_mode": "FLOOR"}, (2, 3, 2, 2)),  # TestSetupFloor (BVLC)
    ((2, 3, 6, 5), {"k": 3, "s": 2, "p": 1, "round_mode": "FLOOR"}, (2, 3, 3, 3)),  # TestSetupFloorPadded
    ((2, 2, 3, 5), {"k": 2, "s": 1, "p": 0}, (2, 2, 2, 4)),  # TestForwardMax (square kernel)
    ((2, 2, 6, 6), {"k": (3, 2), "s": 1, "p": 0}, (2, 2, 4, 5)),  # TestForwardMax (kernel_h 3, kernel_w 2)
    ((2, 2, 6, 6), {"k": (2, 3), "s": 1, "p": 0}, (2, 2, 5, 4)),  # TestForwardMax (kernel_h 2, kernel_w 3)
    ((1, 1, 3, 3), {"k": 3, "s": 2, "p": 2}, (1, 1, 3, 3)),  # TestForwardMaxPadded
    ((1, 1, 3, 3), {"k": 3, "s": 1, "p": 1}, (1, 1, 3, 3)),  # TestForwardAve
    ((1, 1, 5, 5), {"k": 2, "s": 2, "p": 1}, (1, 1, 3, 3)),  # a window would start in the padding: clipped
    ((1, 64, 112, 112), {"k": 3, "s": 2, "p": 1}, (1, 64, 57, 57)),  # DenseNet pool1, Caffe's default CEIL
    ((1, 64, 112, 112), {"k": 3, "s": 2, "p": 1, "round_mode": "FLOOR"}, (1, 64, 56, 56)),  # as trained
    ((1, 64, 112, 112), {"k": 3, "s": 2, "p": 0}, (1, 64, 56, 56)),  # GoogLeNet pool1
    ((1, 64, 112, 112), {"k": 3, "s": 2, "p": 0, "round_mode": "FLOOR"}, (1, 64, 55, 55)),  # ... if it floored
])
def test_pooling_examples(shape: tuple[int, ...], kwargs: dict[str, Any], expect: tuple[int, ...]) -> None:
    k, s, p = kwargs.pop("k"), kwargs.pop("s"), kwargs.pop("p")
    assert Pooling.infer(pool_layer(k, s, p, **kwargs), (shape,)) == (expect,)


def test_global_pooling_and_its_checks() -> None:
    layer = LayerSpec(name="g", type="Pooling", bottom=("x",), top=("g",),
                      messages={"pooling_param": PoolingParameter(pool="AVE", global_pooling=True)})
    assert Pooling.infer(layer, ((2, 3, 7, 5),)) == ((2, 3, 1, 1),)  # TestSetupGlobalPooling
    with pytest.raises(ShapeError, match="pad 1 must be smaller than the kernel 1"):
        Pooling.infer(pool_layer(1, 1, 1), ((1, 1, 4, 4),))
    with pytest.raises(ShapeError, match="does not fit"):
        Pooling.infer(pool_layer(5, 2, 0), ((1, 1, 2, 2),))


# ----------------------------------------------------------------------------------------------
# Scale's second bottom (squeeze-and-excitation): broadcast from `axis` over the remaining axes


def scale_layer(axis: int, bottoms: int = 2) -> LayerSpec:
    from netspec.layers.norm import ScaleParameter

    return LayerSpec(name="s", type="Scale", bottom=("x", "w")[:bottoms], top=("s",),
                     messages={"scale_param": ScaleParameter(axis=axis)})


@pytest.mark.parametrize("x, w, axis, ok", [
    ((8, 64, 7, 7), (8, 64), 0, True),         # SE: N×C channel weights, flattened, on axis 0
    ((8, 64, 7, 7), (8, 64, 1, 1), 0, False),  # N×C×1×1 straight from the 1x1 conv: Caffe refuses it too
    ((8, 64, 7, 7), (64,), 1, True),           # one weight per channel, shared over the batch
    ((8, 64, 7, 7), (64, 7, 7), 1, True),
    ((8, 64, 7, 7), (64, 7, 7, 1), 1, False),  # runs past the input's last axis
    ((8, 64, 7, 7), (), 1, True),              # a scalar bottom ignores the axis
])
def test_scale_second_bottom_broadcast(x: tuple[int, ...], w: tuple[int, ...], axis: int, ok: bool) -> None:
    from netspec.layers.norm import Scale

    layer = scale_layer(axis)
    if ok:
        assert Scale.infer(layer, (x, w)) == (x,)
        assert Scale.blobs(layer, (x, w)) == ()  # the second bottom replaces the learned scale
    else:
        with pytest.raises(ShapeError, match="does not match"):
            Scale.blobs(layer, (x, w))


@pytest.mark.parametrize("shape, text", [((), "scalar"), ((7,), "7"), ((1, 3, 224, 224), "1×3×224×224"),
                                         ((0, 3), "0×3")])
def test_shapes_print_as_caffe_writes_them_and_a_scalar_as_scalar(shape: tuple[int, ...], text: str) -> None:
    from netspec.layers.base import fmt_shape
    from netspec.report import shape_text

    assert fmt_shape(shape) == text
    assert shape_text(shape) == text  # the table and the messages agree
