"""oneDNN's convolution kernels as a formulation of ``netspec.kernels.conv``, when the library is installed.

XLA:CPU's convolution passes run at half the speed of oneDNN's direct kernels on the shapes of a train step
(docs/performance.md items 11-14), and no formulation built from XLA's matrix products closed that gap. This
module calls the library itself: each pass is an XLA custom call whose handler runs a oneDNN primitive on the
program's own buffers (NHWC activations, HWIO weights; nothing is copied but the weights into the blocked
layout the kernel wants). The library comes from Intel's ``onednn-cpu-gomp`` wheel (oneDNN 3.2 with GNU
OpenMP), a dependency on Linux x86-64; without it ``available()`` is False and ``choose_plan`` keeps
netspec's own formulations.

The handler is a ctypes callback registered as a legacy CPU custom call (``custom_call_api_version=3``): no
native build step, and a program that calls it is written to and loaded from JAX's persistent compilation
cache like any other (a ``jax.pure_callback`` is not). The primitives are built when the program is traced,
so a shape the library rejects is known then and planned otherwise; the handler only looks them up.

Only float32, ungrouped or grouped 2-D convolutions padded by no more than the kernel's extent, on the CPU.
A failure inside the handler (out of memory) cannot be reported to XLA through this API, so it fills the
result with NaN, which the train loop's divergence check stops on, rather than leave uninitialised memory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import sys
import threading
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

TARGET = "netspec_onednn_conv"

_P = ctypes.c_void_p
_DIMS = ctypes.c_int64 * 12
_F32 = 3  # dnnl_f32
_FORMAT_ANY = 1  # dnnl_format_tag_any
_FORWARD_TRAINING = 64
_CONVOLUTION_DIRECT = 1
_QUERY_WEIGHTS_MD, _QUERY_DIFF_WEIGHTS_MD, _QUERY_SCRATCHPAD_MD = 131, 132, 136
_SCRATCHPAD_MODE_USER = 1
_ARG_SRC, _ARG_DST, _ARG_WEIGHTS, _ARG_SCRATCHPAD = 1, 17, 33, 80
_ARG_DIFF_SRC, _ARG_DIFF_DST, _ARG_DIFF_WEIGHTS = 129, 145, 161
_ARG_FROM, _ARG_TO = 1, 17  # a reorder's source and destination
_ALLOCATE = _P(ctypes.c_size_t(-1).value)  # DNNL_MEMORY_ALLOCATE: the library owns the buffer
# Legacy CPU custom call, API version 3: (out, inputs, opaque, opaque length, status).
_HANDLER = ctypes.CFUNCTYPE(None, _P, ctypes.POINTER(_P), ctypes.c_char_p, ctypes.c_size_t, _P)


class _ExecArg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_int), ("memory", _P)]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int), ("patch", ctypes.c_int),
                ("hash", ctypes.c_char_p), ("cpu_runtime", ctypes.c_uint), ("gpu_runtime", ctypes.c_uint)]


@dataclasses.dataclass(frozen=True)
class Geometry:
    """One convolution call as oneDNN sees it; ``in_channels`` counts all groups."""

    batch: int
    height: int
    width: int
    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]
    dilation: tuple[int, int]
    groups: int

    @property
    def out_size(self) -> tuple[int, int]:
        def size(n: int, k: int, s: int, pad: tuple[int, int], d: int) -> int:
            return (n + pad[0] + pad[1] - d * (k - 1) - 1) // s + 1
        return (size(self.height, self.kernel[0], self.stride[0], self.padding[0], self.dilation[0]),
                size(self.width, self.kernel[1], self.stride[1], self.padding[1], self.dilation[1]))

    def key(self) -> str:
        (t, b), (lft, r) = self.padding
        return ",".join(map(str, (self.batch, self.height, self.width, self.in_channels, self.out_channels,
                                  *self.kernel, *self.stride, t, b, lft, r, *self.dilation, self.groups)))

    @classmethod
    def from_key(cls, key: str) -> Geometry:
        n, h, w, ci, co, kh, kw, sh, sw, t, b, lft, r, dh, dw, g = map(int, key.split(","))
        return cls(n, h, w, ci, co, (kh, kw), (sh, sw), ((t, b), (lft, r)), (dh, dw), g)


class OneDnnError(RuntimeError):
    """A oneDNN call returned an error status."""


def _check(status: int, what: str) -> None:
    if status != 0:
        raise OneDnnError(f"oneDNN {what} failed with status {status}")


def _library_path() -> str | None:
    # pip puts the wheel's shared library in <prefix>/lib, which is not on the loader's path.
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        path = Path(prefix) / "lib" / "libdnnl.so.3"
        if path.is_file():
            return str(path)
    return ctypes.util.find_library("dnnl")


class _Library:
    """The loaded library, its CPU engine and stream, the primitives built so far and the handler."""

    def __init__(self, path: str) -> None:
        lib = ctypes.CDLL(path)
        lib.dnnl_version.restype = ctypes.POINTER(_Version)
        v = lib.dnnl_version().contents
        if v.major < 3:
            raise OneDnnError(f"oneDNN {v.major}.{v.minor} at {path}: netspec needs 3.x")
        self.version = f"{v.major}.{v.minor}.{v.patch}"
        for name, restype in (("dnnl_primitive_desc_query_md", _P), ("dnnl_memory_desc_equal", ctypes.c_int),
                              ("dnnl_memory_desc_get_size", ctypes.c_size_t)):
            getattr(lib, name).restype = restype
        self.lib = lib
        self.engine, self.stream = _P(), _P()
        _check(lib.dnnl_engine_create(ctypes.byref(self.engine), 1, ctypes.c_size_t(0)), "engine creation")
        _check(lib.dnnl_stream_create(ctypes.byref(self.stream), self.engine, ctypes.c_uint(1)), "stream creation")
        # Every primitive gets its own scratchpad. The library's default shares a thread-local one made by the
        # thread that creates the primitive; XLA runs the handler on its worker threads, where that one does not
        # exist (oneDNN 3.2's GEMM-based backward-weights kernel crashed there).
        self.attr = _P()
        _check(lib.dnnl_primitive_attr_create(ctypes.byref(self.attr)), "attribute creation")
        _check(lib.dnnl_primitive_attr_set_scratchpad_mode(self.attr, _SCRATCHPAD_MODE_USER), "scratchpad mode")
        self.convs: dict[str, _Conv] = {}
        # XLA may run two independent custom calls at once; a primitive set holds one set of buffer handles, and
        # each call already uses every core through OpenMP.
        self.lock = threading.Lock()
        self.callback = _HANDLER(self._handle)
        jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(self.callback), platform="cpu", api_version=0)

    def conv(self, geom: Geometry) -> _Conv:
        with self.lock:
            return self._conv(geom.key())

    def _conv(self, key: str) -> _Conv:
        """The primitives of the geometry ``key`` (Geometry.key), built on first use; under ``self.lock``."""
        if key not in self.convs:
            self.convs[key] = _Conv(self, Geometry.from_key(key))
        return self.convs[key]

    def _handle(self, out: int, ins: Any, opaque: bytes, size: int, _status: int) -> None:
        op, key = opaque[:size].decode().split(":")
        try:
            with self.lock:
                self._conv(key).run(op, ins[0], ins[1], out)
        except Exception:  # noqa: BLE001 - nothing can propagate out of a custom call; see the module docstring
            ctypes.memset(out, 0xFF, 4 * _result_elements(op, Geometry.from_key(key)))

    # Thin wrappers over the C API, each checking its status.

    def memory_desc(self, dims: tuple[int, ...], strides: tuple[int, ...] | None) -> _P:
        md = _P()
        if strides is None:
            _check(self.lib.dnnl_memory_desc_create_with_tag(ctypes.byref(md), len(dims), _DIMS(*dims), _F32,
                                                             _FORMAT_ANY), "memory descriptor")
        else:
            _check(self.lib.dnnl_memory_desc_create_with_strides(ctypes.byref(md), len(dims), _DIMS(*dims), _F32,
                                                                 _DIMS(*strides)), "memory descriptor")
        return md

    def memory(self, md: _P, handle: _P) -> _P:
        m = _P()
        _check(self.lib.dnnl_memory_create(ctypes.byref(m), md, self.engine, handle), "memory")
        return m

    def primitive(self, pd: _P) -> _Primitive:
        p = _P()
        _check(self.lib.dnnl_primitive_create(ctypes.byref(p), pd), "primitive creation")
        scratch = _P(self.lib.dnnl_primitive_desc_query_md(pd, _QUERY_SCRATCHPAD_MD, 0))
        size = self.lib.dnnl_memory_desc_get_size(scratch) if scratch.value else 0
        return _Primitive(p, self.memory(scratch, _ALLOCATE) if size else None)

    def reorder(self, src: _P, dst: _P) -> _Primitive:
        pd = _P()
        _check(self.lib.dnnl_reorder_primitive_desc_create(ctypes.byref(pd), src, self.engine, dst, self.engine,
                                                           self.attr), "reorder")
        return self.primitive(pd)

    def execute(self, primitive: _Primitive, args: list[tuple[int, _P]]) -> None:
        if primitive.scratchpad is not None:
            args = [*args, (_ARG_SCRATCHPAD, primitive.scratchpad)]
        arr = (_ExecArg * len(args))(*[_ExecArg(a, m) for a, m in args])
        _check(self.lib.dnnl_primitive_execute(primitive.handle, self.stream, len(args), arr), "execution")

    def set_handle(self, memory: _P, pointer: int) -> None:
        _check(self.lib.dnnl_memory_set_data_handle(memory, _P(pointer)), "set data handle")


@dataclasses.dataclass(frozen=True)
class _Primitive:
    handle: _P
    scratchpad: _P | None  # its own scratch memory (see _Library.attr)


def _result_elements(op: str, g: Geometry) -> int:
    ho, wo = g.out_size
    if op == "forward":
        return g.batch * ho * wo * g.out_channels
    if op == "input_grad":
        return g.batch * g.height * g.width * g.in_channels
    return g.kernel[0] * g.kernel[1] * (g.in_channels // g.groups) * g.out_channels


class _Conv:
    """The three primitives of one convolution geometry, on user buffers set per call."""

    def __init__(self, lib: _Library, g: Geometry) -> None:
        self.lib = lib
        n, h, w, ci, co, (kh, kw), gr = g.batch, g.height, g.width, g.in_channels, g.out_channels, g.kernel, g.groups
        ho, wo = g.out_size
        # oneDNN's dims are logical (N, C, H, W) and (G, O/G, I/G, KH, KW); strides give our NHWC / HWIO layouts.
        x = lib.memory_desc((n, ci, h, w), (h * w * ci, 1, w * ci, ci))
        y = lib.memory_desc((n, co, ho, wo), (ho * wo * co, 1, wo * co, co))
        cig = ci // gr
        if gr == 1:
            w_dims: tuple[int, ...] = (co, ci, kh, kw)
            w_user = lib.memory_desc(w_dims, (1, co, kw * ci * co, ci * co))
        else:
            w_dims = (gr, co // gr, cig, kh, kw)
            w_user = lib.memory_desc(w_dims, (co // gr, 1, co, kw * cig * co, cig * co))
        w_any = lib.memory_desc(w_dims, None)
        strides, dilates = _DIMS(*g.stride), _DIMS(*(d - 1 for d in g.dilation))  # oneDNN counts dilation from 0
        pad_l, pad_r = _DIMS(g.padding[0][0], g.padding[1][0]), _DIMS(g.padding[0][1], g.padding[1][1])
        c = lib.lib
        fwd, bwd_data, bwd_weights = _P(), _P(), _P()
        _check(c.dnnl_convolution_forward_primitive_desc_create(
            ctypes.byref(fwd), lib.engine, _FORWARD_TRAINING, _CONVOLUTION_DIRECT, x, w_any, None, y, strides,
            dilates, pad_l, pad_r, lib.attr), "convolution forward descriptor")
        _check(c.dnnl_convolution_backward_data_primitive_desc_create(
            ctypes.byref(bwd_data), lib.engine, _CONVOLUTION_DIRECT, x, w_any, y, strides, dilates, pad_l, pad_r,
            fwd, lib.attr), "convolution backward-data descriptor")
        _check(c.dnnl_convolution_backward_weights_primitive_desc_create(
            ctypes.byref(bwd_weights), lib.engine, _CONVOLUTION_DIRECT, x, w_any, None, y, strides, dilates, pad_l,
            pad_r, fwd, lib.attr), "convolution backward-weights descriptor")
        self.primitives = {"forward": lib.primitive(fwd), "input_grad": lib.primitive(bwd_data),
                           "weight_grad": lib.primitive(bwd_weights)}
        self.x, self.y, self.w_user = lib.memory(x, _P()), lib.memory(y, _P()), lib.memory(w_user, _P())
        # Each pass's weights in the layout its kernel chose, with the reorder from (or, for the weight
        # gradient, to) the user's HWIO; None where they are the same.
        self.weights: dict[str, tuple[_P, _Primitive | None]] = {}
        for op, pd, query in (("forward", fwd, _QUERY_WEIGHTS_MD), ("input_grad", bwd_data, _QUERY_WEIGHTS_MD),
                              ("weight_grad", bwd_weights, _QUERY_DIFF_WEIGHTS_MD)):
            md = _P(c.dnnl_primitive_desc_query_md(pd, query, 0))
            if c.dnnl_memory_desc_equal(md, w_user):
                self.weights[op] = (self.w_user, None)
            else:
                order = lib.reorder(md, w_user) if op == "weight_grad" else lib.reorder(w_user, md)
                self.weights[op] = (lib.memory(md, _ALLOCATE), order)

    def run(self, op: str, a: int, b: int, out: int) -> None:
        """forward: (x, w) -> y; input_grad: (dy, w) -> dx; weight_grad: (x, dy) -> dw. Pointers."""
        lib = self.lib
        weights, order = self.weights[op]
        if op == "weight_grad":
            lib.set_handle(self.x, a)
            lib.set_handle(self.y, b)
            lib.set_handle(self.w_user, out)
            lib.execute(self.primitives[op], [(_ARG_SRC, self.x), (_ARG_DIFF_DST, self.y),
                                              (_ARG_DIFF_WEIGHTS, weights)])
            if order is not None:
                lib.execute(order, [(_ARG_FROM, weights), (_ARG_TO, self.w_user)])
            lib.lib.dnnl_stream_wait(lib.stream)
            return
        lib.set_handle(self.w_user, b)
        if order is not None:
            lib.execute(order, [(_ARG_FROM, self.w_user), (_ARG_TO, weights)])
        if op == "forward":
            lib.set_handle(self.x, a)
            lib.set_handle(self.y, out)
            lib.execute(self.primitives[op], [(_ARG_SRC, self.x), (_ARG_WEIGHTS, weights), (_ARG_DST, self.y)])
        else:
            lib.set_handle(self.y, a)
            lib.set_handle(self.x, out)
            lib.execute(self.primitives[op], [(_ARG_DIFF_DST, self.y), (_ARG_WEIGHTS, weights),
                                              (_ARG_DIFF_SRC, self.x)])
        lib.lib.dnnl_stream_wait(lib.stream)


@functools.cache
def _load() -> _Library | str:
    """The process's one loaded library, or why there is none. Cached like an import."""
    path = _library_path()
    if path is None:
        return "oneDNN (libdnnl.so.3) is not installed"
    try:
        return _Library(path)
    except (OSError, AttributeError, OneDnnError) as e:  # e.g. no libgomp.so.1 beside it
        return f"oneDNN at {path} could not be loaded: {e}"


