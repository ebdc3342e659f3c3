"""Layers that produce the net's inputs: Input, and Caffe's data layers.

Input (caffe/src/caffe/layers/input_layer.cpp) states its shapes. Data layers read databases
whose image size only the data knows; `check` asks for it (`--input-shape NAME=N,C,H,W`) unless
the layer's own fields determine it (MemoryData, DummyData, ImageData with a resize or crop).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal, Mapping

from netspec.layers.base import LayerType, Message, Shape, ShapeError, gather
from netspec.layers.common import BlobShape, FillerParameter
from netspec.message import Field, NonNegativeInt, PositiveInt, Repeated

if TYPE_CHECKING:
    from netspec.spec import LayerSpec


class InputParameter(Message):
    """Caffe `InputParameter`: one shape for all tops, or one per top."""

    shape: Repeated[BlobShape] = Field((), description="top shapes, N first")


class TransformationParameter(Message):
    """Caffe `TransformationParameter`: crop, mirror, subtract the mean, then scale."""

    scale: float = 1.0
    mirror: bool = False
    crop_size: NonNegativeInt = 0
    mean_file: str | None = None
    mean_value: Repeated[float] = ()
    force_color: bool = False
    force_gray: bool = False


class DataParameter(Message):
    source: str | None = None
    batch_size: NonNegativeInt = 0
    rand_skip: NonNegativeInt = 0
    backend: Literal["LEVELDB", "LMDB"] = "LEVELDB"
    scale: float = 1.0
    mean_file: str | None = None
    crop_size: NonNegativeInt = 0
    mirror: bool = False
    force_encoded_color: bool = False
    prefetch: NonNegativeInt = 4


class ImageDataParameter(Message):
    source: str | None = None
    batch_size: NonNegativeInt = 1
    rand_skip: NonNegativeInt = 0
    shuffle: bool = False
    new_height: NonNegativeInt = 0
    new_width: NonNegativeInt = 0
    is_color: bool = True
    scale: float = 1.0
    mean_file: str | None = None
    crop_size: NonNegativeInt = 0
    mirror: bool = False
    root_folder: str = ""


class MemoryDataParameter(Message):
    batch_size: PositiveInt
    channels: PositiveInt
    height: PositiveInt
    width: PositiveInt


class HDF5DataParameter(Message):
    source: str | None = None
    batch_size: NonNegativeInt = 0
    shuffle: bool = False


class DummyDataParameter(Message):
    data_filler: Repeated[FillerParameter] = ()
    shape: Repeated[BlobShape] = ()
    num: Repeated[NonNegativeInt] = ()
    channels: Repeated[NonNegativeInt] = ()
    height: Repeated[NonNegativeInt] = ()
    width: Repeated[NonNegativeInt] = ()


def _shape_hint(layer: LayerSpec) -> str:
    return f"give it with `netspec check --input-shape {layer.top[0] if layer.top else layer.name}=N,C,H,W`"


class Input(LayerType):
    type_name = "Input"
    messages: ClassVar[Mapping[str, type[Message]]] = {"input_param": InputParameter}
    bottoms = (0, 0)
    tops = (1, None)
    is_input = True
    summary = "declares the net's input blobs and their shapes"

    @classmethod
    def source_shapes(cls, layer: LayerSpec, given: Mapping[str, Shape]) -> tuple[Shape, ...]:
        shapes = [s.dim for s in cls.message(layer).shape]
        if len(shapes) == 1:
            shapes = shapes * len(layer.top)
        if shapes and len(shapes) != len(layer.top):
            raise ShapeError(f"{len(shapes)} shapes for {len(layer.top)} tops: give one shape, or one per top",
                             field=("input_param", "shape"))
        out = []
        for i, top in enumerate(layer.top):
            if top in given:
                out.append(given[top])
            elif not shapes:
                raise ShapeError(f"no shape given for input '{top}'", field=("input_param",),
                                 hint=_shape_hint(layer))
            else:
                out.append(tuple(shapes[i]))
        return tuple(out)


class _DataLayer(LayerType):
    """Caffe's database readers: data top (N,C,H,W) and an optional label top (N,)."""

    bottoms = (0, 0)
    tops = (1, 2)
    is_input = True

    @classmethod
    def known_shape(cls, layer: LayerSpec) -> Shape | None:
        return None

    @classmethod
    def source_shapes(cls, layer: LayerSpec, given: Mapping[str, Shape]) -> tuple[Shape, ...]:
        data = given.get(layer.top[0]) if layer.top else None
        data = data or cls.known_shape(layer)
        if data is None:
            raise ShapeError(f"the shape of '{layer.top[0] if layer.top else layer.name}' comes from the "
                             f"{cls.type_name} layer's database, which check does not open",
                             hint=_shape_hint(layer))
        shapes: tuple[Shape, ...] = (data,)
        if len(layer.top) > 1:
            shapes += (given.get(layer.top[1], (data[0],)),)
        for top in layer.top[2:]:  # HDF5Data: one dataset per top; nothing in the layer says its shape
            if top not in given:
                raise ShapeError(f"the shape of '{top}' comes from the {cls.type_name} layer's files, which "
                                 "check does not open", hint=f"give it with `netspec check --input-shape {top}=N,...`")
            shapes += (given[top],)
        return shapes


