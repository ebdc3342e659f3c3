"""Caffe messages shared by several layer types."""

from __future__ import annotations

from typing import Literal

from netspec.layers.base import Message
from netspec.message import Field, NonNegativeInt, Repeated


class FillerParameter(Message):
    """Caffe `FillerParameter`: how a blob is initialised (see netspec.lowering.fillers)."""

    type: Literal["constant", "gaussian", "positive_unitball", "uniform", "xavier", "msra", "bilinear"] = (
        Field("constant", description="Filler kind; Caffe's default is constant 0.")
    )
    value: float = Field(0.0, description="constant: the value")
    min: float = Field(0.0, description="uniform: lower bound")
    max: float = Field(1.0, description="uniform: upper bound")
    mean: float = Field(0.0, description="gaussian: mean")
    std: float = Field(1.0, description="gaussian: standard deviation")
    sparse: int = Field(-1, description="gaussian: expected non-zeros per output (-1 = dense)")
    variance_norm: Literal["FAN_IN", "FAN_OUT", "AVERAGE"] = Field(
        "FAN_IN", description="xavier/msra: which fan normalises the variance")


class BlobShape(Message):
    """Caffe `BlobShape`: a list of dimensions, N first."""

    dim: Repeated[NonNegativeInt] = Field((), description="dimensions, e.g. [64, 1, 28, 28]")


def constant(value: float = 0.0) -> FillerParameter:
    # A default factory: built without validation; the fields set are those
    # FillerParameter(type=..., value=...) would mark.
    return FillerParameter.model_construct(type="constant", value=float(value))
