"""2-D convolution with a hand-written VJP whose three passes each use the fastest formulation.

Public entry point (what the Convolution lowering calls)::

    conv2d(x, w, *, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1,
           impl="auto", preferred_element_type=None, xla_convs=False) -> y

- ``x``: NHWC input, ``w``: HWIO kernel ``(kh, kw, Cin // groups, Cout)``, ``y``: NHWC output.
- ``padding``: explicit ``((top, bottom), (left, right))`` pairs; Caffe pads symmetrically, any pair works
  (pads larger than the kernel, and negative pads, which crop as in lax).
- ``y`` equals ``lax.conv_general_dilated(x, w, stride, padding, rhs_dilation=dilation,
  dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)`` (cross-correlation), with
  ``Ho = (H + top + bottom - dilation_h * (kh - 1) - 1) // stride_h + 1`` and likewise for ``Wo``.
- ``preferred_element_type``: accumulation and output dtype (e.g. ``jnp.float32`` for bfloat16 inputs;
  the caller casts the parameters). Gradients always come back in the dtypes of ``x`` and ``w``.
- ``impl``: ``"xla"`` is the plain lax convolution differentiated by JAX. ``"auto"`` asks
  ``choose_plan(jax.default_backend(), geometry)`` (read at trace time) for a ``Plan``, which names the
  formulation and batch chunk of the forward, the input gradient and the weight gradient; a mixed plan
  runs under a ``jax.custom_vjp``. On the CPU with oneDNN installed (``netspec.kernels.onednn``), "auto"
  runs every float32 convolution the library supports through its kernels; ``"planned"`` is "auto" without
  the library and ``"onednn"`` requires it. ``"taps"`` and ``"im2col"`` force one matmul formulation for all
  three passes. Off CPU, and for tiny shapes, "auto" is exactly "xla".
- ``xla_convs``: the caller compiles the enclosing program with ``compiler_options`` for a set of convolutions
  that turns YNNPACK's off (the Convolution lowering knows it from the whole net); a narrow layer's plan
  depends on it.
- Autodiff: the custom VJP gives reverse mode (grad, vjp, and grad of grad); forward mode (``jax.jvp``,
  ``jacfwd``) needs ``impl="xla"``. jit and vmap work with every impl.
- ``conv2d_planned(x, w, plan, ...)`` takes an explicit ``Plan`` (benchmarks, tests, experiments).
- ``conv2d_batch_minor(xt, w, ...)`` is the same convolution on batch-minor operands, (Cin, H, W, N) in and
  (Cout, Ho, Wo, N) out, every pass a ``cols`` matmul with no transposing copy: the Convolution lowering's
  path in a net whose spatial blobs are batch-minor (``batch_minor_pays``, netspec.lowering.base).

Formulations (``Formulation``), all exact up to float rounding:

- ``xla``: ``lax.conv_general_dilated`` and its JAX transposes (via ``jax.linear_transpose``).
- ``taps``: one matmul per kernel offset ``(i, j)`` on the strided window of the once-padded input
  (forward: ``window_ij @ w[i, j]`` summed; weight grad: ``dy^T @ window_ij`` is slice ``(i, j)`` of dw;
  input grad: ``dy @ w[i, j]^T`` scattered back with a strided pad and summed).
- ``im2col``: the ``kh * kw`` windows concatenated on the channel axis, then one matmul (the input grad
  is one matmul followed by col2im).
- ``cols``: im2col in a batch-minor layout. The input is transposed to (C, H, W, N) once, the
  ``(kh * kw * Ci, Ho * Wo * N)`` patch matrix is ``kh * kw`` stacked windows of it (each window a run of
  whole rows: no channel interleaving), and every pass is one matmul whose operands need no transposing
  copy: forward ``w^T @ P``, weight grad ``P @ dy``, input grad ``w @ dy^T`` then col2im by in-place slice
  adds; both gradients share one loop over batch chunks that builds each chunk's ``P`` once. With one
  input channel the weight grad skips the transposes (NHWC x already has dy's row order). Only "auto"
  picks it (see ``choose_plan``); inference keeps XLA's forward.
- ``onednn``: each pass one call of oneDNN's convolution kernels on the NHWC / HWIO buffers, through an XLA
  custom call (``netspec.kernels.onednn``); float32 only, when the optional library is installed.

The matmul formulations run over the batch in chunks of a few images (``lax.map`` / ``lax.scan``) so that
their per-tap copies stay in cache. Why any of this: on XLA:CPU a convolution's weight gradient runs 2-13x
below the forward's speed, and grouped and depthwise convolutions run 3-25x below the matmul versions;
the measurements are in the comments above ``choose_plan`` and reproducible with ``tools/bench_conv.py``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from typing import Any, Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from netspec.kernels import onednn

Formulation = Literal["xla", "taps", "im2col", "cols", "onednn"]
Impl = Literal["auto", "planned", "onednn", "xla", "taps", "im2col"]
Pair = tuple[int, int]

IMPLS: tuple[str, ...] = get_args(Impl)
FORMULATIONS: tuple[str, ...] = get_args(Formulation)
_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    """Everything static about one convolution call: shapes, hyper-parameters and dtype name."""

    batch: int
    height: int
    width: int
    in_channels: int
    out_channels: int
    kernel: Pair
    stride: Pair = (1, 1)
    padding: tuple[Pair, Pair] = ((0, 0), (0, 0))
    dilation: Pair = (1, 1)
    groups: int = 1
    dtype: str = "float32"

    @property
    def out_size(self) -> Pair:
        return (_out_len(self.height, self.kernel[0], self.stride[0], self.padding[0], self.dilation[0]),
                _out_len(self.width, self.kernel[1], self.stride[1], self.padding[1], self.dilation[1]))

    @property
    def flops(self) -> int:
        """Multiply-adds times two of one pass; forward, input grad and weight grad all cost the same."""
        ho, wo = self.out_size
        kh, kw = self.kernel
        return 2 * self.batch * ho * wo * self.out_channels * kh * kw * (self.in_channels // self.groups)


@dataclasses.dataclass(frozen=True)
class Plan:
    """The formulation used for each of the three passes."""

    forward: Formulation
    input_grad: Formulation
    weight_grad: Formulation
    # Images per loop step of a matmul formulation (see _batch_map); 0 runs the whole batch in one step.
    forward_chunk: int = 0
    input_grad_chunk: int = 0
    weight_grad_chunk: int = 0

    @classmethod
    def uniform(cls, formulation: Formulation, chunk: int = 0) -> Plan:
        """Every pass in one formulation with one chunk size."""
        return cls(formulation, formulation, formulation, chunk, chunk, chunk)


def _out_len(size: int, k: int, s: int, pad: Pair, d: int) -> int:
    return (size + pad[0] + pad[1] - d * (k - 1) - 1) // s + 1


# Measurements behind the policy (taken with XLA:CPU's default YNNPACK convolutions; a program with a wide layer
# now compiles without them, see compiler_options, whose comment has what changed and the rules added for it):
# tools/bench_conv.py --formulations --clock cpu --stat min on a 2-vCPU AMD
# EPYC VM, jax 0.10.2, float32, milliseconds of process CPU time / 2 (= wall time on idle cores; the machine
# was shared, so wall time was not reproducible). Shapes are Cin->Cout kernel at HxW, batch; "best" names the
# winning formulation with its batch chunk ("/c": chunked by batch_chunk, "/0": whole batch).
#
#                                          forward               input grad            weight grad
#                                          xla    best           xla    best           xla     best
#   LeNet conv1 1->20 5x5 28x28 b64        0.70   0.70 xla       5.70   0.95 im2col/0  1.30    1.30 taps/0 (*)
#   LeNet conv2 20->50 5x5 12x12 b64       2.02   2.02 xla       5.64   2.97 taps/0    2.73    2.73 xla
#   LeNet conv2 20->50 5x5 12x12 b256      9.68   9.68 xla      26.6   10.2 taps/c    14.4    14.4 xla
#   ResNet stem 3->64 3x3 32x32 b128      15.6   15.6 xla       20.0    5.04 im2col/0 38.7    17.7 im2col/c
#   ResNet 64->64 3x3 32x32 b128          81.9   81.9 xla       93.0  93.0 xla      1009     121 taps/c
#   ResNet 128->128 3x3 16x16 b128        64.3   64.3 xla       69.5  69.5 xla       319    87.7 taps/c
#   ResNet 128->128 3x3 16x16 s2 b128     21.5   21.5 xla       30.9  20.4 im2col/c  43.5   28.9 taps/c
#   ResNet 256->256 3x3 8x8 b128          64.5   64.5 xla       67.6  67.6 xla       166    79.0 taps/c
#   ResNet 1x1 64->128 32x32 s2 b128       4.63   4.63 xla      18.9  17.7 taps/0    125     9.0 im2col/0
#   7x7 s2 3->64 224x224 b16              39.0   39.0 xla       98.6  98.6 xla       294     149 im2col/c
#   AlexNet conv2 5x5 g2 96->256 27x27 b16  331  103 im2col/c   290    97.7 taps/c    678    68.3 taps/c
#   dilated 3x3 d2 64->64 32x32 b32       15.8   15.8 xla       17.1  17.1 xla       175    31.1 taps/c
#   depthwise 3x3 128 16x16 b128          65.0    2.8 taps/c    67.2   2.7 taps/0     272    12.1 taps/c
#   3x3 8->8 8x8 b4 (0.3 MFLOP)           0.05   0.04 im2col    0.08   0.07 im2col    0.06   0.04 im2col
# (*) the policy's narrow rule picks im2col/c there: 1.48 ms, within the noise of a 37 MFLOP pass.
# bfloat16 inputs (float32 accumulation) rank the same way: 128->128 16x16 b128 forward 82 vs 126 (taps),
# input grad 91 vs 131, weight grad 545 vs 145 (taps).
# The matmul peak on the same machine is 151-161 GFLOP/s, so 9.66 GFLOP takes >= 60 ms: XLA's forward and its
# stride-1 input gradient for wide layers are already near it; its weight gradient is 2-13x slower.

# Bytes of one image's largest per-tap operand times the images per loop step. Sweep of the taps weight grad
# over chunks of 0 (whole batch)/1/2/4/8/16/32 images, same clock as above, ms:
#   ResNet 64->64 32x32 (256 KiB per image)       309 139  98  94  100 111 130   best 4  = 1 MiB
#   ResNet 128->128 16x16 (128 KiB per image)     121  90  82  79   79  75  89   best 16 = 2 MiB
#   ResNet 128->128 16x16 s2 (128 KiB per image)   38  30  22  20   22  21  21   best 4  = 0.5 MiB
#   ResNet 256->256 8x8 (64 KiB per image)          86 113  87  82   63  65  65   best 8  = 0.5 MiB
# and the stem's im2col weight grad (256 KiB per image) was best at 2 (12 ms; 14 at the planned 4, 27 whole).
# The whole-batch step is 1.3-3.3x slower: its windows spill out of cache and page-fault in fresh memory.
_CHUNK_BYTES = 1 << 20
# The most bytes a matmul pass handles for the whole batch in one step, without a loop (cols_chunk, choose_plan).
_WHOLE_BATCH_BYTES = 8 << 20
# Input channels a group from which a convolution puts its program on XLA's own convolutions (compiler_options).
_WIDE_CHANNELS = 32
# Below this many FLOPs per pass every formulation takes tens of microseconds; XLA's compiles fastest.
_TINY_FLOPS = 2_000_000


def batch_chunk(geom: ConvGeometry) -> int:
    """Images per loop step for the matmul formulations (0: the whole batch in one step)."""
    ho, wo = geom.out_size
    per_image = max(ho * wo * max(geom.in_channels, geom.out_channels),
                    geom.height * geom.width * geom.in_channels)
    chunk = max(1, _CHUNK_BYTES // (per_image * np.dtype(geom.dtype).itemsize))
    return 0 if chunk >= geom.batch else chunk


def _cols_patch_bytes(geom: ConvGeometry) -> int:
    """Bytes of one image's ``cols`` patch matrix, (kh * kw * Ci, Ho * Wo)."""
    ho, wo = geom.out_size
    return geom.kernel[0] * geom.kernel[1] * geom.in_channels * ho * wo * np.dtype(geom.dtype).itemsize


