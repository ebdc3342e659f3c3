"""Caffe's binary `.caffemodel` (a serialized NetParameter) read and written with a small protobuf codec.

Only what weights need is decoded; every other field is skipped by wire type. Field numbers, from
BVLC/caffe `src/caffe/proto/caffe.proto`:

    NetParameter      name = 1, layers = 2 (V1LayerParameter), layer = 100 (LayerParameter)
    LayerParameter    name = 1, type = 2 (string), blobs = 7
    V1LayerParameter  name = 4, type = 5 (enum LayerType), blobs = 6
    BlobProto         num = 1, channels = 2, height = 3, width = 4 (legacy 4-D shape),
                      data = 5 (packed float), diff = 6, shape = 7, double_data = 8 (packed double)
    BlobShape         dim = 1 (packed int64)

Wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32 (3 and 4, groups, never occur in Caffe).
A repeated scalar may arrive packed (one length-delimited run) or unpacked (one tag per value);
readers must accept both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from netspec.errors import Diagnostic, NetspecError

from .upgrade import V1_LAYER_TYPES, V1_NUMBER_BY_TYPE, V1_TYPE_BY_NUMBER

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5

NET_NAME, NET_LAYERS_V1, NET_LAYER = 1, 2, 100
LAYER_NAME, LAYER_TYPE, LAYER_BLOBS = 1, 2, 7
V1_NAME, V1_TYPE, V1_BLOBS = 4, 5, 6
BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH = 1, 2, 3, 4
BLOB_DATA, BLOB_DIFF, BLOB_SHAPE, BLOB_DOUBLE_DATA = 5, 6, 7, 8
SHAPE_DIM = 1


class CaffemodelError(NetspecError):
    """A .caffemodel that cannot be decoded; the message gives the byte offset."""


def _fail(source: str, offset: int, message: str) -> CaffemodelError:
    return CaffemodelError([Diagnostic("error", f"{source}: byte {offset}: {message}")])


# ------------------------------------------------------------------------------------------ encoding


def encode_varint(n: int) -> bytes:
    """Base-128 varint; negative numbers as their 64-bit two's complement (10 bytes), as int64 does."""
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def encode_tag(field: int, wire_type: int) -> bytes:
    return encode_varint(field << 3 | wire_type)


def encode_len(field: int, payload: bytes) -> bytes:
    """A length-delimited field: string, bytes, sub-message or packed run."""
    return encode_tag(field, LEN) + encode_varint(len(payload)) + payload


def encode_uint(field: int, n: int) -> bytes:
    return encode_tag(field, VARINT) + encode_varint(n)


def encode_packed_varints(field: int, values: Sequence[int]) -> bytes:
    return encode_len(field, b"".join(encode_varint(int(v)) for v in values))


def encode_packed_array(field: int, values: np.ndarray, dtype: str) -> bytes:
    """Packed float ('<f4') or double ('<f8') run: little-endian IEEE, as protobuf stores them."""
    return encode_len(field, np.ascontiguousarray(values, dtype=dtype).tobytes())


# ------------------------------------------------------------------------------------------ decoding


@dataclass(frozen=True)
class WireField:
    """One decoded field: a VARINT's `varint`, or the other wire types' raw `payload` (a memoryview slice).
    Offsets count from the start of the file, for error messages."""

    number: int
    wire_type: int
    offset: int  # of the tag
    varint: int = 0
    payload: memoryview = memoryview(b"")
    payload_offset: int = 0

    def text(self) -> str:
        return bytes(self.payload).decode("utf-8", "replace")


