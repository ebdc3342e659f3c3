"""The .caffemodel codec: wire-format bytes assembled by hand, V1 and V2 files, write/read round trips."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netspec.caffe import (
    CaffemodelError,
    encode_caffemodel,
    read_caffemodel,
    read_caffemodel_layers,
    write_caffemodel,
)
from netspec.caffe.caffemodel import decode_varint, encode_varint, iter_fields


def _f32(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


# NetParameter { name: "net"
#                layer { name: "ip" type: "InnerProduct" blobs { data: [1, -2] shape { dim: [1, 2] } } } }
# Tags are (field << 3) | wire type: 0x0a = name(1)/LEN, 0xa2 0x06 = varint 802 = layer(100)/LEN,
# 0x12 = type(2), 0x3a = blobs(7), 0x2a = data(5) packed, 0x3a = shape(7), 0x0a = dim(1) packed.
BLOB = b"\x2a\x08" + _f32(1.0, -2.0) + b"\x3a\x04" + b"\x0a\x02\x01\x02"
LAYER = b"\x0a\x02ip" + b"\x12\x0cInnerProduct" + b"\x3a" + bytes([len(BLOB)]) + BLOB
NET = b"\x0a\x03net" + b"\xa2\x06" + bytes([len(LAYER)]) + LAYER


def test_hand_assembled_net_parameter_decodes() -> None:
    assert len(LAYER) == 0x24
    blobs = read_caffemodel(NET)
    assert list(blobs) == ["ip"]
    (w,) = blobs["ip"]
    assert w.dtype == np.float32 and w.shape == (1, 2) and w.tolist() == [[1.0, -2.0]]
    name, layers = read_caffemodel_layers(NET)
    assert name == "net" and layers[0].type == "InnerProduct"


def test_encoder_writes_the_same_bytes_protobuf_would() -> None:
    assert encode_caffemodel("net", {"ip": ("InnerProduct", [np.array([[1, -2]], np.float32)])}) == NET


def test_varint_known_encodings() -> None:
    assert encode_varint(1) == b"\x01"
    assert encode_varint(300) == b"\xac\x02"  # the example in protobuf's encoding guide
    assert encode_varint(802) == b"\xa2\x06"
    assert encode_varint(-1) == b"\xff" * 9 + b"\x01"  # int64 -1: ten bytes


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**64 - 1))
def test_varint_round_trip(n: int) -> None:
    data = encode_varint(n) + b"\x7f"
    assert decode_varint(memoryview(data), 0) == (n, len(data) - 1)


def test_v1_file_with_legacy_shapes_unpacked_values_and_unknown_fields() -> None:
    # V1LayerParameter (NetParameter.layers = 2): name = 4, type = 5 (enum, CONVOLUTION = 4), blobs = 6.
    blob = (
        b"\x08\x02\x10\x01\x18\x01\x20\x02"  # num 2, channels 1, height 1, width 2
        + b"".join(b"\x2d" + _f32(v) for v in (0.5, 1.5, 2.5, 3.5))
    )  # data(5) unpacked: fixed32 each
    layer = (
        b"\x12\x04data"  # bottom (2), skipped
        + b"\x22\x05conv1"
        + b"\x28\x04"
        + b"\x3d"
        + _f32(1.0)  # blobs_lr (7) as fixed32, skipped
        + b"\x99\x06"
        + b"\x00" * 8  # field 99, fixed64, unknown
        + b"\x32"
        + bytes([len(blob)])
        + blob
    )
    net = b"\x0a\x02v1" + b"\x12" + bytes([len(layer)]) + layer
    name, layers = read_caffemodel_layers(net)
    assert name == "v1" and [(x.name, x.type) for x in layers] == [("conv1", "Convolution")]
    (w,) = layers[0].blobs
    assert w.shape == (2, 1, 1, 2) and w.ravel().tolist() == [0.5, 1.5, 2.5, 3.5]


def test_unpacked_dims_and_double_data() -> None:
    blob = b"\x3a\x04" + b"\x08\x03\x08\x01" + b"\x42\x18" + struct.pack("<3d", 0.1, 0.2, 0.3)
    layer = b"\x0a\x01s" + b"\x3a" + bytes([len(blob)]) + blob
    (w,) = read_caffemodel(b"\xa2\x06" + bytes([len(layer)]) + layer)["s"]
    assert w.dtype == np.float64 and w.shape == (3, 1) and w.ravel().tolist() == [0.1, 0.2, 0.3]


def test_write_read_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    layers = {
        "conv1": (
            "Convolution",
            [rng.standard_normal((8, 3, 3, 3), dtype=np.float32), rng.standard_normal(8, dtype=np.float32)],
        ),
        "relu1": ("ReLU", []),
        "bn1": (
            "BatchNorm",
            [rng.standard_normal(8, dtype=np.float32), np.ones(8, np.float32), np.array(0.5, np.float32)],
        ),
        "precise": ("Scale", [rng.standard_normal((2, 3)), np.zeros((0, 4), np.float32)]),
        "conv3d": ("Convolution", [rng.standard_normal((2, 2, 2, 2, 2), dtype=np.float32)]),
    }
    path = tmp_path / "net.caffemodel"
    write_caffemodel(path, "rt", layers)
    for source in (path, str(path), path.read_bytes()):
        got = read_caffemodel(source)
        assert list(got) == list(layers)
        for name, (_, blobs) in layers.items():
            assert len(got[name]) == len(blobs)
            for want, have in zip(blobs, got[name], strict=True):
                assert have.dtype == want.dtype and have.shape == want.shape
                np.testing.assert_array_equal(have, want)
    assert [x.type for x in read_caffemodel_layers(path)[1]] == [t for t, _ in layers.values()]


def test_v1_write_read_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 2, 3, 3), dtype=np.float32)
    layers = {"conv": ("Convolution", [w]), "fc": ("InnerProduct", [w[:, :, 0, 0].copy(), w[0, 0, 0]])}
    write_caffemodel(tmp_path / "v1.caffemodel", "old", layers, v1=True)
    raw = (tmp_path / "v1.caffemodel").read_bytes()
    assert [f.number for f in iter_fields(raw)] == [1, 2, 2]  # name, then V1 `layers` entries
    name, got = read_caffemodel_layers(raw)
    assert name == "old" and [(x.name, x.type) for x in got] == [
        ("conv", "Convolution"),
        ("fc", "InnerProduct"),
    ]
    np.testing.assert_array_equal(got[0].blobs[0], w)
    # V1-era blobs are 4-D: smaller arrays come back with leading 1s, as Caffe's num/channels/height/width.
    assert got[1].blobs[0].shape == (1, 1, 4, 2) and got[1].blobs[1].shape == (1, 1, 1, 3)
    np.testing.assert_array_equal(got[1].blobs[0].reshape(4, 2), w[:, :, 0, 0])
    with pytest.raises(ValueError, match="no V1 enum value"):
        encode_caffemodel("x", {"bn": ("BatchNorm", [])}, v1=True)


def test_a_later_layer_with_the_same_name_wins() -> None:
    data = encode_caffemodel("n", {"a": ("ReLU", [])}) + encode_caffemodel("", {"a": ("Scale", [np.ones(2)])})
    assert [b.tolist() for b in read_caffemodel(data)["a"]] == [[1.0, 1.0]]


@pytest.mark.parametrize(
    "data,message",
    [
        (NET[:-3], "byte 5: field 100 runs past the end of its message"),
        (b"\x08", "byte 1: truncated varint"),
        (b"\x0b\x00", "byte 0: unsupported wire type 3 (field 1)"),
        (b"\x00\x01", "byte 0: field number 0 is invalid"),
        (b"\xa2\x06\x0a\x3a\x08\x2a\x02\x00\x00\x3a\x02\x0a\x00", "byte 5: field 5: packed run of 2 bytes"),
    ],
)
def test_corrupt_files_are_reported_with_byte_offsets(data: bytes, message: str) -> None:
    with pytest.raises(CaffemodelError) as info:
        read_caffemodel(data)
    assert message in str(info.value)


def test_shape_and_data_disagreeing_is_an_error() -> None:
    blob = b"\x2a\x04" + _f32(1.0) + b"\x3a\x03\x0a\x01\x02"  # one value, shape [2]
    layer = b"\x0a\x01x" + b"\x3a" + bytes([len(blob)]) + blob
    with pytest.raises(CaffemodelError, match=r"blob shape \[2\] needs 2 values, data has 1"):
        read_caffemodel(b"\xa2\x06" + bytes([len(layer)]) + layer)