def cols_chunk(geom: ConvGeometry) -> int:
    """Images per loop step of a ``cols`` pass: the whole batch (0) when its patches fit in
    ``_WHOLE_BATCH_BYTES``, else about ``_CHUNK_BYTES`` of patches.

    LeNet train step, whole-step medians vs the hand-written Flax model, one process: conv2's chunk of
    0 (whole batch)/4/8/16 images (125 KiB of patches an image) gave 1.69/1.50/1.57/1.60x at b64 and
    1.28/1.83/1.94/1.92x at b256; conv1's weight grad (56 KiB an image) 0/8/16/32 gave
    1.58/1.51/1.56/1.56x at b64 and 1.37/1.60/1.65/1.60x at b256. Both convs' chunk of 0/8/16/32 at b64,
    against the step with chunk 8: 1.06/1.00/1.03/1.00x. So one loop-free step while the patches stay within
    a few MiB (7.6 MiB for conv2 at b64), cache-sized chunks beyond (conv2 at b256: 31 MiB). A chunk that does
    not divide the batch is lowered to one that does."""
    per_image = _cols_patch_bytes(geom)
    if per_image * geom.batch <= _WHOLE_BATCH_BYTES:
        return 0
    chunk = max(1, _CHUNK_BYTES // per_image)
    return 0 if chunk >= geom.batch else chunk


def _cols_pays(geom: ConvGeometry) -> bool:
    """Large kernels over a few dozen channels with small outputs (LeNet's conv2, 20->50 5x5 at 12x12).

    Their per-tap matmuls have K = Ci (too short for the matmul kernels) while im2col's K = kh*kw*Ci is
    long; the batch-minor patch matrix makes all three passes plain matmuls. Measured only in the LeNet
    train step (one process, whole-step medians vs the hand-written Flax model, docs/performance.md):
    with conv1's weight grad already in cols, conv2 in cols (chunks of 8) took the step from 1.41x to
    1.72x at batch 64 and from 1.62x to 1.97x at 256. All three conv1 passes in cols (Ci = 1, 24x24
    outputs) gained nothing: transposing its wide output both ways costs what the matmuls save.
    """
    ho, wo = geom.out_size
    return (geom.groups == 1 and geom.kernel[0] * geom.kernel[1] >= 16 and 16 <= geom.in_channels <= 64
            and geom.out_channels <= 128 and ho * wo <= 256)


def choose_plan(backend: str, geom: ConvGeometry, xla_convs: bool = False, library: bool = False) -> Plan:
    """Pick the fastest formulation of each pass for ``backend`` ("cpu", "gpu", "tpu", ...) and shape.

    ``library``: oneDNN's kernels may run it (``netspec.kernels.onednn``); on the CPU they then run all three
    passes of every convolution the library supports, which beat the plans below in whole train steps
    (docs/performance.md item 14, `python tools/bench_train_cpu.py`, netspec vs ns-planned in two runs: LeNet b64
    1.09-1.10x, b256 1.77-1.79x, ResNet-18 CIFAR b128 1.27x (1.03x in a run without PyTorch in the process),
    the mixed net 1.50-1.54x, each plan with its own best layout).

    ``xla_convs``: the program runs XLA's own convolutions, because another (wide) convolution in it made
    ``compiler_options`` turn YNNPACK's off. A narrow layer cannot tell that from its own shape, and some of
    its passes are only fast there. Pure but for one cached fact about the installed jaxlib (whether it
    knows the option compiler_options sets). The table above these functions is the evidence for each branch.
    """
    if backend != "cpu" or geom.flops < _TINY_FLOPS:
        # cuDNN and the TPU convolution emitter run all three passes near matmul speed; the rewrites here
        # target XLA:CPU. (Not measured on an accelerator in this repository.)
        return Plan("xla", "xla", "xla")
    if library and library_runs(geom):
        return Plan.uniform("onednn")
    # The program runs XLA's own convolutions: a wide layer elsewhere in it (xla_convs), or this one.
    on_xla_convs = xla_convs or _on_xla_convs(geom)
    if _cols_pays(geom) and not on_xla_convs:
        # Measured where YNNPACK runs XLA's convolutions (LeNet). On XLA's own ones the branches below (all
        # XLA's for such layers) win: Caffe's cifar10_quick (32->32 and 32->64 5x5, a program on XLA's
        # convolutions), b100 train step 228 -> 160 ms (1.40x paired; one process, 30 rounds each in a shuffled
        # order). Its TEST forward ran XLA's convolutions already (see _planned_conv).
        return Plan.uniform("cols", cols_chunk(geom))
    chunk = batch_chunk(geom)
    cin_g = geom.in_channels // geom.groups
    cout_g = geom.out_channels // geom.groups
    depthwise = geom.groups > 1 and cin_g == 1
    ho, wo = geom.out_size
    taps = geom.kernel[0] * geom.kernel[1]
    narrow = cin_g < 16  # per-tap matmuls with K or N this small run far below peak; im2col widens them

    # Forward: XLA wins every dense (groups=1) shape measured, by 1.1-2.3x. Its depthwise convolutions are
    # slow on CPU (65 vs 2.8 ms). Its grouped ones with wide groups are slow only as YNNPACK runs them
    # (AlexNet g2, 48 channels a group: 331 vs 103 ms im2col); such a layer puts its program on XLA's own
    # convolutions (compiler_options), where XLA's is 2-5x faster than im2col (wide_groups below). With
    # narrow groups XLA's is fine and im2col's loop fuses badly into an inference net: 3x3 s2 g4 64->128
    # (16 channels a group) at b64, whole TEST forward of tests/fixtures/lowering/mixed_conv.yaml 27 ms with
    # XLA's vs 48 with im2col (train step 152 vs 157).
    #
    # wide_groups: grouped layers of 32+ channels a group in a program on XLA's own convolutions, their
    # passes alone under that program's options (Intel Xeon VM, 2026-11-26, b32, ms, forward / input grad):
    #   AlexNet conv2 5x5 g2 96->256 27x27     im2col / taps 386 / 646    xla 156 / 231
    #   AlexNet conv4 3x3 g2 384->384 13x13    117 / 223                  65 / 65
    #   AlexNet conv5 3x3 g2 384->256 13x13    117 / 242                  55 / 49
    #   3x3 g8 256->256 16x16 (32 a group)     79 / 170                   22 / 24
    #   3x3 g2 64->64 32x32 (32 a group)       119 / 103                  22 / 22
    #   3x3 s2 g2 128->256 28x28               42 / 55                    19-23 / 70-84
    #   3x3 s2 g4 256->256 16x16 (64 a group)  22 / 46                    12 / 26-27
    # The two strided layers disagree on the input grad, so strided ones keep taps, as dense strided ones do.
    # Whole AlexNet (specs/alexnet.yaml with a loss) b16, one process, 8 rounds each in a shuffled order: train
    # step 1,721 -> 1,243 ms (1.39x paired), TEST forward 631 -> 445 ms. XLA's grouped weight gradient stays out
    # of reach (1,128-3,492 ms vs 38-217 taps).
    wide_grouped = geom.groups > 1 and cin_g >= _WIDE_CHANNELS
    wide_groups = wide_grouped and on_xla_convs
    if depthwise:
        forward, forward_chunk = "taps", chunk
    elif wide_grouped and not on_xla_convs:
        forward, forward_chunk = "im2col", chunk
    else:
        forward, forward_chunk = "xla", 0

    # Input grad: XLA's is a forward conv of the dilated output gradient; it is as fast as the matmuls for
    # wide stride-1 layers and for large strided kernels (7x7 s2 stem: 98.6 vs 129 ms), and 1.5-6x slower
    # for strided or grouped ones. A depthwise body is elementwise: chunking it measured 4x slower.
    # Narrow stride-1 layers looked 2x faster as matmuls in isolation (LeNet conv2 above), but inside
    # the whole train step XLA's wins by a third of the step: LeNet b64 20.2 ms (xla) vs 27.0 (im2col)
    # and 26.4 (taps); b256 92 vs 151 and 148 (whole-step medians, same run). The step is what counts.
    # (Only the 3-channel stem is left to im2col: its input grad is never computed in a real net.)
    if depthwise:
        input_grad, input_grad_chunk = "taps", 0
    elif geom.groups == 1 and ((geom.stride == (1, 1) and not narrow)
                               or (geom.stride != (1, 1) and taps > 9)):
        input_grad, input_grad_chunk = "xla", 0
    elif wide_groups and geom.stride == (1, 1):
        input_grad, input_grad_chunk = "xla", 0  # 1.3-4.9x faster than taps there (table above)
    elif narrow:
        input_grad, input_grad_chunk = "im2col", 0  # stem: 5.0 unchunked vs 8.1 chunked
    else:
        # Unchunked while the input fits in a few MiB: the loop's stacked output and the re-laid-out
        # operands cost more than the cache misses there. Mixed net (tests/fixtures/lowering/mixed_conv.yaml)
        # b64, whole step with this and the wide weight-grad rule below vs without: 1.20x (the weight-grad rule
        # alone 1.16x); ResNet-18 CIFAR b128 1.02x (within its noise).
        whole = geom.batch * geom.height * geom.width * geom.in_channels * np.dtype(geom.dtype).itemsize
        input_grad, input_grad_chunk = "taps", (0 if whole <= _WHOLE_BATCH_BYTES else chunk)

    # Weight grad: XLA's is the slow one (a convolution whose kernel is the Ho x Wo output gradient). It
    # holds its own for small outputs of narrow layers (LeNet conv2: 8x8 outputs, 20x50 channels) and for
    # few output channels (LeNet conv1, 1->20: in the whole step taps/im2col were 7% faster at b64 and
    # 7-10% slower at b256; the ResNet stem's 64 outputs are where im2col starts to pay).
    if depthwise:
        weight_grad, weight_grad_chunk = "taps", chunk
    elif geom.groups == 1 and geom.in_channels == 1:
        # One input channel: the cols patches are plain windows of x and the weight grad one matmul with
        # no transposing copy (LeNet conv1: the whole step 1.14x faster than with XLA's weight grad at
        # b64 and 1.29x at b256, conv2 on XLA in both; the taps/im2col versions measured here before
        # were not faster than XLA's).
        weight_grad, weight_grad_chunk = "cols", cols_chunk(geom)
    elif geom.groups == 1 and ((ho * wo <= 100 and cin_g * cout_g <= 4096) or (narrow and cout_g < 32)):
        # Never for grouped layers: XLA's grouped weight gradient is the slowest of all (3x3 s2 g4 64->128
        # at 16x16, b64: 100 ms vs 3.8 ms taps/0, tools/bench_conv.py --only mixed).
        weight_grad, weight_grad_chunk = "xla", 0
    elif geom.groups == 1 and narrow and xla_convs:
        # A narrow layer in a program on XLA's own convolutions: there XLA's weight gradient is the fastest,
        # although with YNNPACK's it is not (the im2col below). Measured on 3-channel first layers: the mixed
        # net's conv1, 3->32 3x3 32x32 b64, alone under that program's options: 4.1 ms vs 9.8 im2col and 5.2
        # cols; ResNet-18's stem 19.6 vs 26.0 and 14.8 ms (Intel VM, 2026-11-26; 4.0 vs 7.5 and 23.2 vs 36.6
        # on the AMD one). Whole mixed step, one process, 80-100 rounds: 1.041x, 1.027x and 1.037x in three
        # A/Bs (cols: 1.006x).
        weight_grad, weight_grad_chunk = "xla", 0
    elif geom.groups == 1 and _on_xla_convs(geom) and ho * wo <= 256:
        # A wide layer puts its program on XLA's own convolutions (compiler_options), whose weight gradient
        # is near the matmul formulations' for outputs up to 16x16 (3x3 128->128 16x16 b128: 100 vs 108 ms
        # taps; 256->256 8x8: 72 vs 80; mixed net's 16x16 convs 10.9 vs 12.8 and 15.3 vs 16.8) and runs
        # without their loop.
        weight_grad, weight_grad_chunk = "xla", 0
    elif narrow:
        weight_grad, weight_grad_chunk = "im2col", chunk
    else:
        weight_grad, weight_grad_chunk = "taps", chunk
    return Plan(forward, input_grad, weight_grad,  # type: ignore[arg-type]
                forward_chunk, input_grad_chunk, weight_grad_chunk)


# XLA:CPU options for a program whose convolutions follow ``choose_plan``. jax 0.10.2 hands convolutions to its
# YNNPACK fusions by default. Those run XLA's dense weight gradient 3-18x slower than XLA's own (Eigen)
# convolution, and the forward of wide layers 2x slower. Same 2-vCPU VM, ms (2026-11-26):
#
#   python tools/bench_conv.py --library (medians)          YNNPACK (default)    ynn fusions off
#   3x3 64->64 32x32 b128 forward / input grad / weight grad   218 / 212 / 2716     93 / 105 / 152
#   3x3 128->128 16x16 b128 bfloat16, the same                 107 /  91 /  464     94 /  96 /  90
#   LeNet conv1 1->20 5x5 b64 forward                           1.67                 2.53
#
#   python tools/bench_train_cpu.py --library-convs --no-torch (whole train steps, netspec's plan, one process)
#   ResNet-18 CIFAR b128 (--quick)                              8252                 4885
#   tests/fixtures/lowering/mixed_conv.yaml b64                  205                  121
#
# With the fusions off, XLA's convolutions are at or near the best formulation for most dense passes of 32+
# channels (XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= python tools/bench_conv.py --formulations); the
# rewrites in choose_plan still win for depthwise layers, narrow groups, grouped weight gradients, strided input
# gradients and large-output weight gradients (wide groups' forward and input gradient are XLA's again). LeNet's
# plan leaves XLA only conv1's forward, which YNNPACK runs faster, so a program turns the fusions off only when
# one of its convolutions has 32 or more input channels a group.
#
# The option is a list of YNNPACK fusion kinds, and "" turns off its reductions too. XLA's own emitter then runs a
# large reduction as a tree of reduce-windows, 10x slower: the sum of a (128, 32, 32, 64) product over all but the
# channel axis took 38 ms against 3.1 with YNNPACK (2-vCPU Intel Xeon VM, 2026-11-26). A train step is full of such
# sums (BatchNorm's statistics and their gradients, bias and Scale gradients), so a TRAIN program keeps YNNPACK's
# reductions and nothing else: whole-step A/B in one process, ResNet-18 CIFAR b128 step
# 5,293 -> 4,451 ms (1.19x; the mixed net, with no BatchNorm, 109 -> 104 ms, within its noise). YNNPACK's
# elementwise fusions on top cost the mixed step 30%. A forward-only program keeps none: there XLA fused ResNet-18's
# last stage, convolutions included, into the one reduction left (the global pooling), and YNNPACK ran it slower
# (TEST forward 1,282 vs 1,036 ms). In a train program the forward's values are residuals of the gradient, so no
# convolution joins a reduction (tests/test_lowering_api.py checks the compiled ResNet-18 step).
_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}
_CPU_TRAIN_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}


