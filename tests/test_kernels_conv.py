"""netspec.kernels.conv: every formulation of conv2d and of its two gradients equals lax's convolution."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from jax import lax

from netspec.kernels import conv as kconv, onednn
from netspec.kernels.conv import (ConvGeometry, Plan, batch_minor_pays, choose_plan, conv2d, conv2d_batch_minor,
                                  conv2d_planned)


@dataclasses.dataclass(frozen=True)
class Case:
    n: int
    h: int
    w: int
    cin_g: int
    cout_g: int
    groups: int
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))
    dilation: tuple[int, int] = (1, 1)

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def operands(self, seed: int, dtype: Any) -> tuple[jax.Array, jax.Array]:
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((self.n, self.h, self.w, self.cin_g * self.groups))
        w = rng.standard_normal((*self.kernel, self.cin_g, self.cout_g * self.groups))
        return jnp.asarray(x, dtype), jnp.asarray(w, dtype)

    def out_size(self) -> tuple[int, int]:
        g = ConvGeometry(self.n, self.h, self.w, self.cin_g * self.groups, self.cout_g * self.groups,
                         self.kernel, self.stride, self.padding, self.dilation, self.groups)
        return g.out_size


def _lax_conv(case: Case) -> Any:
    """The definition: lax's convolution of the explicitly padded input. Padded by lax itself, XLA:CPU's input
    gradient is garbage where a side's padding passes the kernel (test_xla_impl_survives_padding_past_the_kernel)."""
    pad = ((0, 0, 0), (*case.padding[0], 0), (*case.padding[1], 0), (0, 0, 0))
    return lambda x, w: lax.conv_general_dilated(lax.pad(x, jnp.zeros((), x.dtype), pad), w, case.stride,
                                                 ((0, 0), (0, 0)), rhs_dilation=case.dilation,
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                                 feature_group_count=case.groups)


def _value_and_grads(run: Any, x: jax.Array, w: jax.Array, dy: jax.Array) -> tuple[jax.Array, ...]:
    y, vjp = jax.vjp(run, x, w)
    return (y, *vjp(dy))


def _assert_matches(case: Case, runs: dict[str, Any], dtype: Any = jnp.float32, rtol: float = 1e-5,
                    seed: int = 0) -> None:
    """y, dx and dw of each run equal lax's (the definition) to ``rtol`` of the magnitude of the summed terms.

    The magnitude is lax's computation on |x|, |w|, |dy|: an elementwise bound on the rounding error of a
    sum that stays meaningful where the signed result cancels to ~0. One jit per case keeps compiles few.
    """
    x, w = case.operands(seed, dtype)
    dy = jnp.asarray(np.random.default_rng(seed + 1).standard_normal((case.n, *case.out_size(),
                                                                     w.shape[3])), dtype)
    ref = _lax_conv(case)

    @jax.jit
    def everything(x: jax.Array, w: jax.Array, dy: jax.Array) -> Any:
        mine = {k: _value_and_grads(run, x, w, dy) for k, run in runs.items()}
        magnitude = _value_and_grads(ref, jnp.abs(x), jnp.abs(w), jnp.abs(dy))
        return mine, _value_and_grads(ref, x, w, dy), magnitude

    got, want, scale = everything(x, w, dy)
    for run_name, values in got.items():
        for name, g, r, s in zip(("y", "dx", "dw"), values, want, scale, strict=True):
            assert (g.shape, g.dtype) == (r.shape, r.dtype), (run_name, name, g.shape, g.dtype, r.dtype)
            err = np.abs(np.asarray(g, np.float64) - np.asarray(r, np.float64))
            bound = rtol * np.asarray(s, np.float64) + 1e-30
            worst = np.unravel_index(np.argmax(err / bound), err.shape)
            assert np.all(err <= bound), (f"{run_name} {name}: error {err[worst]:.3g} > {bound[worst]:.3g} "
                                          f"at {worst} ({case})")


def _conv_with(case: Case, impl: str) -> Any:
    return lambda x, w: conv2d(x, w, impl=impl, **case.kwargs)  # type: ignore[arg-type]


def _conv_with_plan(case: Case, plan: Plan) -> Any:
    return lambda x, w: conv2d_planned(x, w, plan, **case.kwargs)


# ----------------------------------------------------------------------------------------------------------
# Random shapes: every formulation, with and without batch chunking, against lax.