def decode_varint(buf: memoryview, pos: int, source: str = "<bytes>") -> tuple[int, int]:
    """(value, next position). Values above 2**63 come back as is: int64 callers convert them."""
    result = shift = 0
    start = pos
    while True:
        if pos >= len(buf):
            raise _fail(source, start, "truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _fail(source, start, "varint longer than 10 bytes")


def _signed64(n: int) -> int:
    return n - (1 << 64) if n >= 1 << 63 else n


def iter_fields(buf: bytes | memoryview, source: str = "<bytes>", base: int = 0) -> Iterator[WireField]:
    """The fields of one message, in order. `base` offsets positions for nested messages' errors."""
    view = memoryview(buf)
    pos = 0
    while pos < len(view):
        start = pos
        key, pos = decode_varint(view, pos, source)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _fail(source, base + start, "field number 0 is invalid")
        if wire == VARINT:
            value, pos = decode_varint(view, pos, source)
            yield WireField(number, wire, base + start, varint=value)
            continue
        if wire == LEN:
            size, pos = decode_varint(view, pos, source)
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
        else:
            raise _fail(source, base + start, f"unsupported wire type {wire} (field {number})")
        if pos + size > len(view):
            raise _fail(source, base + start, f"field {number} runs past the end of its message")
        yield WireField(number, wire, base + start, payload=view[pos : pos + size], payload_offset=base + pos)
        pos += size


def _floats(f: WireField, dtype: str, wire_single: int, source: str) -> np.ndarray:
    if f.wire_type not in (LEN, wire_single):
        raise _fail(source, f.offset, f"field {f.number}: wire type {f.wire_type} cannot hold floats")
    if len(f.payload) % np.dtype(dtype).itemsize:
        raise _fail(
            source, f.offset, f"field {f.number}: packed run of {len(f.payload)} bytes is not whole values"
        )
    return np.frombuffer(f.payload, dtype=dtype)


def _varints(f: WireField, source: str) -> list[int]:
    if f.wire_type == VARINT:
        return [_signed64(f.varint)]
    if f.wire_type != LEN:
        raise _fail(source, f.offset, f"field {f.number}: wire type {f.wire_type} cannot hold integers")
    view, pos, out = f.payload, 0, []
    while pos < len(view):
        n, pos = decode_varint(view, pos, source)
        out.append(_signed64(n))
    return out


def _decode_shape(f: WireField, source: str) -> list[int]:
    dims: list[int] = []
    for g in iter_fields(f.payload, source, f.payload_offset):
        if g.number == SHAPE_DIM:
            dims += _varints(g, source)
    return dims


def decode_blob(buf: bytes | memoryview, source: str = "<bytes>", base: int = 0) -> np.ndarray:
    """A BlobProto as an array: float32 from `data`, or float64 from `double_data` when that is present.
    The shape follows Blob::FromProto: any of the legacy num/channels/height/width makes it 4-D (unset ones
    are 0), otherwise it is `shape.dim` (none: a scalar). The value count must match the shape."""
    chunks: dict[str, list[np.ndarray]] = {"f4": [], "f8": []}
    shape: list[int] | None = None
    legacy: dict[int, int] = {}
    for f in iter_fields(buf, source, base):
        if f.number == BLOB_DATA:
            chunks["f4"].append(_floats(f, "<f4", FIXED32, source))
        elif f.number == BLOB_DOUBLE_DATA:
            chunks["f8"].append(_floats(f, "<f8", FIXED64, source))
        elif f.number == BLOB_SHAPE and f.wire_type == LEN:
            shape = _decode_shape(f, source)
        elif f.number in (BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH) and f.wire_type == VARINT:
            legacy[f.number] = _signed64(f.varint)
    use = "f8" if chunks["f8"] else "f4"
    flat = np.concatenate(chunks[use]) if chunks[use] else np.zeros(0, dtype=f"<{use}")
    if legacy:
        shape = [legacy.get(k, 0) for k in (BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH)]
    elif shape is None:
        shape = []
    if int(np.prod(shape, dtype=np.int64)) != flat.size:
        raise _fail(
            source, base, f"blob shape {shape} needs {int(np.prod(shape))} values, data has {flat.size}"
        )
    return flat.astype(np.float64 if use == "f8" else np.float32).reshape(shape)


@dataclass(frozen=True)
class CaffeLayerBlobs:
    """One layer of a caffemodel: name, type (V1 enum types already upgraded, e.g. "Convolution"), blobs."""

    name: str
    type: str
    blobs: tuple[np.ndarray, ...]


def _decode_layer(f: WireField, v1: bool, source: str) -> CaffeLayerBlobs:
    name_no, type_no, blobs_no = (V1_NAME, V1_TYPE, V1_BLOBS) if v1 else (LAYER_NAME, LAYER_TYPE, LAYER_BLOBS)
    name, kind, blobs = "", "", []
    for g in iter_fields(f.payload, source, f.payload_offset):
        if g.number == name_no and g.wire_type == LEN:
            name = g.text()
        elif g.number == type_no and v1 and g.wire_type == VARINT:
            enum = V1_TYPE_BY_NUMBER.get(g.varint, str(g.varint))
            kind = V1_LAYER_TYPES.get(enum, enum)
        elif g.number == type_no and not v1 and g.wire_type == LEN:
            kind = g.text()
        elif g.number == blobs_no and g.wire_type == LEN:
            blobs.append(decode_blob(g.payload, source, g.payload_offset))
    return CaffeLayerBlobs(name, kind, tuple(blobs))


def _read_bytes(path_or_bytes: str | os.PathLike[str] | bytes) -> tuple[bytes, str]:
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes), "<bytes>"
    with open(path_or_bytes, "rb") as fh:
        return fh.read(), os.fspath(path_or_bytes)