def library_runs(geom: ConvGeometry) -> bool:
    """Whether oneDNN is installed and runs this convolution (float32, pads within the kernel; see
    netspec.kernels.onednn.supports)."""
    return onednn.supports(_onednn_geometry(geom), geom.dtype)


def _onednn_geometry(geom: ConvGeometry) -> onednn.Geometry:
    return onednn.Geometry(geom.batch, geom.height, geom.width, geom.in_channels, geom.out_channels, geom.kernel,
                           geom.stride, geom.padding, geom.dilation, geom.groups)


def uses_library(backend: str, impl: str) -> bool:
    """Whether ``conv2d(..., impl=impl)`` on ``backend`` hands the convolutions oneDNN supports to it: "auto"
    where it is installed, "onednn" always (conv2d raises where it is not)."""
    return backend == "cpu" and (impl == "onednn" or (impl == "auto" and onednn.available()))


def library_runs_any(backend: str, impl: str, convs: Iterable[ConvGeometry]) -> bool:
    """Whether oneDNN runs any of a net's convolutions ``convs`` under ``impl`` on ``backend``."""
    return uses_library(backend, impl) and any(library_runs(g) for g in convs)


def compiler_options(backend: str, impl: str, convs: Iterable[ConvGeometry], train: bool = False) -> dict[str, Any]:
    """XLA compile options for a program whose 2-D convolutions, of these geometries, use
    ``conv2d(..., impl=impl)`` on ``backend``; ``train``: the program computes gradients (a TRAIN net's step).

    ``jax.jit(fn, compiler_options=...)`` takes them; JAX honours them on the outermost jit only, so the caller that
    compiles a whole train step passes them. Empty for ``impl="xla"`` (the plain baseline), off the CPU, for nets
    without a wide convolution, and for a jaxlib that no longer knows the option (it is experimental)."""
    if backend != "cpu" or impl not in ("auto", "planned", "onednn") or not any(_on_xla_convs(g) for g in convs):
        return {}
    return dict(_CPU_TRAIN_OPTIONS if train and _cpu_options_supported(train=True) else _CPU_OPTIONS)