_PLANS = [Plan.uniform(f, c) for f in ("taps", "im2col") for c in (0, 1, 2)] + [  # type: ignore[arg-type]
    Plan("taps", "im2col", "taps", 2, 0, 1), Plan("im2col", "xla", "im2col", 1, 0, 2),
    Plan("xla", "taps", "im2col", 0, 2, 0), Plan.uniform("cols"), Plan("cols", "taps", "cols"),
    Plan("cols", "xla", "im2col"), Plan("taps", "cols", "cols")]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = tuple((draw(st.integers(-1, 5)), draw(st.integers(-1, 5))) for _ in range(2))
    # The padded input must hold the dilated kernel: draw the size above that minimum.
    h = max(1, dilation[0] * (kernel[0] - 1) + 1 - sum(padding[0])) + draw(st.integers(0, 5))
    w = max(1, dilation[1] * (kernel[1] - 1) + 1 - sum(padding[1])) + draw(st.integers(0, 5))
    return Case(n=draw(st.integers(1, 3)), h=h, w=w, cin_g=draw(st.integers(1, 3)),
                cout_g=draw(st.integers(1, 3)), groups=draw(st.sampled_from([1, 1, 2, 3])), kernel=kernel,
                stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                padding=padding, dilation=dilation)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(case=cases(), plan=st.sampled_from(_PLANS))
@example(case=Case(2, 7, 9, 3, 2, 1, (3, 3), (2, 2), ((1, 1), (1, 1))), plan=_PLANS[1])
@example(case=Case(3, 6, 6, 1, 1, 4, (3, 3), (1, 1), ((1, 1), (1, 1))), plan=_PLANS[4])
@example(case=Case(2, 8, 7, 2, 3, 4, (3, 3), (2, 2), ((1, 1), (1, 1))), plan=_PLANS[0])  # taps dx, dense kernel
def test_planned_conv_matches_lax(case: Case, plan: Plan) -> None:
    _assert_matches(case, {str(plan): _conv_with_plan(case, plan)})


def test_xla_impl_survives_padding_past_the_kernel() -> None:
    # jaxlib 0.10.2's CPU input gradient of lax.conv_general_dilated with a 3x3 kernel padded ((3, 1), (2, 2))
    # reads uninitialised memory (values up to 1e38); conv2d pads such inputs itself. Checked against the
    # transpose of the forward built from its Jacobian, which that bug does not touch.
    case = Case(n=2, h=1, w=1, cin_g=2, cout_g=1, groups=1, kernel=(3, 3), stride=(1, 1),
                padding=((3, 1), (2, 2)), dilation=(1, 1))
    x, w = case.operands(0, jnp.float32)
    dy = jnp.asarray(np.random.default_rng(1).standard_normal((2, 3, 3, 1)), jnp.float32)
    basis = jnp.eye(x.size, dtype=jnp.float32).reshape(x.size, *x.shape)
    jacobian = jax.vmap(lambda e: conv2d(e, w, impl="xla", **case.kwargs))(basis)  # (x.size, *dy.shape)
    truth = (jacobian * dy).reshape(x.size, -1).sum(axis=1).reshape(x.shape)
    for run in (lambda x: conv2d(x, w, impl="xla", **case.kwargs), lambda x: _lax_conv(case)(x, w)):
        dx = jax.vjp(run, x)[1](dy)[0]
        np.testing.assert_allclose(dx, truth, rtol=1e-5, atol=1e-5)


def _batch_minor(case: Case) -> Any:
    """conv2d_batch_minor seen through NHWC operands: the transposes are exact, so y, dx and dw must match."""
    return lambda x, w: conv2d_batch_minor(x.transpose(3, 1, 2, 0), w, **case.kwargs).transpose(3, 1, 2, 0)


@settings(max_examples=30, deadline=None)
@given(case=cases())
@example(case=Case(3, 12, 12, 20, 50, 1, (5, 5)))  # LeNet's conv2, the layer the layout is for
@example(case=Case(2, 9, 7, 2, 3, 2, (3, 3), (2, 2), ((1, 1), (1, 1)), (2, 1)))
def test_batch_minor_conv_matches_lax(case: Case) -> None:
    _assert_matches(case, {"batch-minor": _batch_minor(case)})


def test_batch_minor_conv_in_chunks() -> None:
    """Loop steps over the minor batch axis (LeNet b256's path), including a chunk that does not divide the
    batch (lowered to one that does)."""
    case = Case(6, 12, 12, 4, 5, 1, (5, 5), (1, 2), ((1, 1), (2, 0)))
    runs = {f"chunk {c}": (lambda x, w, c=c: conv2d_batch_minor(x.transpose(3, 1, 2, 0), w, chunk=c,
                                                                **case.kwargs).transpose(3, 1, 2, 0))
            for c in (2, 4)}
    _assert_matches(case, runs)