def _library() -> _Library | None:
    lib = _load()
    return lib if isinstance(lib, _Library) else None


def available() -> bool:
    """Whether oneDNN 3.x is installed and loads (the ``onednn-cpu-gomp`` dependency, Linux x86-64)."""
    return _library() is not None


def unavailable_reason() -> str | None:
    """Why ``available()`` is False, for error messages (None when it is True)."""
    lib = _load()
    return lib if isinstance(lib, str) else None


def version() -> str | None:
    """The loaded library's version, e.g. "3.2.0" (None: not available)."""
    lib = _library()
    return None if lib is None else lib.version


def supports(geom: Geometry, dtype: str) -> bool:
    """Whether the library runs this convolution here: float32, pads within the kernel (_padding_within_kernel),
    and the library accepts the shape (the primitives are built now, so the handler never meets one it cannot
    run)."""
    lib = _library()
    if lib is None or dtype != "float32" or not _padding_within_kernel(geom):
        return False
    try:
        lib.conv(geom)
    except OneDnnError:
        return False
    return True


def _padding_within_kernel(geom: Geometry) -> bool:
    """No negative pad, and none past the dilated kernel's extent: oneDNN 3.2's backward-data kernel read out of
    bounds (a crash) for a 3x3 dilation-(2, 1) kernel padded ((2, 0), (3, 1)), whose left pad of 3 passes the
    kernel's width of 3. Caffe pads both sides alike, and a pad past the kernel only adds zero rows."""
    return all(0 <= p <= (k - 1) * d for pair, k, d in zip(geom.padding, geom.kernel, geom.dilation) for p in pair)


def _call(op: str, geom: Geometry, shape: tuple[int, ...], a: jax.Array, b: jax.Array) -> jax.Array:
    return jax.ffi.ffi_call(TARGET, jax.ShapeDtypeStruct(shape, jnp.float32), custom_call_api_version=3,
                            legacy_backend_config=f"{op}:{geom.key()}")(a.astype(jnp.float32), b.astype(jnp.float32))


def forward(geom: Geometry, x: jax.Array, w: jax.Array) -> jax.Array:
    ho, wo = geom.out_size
    return _call("forward", geom, (geom.batch, ho, wo, geom.out_channels), x, w)


def input_grad(geom: Geometry, w: jax.Array, dy: jax.Array) -> jax.Array:
    return _call("input_grad", geom, (geom.batch, geom.height, geom.width, geom.in_channels), dy, w)


def weight_grad(geom: Geometry, x: jax.Array, dy: jax.Array) -> jax.Array:
    kh, kw = geom.kernel
    return _call("weight_grad", geom, (kh, kw, geom.in_channels // geom.groups, geom.out_channels), x, dy)
