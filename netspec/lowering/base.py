"""What a layer lowering is, and the layout rules every lowering shares.

A lowering turns one graph node into array code. It is a frozen record keyed by the Caffe type
name (each family module ends with a `LOWERINGS` tuple, as netspec.layers ends with `LAYERS`);
the driver in `model.py` never switches on layer type.

Layout. Users see Caffe's N,C,H,W. Inside, 4-D blobs produced by spatial layers (convolution,
pooling, LRN) are kept channels-last (N,H,W,C), the layout XLA:CPU convolves fastest (see
docs/performance.md). Every blob carries a static layout tag, "nchw" (Caffe order; every non-4-D
blob) or "nhwc". A lowering states the layout it wants its bottoms in:

- "nhwc": spatial layers; their 4-D tops are nhwc.
- "nchw": layers that reinterpret the row-major Caffe buffer (InnerProduct, Flatten, Reshape,
  losses); the driver transposes 4-D nhwc bottoms back first.
- "any": layers that work in either layout by mapping their Caffe `axis` through `axis_of`; the
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

Layout = Literal["nchw", "nhwc"]
Wants = Literal["any", "nchw", "nhwc"]
Cast = Literal["compute", "float32", "none"]

NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)


def axis_of(layout: Layout, ndim: int, caffe_axis: int) -> int:
    """Where Caffe's axis `caffe_axis` (already canonical) lives in an array of this layout."""
    if layout == "nhwc" and ndim == 4:
        return NCHW_TO_NHWC.index(caffe_axis)
    return caffe_axis


def caffe_shape(x: Any, layout: Layout) -> tuple[int, ...]:
    """The Caffe (N,C,H,W) shape of an internal array."""
    if layout == "nhwc" and x.ndim == 4:
        return tuple(x.shape[i] for i in NHWC_TO_NCHW)
    return tuple(x.shape)


def convert(x: Any, have: Layout, want: Layout) -> Any:
    if have == want or x.ndim != 4:
        return x
    return x.transpose(NCHW_TO_NHWC if want == "nhwc" else NHWC_TO_NCHW)


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


CODECS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "caffe": (_identity, _identity),
    # Convolution weights: Caffe (O, I/g, kh, kw) <-> HWIO (kh, kw, I/g, O), what conv2d takes.
    "hwio": (lambda w: w.transpose(2, 3, 1, 0), lambda w: w.transpose(3, 2, 0, 1)),
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