def test_batch_minor_policy() -> None:
    """Batch-minor nets are LeNet-sized CPU nets whose every convolution is a cols layer or a grey first layer."""
    conv1, conv2 = ConvGeometry(64, 28, 28, 1, 20, (5, 5)), ConvGeometry(64, 12, 12, 20, 50, (5, 5))
    assert batch_minor_pays("cpu", "planned", [conv1, conv2])
    # "auto" hands the convolutions to oneDNN's NHWC kernels where it is installed.
    assert batch_minor_pays("cpu", "auto", [conv1, conv2]) is not onednn.available()
    assert not batch_minor_pays("cpu", "onednn", [conv1, conv2])
    assert not batch_minor_pays("cpu", "xla", [conv1, conv2])
    assert not batch_minor_pays("gpu", "planned", [conv1, conv2])
    assert not batch_minor_pays("cpu", "planned", [conv1])  # nothing for cols to win
    assert not batch_minor_pays("cpu", "planned", [])
    # b256: conv2's patches (31 MiB) would run in chunks of 64 images, conv1's (14 MiB) of 128; the channels-last
    # plan trains as fast or faster there.
    big = [dataclasses.replace(g, batch=256) for g in (conv1, conv2)]
    assert [kconv.batch_minor_chunk(g) for g in big] == [128, 64]
    assert [kconv.batch_minor_chunk(g) for g in (conv1, conv2)] == [0, 0]
    assert not batch_minor_pays("cpu", "planned", big)
    stem = ConvGeometry(64, 32, 32, 3, 32, (3, 3), padding=((1, 1), (1, 1)))
    assert not batch_minor_pays("cpu", "planned", [stem, conv2])  # an RGB stem is no cols layer


# ----------------------------------------------------------------------------------------------------------
# Named shapes through the public impls.

EXPLICIT = {
    "stride2_odd": Case(2, 9, 7, 3, 4, 1, (3, 3), (2, 2), ((1, 1), (1, 1))),
    "stride2_asym_pad": Case(2, 8, 11, 2, 3, 1, (3, 2), (2, 3), ((0, 2), (3, 1))),
    "dilation2": Case(2, 10, 9, 3, 4, 1, (3, 3), (1, 1), ((2, 2), (2, 2)), (2, 2)),
    "depthwise": Case(2, 8, 8, 1, 1, 6, (3, 3), (1, 1), ((1, 1), (1, 1))),
    "depthwise_multiplier2_stride2": Case(2, 9, 9, 1, 2, 5, (3, 3), (2, 2), ((1, 1), (1, 1))),
    "grouped_alexnet_conv4_like": Case(2, 7, 7, 4, 5, 2, (3, 3), (1, 1), ((1, 1), (1, 1))),
    "pad_larger_than_kernel": Case(2, 5, 6, 2, 3, 1, (2, 3), (1, 2), ((4, 5), (6, 3))),
    "one_by_one": Case(3, 6, 5, 4, 7, 1, (1, 1)),
    "one_by_one_stride2": Case(3, 7, 5, 4, 7, 1, (1, 1), (2, 2)),
    "kernel_covers_input": Case(2, 4, 3, 3, 2, 1, (4, 3)),
    "cin1_lenet_conv1_like": Case(4, 8, 8, 1, 5, 1, (3, 3)),
    "negative_pad": Case(2, 8, 8, 2, 2, 1, (3, 3), (1, 1), ((-1, 2), (1, -2))),
}


@pytest.mark.parametrize("name", sorted(EXPLICIT))
def test_named_shapes(name: str) -> None:
    case = EXPLICIT[name]
    _assert_matches(case, {impl: _conv_with(case, impl) for impl in ("auto", "taps", "im2col")})