def _on_xla_convs(geom: ConvGeometry) -> bool:
    """Whether a CPU convolution puts its program on XLA's own convolutions (compiler_options), which
    choose_plan relies on for its passes: a wide layer, and a jaxlib that knows the option."""
    return (geom.in_channels // geom.groups >= _WIDE_CHANNELS and geom.flops >= _TINY_FLOPS
            and _cpu_options_supported())


@functools.cache
def _cpu_options_supported(train: bool = False) -> bool:
    """Whether this jaxlib compiles with ``_CPU_OPTIONS`` (``train``: with ``_CPU_TRAIN_OPTIONS``)."""
    try:
        options = _CPU_TRAIN_OPTIONS if train else _CPU_OPTIONS
        jax.jit(lambda a: a + 1, compiler_options=options).lower(np.float32(0)).compile()
    except Exception:  # an unknown or renamed option or value: compile with XLA's defaults instead
        return False
    return True


# ----------------------------------------------------------------------------------------------------------
# Grouped matmuls on channel-last operands. ``a`` is (..., G*Ci), ``g`` is (..., G*Co), ``b`` is (Ci, G*Co).
# XLA:CPU wants a dot's lhs contracted on its minor axis and its rhs on its major axis; any other layout
# costs a transposing copy of the operand, which for the big (rows, channels) windows is as slow as the dot.


def _acc_type(*xs: jax.Array, preferred: Any) -> Any:
    """Accumulate low-precision inputs in float32 so that summing partial products does not lose bits."""
    if preferred is not None:
        return preferred
    dt = jnp.result_type(*xs)
    return jnp.float32 if jnp.issubdtype(dt, jnp.floating) and jnp.finfo(dt).bits < 32 else dt


def _mm_fwd(a: jax.Array, b: jax.Array, groups: int, acc: Any) -> jax.Array:
    """(..., G*Ci) x (Ci, G*Co) -> (..., G*Co), block-diagonal over groups."""
    lead = a.shape[:-1]
    ci, gco = b.shape
    if groups == 1:
        return lax.dot_general(a, b, (((a.ndim - 1,), (0,)), ((), ())), preferred_element_type=acc)
    co = gco // groups
    a5 = a.reshape(*lead, groups, ci)
    b3 = b.reshape(ci, groups, co)
    if ci == 1:
        # Depthwise: a broadcast multiply that XLA fuses; a batched dot with K=1 would not.
        out = a5.astype(acc) * b3[0].astype(acc)
    else:
        out = jnp.einsum("...gc,cgo->...go", a5, b3, preferred_element_type=acc)
    return out.reshape(*lead, gco)


def _mm_dx(g: jax.Array, b: jax.Array, groups: int, acc: Any) -> jax.Array:
    """(..., G*Co) x (Ci, G*Co)^T -> (..., G*Ci)."""
    lead = g.shape[:-1]
    ci, gco = b.shape
    if groups == 1:
        return lax.dot_general(g, b, (((g.ndim - 1,), (1,)), ((), ())), preferred_element_type=acc)
    co = gco // groups
    g5 = g.reshape(*lead, groups, co)
    b3 = b.reshape(ci, groups, co)
    if ci == 1 and co == 1:
        return g.astype(acc) * b[0].astype(acc)  # depthwise without multiplier: no size-1 reduction
    if ci == 1:
        out = jnp.sum(g5.astype(acc) * b3[0].astype(acc), axis=-1)
    else:
        out = jnp.einsum("...go,cgo->...gc", g5, b3, preferred_element_type=acc)
    return out.reshape(*lead, groups * ci)


def _dw_operand(g: jax.Array, groups: int, ci: int) -> jax.Array:
    """Lay out the output gradient (N, Ho, Wo, G*Co) once for all the ``_mm_dw`` calls that share it."""
    if ci == 1 and groups > 1:
        return g  # depthwise: elementwise products in the NHWC layout, no transpose wanted
    co = g.shape[-1] // groups
    return g.reshape(-1, groups, co).transpose(1, 2, 0)  # (G, Co, rows): contracted on its minor axis


def _mm_dw(a: jax.Array, gt: jax.Array, groups: int, acc: Any) -> jax.Array:
    """sum over (N, Ho, Wo) of a^T g for a (N, Ho, Wo, G*Ci) -> (Ci, G*Co); ``gt`` from ``_dw_operand``."""
    ci = a.shape[-1] // groups
    if ci == 1 and groups > 1:
        # Depthwise: a multiply-reduce. Keep it 4-D: XLA:CPU's reduction of flattened (rows, C) operands
        # measured 2-4x slower (27 vs 60-120 ms for 3x3x128 at 16x16, batch 128).
        co = gt.shape[-1] // groups
        prod = a.astype(acc)[..., None] * gt.astype(acc).reshape(*gt.shape[:-1], groups, co) if co > 1 \
            else a.astype(acc) * gt.astype(acc)
        return jnp.sum(prod, axis=(0, 1, 2)).reshape(1, -1)
    rows = a.reshape(-1, groups, ci)
    # (G, Co, rows) x (rows, G, Ci) -> (G, Co, Ci); the result is tiny, so transposing it is free.
    out = lax.dot_general(gt, rows, (((2,), (0,)), ((0,), (1,))), preferred_element_type=acc)
    return out.transpose(2, 0, 1).reshape(ci, -1)


# ----------------------------------------------------------------------------------------------------------
# Windows of the padded input.


@dataclasses.dataclass(frozen=True)
class _Spec:
    """Static arguments of one call (hashable, so it can be a custom_vjp non-differentiable argument)."""

    stride: Pair
    padding: tuple[Pair, Pair]
    dilation: Pair
    groups: int
    preferred_element_type: Any
    plan: Plan


def _pad_input(x: jax.Array, spec: _Spec) -> jax.Array:
    (t, b), (lft, r) = spec.padding
    zero = jnp.zeros((), x.dtype)
    return lax.pad(x, zero, ((0, 0, 0), (t, b, 0), (lft, r, 0), (0, 0, 0)))


def _taps(kernel: Pair, spec: _Spec) -> list[tuple[int, int, int, int]]:
    """(i, j, row offset, column offset) of every kernel tap in the padded input."""
    return [(i, j, i * spec.dilation[0], j * spec.dilation[1])
            for i in range(kernel[0]) for j in range(kernel[1])]


def window(xp: jax.Array, oi: int, oj: int, out: Pair, stride: Pair) -> jax.Array:
    """The (N, Ho, Wo, C) strided slice of ``xp`` that kernel offset (oi, oj) reads (kernels.pool too; the
    batch-minor ``cols`` passes call it on (C, H, W, N): only axes 1 and 2 are sliced)."""
    n, _, _, c = xp.shape
    limit = (n, oi + stride[0] * (out[0] - 1) + 1, oj + stride[1] * (out[1] - 1) + 1, c)
    return lax.slice(xp, (0, oi, oj, 0), limit, (1, stride[0], stride[1], 1))


def scatter_window(t: jax.Array, oi: int, oj: int, padded: Pair, stride: Pair) -> jax.Array:
    """Transpose of ``window``: place ``t`` (N, Ho, Wo, C), or (C, Ho, Wo, N), at its strided positions in a
    zero image."""
    _, ho, wo, _ = t.shape
    hi_h = padded[0] - oi - stride[0] * (ho - 1) - 1
    hi_w = padded[1] - oj - stride[1] * (wo - 1) - 1
    zero = jnp.zeros((), t.dtype)
    return lax.pad(t, zero, ((0, 0, 0), (oi, hi_h, stride[0] - 1), (oj, hi_w, stride[1] - 1), (0, 0, 0)))


def _unpad(dxp: jax.Array, spec: _Spec) -> jax.Array:
    """Transpose of ``_pad_input`` (negative lax.pad crops; positive would re-add rows a crop removed)."""
    (t, b), (lft, r) = spec.padding
    zero = jnp.zeros((), dxp.dtype)
    return lax.pad(dxp, zero, ((0, 0, 0), (-t, -b, 0), (-lft, -r, 0), (0, 0, 0)))