def _batch(layer: LayerSpec, key: str) -> int:
    return int(getattr(layer.messages[key], "batch_size", 0))


class Data(_DataLayer):
    type_name = "Data"
    messages: ClassVar[Mapping[str, type[Message]]] = {"data_param": DataParameter,
                                                       "transform_param": TransformationParameter}
    summary = "reads LMDB/LevelDB records (shape from --input-shape or the data: section)"


class ImageData(_DataLayer):
    type_name = "ImageData"
    messages: ClassVar[Mapping[str, type[Message]]] = {"image_data_param": ImageDataParameter,
                                                       "transform_param": TransformationParameter}
    summary = "reads image files listed in a text file"

    @classmethod
    def known_shape(cls, layer: LayerSpec) -> Shape | None:
        p: ImageDataParameter = layer.messages["image_data_param"]
        t: TransformationParameter = layer.messages["transform_param"]
        c = 3 if p.is_color else 1
        if t.crop_size:
            return (p.batch_size, c, t.crop_size, t.crop_size)
        if p.new_height and p.new_width:
            return (p.batch_size, c, p.new_height, p.new_width)
        return None


class MemoryData(_DataLayer):
    type_name = "MemoryData"
    messages: ClassVar[Mapping[str, type[Message]]] = {"memory_data_param": MemoryDataParameter,
                                                       "transform_param": TransformationParameter}
    summary = "batches fed from memory"

    @classmethod
    def known_shape(cls, layer: LayerSpec) -> Shape | None:
        p: MemoryDataParameter = layer.messages["memory_data_param"]
        return (p.batch_size, p.channels, p.height, p.width)


class HDF5Data(_DataLayer):
    type_name = "HDF5Data"
    messages: ClassVar[Mapping[str, type[Message]]] = {"hdf5_data_param": HDF5DataParameter}
    tops = (1, None)
    summary = "reads datasets named like its tops from HDF5 files"


class DummyData(LayerType):
    type_name = "DummyData"
    messages: ClassVar[Mapping[str, type[Message]]] = {"dummy_data_param": DummyDataParameter}
    bottoms = (0, 0)
    tops = (1, None)
    is_input = True
    summary = "constant or random blobs of stated shapes"

    @classmethod
    def source_shapes(cls, layer: LayerSpec, given: Mapping[str, Shape]) -> tuple[Shape, ...]:
        shapes, _ = gather(lambda: cls._shapes(layer, given), lambda: cls._fillers(layer))
        return shapes  # type: ignore[no-any-return]

    @classmethod
    def _fillers(cls, layer: LayerSpec) -> None:
        # dummy_data_layer.cpp: CHECK(num_data_filler == 0 || == 1 || == num_top)
        n = len(cls.message(layer).data_filler)
        if n not in (0, 1, len(layer.top)):
            raise ShapeError(f"{n} data_filler for {len(layer.top)} tops; Caffe takes none, one for all tops, or "
                             f"one per top", field=("dummy_data_param", "data_filler"))

    @classmethod
    def _shapes(cls, layer: LayerSpec, given: Mapping[str, Shape]) -> tuple[Shape, ...]:
        p: DummyDataParameter = cls.message(layer)
        if p.shape:
            shapes = [s.dim for s in p.shape]
        else:
            legacy = [p.num, p.channels, p.height, p.width]
            if not all(legacy) or len({len(v) for v in legacy}) != 1:
                raise ShapeError("give 'shape' (or num/channels/height/width, one each per top)",
                                 field=("dummy_data_param",))
            shapes = [tuple(v[i] for v in legacy) for i in range(len(p.num))]
        if len(shapes) == 1:
            shapes = shapes * len(layer.top)
        if len(shapes) != len(layer.top):
            raise ShapeError(f"{len(shapes)} shapes for {len(layer.top)} tops", field=("dummy_data_param",))
        return tuple(given.get(t, tuple(s)) for t, s in zip(layer.top, shapes))


LAYERS = (Input, Data, ImageData, MemoryData, HDF5Data, DummyData)