def test_auto_runs_the_cpu_policy_plan() -> None:
    """A shape above the tiny cutoff: impl="auto" goes through the custom VJP with the policy's plan."""
    case = Case(8, 24, 24, 16, 16, 1, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    geom = ConvGeometry(8, 24, 24, 16, 16, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    assert geom.flops > kconv._TINY_FLOPS
    assert choose_plan("cpu", geom) == Plan("xla", "taps", "taps")
    run = _conv_with(case, "auto") if jax.default_backend() == "cpu" else _conv_with_plan(
        case, choose_plan("cpu", geom))
    _assert_matches(case, {"auto": run})


def test_lenet_conv2_5x5_mixed_plan() -> None:
    """A 5x5 kernel (25 taps) once, with each pass in a different formulation and batch chunking."""
    case = Case(3, 8, 8, 4, 3, 1, (5, 5), padding=((2, 2), (2, 2)))
    _assert_matches(case, {"mixed": _conv_with_plan(case, Plan("taps", "im2col", "taps", 2, 2, 2))})


def test_lenet_conv2_cols() -> None:
    """LeNet's conv2 geometry (20->50, 5x5, 12x12), for which "auto" picks ``cols`` for all three passes: both
    gradients in one loop over batch chunks (2, and 3 lowered to 2), or alone next to other formulations."""
    case = Case(4, 12, 12, 20, 50, 1, (5, 5))
    assert choose_plan("cpu", ConvGeometry(4, 12, 12, 20, 50, (5, 5))) == Plan.uniform("cols")
    _assert_matches(case, {"cols": _conv_with_plan(case, Plan.uniform("cols")),
                           "cols chunked": _conv_with_plan(case, Plan.uniform("cols", 2)),
                           "cols chunk 3 -> 2": _conv_with_plan(case, Plan.uniform("cols", 3)),
                           "cols, taps weight grad": _conv_with_plan(case, Plan("cols", "cols", "taps")),
                           "cols weight grad only": _conv_with_plan(case, Plan("xla", "xla", "cols", 0, 0, 2)),
                           "cols input grad only": _conv_with_plan(case, Plan("xla", "cols", "xla"))})


def test_one_input_channel_cols_weight_grad() -> None:
    """Cin = 1 (LeNet conv1): the cols weight grad multiplies plain windows of x, chunked or not."""
    case = Case(4, 11, 10, 1, 5, 1, (5, 5), (2, 1), ((1, 2), (0, 1)), (1, 2))
    assert choose_plan("cpu", ConvGeometry(64, 28, 28, 1, 20, (5, 5))).weight_grad == "cols"
    _assert_matches(case, {f"cols/{c}": _conv_with_plan(case, Plan("xla", "xla", "cols", 0, 0, c)) for c in (0, 2, 3)})


def test_batch_chunk_remainder() -> None:
    """5 images in loop steps of 2: two steps in the scan plus a remainder step outside it."""
    case = Case(5, 6, 7, 3, 4, 1, (3, 3), (2, 1), ((1, 1), (0, 2)))
    _assert_matches(case, {f: _conv_with_plan(case, Plan.uniform(f, 2)) for f in ("taps", "im2col")})


def test_float64() -> None:
    case = EXPLICIT["stride2_asym_pad"]
    with jax.enable_x64(True):
        runs = {f: _conv_with_plan(case, Plan.uniform(f, 1)) for f in ("taps", "im2col")}
        _assert_matches(case, runs, dtype=jnp.float64, rtol=1e-13)


def test_bfloat16_with_float32_accumulation() -> None:
    case = EXPLICIT["grouped_alexnet_conv4_like"]
    x, w = case.operands(0, jnp.bfloat16)
    dy = jnp.ones((case.n, *case.out_size(), w.shape[3]), jnp.float32)

    def run(plan: Plan) -> Any:
        return lambda x, w: conv2d_planned(x, w, plan, preferred_element_type=jnp.float32, **case.kwargs)

    @jax.jit
    def both(x: jax.Array, w: jax.Array, dy: jax.Array) -> tuple[tuple[jax.Array, ...], ...]:
        return tuple(_value_and_grads(run(p), x, w, dy) for p in (
            Plan("xla", "xla", "xla"), Plan("taps", "im2col", "taps", 1, 1, 1),
            Plan("im2col", "taps", "im2col"), Plan.uniform("cols", 1)))

    (ref_y, *ref_grads), *others = both(x, w, dy)
    for y, *grads in others:
        assert y.dtype == jnp.float32
        # Same bf16 products, both accumulated in float32: only the summation order differs.
        np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-4)
        for g, r in zip(grads, ref_grads, strict=True):
            assert g.dtype == jnp.bfloat16
            np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(r, np.float32),
                                       rtol=2e-2, atol=0.1)