def _patches(x: jax.Array, kernel: Pair, out: Pair, spec: _Spec) -> jax.Array:
    """im2col: (N, Ho, Wo, G * kh * kw * Ci) with features ordered (group, tap, channel) to match HWIO."""
    xp = _pad_input(x, spec)
    wins = [window(xp, oi, oj, out, spec.stride) for _, _, oi, oj in _taps(kernel, spec)]
    stacked = jnp.stack(wins, axis=3)  # (N, Ho, Wo, T, G*Ci)
    n, ho, wo, taps, c = stacked.shape
    g = spec.groups
    if g > 1:
        stacked = stacked.reshape(n, ho, wo, taps, g, c // g).transpose(0, 1, 2, 4, 3, 5)
    return stacked.reshape(n, ho, wo, taps * c)


# ----------------------------------------------------------------------------------------------------------
# Batch chunking. The matmul formulations materialise kh*kw windows (or kh*kw*C patch columns) per image;
# running them over a few images at a time inside a loop keeps those copies in cache and bounds the
# temporary buffer XLA allocates (and page-faults in) per call.


def _batch_map(fn: Callable[..., jax.Array], arrays: tuple[jax.Array, ...], chunk: int) -> jax.Array:
    """``fn`` over batch chunks of ``arrays``, outputs concatenated; a remainder chunk runs on its own."""
    n = arrays[0].shape[0]
    if chunk <= 0 or chunk >= n:
        return fn(*arrays)
    steps, tail = divmod(n, chunk)
    head = tuple(a[: steps * chunk].reshape(steps, chunk, *a.shape[1:]) for a in arrays)
    out = lax.map(lambda xs: fn(*xs), head)
    out = out.reshape(steps * chunk, *out.shape[2:])
    if tail:
        out = jnp.concatenate([out, fn(*(a[steps * chunk:] for a in arrays))])
    return out


def _batch_sum(fn: Callable[..., jax.Array], arrays: tuple[jax.Array, ...], chunk: int) -> jax.Array:
    """Sum of ``fn`` over batch chunks of ``arrays`` (a scan carrying the running sum)."""
    n = arrays[0].shape[0]
    if chunk <= 0 or chunk >= n:
        return fn(*arrays)
    steps, tail = divmod(n, chunk)
    head = tuple(a[: steps * chunk].reshape(steps, chunk, *a.shape[1:]) for a in arrays)
    zero = jax.eval_shape(fn, *(a[:chunk] for a in arrays))
    total, _ = lax.scan(lambda acc, xs: (acc + fn(*xs), None), jnp.zeros(zero.shape, zero.dtype), head)
    if tail:
        total = total + fn(*(a[steps * chunk:] for a in arrays))
    return total


# ----------------------------------------------------------------------------------------------------------
# The three passes in each formulation. Forward: (spec, x, w) -> y. Input grad: (spec, x_shape, w, dy) -> dx.
# Weight grad: (spec, x, w_shape, dy) -> dw. The matmul ones chunk the batch as the plan says.


def _xla_conv(x: jax.Array, w: jax.Array, spec: _Spec) -> jax.Array:
    padding = spec.padding
    if _past_the_kernel(w.shape[:2], spec):
        # XLA:CPU (jaxlib 0.10.2) returns garbage (uninitialised values up to 1e38) for the input gradient of
        # a convolution padded asymmetrically past its kernel's extent, e.g. 3x3 with ((3, 1), (2, 2)): JAX
        # transposes it into one with negative padding. Padding explicitly leaves the convolution VALID, whose
        # gradient is right, and the pad's gradient is a slice. Caffe's pads are symmetric and no symmetric case
        # failed (docs/performance.md item 12), so specs do not reach it; the test here is deliberately broader.
        x, padding = _pad_input(x, spec), ((0, 0), (0, 0))
    return lax.conv_general_dilated(
        x, w, spec.stride, padding, rhs_dilation=spec.dilation, dimension_numbers=_DIMENSION_NUMBERS,
        feature_group_count=spec.groups, preferred_element_type=spec.preferred_element_type)


def _past_the_kernel(kernel: Pair, spec: _Spec) -> bool:
    """Whether some side's padding reaches past the dilated kernel's extent (see _xla_conv)."""
    return any(p > (k - 1) * d for (lo, hi), k, d in zip(spec.padding, kernel, spec.dilation) for p in (lo, hi))


def _fwd_xla(spec: _Spec, x: jax.Array, w: jax.Array) -> jax.Array:
    return _xla_conv(x, w, spec)


def _fwd_taps(spec: _Spec, x: jax.Array, w: jax.Array) -> jax.Array:
    acc = _acc_type(x, w, preferred=spec.preferred_element_type)

    def chunk(xc: jax.Array) -> jax.Array:
        out = _out_shape(xc.shape, w.shape, spec)[1:3]
        xp = _pad_input(xc, spec)
        return sum(_mm_fwd(window(xp, oi, oj, out, spec.stride), w[i, j], spec.groups, acc)
                   for i, j, oi, oj in _taps(w.shape[:2], spec))

    return _batch_map(chunk, (x,), spec.plan.forward_chunk).astype(_out_dtype(x, w, spec))


def _fwd_im2col(spec: _Spec, x: jax.Array, w: jax.Array) -> jax.Array:
    kh, kw, ci, co = w.shape
    acc = _acc_type(x, w, preferred=spec.preferred_element_type)
    # HWIO -> (kh*kw*Ci, Co): rows ordered (tap, channel), matching each group's block of _patches.
    wm = w.reshape(kh * kw * ci, co)

    def chunk(xc: jax.Array) -> jax.Array:
        out = _out_shape(xc.shape, w.shape, spec)[1:3]
        return _mm_fwd(_patches(xc, (kh, kw), out, spec), wm, spec.groups, acc)

    return _batch_map(chunk, (x,), spec.plan.forward_chunk).astype(_out_dtype(x, w, spec))


def _dx_xla(spec: _Spec, x_shape: jax.ShapeDtypeStruct, w: jax.Array, dy: jax.Array) -> jax.Array:
    (dx,) = jax.linear_transpose(lambda x: _xla_conv(x, w, spec), x_shape)(dy)
    return dx


# Narrow groups run the taps input gradient as the dense layer with a block-diagonal kernel: the per-group
# products (K = Co/g, N = Ci/g) run far below a dense matmul's speed, and G times the FLOPs still takes less time
# for G up to this. Mixed net conv4 (3x3 s2 g4 64->128 at 16x16, b64, 16 channels a group), input grad alone,
# XLA's own convolutions: grouped taps 17.5 ms, XLA's 20.0, dense taps 7.2, dense im2col 7.5, XLA's dense 10.8
# (Intel Xeon VM, 2026-11-26). Applied below 32 channels a group only, the range measured.
_DENSE_GROUPS = 4
_DENSE_GROUP_CHANNELS = 32


def _block_diagonal(w: jax.Array, groups: int) -> jax.Array:
    """HWIO kernel (kh, kw, Ci/g, g*Co/g) of a grouped convolution -> the dense (kh, kw, Ci, Co) one."""
    kh, kw, ci, gco = w.shape
    w5 = w.reshape(kh, kw, ci, groups, gco // groups)
    return jnp.einsum("hwcgo,fg->hwfcgo", w5, jnp.eye(groups, dtype=w.dtype)).reshape(kh, kw, groups * ci, gco)


def _dx_taps(spec: _Spec, x_shape: jax.ShapeDtypeStruct, w: jax.Array, dy: jax.Array) -> jax.Array:
    if 1 < spec.groups <= _DENSE_GROUPS and 1 < w.shape[2] < _DENSE_GROUP_CHANNELS:
        spec, w = dataclasses.replace(spec, groups=1), _block_diagonal(w, spec.groups)
    dy = dy.astype(jnp.result_type(x_shape.dtype, w))
    acc = _acc_type(dy, w, preferred=None)
    padded = _padded_size(x_shape.shape, spec)

    def chunk(dyc: jax.Array) -> jax.Array:
        dxp = sum(scatter_window(_mm_dx(dyc, w[i, j], spec.groups, acc), oi, oj, padded, spec.stride)
                  for i, j, oi, oj in _taps(w.shape[:2], spec))
        return _unpad(dxp, spec)

    return _batch_map(chunk, (dy,), spec.plan.input_grad_chunk).astype(x_shape.dtype)


def _dx_im2col(spec: _Spec, x_shape: jax.ShapeDtypeStruct, w: jax.Array, dy: jax.Array) -> jax.Array:
    dy = dy.astype(jnp.result_type(x_shape.dtype, w))
    kh, kw, ci, co = w.shape
    acc = _acc_type(dy, w, preferred=None)
    g = spec.groups
    padded = _padded_size(x_shape.shape, spec)
    wm = w.reshape(kh * kw * ci, co)

    def chunk(dyc: jax.Array) -> jax.Array:
        n, ho, wo, _ = dyc.shape
        cols = _mm_dx(dyc, wm, g, acc).reshape(n, ho, wo, g, kh * kw, ci)  # col2im below
        dxp = sum(scatter_window(cols[:, :, :, :, t].reshape(n, ho, wo, g * ci), oi, oj, padded, spec.stride)
                  for t, (_, _, oi, oj) in enumerate(_taps((kh, kw), spec)))
        return _unpad(dxp, spec)

    return _batch_map(chunk, (dy,), spec.plan.input_grad_chunk).astype(x_shape.dtype)


def _dw_xla(spec: _Spec, x: jax.Array, w_shape: jax.ShapeDtypeStruct, dy: jax.Array) -> jax.Array:
    (dw,) = jax.linear_transpose(lambda w: _xla_conv(x, w, spec), w_shape)(dy)
    return dw


def _dw_taps(spec: _Spec, x: jax.Array, w_shape: jax.ShapeDtypeStruct, dy: jax.Array) -> jax.Array:
    kh, kw, ci, co = w_shape.shape
    dy = dy.astype(jnp.result_type(x, w_shape.dtype))
    acc = _acc_type(x, dy, preferred=None)

    def chunk(xc: jax.Array, dyc: jax.Array) -> jax.Array:
        gt = _dw_operand(dyc, spec.groups, ci)
        xp = _pad_input(xc, spec)
        return jnp.stack([_mm_dw(window(xp, oi, oj, dyc.shape[1:3], spec.stride), gt, spec.groups, acc)
                          for _, _, oi, oj in _taps((kh, kw), spec)])

    dw = _batch_sum(chunk, (x, dy), spec.plan.weight_grad_chunk)
    return dw.reshape(kh, kw, ci, co).astype(w_shape.dtype)


def _dw_im2col(spec: _Spec, x: jax.Array, w_shape: jax.ShapeDtypeStruct, dy: jax.Array) -> jax.Array:
    kh, kw, ci, co = w_shape.shape
    dy = dy.astype(jnp.result_type(x, w_shape.dtype))
    acc = _acc_type(x, dy, preferred=None)

    def chunk(xc: jax.Array, dyc: jax.Array) -> jax.Array:
        cols = _patches(xc, (kh, kw), dyc.shape[1:3], spec)
        return _mm_dw(cols, _dw_operand(dyc, spec.groups, kh * kw * ci), spec.groups, acc)  # (T*Ci, Co)

    dw = _batch_sum(chunk, (x, dy), spec.plan.weight_grad_chunk)
    return dw.reshape(kh, kw, ci, co).astype(w_shape.dtype)


# ``cols``: batch-minor im2col. Arrays are (C, H, W, N); the patch matrix P is (T, G, Ci, R) with taps T, groups
# G and R = Ho * Wo * N columns ordered (ho, wo, n), so that it is (K, R) with K = T * Ci when G = 1.


def _cols_patches(spec: _Spec, xt: jax.Array, kernel: Pair, out: Pair) -> jax.Array:
    """(T, G, Ci, R) patches of the batch-minor (C, H, W, N) input ``xt``: every window copies whole rows of N."""
    xp = _pad_input(xt, spec)
    wins = jnp.stack([window(xp, oi, oj, out, spec.stride) for _, _, oi, oj in _taps(kernel, spec)])
    taps, c = wins.shape[:2]
    return wins.reshape(taps, spec.groups, c // spec.groups, -1)


def _to_bm(x: jax.Array) -> jax.Array:
    """NHWC -> batch-minor (C, H, W, N), and back (the permutation is its own inverse)."""
    return x.transpose(3, 1, 2, 0)


def _fwd_cols_whole(spec: _Spec, x: jax.Array, w: jax.Array) -> jax.Array:
    return _to_bm(_fwd_cols_bm(spec, _to_bm(x), w))


def _fwd_cols_bm(spec: _Spec, xt: jax.Array, w: jax.Array) -> jax.Array:
    """Batch-minor forward: (C, H, W, N) -> (Co, Ho, Wo, N)."""
    kh, kw, ci, gco = w.shape
    g = spec.groups
    n, ho, wo, _ = _out_shape(_to_bm(xt).shape, w.shape, spec)
    acc = _acc_type(xt, w, preferred=spec.preferred_element_type)
    p = _cols_patches(spec, xt, (kh, kw), (ho, wo))
    if g == 1:
        # (K, Co)^T . (K, R): a plain dot, which XLA:CPU runs faster than the one-group batched form below
        # (LeNet b64 step, docs/performance.md item 9).
        y = lax.dot_general(w.reshape(-1, gco), p.reshape(-1, p.shape[-1]), (((0,), (0,)), ((), ())),
                            preferred_element_type=acc)
    else:
        wg = w.reshape(kh * kw, ci, g, gco // g)
        # (T, Ci, G, Co) . (T, G, Ci, R) -> (G, Co, R): w is tiny, so any copy XLA makes of it is free.
        y = lax.dot_general(wg, p, (((0, 1), (0, 2)), ((2,), (1,))), preferred_element_type=acc)
    return y.reshape(gco, ho, wo, n).astype(_out_dtype(xt, w, spec))


def _cols_chunk(chunk: int, n: int) -> int:
    """The batch chunk of a cols pass: the largest divisor of the batch up to ``chunk`` (0: whole batch).

    Even chunks keep every loop step the same shape (no remainder step to compile)."""
    if not 0 < chunk < n:
        return 0
    return max(d for d in range(1, chunk + 1) if n % d == 0)


def _fwd_cols(spec: _Spec, x: jax.Array, w: jax.Array) -> jax.Array:
    return _batch_map(lambda xc: _fwd_cols_whole(spec, xc, w), (x,), _cols_chunk(spec.plan.forward_chunk,
                                                                                 x.shape[0]))


def _dx_cols(spec: _Spec, x_shape: jax.ShapeDtypeStruct, w: jax.Array, dy: jax.Array) -> jax.Array:
    # _dx_cols_whole reads only H, W and the dtype of x_shape (the batch comes from dy)
    return _batch_map(lambda dyc: _dx_cols_whole(spec, x_shape, w, dyc), (dy,),
                      _cols_chunk(spec.plan.input_grad_chunk, dy.shape[0]))


def _dx_cols_whole(spec: _Spec, x_shape: jax.ShapeDtypeStruct, w: jax.Array, dy: jax.Array) -> jax.Array:
    dxt = _dx_cols_bm(spec, _padded_size(x_shape.shape, spec), w, _to_bm(dy.astype(jnp.result_type(x_shape.dtype, w))))
    return lax.optimization_barrier(_to_bm(dxt)).astype(x_shape.dtype)


def _dx_cols_bm(spec: _Spec, padded: Pair, w: jax.Array, dyt: jax.Array) -> jax.Array:
    """Batch-minor input grad: (Co, Ho, Wo, N) -> (C, H, W, N) of an input whose padded size is ``padded``,
    in the accumulation dtype."""
    kh, kw, ci, gco = w.shape
    g = spec.groups
    _, ho, wo, n = dyt.shape
    acc = _acc_type(dyt, w, preferred=None)
    if g == 1:  # (K, Co) . (Co, R), a plain dot (see _fwd_cols_bm)
        dp = lax.dot_general(w.reshape(-1, gco), dyt.reshape(gco, -1), (((1,), (0,)), ((), ())),
                             preferred_element_type=acc)
    else:
        wg = w.reshape(kh * kw, ci, g, gco // g)
        # (T, Ci, G, Co) . (G, Co, R) -> (G, T, Ci, R)
        dp = lax.dot_general(wg, dyt.reshape(g, gco // g, -1), (((3,), (1,)), ((2,), (0,))),
                             preferred_element_type=acc).transpose(1, 0, 2, 3)
    dp = dp.reshape(kh * kw, g * ci, ho, wo, n)
    hp, wp = padded
    dxp = jnp.zeros((g * ci, hp, wp, n), acc)
    for t, (_, _, oi, oj) in enumerate(_taps((kh, kw), spec)):
        if spec.stride == (1, 1):
            # In-place slice adds. Summing kh*kw padded copies instead let XLA fuse the whole sum into the
            # consumer of dx (a pooling gradient) and recompute it per element (a hand-written batch-minor
            # LeNet step: 92 vs 26 ms).
            part = lax.slice(dxp, (0, oi, oj, 0), (g * ci, oi + ho, oj + wo, n)) + dp[t]
            dxp = lax.dynamic_update_slice(dxp, part, (0, oi, oj, 0))
        else:
            dxp = dxp + scatter_window(dp[t], oi, oj, (hp, wp), spec.stride)
    return _unpad(dxp, spec)


def _dw_cols_from(p: jax.Array, w_shape: jax.ShapeDtypeStruct, dy: jax.Array) -> jax.Array:
    kh, kw, ci, gco = w_shape.shape
    g = p.shape[1]
    acc = _acc_type(p, dy, preferred=None)
    # dy as (R, G, Co) with R ordered (ho, wo, n) like P's columns: a transpose of the small output grad.
    dyr = dy.transpose(1, 2, 0, 3).reshape(-1, g, gco // g).astype(p.dtype)
    # (T, G, Ci, R) . (R, G, Co) -> (G, T, Ci, Co)
    dw = lax.dot_general(p, dyr, (((3,), (0,)), ((1,), (1,))), preferred_element_type=acc)
    return dw.transpose(1, 2, 0, 3).reshape(kh, kw, ci, gco)  # in the accumulation dtype


def _dw_cols(spec: _Spec, x: jax.Array, w_shape: jax.ShapeDtypeStruct, dy: jax.Array) -> jax.Array:
    kh, kw, _, co = w_shape.shape
    dy = dy.astype(jnp.result_type(x, w_shape.dtype))
    n = x.shape[0]
    chunk = _cols_chunk(spec.plan.weight_grad_chunk, n)
    if x.shape[3] == 1:
        # One input channel (a first layer on grey images): NHWC x is already batch-major rows, so the
        # (T, N * Ho * Wo) patches are stacked windows of it in the row order of dy's (N * Ho * Wo, Co): one
        # matmul, no transposing copy of either operand (LeNet conv1 at b64: 1.7 ms vs XLA's 3.9 in isolation).
        def one_channel(xc: jax.Array, dyc: jax.Array) -> jax.Array:
            xp = _pad_input(xc.astype(dyc.dtype), spec)
            p = jnp.stack([window(xp, oi, oj, dyc.shape[1:3], spec.stride)
                           for _, _, oi, oj in _taps((kh, kw), spec)]).reshape(kh * kw, -1)
            acc = _acc_type(p, dyc, preferred=None)
            return lax.dot_general(p, dyc.reshape(-1, co), (((1,), (0,)), ((), ())), preferred_element_type=acc)

        return _batch_sum(one_channel, (x, dy), chunk).reshape(w_shape.shape).astype(w_shape.dtype)
    dw = _batch_sum(lambda xc, dyc: _dw_cols_chunk(spec, xc, w_shape, dyc), (x, dy), chunk)
    return dw.astype(w_shape.dtype)


def _dw_cols_chunk(spec: _Spec, xc: jax.Array, w_shape: jax.ShapeDtypeStruct, dyc: jax.Array) -> jax.Array:
    """One batch chunk's cols weight-grad term (in the accumulation dtype), patches built on the spot."""
    kh, kw = w_shape.shape[:2]
    return _dw_cols_from(_cols_patches(spec, _to_bm(xc.astype(dyc.dtype)), (kh, kw), dyc.shape[1:3]), w_shape, dyc)


def _dw_cols_bm(p: jax.Array, w_shape: jax.ShapeDtypeStruct, dyt: jax.Array) -> jax.Array:
    """Batch-minor weight grad from the (T, G, Ci, R) patches and the (Co, Ho, Wo, N) output grad, in the
    accumulation dtype."""
    kh, kw, ci, gco = w_shape.shape
    g = p.shape[1]
    acc = _acc_type(p, dyt, preferred=None)
    if g == 1:
        # (K, R) . (R, Co): the transposed output grad is the small operand (see _fwd_cols_bm).
        dw = lax.dot_general(p.reshape(-1, p.shape[-1]), dyt.reshape(gco, -1).astype(p.dtype).T,
                             (((1,), (0,)), ((), ())), preferred_element_type=acc)
        return dw.reshape(kh, kw, ci, gco)
    # (T, G, Ci, R) . (G, Co, R) -> (G, T, Ci, Co): both operands contracted on their minor axis.
    dw = lax.dot_general(p, dyt.reshape(g, gco // g, -1).astype(p.dtype), (((3,), (2,)), ((1,), (0,))),
                         preferred_element_type=acc)
    return dw.transpose(1, 2, 0, 3).reshape(kh, kw, ci, gco)


def _library_geometry(spec: _Spec, x_shape: tuple[int, ...], w_shape: tuple[int, ...]) -> onednn.Geometry:
    return _onednn_geometry(geometry(x_shape, w_shape, spec.stride, spec.padding, spec.dilation, spec.groups))


def _fwd_onednn(spec: _Spec, x: jax.Array, w: jax.Array) -> jax.Array:
    return onednn.forward(_library_geometry(spec, x.shape, w.shape), x, w)


def _dx_onednn(spec: _Spec, x_shape: jax.ShapeDtypeStruct, w: jax.Array, dy: jax.Array) -> jax.Array:
    return onednn.input_grad(_library_geometry(spec, x_shape.shape, w.shape), w, dy).astype(x_shape.dtype)


def _dw_onednn(spec: _Spec, x: jax.Array, w_shape: jax.ShapeDtypeStruct, dy: jax.Array) -> jax.Array:
    return onednn.weight_grad(_library_geometry(spec, x.shape, w_shape.shape), x, dy).astype(w_shape.dtype)


_FORWARD: dict[str, Callable[..., jax.Array]] = {"xla": _fwd_xla, "taps": _fwd_taps, "im2col": _fwd_im2col,
                                                 "cols": _fwd_cols, "onednn": _fwd_onednn}
_INPUT_GRAD: dict[str, Callable[..., jax.Array]] = {"xla": _dx_xla, "taps": _dx_taps, "im2col": _dx_im2col,
                                                    "cols": _dx_cols, "onednn": _dx_onednn}
_WEIGHT_GRAD: dict[str, Callable[..., jax.Array]] = {"xla": _dw_xla, "taps": _dw_taps, "im2col": _dw_im2col,
                                                     "cols": _dw_cols, "onednn": _dw_onednn}


def _out_dtype(x: jax.Array, w: jax.Array, spec: _Spec) -> Any:
    return spec.preferred_element_type or jnp.result_type(x, w)


def _out_shape(x_shape: tuple[int, ...], w_shape: tuple[int, ...], spec: _Spec) -> tuple[int, int, int, int]:
    n, h, wd, _ = x_shape
    kh, kw, _, co = w_shape
    return (n, _out_len(h, kh, spec.stride[0], spec.padding[0], spec.dilation[0]),
            _out_len(wd, kw, spec.stride[1], spec.padding[1], spec.dilation[1]), co)


def _padded_size(x_shape: tuple[int, ...], spec: _Spec) -> Pair:
    (t, b), (lft, r) = spec.padding
    return x_shape[1] + t + b, x_shape[2] + lft + r


# ----------------------------------------------------------------------------------------------------------
# custom_vjp wiring.


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _planned_conv(spec: _Spec, x: jax.Array, w: jax.Array) -> jax.Array:
    if spec.plan.forward == "cols":
        # Not differentiated (inference): XLA's forward is the faster one there (LeNet TEST forward at b64
        # 8 vs 22 ms with the cols forward).
        return _fwd_xla(spec, x, w)
    return _FORWARD[spec.plan.forward](spec, x, w)


def _cols_grads(spec: _Spec, x: jax.Array, w: jax.Array, dy: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Both cols gradients in one loop over batch chunks: each chunk's patches are built once, used for its
    weight-grad term and dropped, and its input grad is written out.

    Rebuilding the patches here beat keeping the forward's as the residual (LeNet train step vs the Flax
    model at b256: 2.09x vs 1.53x, at b64 1.66x vs 1.46x): a stacked loop output of 33 MB is zero-filled
    by XLA before the loop writes it (20 ms at b256), and the patches of a chunk are cheap to rebuild."""
    dy = dy.astype(jnp.result_type(x, w))
    w_shape = jax.ShapeDtypeStruct(w.shape, w.dtype)
    x_shape = jax.ShapeDtypeStruct(x.shape, x.dtype)  # only its H, W and dtype are read
    n = x.shape[0]
    chunk = _cols_chunk(spec.plan.weight_grad_chunk, n) or n

    def one(xc: jax.Array, dyc: jax.Array) -> tuple[jax.Array, jax.Array]:
        return _dx_cols_whole(spec, x_shape, w, dyc), _dw_cols_chunk(spec, xc, w_shape, dyc)

    if chunk == n:
        dx, dw = one(x, dy)
        return dx, dw.astype(w.dtype)
    steps = n // chunk

    def body(acc: jax.Array, xs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        dxc, dwc = one(*xs)
        return acc + dwc, dxc

    zero = jnp.zeros(w.shape, _acc_type(x, dy, preferred=None))
    dw, dxs = lax.scan(body, zero, (x.reshape(steps, chunk, *x.shape[1:]), dy.reshape(steps, chunk, *dy.shape[1:])))
    return dxs.reshape(n, *dxs.shape[2:]), dw.astype(w.dtype)


def _planned_conv_fwd(spec: _Spec, x: jax.Array,
                      w: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    # The primal _planned_conv keeps XLA's forward for a cols plan (inference); differentiated, the plan's
    # forward runs.
    return _FORWARD[spec.plan.forward](spec, x, w), (x, w)


def _planned_conv_bwd(spec: _Spec, res: tuple[jax.Array, jax.Array],
                      dy: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, w = res
    if spec.plan.input_grad == spec.plan.weight_grad == "cols" and x.shape[3] > 1:
        return _cols_grads(spec, x, w, dy)
    x_shape = jax.ShapeDtypeStruct(x.shape, x.dtype)
    w_shape = jax.ShapeDtypeStruct(w.shape, w.dtype)
    dx = _INPUT_GRAD[spec.plan.input_grad](spec, x_shape, w, dy)
    dw = _WEIGHT_GRAD[spec.plan.weight_grad](spec, x, w_shape, dy)
    return dx, dw


_planned_conv.defvjp(_planned_conv_fwd, _planned_conv_bwd)


# Batch-minor convolution: the Convolution lowering's path when the net runs in the "chwn" layout
# (batch_minor_pays). Every pass is the cols matmul, with no transposing copy on either side. A batch too big
# for one step runs in chunks of the (minor) image axis: each loop step slices its images out of every row and
# writes its results back in place.


def _bm_chunks(n: int, chunk: int) -> int:
    """Loop steps over the minor batch axis (1: the whole batch at once)."""
    chunk = _cols_chunk(chunk, n)
    return n // chunk if chunk else 1


def _bm_fwd(spec: _Spec, xt: jax.Array, w: jax.Array) -> jax.Array:
    n = xt.shape[3]
    steps = _bm_chunks(n, spec.plan.forward_chunk)
    if steps == 1:
        return _fwd_cols_bm(spec, xt, w)
    nc = n // steps
    _, ho, wo, co = _out_shape(_to_bm(xt).shape, w.shape, spec)

    def body(s: jax.Array, y: jax.Array) -> jax.Array:
        yc = _fwd_cols_bm(spec, lax.dynamic_slice_in_dim(xt, s * nc, nc, axis=3), w)
        return lax.dynamic_update_slice_in_dim(y, yc, s * nc, axis=3)

    return lax.fori_loop(0, steps, body, jnp.zeros((co, ho, wo, n), _out_dtype(xt, w, spec)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _bm_conv(spec: _Spec, xt: jax.Array, w: jax.Array) -> jax.Array:
    return _bm_fwd(spec, xt, w)


def _bm_conv_fwd(spec: _Spec, xt: jax.Array, w: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return _bm_fwd(spec, xt, w), (xt, w)


def _bm_grads(spec: _Spec, padded: Pair, xt: jax.Array, w: jax.Array, dyt: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(dx, dw) of one batch chunk, in the accumulation dtype. Rebuilding the patches here beat keeping the
    forward's as the residual in the NHWC cols passes (_cols_grads); the hand-written batch-minor LeNet step
    measured the two within its noise."""
    p = _cols_patches(spec, xt, w.shape[:2], dyt.shape[1:3])
    return _dx_cols_bm(spec, padded, w, dyt), _dw_cols_bm(p, jax.ShapeDtypeStruct(w.shape, w.dtype), dyt)


def _bm_conv_bwd(spec: _Spec, res: tuple[jax.Array, jax.Array], dyt: jax.Array) -> tuple[jax.Array, jax.Array]:
    xt, w = res
    dyt = dyt.astype(jnp.result_type(xt, w))
    padded = _padded_size(xt.shape, spec)  # H and W are axes 1 and 2 in either layout
    n = xt.shape[3]
    steps = _bm_chunks(n, spec.plan.weight_grad_chunk)
    if steps == 1:
        dx, dw = _bm_grads(spec, padded, xt, w, dyt)
        # The barrier keeps XLA from fusing the slice adds into dx's consumer (see _dx_cols_bm).
        return lax.optimization_barrier(dx).astype(xt.dtype), dw.astype(w.dtype)
    nc = n // steps

    def body(s: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        dw, dx = carry
        dxc, dwc = _bm_grads(spec, padded, lax.dynamic_slice_in_dim(xt, s * nc, nc, axis=3), w,
                             lax.dynamic_slice_in_dim(dyt, s * nc, nc, axis=3))
        return dw + dwc, lax.dynamic_update_slice_in_dim(dx, dxc.astype(dx.dtype), s * nc, axis=3)

    zero_dw = jnp.zeros(w.shape, _acc_type(xt, dyt, preferred=None))
    dw, dx = lax.fori_loop(0, steps, body, (zero_dw, jnp.zeros(xt.shape, xt.dtype)))
    return dx, dw.astype(w.dtype)


_bm_conv.defvjp(_bm_conv_fwd, _bm_conv_bwd)


def batch_minor_chunk(geom: ConvGeometry) -> int:
    """Images per loop step of ``conv2d_batch_minor``: the whole batch (0) while its patch matrix fits in
    ``_WHOLE_BATCH_BYTES``, else the most that fit (a divisor of the batch, see _cols_chunk).

    Only a net forced batch-minor (compile(spatial_layout="chwn")) loops: batch_minor_pays keeps the layout to
    batches that need no loop. LeNet b256 train step forced batch-minor, one process, vs the hand-written Flax
    model: every convolution in one step 1.58x, in chunks of 32 images 1.77x, of 64 1.83x."""
    per_image = _cols_patch_bytes(geom)
    if per_image * geom.batch <= _WHOLE_BATCH_BYTES:
        return 0
    return _cols_chunk(max(1, _WHOLE_BATCH_BYTES // per_image), geom.batch)


def conv2d_batch_minor(xt: jax.Array, w: jax.Array, *, stride: Pair = (1, 1),
                       padding: tuple[Pair, Pair] = ((0, 0), (0, 0)), dilation: Pair = (1, 1), groups: int = 1,
                       preferred_element_type: Any = None, chunk: int | None = None) -> jax.Array:
    """``conv2d`` on batch-minor operands: ``xt`` is (Cin, H, W, N), the result (Cout, Ho, Wo, N).

    Equal to ``conv2d(xt.transpose(3, 1, 2, 0), w, ...).transpose(3, 1, 2, 0)``; all three passes are one
    ``cols`` matmul each per loop step of ``chunk`` images (0: the whole batch; None: ``batch_minor_chunk``),
    on every backend."""
    spec = _normalize(stride, padding, dilation, groups, _to_bm(xt), w, "auto")
    if chunk is None:
        chunk = batch_minor_chunk(geometry(_to_bm(xt).shape, w.shape, spec.stride, spec.padding, spec.dilation,
                                           spec.groups, jnp.result_type(xt, w)))
    return _bm_conv(dataclasses.replace(spec, preferred_element_type=_dtype_or_none(preferred_element_type),
                                        plan=Plan.uniform("cols", chunk)), xt, w)


def batch_minor_pays(backend: str, impl: str, convs: Iterable[ConvGeometry]) -> bool:
    """Whether a net whose 2-D convolutions are ``convs`` (all of them, each over Caffe's axis 1, and every
    spatial layer able to run batch-minor) should keep its spatial blobs batch-minor, (C, H, W, N), and run
    every convolution as ``conv2d_batch_minor``.

    Yes on the CPU with impl "auto" when every convolution is one ``cols`` pays for (_cols_pays) or a
    one-channel first layer, at least one is the former, and every patch matrix fits in
    ``_WHOLE_BATCH_BYTES`` (no loop: batch_minor_chunk is 0). There the NHWC cols passes spend much of their
    time transposing at each layer boundary, and the batch-minor layout also makes the first layer's forward
    a matmul. LeNet train step, `python tools/bench_train_cpu.py --channels-last --cases lenet64,lenet256`
    (docs/performance.md item 9): at b64 2.05-2.12x the hand-written Flax model vs 1.73-1.79x channels-last;
    at b256, in chunks, 1.87x vs 2.14x with glibc's malloc defaults and 2.44x vs 2.43x with netspec train's
    setting for its 40 MiB scratch, so a batch that needs the loop stays channels-last.
    """
    convs = list(convs)
    if backend != "cpu" or impl not in ("auto", "planned") or not convs:
        return False
    if library_runs_any(backend, impl, convs):
        # oneDNN's NHWC kernels beat the batch-minor matmuls (LeNet train step b64 1.09-1.10x, b256 1.77-1.79x,
        # docs/performance.md item 14).
        return False

    def grey_input(g: ConvGeometry) -> bool:
        return g.in_channels == 1 and g.groups == 1 and g.flops >= _TINY_FLOPS

    return (all((_cols_pays(g) or grey_input(g)) and batch_minor_chunk(g) == 0 for g in convs)
            and any(_cols_pays(g) for g in convs))


def _normalize(stride: Any, padding: Any, dilation: Any, groups: Any, x: jax.Array, w: jax.Array,
               impl: str) -> _Spec:
    """Normalise the static arguments to ints, or raise one ValueError listing every problem."""
    problems = []
    if impl not in IMPLS:
        problems.append(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")

    def pair(name: str, v: Any, lowest: int) -> Pair:
        t = tuple(int(e) for e in v)
        if len(t) != 2 or min(t) < lowest:
            problems.append(f"{name} must be two ints >= {lowest}, got {v}")
            return (1, 1)
        return t[0], t[1]

    st, dl = pair("stride", stride, 1), pair("dilation", dilation, 1)
    pads = tuple(tuple(int(e) for e in p) for p in padding)
    if len(pads) != 2 or any(len(p) != 2 for p in pads):
        problems.append(f"padding must be ((top, bottom), (left, right)), got {padding}")
        pads = ((0, 0), (0, 0))
    pd = ((pads[0][0], pads[0][1]), (pads[1][0], pads[1][1]))
    g = int(groups)
    if x.ndim != 4 or w.ndim != 4:
        problems.append(f"x must be NHWC and w HWIO (4-D each), got shapes {x.shape} and {w.shape}")
    elif g < 1 or x.shape[3] % g or w.shape[3] % g:
        problems.append(f"groups={g} must divide Cin={x.shape[3]} and Cout={w.shape[3]}")
    elif w.shape[2] * g != x.shape[3]:
        problems.append(f"w has {w.shape[2]} input channels per group but x has {x.shape[3]} / {g}")
    spec = _Spec(st, pd, dl, g, None, Plan("xla", "xla", "xla"))
    if not problems:
        _, ho, wo, _ = _out_shape(x.shape, w.shape, spec)
        if ho < 1 or wo < 1:
            problems.append(f"output would be {ho}x{wo}: the dilated kernel does not fit the padded input")
    if problems:
        raise ValueError("conv2d: " + "; ".join(problems))
    return spec


def conv2d(x: jax.Array, w: jax.Array, *, stride: Pair = (1, 1),
           padding: tuple[Pair, Pair] = ((0, 0), (0, 0)), dilation: Pair = (1, 1), groups: int = 1,
           impl: Impl = "auto", preferred_element_type: Any = None, xla_convs: bool = False) -> jax.Array:
    """NHWC x HWIO cross-correlation, identical to ``lax.conv_general_dilated`` (see the module docstring).

    Args:
      x: input, (N, H, W, Cin).
      w: kernel, (kh, kw, Cin // groups, Cout).
      stride: (sh, sw).
      padding: ((top, bottom), (left, right)) zero padding (negative crops, as in lax).
      dilation: (dh, dw) kernel dilation.
      groups: feature groups; Cin == Cout == groups with w of shape (kh, kw, 1, Cout) is depthwise.
      impl: "auto" (per-pass fastest formulation, see ``choose_plan``; oneDNN's kernels where installed),
        "planned" ("auto" without oneDNN), "onednn" ("auto" that requires it), "xla", "taps" or "im2col".
      preferred_element_type: accumulation / output dtype, e.g. jnp.float32 for bfloat16 inputs.
      xla_convs: with impl "auto", the enclosing program is compiled with ``compiler_options`` that turn
        YNNPACK's convolutions off (a net with a wide layer elsewhere); ``choose_plan`` then plans for that.

    Returns:
      (N, Ho, Wo, Cout) in ``preferred_element_type`` or the promoted input dtype.

    Raises:
      ValueError: listing every inconsistent argument.
    """
    spec = _normalize(stride, padding, dilation, groups, x, w, impl)
    geom = geometry(x.shape, w.shape, spec.stride, spec.padding, spec.dilation, spec.groups,
                    jnp.result_type(x, w))
    if impl == "onednn" and not onednn.available():
        raise ValueError(f"conv2d: impl 'onednn': {onednn.unavailable_reason()} (pip install onednn-cpu-gomp==2023.2.0, "
                         "Linux x86-64 only)")
    if impl in ("auto", "planned", "onednn"):
        backend = jax.default_backend()
        library = uses_library(backend, impl) and _dtype_or_none(preferred_element_type) in (None, np.float32)
        plan = choose_plan(backend, geom, xla_convs, library=library)
    else:
        plan = Plan.uniform(impl, 0 if impl == "xla" else batch_chunk(geom))  # type: ignore[arg-type]
    return _run(dataclasses.replace(spec, preferred_element_type=_dtype_or_none(preferred_element_type),
                                    plan=plan), x, w)


def conv2d_planned(x: jax.Array, w: jax.Array, plan: Plan, *, stride: Pair = (1, 1),
                   padding: tuple[Pair, Pair] = ((0, 0), (0, 0)), dilation: Pair = (1, 1), groups: int = 1,
                   preferred_element_type: Any = None) -> jax.Array:
    """``conv2d`` with an explicit ``Plan`` instead of ``impl`` (benchmarks, tests, experiments)."""
    spec = _normalize(stride, padding, dilation, groups, x, w, "auto")
    return _run(dataclasses.replace(spec, preferred_element_type=_dtype_or_none(preferred_element_type),
                                    plan=plan), x, w)


def geometry(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: Pair = (1, 1),
             padding: tuple[Pair, Pair] = ((0, 0), (0, 0)), dilation: Pair = (1, 1), groups: int = 1,
             dtype: Any = "float32") -> ConvGeometry:
    """The ``ConvGeometry`` of a conv2d call with these operand shapes (NHWC, HWIO)."""
    n, h, wd, cin = x_shape
    kh, kw, _, cout = w_shape
    return ConvGeometry(n, h, wd, cin, cout, (kh, kw), stride, padding, dilation, groups,
                        np.dtype(dtype).name)


def _dtype_or_none(dtype: Any) -> Any:
    return None if dtype is None else np.dtype(dtype)


def _run(spec: _Spec, x: jax.Array, w: jax.Array) -> jax.Array:
    if spec.plan.forward == spec.plan.input_grad == spec.plan.weight_grad == "xla":
        return _xla_conv(x, w, spec)
    return _planned_conv(spec, x, w)
