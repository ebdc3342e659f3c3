"""Element-wise layers: the shape passes through and Caffe lets them run in place.

ReLU y = max(x,0) + slope·min(x,0); PReLU the same with a learned slope per channel;
ELU x or α(eˣ−1); Sigmoid; TanH; BNLL log(1+eˣ); AbsVal |x|; Power (shift + scale·x)^power;
Dropout (inverted: kept values scaled by 1/(1−p) in TRAIN, identity in TEST).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Mapping

from netspec.layers.base import Blob, LayerType, Message, Shape, ShapeError
from netspec.layers.common import FillerParameter, constant
from netspec.message import Field

if TYPE_CHECKING:
    from netspec.spec import LayerSpec


class ReLUParameter(Message):
    negative_slope: float = Field(0.0, description="leak for x < 0 (0 = plain ReLU)")
    engine: str = "DEFAULT"


class PReLUParameter(Message):
    filler: FillerParameter = Field(default_factory=lambda: constant(0.25))
    channel_shared: bool = Field(False, description="one slope for all channels")


class ELUParameter(Message):
    alpha: float = 1.0


class EngineParameter(Message):
    engine: str = "DEFAULT"


class PowerParameter(Message):
    power: float = 1.0
    scale: float = 1.0
    shift: float = 0.0


class DropoutParameter(Message):
    dropout_ratio: float = Field(0.5, ge=0.0, lt=1.0, description="probability of dropping a unit")
    scale_train: bool = True


class _Elementwise(LayerType):
    in_place = True


class ReLU(_Elementwise):
    type_name = "ReLU"
    messages: ClassVar[Mapping[str, type[Message]]] = {"relu_param": ReLUParameter}
    summary = "max(x, 0) + negative_slope·min(x, 0)"


class PReLU(_Elementwise):
    type_name = "PReLU"
    messages: ClassVar[Mapping[str, type[Message]]] = {"prelu_param": PReLUParameter}
    summary = "ReLU with a learned negative slope per channel"

    @classmethod
    def blobs(cls, layer: LayerSpec, bottoms: tuple[Shape, ...]) -> tuple[Blob, ...]:
        p: PReLUParameter = cls.message(layer)
        if p.channel_shared:
            return (Blob((1,)),)
        if len(bottoms[0]) < 2:
            raise ShapeError("PReLU needs a channel axis (at least 2-D input)")
        return (Blob((bottoms[0][1],)),)


class ELU(_Elementwise):
    type_name = "ELU"
    messages: ClassVar[Mapping[str, type[Message]]] = {"elu_param": ELUParameter}
    summary = "x if x > 0 else alpha·(exp(x) − 1)"


class Sigmoid(_Elementwise):
    type_name = "Sigmoid"
    messages: ClassVar[Mapping[str, type[Message]]] = {"sigmoid_param": EngineParameter}
    summary = "1 / (1 + exp(−x))"


class TanH(_Elementwise):
    type_name = "TanH"
    messages: ClassVar[Mapping[str, type[Message]]] = {"tanh_param": EngineParameter}
    summary = "tanh(x)"


class BNLL(_Elementwise):
    type_name = "BNLL"
    summary = "log(1 + exp(x)), computed stably"


class AbsVal(_Elementwise):
    type_name = "AbsVal"
    summary = "|x|"


class Power(_Elementwise):
    type_name = "Power"
    messages: ClassVar[Mapping[str, type[Message]]] = {"power_param": PowerParameter}
    summary = "(shift + scale·x)^power"


class Dropout(_Elementwise):
    type_name = "Dropout"
    messages: ClassVar[Mapping[str, type[Message]]] = {"dropout_param": DropoutParameter}
    summary = "inverted dropout in TRAIN, identity in TEST"


LAYERS = (ReLU, PReLU, ELU, Sigmoid, TanH, BNLL, AbsVal, Power, Dropout)