def test_jit_grad_and_vmap() -> None:
    """The custom VJP composes with jit, grad of a scalar loss, and vmap."""
    case = EXPLICIT["stride2_odd"]
    x, w = case.operands(3, jnp.float32)

    def loss(impl: str) -> Any:
        return jax.jit(jax.grad(lambda w: jnp.sum(jnp.tanh(conv2d(x, w, impl=impl, **case.kwargs)))))

    np.testing.assert_allclose(loss("taps")(w), loss("xla")(w), rtol=1e-5, atol=1e-5)
    batched = jax.vmap(lambda xi: conv2d(xi, w, impl="im2col", **case.kwargs))(x[:, None])
    np.testing.assert_allclose(batched[:, 0], conv2d(x, w, impl="xla", **case.kwargs), rtol=1e-5, atol=1e-5)


def test_bad_arguments_are_reported_together() -> None:
    x, w = EXPLICIT["one_by_one"].operands(0, jnp.float32)
    with pytest.raises(ValueError) as err:
        conv2d(x, w, stride=(0, 1), groups=3, impl="fast")  # type: ignore[arg-type]
    msg = str(err.value)
    assert "impl must be one of auto, planned, onednn, xla, taps, im2col" in msg
    assert "stride must be two ints >= 1" in msg
    assert "groups=3 must divide Cin=4" in msg
    with pytest.raises(ValueError, match="does not fit the padded input"):
        conv2d(x, jnp.zeros((7, 1, 4, 2)))


# ----------------------------------------------------------------------------------------------------------
# The policy is pure: pin its decisions.


def test_policy_uses_xla_off_cpu_and_for_tiny_shapes() -> None:
    geom = ConvGeometry(128, 16, 16, 128, 128, (3, 3), padding=((1, 1), (1, 1)))
    for backend in ("gpu", "tpu", "cuda", "rocm"):
        assert choose_plan(backend, geom) == Plan("xla", "xla", "xla")
    assert choose_plan("cpu", ConvGeometry(4, 8, 8, 8, 8, (3, 3))) == Plan("xla", "xla", "xla")


def test_policy_on_cpu_follows_the_measurements() -> None:
    wide = ConvGeometry(128, 16, 16, 128, 128, (3, 3), padding=((1, 1), (1, 1)))
    assert choose_plan("cpu", wide) == Plan("xla", "xla", "xla")  # XLA's own convolutions (compiler_options)
    large = ConvGeometry(128, 32, 32, 64, 64, (3, 3), padding=((1, 1), (1, 1)))
    plan = choose_plan("cpu", large)
    assert (plan.forward, plan.input_grad, plan.weight_grad) == ("xla", "xla", "taps")
    assert plan.weight_grad_chunk == kconv.batch_chunk(large) > 0
    strided = dataclasses.replace(wide, stride=(2, 2))
    assert choose_plan("cpu", strided).input_grad == "taps"
    assert choose_plan("cpu", strided).input_grad_chunk == kconv.batch_chunk(strided) > 0  # a 16 MiB input
    small_strided = dataclasses.replace(strided, batch=32)  # 4 MiB: one step, no loop
    assert choose_plan("cpu", small_strided).input_grad_chunk == 0
    stem = ConvGeometry(128, 32, 32, 3, 64, (3, 3), padding=((1, 1), (1, 1)))
    assert choose_plan("cpu", stem) == Plan("xla", "im2col", "im2col", 0, 0, kconv.batch_chunk(stem))
    # In a program on XLA's own convolutions (a wide layer elsewhere) XLA's weight gradient is the fast one.
    assert choose_plan("cpu", stem, xla_convs=True) == Plan("xla", "im2col", "xla", 0, 0, 0)
    narrow_grouped = ConvGeometry(64, 16, 16, 24, 48, (3, 3), padding=((1, 1), (1, 1)), groups=2)
    assert choose_plan("cpu", narrow_grouped, xla_convs=True) == choose_plan("cpu", narrow_grouped)
    lenet2 = ConvGeometry(64, 12, 12, 20, 50, (5, 5))
    assert choose_plan("cpu", lenet2) == Plan.uniform("cols", 0)  # measured in the whole train step
    assert choose_plan("cpu", dataclasses.replace(lenet2, batch=256)) == Plan.uniform("cols", 8)
    assert choose_plan("cpu", dataclasses.replace(lenet2, height=28, width=28)).forward == "xla"  # 24x24 out
    # The same layer in a program on XLA's own convolutions, and Caffe's cifar10_quick conv2 (32 channels
    # put its program there): XLA's passes, 1.3x the whole cifar10_quick step of cols.
    assert choose_plan("cpu", lenet2, xla_convs=True) == Plan("xla", "xla", "xla")
    quick2 = ConvGeometry(100, 16, 16, 32, 32, (5, 5), padding=((2, 2), (2, 2)))
    assert choose_plan("cpu", quick2) == Plan("xla", "xla", "xla")
    assert choose_plan("cpu", ConvGeometry(64, 28, 28, 1, 20, (5, 5))) == Plan("xla", "im2col", "cols", 0, 0, 0)
    assert choose_plan("cpu", ConvGeometry(256, 28, 28, 1, 20, (5, 5))) == Plan("xla", "im2col", "cols", 0, 0, 18)
    depthwise = dataclasses.replace(wide, groups=128)
    assert choose_plan("cpu", depthwise) == Plan("taps", "taps", "taps", kconv.batch_chunk(depthwise), 0,
                                                 kconv.batch_chunk(depthwise))
    # AlexNet's conv2: 48 channels a group put its program on XLA's own convolutions, where XLA's grouped
    # forward and input gradient are 2-5x faster than the matmuls; its weight gradient is 16x slower.
    grouped = ConvGeometry(16, 27, 27, 96, 256, (5, 5), padding=((2, 2), (2, 2)), groups=2)
    assert choose_plan("cpu", grouped) == Plan("xla", "xla", "taps", 0, 0, kconv.batch_chunk(grouped))
    assert choose_plan("cpu", dataclasses.replace(grouped, stride=(2, 2))).input_grad == "taps"
    small_grouped = ConvGeometry(64, 16, 16, 64, 128, (3, 3), (2, 2), ((1, 1), (1, 1)), groups=4)
    assert choose_plan("cpu", small_grouped).weight_grad == "taps"  # XLA's: 100 ms vs 3.8 (bench_conv)
    assert choose_plan("cpu", small_grouped).forward == "xla"  # narrow groups: XLA's fuses into inference


