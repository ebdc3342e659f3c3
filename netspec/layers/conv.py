"""Convolution and Deconvolution (caffe/src/caffe/layers/{base_conv,conv,deconv}_layer.cpp).

Convolution: ext = d·(k−1)+1, out = ⌊(in + 2p − ext)/s⌋ + 1 per spatial axis.
Deconvolution: out = s·(in − 1) + ext − 2p; weights are (C_in, C_out/group, k...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Mapping

from netspec.layers.base import (Blob, Evaluation, LayerType, Message, Shape, ShapeError, ShapeNote,
                                 Window, count, fmt_shape, gather)
from netspec.layers.common import FillerParameter
from netspec.layers.spatial import axis_names, canonical_axis, per_axis
from netspec.message import Field, NonNegativeInt, PositiveInt, Repeated

if TYPE_CHECKING:
    from netspec.spec import LayerSpec


class ConvolutionParameter(Message):
    """Caffe `ConvolutionParameter` (shared by Convolution and Deconvolution)."""

    num_output: PositiveInt = Field(..., description="number of output channels")
    bias_term: bool = Field(True, description="whether to learn a bias per output channel")
    pad: Repeated[NonNegativeInt] = Field((), description="zero padding per side (default 0)")
    kernel_size: Repeated[PositiveInt] = Field((), description="kernel size, one value or one per axis")
    stride: Repeated[PositiveInt] = Field((), description="stride (default 1)")
    dilation: Repeated[PositiveInt] = Field((), description="kernel dilation (default 1)")
    pad_h: NonNegativeInt | None = None
    pad_w: NonNegativeInt | None = None
    kernel_h: PositiveInt | None = None
    kernel_w: PositiveInt | None = None
    stride_h: PositiveInt | None = None
    stride_w: PositiveInt | None = None
    group: PositiveInt = Field(1, description="channel groups; group = channels is depthwise")
    weight_filler: FillerParameter = Field(default_factory=FillerParameter)
    bias_filler: FillerParameter = Field(default_factory=FillerParameter)
    engine: str = "DEFAULT"
    axis: int = Field(1, description="the channel axis")
    force_nd_im2col: bool = False


class _Geometry:
    """Resolved per-axis kernel, stride, pad and dilation of one conv layer on one input."""

    def __init__(self, layer: LayerSpec, bottom: Shape) -> None:
        p: ConvolutionParameter = layer.messages["convolution_param"]
        self.p = p
        self.axis = canonical_axis(p.axis, len(bottom))
        self.n_spatial = len(bottom) - self.axis - 1
        if self.n_spatial < 1:
            raise ShapeError(f"needs a blob with spatial axes after the channel axis, got {fmt_shape(bottom)}")
        self.channels = bottom[self.axis]
        self.spatial = bottom[self.axis + 1:]
        n = self.n_spatial
        self.kernel, self.stride, self.pad, self.dilation, _, _ = gather(  # every problem, located
            lambda: _axes(p, "kernel_size", n, None), lambda: _axes(p, "stride", n, 1),
            lambda: _axes(p, "pad", n, 0), lambda: _axes(p, "dilation", n, 1),
            lambda: _divisible("input channels", self.channels, p.group),
            lambda: _divisible("num_output", p.num_output, p.group))
        self.ext = tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))

    def window(self, transposed: bool = False) -> Window:
        return Window(self.kernel, self.stride, self.pad, self.dilation, transposed)


def _axes(p: ConvolutionParameter, field: str, n_spatial: int, default: int | None) -> tuple[int, ...]:
    try:
        return per_axis(p, field, n_spatial, default)
    except ShapeError as e:
        raise ShapeError(e.message, field=("convolution_param",) + e.field, hint=e.hint) from None


def _divisible(what: str, n: int, group: int) -> None:
    if n % group:
        raise ShapeError(f"{what} {n} {'are' if what.endswith('s') else 'is'} not divisible by group {group}",
                         field=("convolution_param", "group"))


def _arith(size: int, k: int, ext: int, d: int, p: int, s: int) -> str:
    kern = str(k) if d == 1 else f"{ext}"
    return f"({size}−{kern}+2·{p})/{s}+1"


class _Convolutional(LayerType):
    """What Convolution and Deconvolution share: the message, and rules that resolve the geometry once
    (`evaluate`) or per call. Subclasses give `_infer`, `_blobs`, `_macs` (and `_notes`)."""

    messages: ClassVar[Mapping[str, type[Message]]] = {"convolution_param": ConvolutionParameter}
    transposed: ClassVar[bool] = False

    @classmethod
    def infer(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Shape, ...]:
        return cls._infer(_Geometry(layer, bottoms[0]), layer, bottoms)

    @classmethod
    def notes(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> list[ShapeNote]:
        return cls._notes(_Geometry(layer, bottoms[0]))

    @classmethod
    def blobs(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Blob, ...]:
        return cls._blobs(_Geometry(layer, bottoms[0]))

    @classmethod
    def macs(cls, layer: LayerSpec, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]) -> int:
        return cls._macs(_Geometry(layer, bottoms[0]), bottoms, tops)

    @classmethod
    def window(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> Window | None:
        return _Geometry(layer, bottoms[0]).window(cls.transposed)

    @classmethod
    def evaluate(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> Evaluation:
        g = _Geometry(layer, bottoms[0])
        tops = cls._infer(g, layer, bottoms)
        return tops, cls._notes(g), cls._blobs(g), cls._macs(g, bottoms, tops), g.window(cls.transposed)

    @staticmethod
    def _infer(g: _Geometry, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Shape, ...]:
        raise NotImplementedError

    @staticmethod
    def _notes(g: _Geometry) -> list[ShapeNote]:
        return []

    @staticmethod
    def _blobs(g: _Geometry) -> tuple[Blob, ...]:
        raise NotImplementedError

    @staticmethod
    def _macs(g: _Geometry, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]) -> int:
        raise NotImplementedError


class Convolution(_Convolutional):
    type_name = "Convolution"
    summary = "cross-correlation with Caffe's (C_out, C_in/group, kh, kw) weights"

    @staticmethod
    def _infer(g: _Geometry, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Shape, ...]:
        out = []
        for name, size, k, ext, d, p, s in zip(axis_names(g.n_spatial), g.spatial, g.kernel, g.ext,
                                               g.dilation, g.pad, g.stride):
            if size + 2 * p < ext:
                dil = f" (dilated to {ext})" if d > 1 else ""
                raise ShapeError(f"kernel {k}{dil} is larger than the padded input: {size}+2·{p} = "
                                 f"{size + 2 * p} {name}s", field=("convolution_param",))
            out.append((size + 2 * p - ext) // s + 1)
        shape = bottoms[0][:g.axis] + (g.p.num_output,) + tuple(out)
        return (shape,) * len(layer.top)

    @staticmethod
    def _notes(g: _Geometry) -> list[ShapeNote]:
        groups: dict[tuple[str, int], list[str]] = {}
        for name, size, k, ext, d, p, s in zip(axis_names(g.n_spatial), g.spatial, g.kernel, g.ext,
                                               g.dilation, g.pad, g.stride):
            lost = (size + 2 * p - ext) % s
            if size + 2 * p >= ext and lost:
                whole = size + 2 * p - ext + s  # (N−F+2P)/S + 1 = whole/s; int/int rounds correctly
                text = f"{_arith(size, k, ext, d, p, s)} = {whole / s:g}, floored to {whole // s}"
                groups.setdefault((text, lost), []).append(name)
        notes = []
        for (text, lost), names in groups.items():
            if lost == 1:
                what = f"the last input {'/'.join(names)} is never read"
            else:
                what = f"the last {lost} input {'/'.join(n + 's' for n in names)} are never read"
            notes.append(ShapeNote(f"{text}; {what}", field=("convolution_param",)))
        return notes

    @staticmethod
    def _blobs(g: _Geometry) -> tuple[Blob, ...]:
        w = Blob((g.p.num_output, g.channels // g.p.group) + g.kernel)
        return (w, Blob((g.p.num_output,))) if g.p.bias_term else (w,)

    @staticmethod
    def _macs(g: _Geometry, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]) -> int:
        return count(tops[0]) * (g.channels // g.p.group) * count(g.kernel)


class Deconvolution(_Convolutional):
    type_name = "Deconvolution"
    summary = "transposed convolution; weights (C_in, C_out/group, kh, kw)"
    transposed = True

    @staticmethod
    def _infer(g: _Geometry, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Shape, ...]:
        out = []
        for name, size, ext, p, s in zip(axis_names(g.n_spatial), g.spatial, g.ext, g.pad, g.stride):
            o = s * (size - 1) + ext - 2 * p
            if o < 1:
                raise ShapeError(f"output {name}s would be {s}·({size}−1)+{ext}−2·{p} = {o}",
                                 field=("convolution_param",))
            out.append(o)
        shape = bottoms[0][:g.axis] + (g.p.num_output,) + tuple(out)
        return (shape,) * len(layer.top)

    @staticmethod
    def _blobs(g: _Geometry) -> tuple[Blob, ...]:
        w = Blob((g.channels, g.p.num_output // g.p.group) + g.kernel)
        return (w, Blob((g.p.num_output,))) if g.p.bias_term else (w,)

    @staticmethod
    def _macs(g: _Geometry, bottoms: tuple[Shape, ...], tops: tuple[Shape, ...]) -> int:
        return count(bottoms[0]) * (g.p.num_output // g.p.group) * count(g.kernel)


LAYERS = (Convolution, Deconvolution)