def read_caffemodel_layers(
    path_or_bytes: str | os.PathLike[str] | bytes,
) -> tuple[str, list[CaffeLayerBlobs]]:
    """(net name, every layer in file order), from V2 `layer` (100) and V1 `layers` (2) entries alike."""
    buf, source = _read_bytes(path_or_bytes)
    net_name, layers = "", []
    for f in iter_fields(buf, source):
        if f.number == NET_NAME and f.wire_type == LEN:
            net_name = f.text()
        elif f.number in (NET_LAYER, NET_LAYERS_V1) and f.wire_type == LEN:
            layers.append(_decode_layer(f, f.number == NET_LAYERS_V1, source))
    return net_name, layers


def read_caffemodel(path_or_bytes: str | os.PathLike[str] | bytes) -> dict[str, list[np.ndarray]]:
    """Blobs by layer name, in file order. As when Caffe copies trained layers by name, a later layer
    with the same name overrides an earlier one."""
    _, layers = read_caffemodel_layers(path_or_bytes)
    return {layer.name: list(layer.blobs) for layer in layers}


# ------------------------------------------------------------------------------------------ writing


def encode_blob(array: Any, *, legacy_shape: bool = False) -> bytes:
    """A BlobProto: float64 arrays go to double_data, anything else to float32 data. The shape goes to
    `shape` (fields in number order, as protobuf serializes), or with `legacy_shape` to num/channels/
    height/width (V1-era files; at most 4 axes, left-padded with 1s as Caffe's legacy accessors do)."""
    arr = np.asarray(array)
    double = arr.dtype == np.float64
    out = bytearray()
    if legacy_shape:
        if arr.ndim > 4:
            raise ValueError(f"a legacy blob shape has at most 4 axes, got {arr.shape}")
        dims = (1,) * (4 - arr.ndim) + arr.shape
        for number, dim in zip((BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH), dims, strict=True):
            out += encode_uint(number, dim)
    if not double:
        out += encode_packed_array(BLOB_DATA, arr.ravel(), "<f4")
    if not legacy_shape:
        out += encode_len(BLOB_SHAPE, encode_packed_varints(SHAPE_DIM, arr.shape))
    if double:
        out += encode_packed_array(BLOB_DOUBLE_DATA, arr.ravel(), "<f8")
    return bytes(out)


def _encode_layer(name: str, kind: str, blobs: Sequence[Any], v1: bool) -> bytes:
    if not v1:
        head = encode_len(LAYER_NAME, name.encode()) + encode_len(LAYER_TYPE, kind.encode())
        return head + b"".join(encode_len(LAYER_BLOBS, encode_blob(b)) for b in blobs)
    if kind not in V1_NUMBER_BY_TYPE:
        raise ValueError(f"layer {name!r}: type {kind!r} has no V1 enum value")
    head = encode_len(V1_NAME, name.encode()) + encode_uint(V1_TYPE, V1_NUMBER_BY_TYPE[kind])
    return head + b"".join(encode_len(V1_BLOBS, encode_blob(b, legacy_shape=True)) for b in blobs)


def encode_caffemodel(
    net_name: str, layers: Mapping[str, tuple[str, Sequence[Any]]], *, v1: bool = False
) -> bytes:
    """A serialized NetParameter holding `{layer name: (type, [arrays])}`. With `v1`, the layers are V1
    `layers` entries (enum types, legacy 4-D blob shapes), as caffemodels written before 2015 are."""
    field = NET_LAYERS_V1 if v1 else NET_LAYER
    body = b"".join(encode_len(field, _encode_layer(n, t, blobs, v1)) for n, (t, blobs) in layers.items())
    return encode_len(NET_NAME, net_name.encode()) + body


def write_caffemodel(
    path: str | os.PathLike[str],
    net_name: str,
    layers: Mapping[str, tuple[str, Sequence[Any]]],
    *,
    v1: bool = False,
) -> None:
    """Write a .caffemodel that Caffe (and `read_caffemodel`) can load; see `encode_caffemodel`."""
    with open(path, "wb") as fh:
        fh.write(encode_caffemodel(net_name, layers, v1=v1))