def test_a_jaxlib_without_the_option_keeps_the_plan_for_library_convolutions(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # XLA's weight gradient is only planned for wide layers when their program really leaves YNNPACK.
    wide = ConvGeometry(128, 16, 16, 128, 128, (3, 3), padding=((1, 1), (1, 1)))
    monkeypatch.setattr(kconv, "_cpu_options_supported", lambda train=False: False)
    assert kconv.compiler_options("cpu", "auto", [wide]) == {}
    assert kconv.compiler_options("cpu", "auto", [wide], train=True) == {}
    assert choose_plan("cpu", wide).weight_grad == "taps"
    # ... and XLA's grouped forward and input gradient only when YNNPACK does not run them (3x slower there)
    grouped = ConvGeometry(16, 27, 27, 96, 256, (5, 5), padding=((2, 2), (2, 2)), groups=2)
    plan = choose_plan("cpu", grouped)
    assert (plan.forward, plan.input_grad, plan.weight_grad) == ("im2col", "taps", "taps")


def test_a_jaxlib_without_the_reduction_fusion_kind_turns_every_fusion_off_in_train_steps(
        monkeypatch: pytest.MonkeyPatch) -> None:
    wide = ConvGeometry(128, 16, 16, 128, 128, (3, 3), padding=((1, 1), (1, 1)))
    monkeypatch.setattr(kconv, "_cpu_options_supported", lambda train=False: not train)
    assert kconv.compiler_options("cpu", "auto", [wide], train=True) == {"xla_cpu_experimental_ynn_fusion_type": ""}


def test_compiler_options_turn_off_the_library_convolutions_for_wide_layers_on_cpu() -> None:
    # XLA's own convolutions instead of YNNPACK's (whose weight gradient is 12-17x slower) once a net has a
    # convolution of 32+ input channels a group; LeNet's layers are faster with YNNPACK.
    wide = ConvGeometry(128, 16, 16, 128, 128, (3, 3), padding=((1, 1), (1, 1)))
    lenet = [ConvGeometry(64, 28, 28, 1, 20, (5, 5)), ConvGeometry(64, 12, 12, 20, 50, (5, 5))]
    off = {"xla_cpu_experimental_ynn_fusion_type": ""}
    assert kconv.compiler_options("cpu", "auto", [*lenet, wide]) == off
    # A train step keeps YNNPACK's reductions (BatchNorm statistics and gradient sums): 10x XLA's reduce-windows.
    assert kconv.compiler_options("cpu", "auto", [*lenet, wide], train=True) == {
        "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}
    assert kconv.compiler_options("cpu", "auto", lenet, train=True) == {}
    assert kconv.compiler_options("cpu", "auto", lenet) == {}
    assert kconv.compiler_options("cpu", "auto", [dataclasses.replace(wide, groups=8)]) == {}  # 16 a group
    assert kconv.compiler_options("cpu", "auto", [ConvGeometry(4, 8, 8, 32, 8, (3, 3))]) == {}  # tiny
    for backend, impl in (("cpu", "xla"), ("cpu", "taps"), ("gpu", "auto"), ("tpu", "auto")):
        assert kconv.compiler_options(backend, impl, [wide]) == {}
        assert kconv.compiler_options(backend, impl, [wide], train=True) == {}
    x = jnp.zeros((8, 32, 32, 64))
    w = jnp.zeros((3, 3, 64, 64))

    def grad(x: jax.Array, w: jax.Array) -> jax.Array:
        return jax.grad(lambda w: jnp.sum(conv2d(x, w, padding=((1, 1), (1, 1)), impl="xla") ** 2))(w)

    if jax.default_backend() == "cpu":
        compiled = jax.jit(grad, compiler_options=off).lower(x, w).compile().as_text()
        assert "__ynn_fusion" not in compiled
        train = kconv.compiler_options("cpu", "auto", [wide], train=True)
        compiled = jax.jit(lambda x, w: (grad(x, w), jnp.sum(x * x, axis=(0, 1, 2))),
                           compiler_options=train).lower(x, w).compile().as_text()
        assert "__ynn_fusion" in compiled  # the sum; tests/test_lowering_api.py checks what such a fusion holds


def test_batch_chunk_bounds_window_bytes() -> None:
    geom = ConvGeometry(128, 32, 32, 64, 64, (3, 3), padding=((1, 1), (1, 1)))
    chunk = kconv.batch_chunk(geom)
    assert 1 <= chunk < 128
    assert chunk * 32 * 32 * 64 * 4 <= kconv._CHUNK_BYTES
    assert kconv.batch_chunk(dataclasses.replace(geom, dtype="bfloat16")) == 2 * chunk
    assert kconv.batch_chunk(dataclasses.replace(geom, batch=1)) == 0
    huge = dataclasses.replace(geom, height=512, width=512, batch=2)
    assert kconv.batch_chunk(huge) == 1


# ----------------------------------------------------------------------------------------------------------
# oneDNN's kernels (netspec.kernels.onednn): a dependency on Linux x86-64, absent elsewhere.

needs_onednn = pytest.mark.skipif(not onednn.available(), reason=f"{onednn.unavailable_reason()}: the library is a "
                                                                 "dependency on Linux x86-64 only")


@st.composite
def library_cases(draw: st.DrawFn) -> Case:
    """cases() with the padding oneDNN runs (onednn.supports): none negative, none past the dilated kernel."""
    case = draw(cases())
    reach = [(k - 1) * d for k, d in zip(case.kernel, case.dilation)]
    padding = tuple((min(max(0, a), r), min(max(0, b), r)) for (a, b), r in zip(case.padding, reach))
    # The padded input must still hold the dilated kernel.
    h = max(case.h, reach[0] + 1 - sum(padding[0]))
    w = max(case.w, reach[1] + 1 - sum(padding[1]))
    return dataclasses.replace(case, padding=padding, h=h, w=w)


@needs_onednn
@settings(max_examples=40, deadline=None)
@given(case=library_cases())
@example(case=Case(2, 9, 9, 2, 3, 4, (3, 3), (2, 2), ((1, 1), (1, 1))))  # grouped, strided
@example(case=Case(2, 8, 7, 3, 2, 1, (3, 3), (1, 2), ((2, 0), (2, 1)), (2, 1)))  # dilated, asymmetric pads
@example(case=Case(3, 6, 6, 1, 1, 4, (3, 3), (1, 1), ((1, 1), (1, 1))))  # depthwise
def test_onednn_conv_matches_lax(case: Case) -> None:
    _assert_matches(case, {"onednn": _conv_with_plan(case, Plan.uniform("onednn"))})


@needs_onednn
def test_onednn_runs_every_float32_cpu_convolution_it_supports() -> None:
    wide = ConvGeometry(128, 16, 16, 128, 128, (3, 3), padding=((1, 1), (1, 1)))
    lenet2 = ConvGeometry(64, 12, 12, 20, 50, (5, 5))
    grouped = ConvGeometry(64, 16, 16, 64, 128, (3, 3), (2, 2), ((1, 1), (1, 1)), groups=4)
    for geom in (wide, lenet2, grouped):
        assert choose_plan("cpu", geom, library=True) == Plan.uniform("onednn")
        assert choose_plan("cpu", geom) != Plan.uniform("onednn")  # the plan without the library is unchanged
    assert choose_plan("gpu", wide, library=True) == Plan("xla", "xla", "xla")
    assert choose_plan("cpu", ConvGeometry(4, 8, 8, 8, 8, (3, 3)), library=True) == Plan("xla", "xla", "xla")  # tiny
    for other in (dataclasses.replace(wide, dtype="bfloat16"), dataclasses.replace(wide, padding=((-1, 1), (1, 1))),
                  dataclasses.replace(wide, padding=((1, 1), (3, 1)))):  # padded past the kernel (onednn.supports)
        assert choose_plan("cpu", other, library=True).forward != "onednn"
    assert kconv.uses_library("cpu", "auto") and kconv.uses_library("cpu", "onednn")
    assert not kconv.uses_library("cpu", "planned") and not kconv.uses_library("gpu", "auto")


@needs_onednn
def test_auto_uses_onednn_where_installed() -> None:
    case = Case(8, 24, 24, 16, 16, 1, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    x, w = case.operands(0, jnp.float32)
    if jax.default_backend() == "cpu":
        text = jax.jit(jax.grad(lambda w: jnp.sum(conv2d(x, w, **case.kwargs) ** 2))).lower(w).as_text()
        assert text.count(onednn.TARGET) == 2  # forward and weight gradient (x is no argument of the gradient)
        planned = jax.jit(lambda w: conv2d(x, w, impl="planned", **case.kwargs)).lower(w).as_text()
        assert onednn.TARGET not in planned
    _assert_matches(case, {"auto": _conv_with(case, "auto"), "onednn": _conv_with(case, "onednn")})


def test_without_onednn_auto_plans_and_onednn_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import netspec

    monkeypatch.setattr(onednn, "_load", lambda: "oneDNN (libdnnl.so.3) is not installed")
    assert not onednn.available()
    case = Case(8, 24, 24, 16, 16, 1, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    x, w = case.operands(0, jnp.float32)
    with pytest.raises(ValueError, match=r"impl 'onednn': oneDNN \(libdnnl.so.3\) is not installed"):
        conv2d(x, w, impl="onednn", **case.kwargs)
    _assert_matches(case, {"auto": _conv_with(case, "auto")})
    lenet = Path(__file__).parent / "fixtures" / "lowering" / "lenet.yaml"
    model = netspec.compile(lenet, "TRAIN", batch=64)
    assert model.conv_library is None
    assert model.spatial_layout == ("chwn" if jax.default_backend() == "cpu" else "nhwc")
    with pytest.raises(netspec.NetspecError) as err:
        netspec.compile(lenet, "TRAIN", batch=64, conv_impl="onednn")
    assert "conv_impl onednn: oneDNN (libdnnl.so.3) is not installed" in str(err.value)


_CACHED_PROGRAM = """
import sys, jax, jax.numpy as jnp, numpy as np
import jax.monitoring as monitoring
jax.config.update("jax_compilation_cache_dir", sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
from netspec.kernels.conv import conv2d
hits = []
monitoring.register_event_listener(lambda name, **kw: hits.append(name) if name.endswith("cache_hits") else None)
rs = np.random.RandomState(0)
x, w = jnp.asarray(rs.randn(8, 16, 16, 32), jnp.float32), jnp.asarray(rs.randn(3, 3, 32, 32), jnp.float32)
step = jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(jnp.tanh(conv2d(x, w, padding=((1, 1), (1, 1))))),
                                  argnums=(0, 1)))
loss, (dx, dw) = step(x, w)
assert "netspec_onednn_conv" in step.lower(x, w).as_text()
print(len(hits), repr(float(loss)), repr(float(jnp.sum(dx * dx))), repr(float(jnp.sum(dw * dw))))
"""


@needs_onednn
@pytest.mark.skipif(jax.default_backend() != "cpu", reason="oneDNN's kernels run on the CPU backend only")
def test_a_program_calling_onednn_is_cached_and_runs_from_the_cache(tmp_path: Path) -> None:
    """JAX's persistent cache stores a program with the custom call, and a fresh process runs the cached one."""
    import subprocess
    import sys

    def run() -> list[str]:
        out = subprocess.run([sys.executable, "-c", _CACHED_PROGRAM, str(tmp_path / "cache")], capture_output=True,
                             text=True, timeout=300, check=True).stdout.split()
        return out

    first, second = run(), run()
    assert first[0] == "0" and int(second[0]) >= 1, (first, second)
    assert first[1:] == second[1:]
