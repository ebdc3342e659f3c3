"""What a layer lowering is, and the layout rules every lowering shares.

A lowering turns one graph node into array code. It is a frozen record keyed by the Caffe type
name (each family module ends with a `LOWERINGS` tuple, as netspec.layers ends with `LAYERS`);
the driver in `model.py` never switches on layer type.

Layout. Users see Caffe's N,C,H,W (N,C,spatial... for N-D blobs). Inside, blobs of 3 or more axes
produced by spatial layers (convolution, pooling, LRN) are kept in the net's *spatial layout*:

- "nhwc" (channels-last: Caffe's axis 1 moved last, N,H,W,C; N,D,H,W,C; N,L,C), the default: for
  2-D, the layout XLA:CPU convolves fastest (see docs/performance.md); 3-D convolutions measured the
  same in either layout, and one rule for every rank spares a transpose per layer between
  consecutive N-D convolutions and the layers between them.
- "chwn" (batch-minor: Caffe's axis 0 moved last, C,H,W,N), chosen by the Model for small CPU nets
  whose convolutions all run as batch-minor matmuls (netspec.kernels.conv.batch_minor_pays): every
  convolution pass is then one matmul with no transposing copy at layer boundaries.

Every blob carries a static layout tag: "nchw" (Caffe order; every blob of 2 or fewer axes), "nhwc"
or "chwn". A lowering states the layout it wants its bottoms in:

- "spatial": layers that run in either spatial layout (convolution, pooling, LRN); their tops of 3+
  axes keep it (`top_layout`).
- "nhwc": spatial layers written for channels-last only (Deconvolution); the driver converts.
- "nchw": layers that reinterpret the row-major Caffe buffer (Flatten, Reshape, losses); the driver
  transposes bottoms back first (InnerProduct takes "any" and does so itself unless the bottom is
  batch-minor, whose leading axes are already Caffe's C,H,W).
- "any": layers that work in every layout by mapping their Caffe `axis` through `axis_of`; the
  bottoms arrive in bottom 0's layout and the tops keep it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal

if TYPE_CHECKING:
    import jax

    from netspec.layers.common import FillerParameter
    from netspec.spec import LayerSpec

Layout = Literal["nchw", "nhwc", "chwn"]
Wants = Literal["any", "spatial", "nchw", "nhwc"]
Cast = Literal["compute", "float32", "none"]


def to_last(ndim: int) -> tuple[int, ...]:
    """The transpose taking Caffe's order to channels-last: (0, 2, ..., ndim-1, 1)."""
    return (0, *range(2, ndim), 1)


def _order(layout: Layout, ndim: int) -> tuple[int, ...]:
    """Which Caffe axis each axis of an array in `layout` holds (the transpose from Caffe's order)."""
    if ndim < 3 or layout == "nchw":
        return tuple(range(ndim))
    return to_last(ndim) if layout == "nhwc" else (*range(1, ndim), 0)


def axis_of(layout: Layout, ndim: int, caffe_axis: int) -> int:
    """Where Caffe's axis `caffe_axis` (already canonical) lives in an array of this layout."""
    return _order(layout, ndim).index(caffe_axis)


def caffe_shape(x: Any, layout: Layout) -> tuple[int, ...]:
    """The Caffe (N,C,H,W...) shape of an internal array."""
    order = _order(layout, x.ndim)
    return tuple(x.shape[order.index(a)] for a in range(x.ndim))


def convert(x: Any, have: Layout, want: Layout) -> Any:
    if have == want or x.ndim < 3:
        return x
    src, dst = _order(have, x.ndim), _order(want, x.ndim)
    return x.transpose(tuple(src.index(a) for a in dst))


def resolve(wants: Wants, first: Layout, spatial: Layout) -> Layout:
    """The layout a lowering runs in: bottom 0's for "any", the net's spatial layout for "spatial"."""
    if wants == "any":
        return first
    return spatial if wants == "spatial" else wants


def top_layout(wants: Wants, layout: Layout, ndim: int) -> Layout:
    """The layout tag of a top of `ndim` axes from a layer that computed in `layout`: spatial and
    layout-agnostic layers keep it for tops of 3+ axes; everything else is in Caffe's order."""
    return layout if (wants != "nchw" and ndim >= 3) else "nchw"


def broadcast_operand(b: Any, x_caffe: tuple[int, ...], axis: int, layout: Layout) -> Any:
    """A Scale/Bias operand of Caffe shape x_caffe[axis:axis+k], made broadcastable against x."""
    shape = (1,) * axis + tuple(b.shape) + (1,) * (len(x_caffe) - axis - b.ndim)
    out = b.reshape(shape)
    return convert(out, "nchw", layout)


def layer_seed(name: str) -> int:
    """A stable 31-bit number per layer name: a layer's init and dropout keys depend on its name only,
    so adding a layer elsewhere does not change them."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


@dataclass(frozen=True)
class Ctx:
    """Everything a lowering's forward may read about its call. Built per node at trace time."""

    layer: LayerSpec
    layout: Layout
    params: tuple[Any, ...]
    state: tuple[Any, ...]
    train: bool
    rng: jax.Array | None
    dtype: Any
    conv_impl: str
    xla_convs: bool = False  # the program runs XLA's own convolutions (netspec.kernels.conv.compiler_options)

    def msg(self, name: str) -> Any:
        return self.layer.messages[name]

    def key(self) -> jax.Array:
        import jax

        if self.rng is None:
            raise ValueError(f"layer '{self.layer.name}' ({self.layer.type}) needs rng= when train=True")
        return jax.random.fold_in(self.rng, layer_seed(self.layer.name))


# Internal storage of a parameter blob relative to Caffe's layout: (to_internal, to_caffe).
def _identity(x: Any) -> Any:
    return x


def _to_hwio(w: Any) -> Any:
    return w.transpose(*range(2, w.ndim), 1, 0)


def _from_hwio(w: Any) -> Any:
    return w.transpose(w.ndim - 1, w.ndim - 2, *range(w.ndim - 2))


CODECS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "caffe": (_identity, _identity),
    # Convolution weights: Caffe (O, I/g, k0, k1, ...) <-> (k0, k1, ..., I/g, O): HWIO for 2-D (what
    # conv2d takes), DHWIO for 3-D, and so on.
    "hwio": (_to_hwio, _from_hwio),
}


@dataclass(frozen=True)
class Lowering:
    """One layer type's lowering.

    forward(ctx, bottoms) -> tops, or (tops, new_state) when `stateful`.
    fillers(layer) -> one FillerParameter per parameter blob, in Caffe order.
    codecs: how each blob is stored (a key of CODECS); blobs past the tuple are "caffe".
    cast: "compute" casts bottoms and params to the compute dtype; "float32" keeps losses and
    softmax in float32; "none" passes bottoms through untouched (splits and reshapes, so integer
    labels survive them).
    """

    type_name: str
    forward: Callable[..., Any]
    wants: Wants = "any"
    fillers: Callable[[LayerSpec], tuple[FillerParameter, ...]] | None = None
    codecs: tuple[str, ...] = ()
    cast: Cast = "compute"
    stateful: bool = False
    is_input: bool = False

    def codec(self, index: int) -> str:
        return self.codecs[index] if index < len(self.codecs) else "caffe"
