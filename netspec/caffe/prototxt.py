"""Protobuf text format, as Caffe writes it, parsed into plain Python data that remembers where it came from.

`parse(text)` returns a `Parsed`: `data` is dicts / lists / str / int / float / bool with Caffe's field names,
and `positions` maps every path (a tuple of keys and list indices) to the 1-based (line, column) of the
field name that introduced it (for list elements: of that occurrence). Columns count characters, a tab is 1.

Protobuf text cannot tell a repeated field from a singular one, so the parser reads Caffe's own schema
(`SCHEMA`, transcribed from BVLC/caffe `src/caffe/proto/caffe.proto`): repeated fields are always lists,
singular ones never are, and each value is checked against its field's kind the way protobuf's TextFormat
would (an enum takes a bare identifier, a string field a quoted string...). Fields the schema does not know
(fork dialects such as `ceil_mode`) are kept: they become lists only when given several times, or when the
name is repeated in every Caffe message that declares it (`ALWAYS_REPEATED`). `message=None` turns the
schema off entirely (generic protobuf text).

All lexical errors and type errors are collected; parsing stops at the first syntax error. Problems are
raised together as one `PrototxtError` whose lines read `file:line:col: error: message`.
"""

from __future__ import annotations

import bisect
import os
import sys
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from netspec.errors import Diagnostic, NetspecError, SourceLoc

Path = tuple[str | int, ...]
Scalar = str | int | float | bool


class PrototxtError(NetspecError):
    """Every problem found in one prototxt, each located as `file:line:col`."""


# --------------------------------------------------------------------------------------------------------
# Schema: Caffe's messages, field types and labels (BVLC master, plus the deprecated V0/V1 messages).
# "*name:type" is a repeated field. A type is caffe.proto's: int32, uint32, int64, float, double, bool,
# string, an enum of ENUMS, or a message name.
# --------------------------------------------------------------------------------------------------------

# caffe.proto's enums: name -> {value name: number}. Same-named enums of different messages (the
# Engine of each layer, PoolMethod of Pooling, SPP and V0) have the same values.
_ENGINE = {"DEFAULT": 0, "CAFFE": 1, "CUDNN": 2}
_POOL_METHOD = {"MAX": 0, "AVE": 1, "STOCHASTIC": 2}
ENUMS: Mapping[str, Mapping[str, int]] = MappingProxyType({k: MappingProxyType(v) for k, v in {
    "Phase": {"TRAIN": 0, "TEST": 1},
    "VarianceNorm": {"FAN_IN": 0, "FAN_OUT": 1, "AVERAGE": 2},
    "SnapshotFormat": {"HDF5": 0, "BINARYPROTO": 1},
    "SolverMode": {"CPU": 0, "GPU": 1},
    "SolverType": {"SGD": 0, "NESTEROV": 1, "ADAGRAD": 2, "RMSPROP": 3, "ADADELTA": 4, "ADAM": 5},
    "DimCheckMode": {"STRICT": 0, "PERMISSIVE": 1},
    "NormalizationMode": {"FULL": 0, "VALID": 1, "BATCH_SIZE": 2, "NONE": 3},
    "Engine": _ENGINE,
    "DB": {"LEVELDB": 0, "LMDB": 1},
    "EltwiseOp": {"PROD": 0, "SUM": 1, "MAX": 2},
    "Norm": {"L1": 1, "L2": 2},
    "NormRegion": {"ACROSS_CHANNELS": 0, "WITHIN_CHANNEL": 1},
    "PoolMethod": _POOL_METHOD,
    "RoundMode": {"CEIL": 0, "FLOOR": 1},
    "ReductionOp": {"SUM": 1, "ASUM": 2, "SUMSQ": 3, "MEAN": 4},
    # V1LayerParameter.LayerType (netspec.caffe.upgrade maps each to its V2 type string).
    "LayerType": {
        "NONE": 0, "ABSVAL": 35, "ACCURACY": 1, "ARGMAX": 30, "BNLL": 2, "CONCAT": 3,
        "CONTRASTIVE_LOSS": 37, "CONVOLUTION": 4, "DATA": 5, "DECONVOLUTION": 39, "DROPOUT": 6,
        "DUMMY_DATA": 32, "EUCLIDEAN_LOSS": 7, "ELTWISE": 25, "EXP": 38, "FLATTEN": 8, "HDF5_DATA": 9,
        "HDF5_OUTPUT": 10, "HINGE_LOSS": 28, "IM2COL": 11, "IMAGE_DATA": 12, "INFOGAIN_LOSS": 13,
        "INNER_PRODUCT": 14, "LRN": 15, "MEMORY_DATA": 29, "MULTINOMIAL_LOGISTIC_LOSS": 16, "MVN": 34,
        "POOLING": 17, "POWER": 26, "RELU": 18, "SIGMOID": 19, "SIGMOID_CROSS_ENTROPY_LOSS": 27,
        "SILENCE": 36, "SOFTMAX": 20, "SOFTMAX_LOSS": 21, "SPLIT": 22, "SLICE": 33, "TANH": 23,
        "WINDOW_DATA": 24, "THRESHOLD": 31,
    },
}.items()})

# Integer types: the closed range protobuf's text parser accepts for each.
INT_RANGES: Mapping[str, tuple[int, int]] = MappingProxyType({
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
})
FLOAT_MAX = 3.4028234663852886e38  # the largest finite float32 (FLT_MAX)

_LAYER_PARAMS = (
    "accuracy_param:AccuracyParameter argmax_param:ArgMaxParameter batch_norm_param:BatchNormParameter "
    "bias_param:BiasParameter clip_param:ClipParameter concat_param:ConcatParameter "
    "contrastive_loss_param:ContrastiveLossParameter convolution_param:ConvolutionParameter "
    "crop_param:CropParameter data_param:DataParameter dropout_param:DropoutParameter "
    "dummy_data_param:DummyDataParameter eltwise_param:EltwiseParameter elu_param:ELUParameter "
    "embed_param:EmbedParameter exp_param:ExpParameter flatten_param:FlattenParameter "
    "hdf5_data_param:HDF5DataParameter hdf5_output_param:HDF5OutputParameter "
    "hinge_loss_param:HingeLossParameter image_data_param:ImageDataParameter "
    "infogain_loss_param:InfogainLossParameter inner_product_param:InnerProductParameter "
    "input_param:InputParameter log_param:LogParameter lrn_param:LRNParameter "
    "memory_data_param:MemoryDataParameter mvn_param:MVNParameter parameter_param:ParameterParameter "
    "pooling_param:PoolingParameter power_param:PowerParameter prelu_param:PReLUParameter "
    "python_param:PythonParameter recurrent_param:RecurrentParameter reduction_param:ReductionParameter "
    "relu_param:ReLUParameter reshape_param:ReshapeParameter scale_param:ScaleParameter "
    "sigmoid_param:SigmoidParameter softmax_param:SoftmaxParameter spp_param:SPPParameter "
    "slice_param:SliceParameter swish_param:SwishParameter tanh_param:TanHParameter "
    "threshold_param:ThresholdParameter tile_param:TileParameter window_data_param:WindowDataParameter"
)

_V1_LAYER_PARAMS = (
    "accuracy_param:AccuracyParameter argmax_param:ArgMaxParameter concat_param:ConcatParameter "
    "contrastive_loss_param:ContrastiveLossParameter convolution_param:ConvolutionParameter "
    "data_param:DataParameter dropout_param:DropoutParameter dummy_data_param:DummyDataParameter "
    "eltwise_param:EltwiseParameter exp_param:ExpParameter hdf5_data_param:HDF5DataParameter "
    "hdf5_output_param:HDF5OutputParameter hinge_loss_param:HingeLossParameter "
    "image_data_param:ImageDataParameter infogain_loss_param:InfogainLossParameter "
    "inner_product_param:InnerProductParameter lrn_param:LRNParameter memory_data_param:MemoryDataParameter "
    "mvn_param:MVNParameter pooling_param:PoolingParameter power_param:PowerParameter "
    "relu_param:ReLUParameter sigmoid_param:SigmoidParameter softmax_param:SoftmaxParameter "
    "slice_param:SliceParameter tanh_param:TanHParameter threshold_param:ThresholdParameter "
    "window_data_param:WindowDataParameter transform_param:TransformationParameter loss_param:LossParameter"
)

_SCHEMA_SOURCE: dict[str, str] = {
    "BlobShape": "*dim:int64",
    "BlobProto": "shape:BlobShape *data:float *diff:float *double_data:double *double_diff:double "
    "num:int32 channels:int32 height:int32 width:int32",
    "BlobProtoVector": "*blobs:BlobProto",
    "Datum": "channels:int32 height:int32 width:int32 data:string label:int32 *float_data:float encoded:bool",
    "FillerParameter": "type:string value:float min:float max:float mean:float std:float sparse:int32 "
    "variance_norm:VarianceNorm",
    "NetParameter": "name:string *input:string *input_shape:BlobShape *input_dim:int32 force_backward:bool "
    "state:NetState debug_info:bool *layer:LayerParameter *layers:V1LayerParameter",
    "SolverParameter": "net:string net_param:NetParameter train_net:string *test_net:string "
    "train_net_param:NetParameter *test_net_param:NetParameter train_state:NetState *test_state:NetState "
    "*test_iter:int32 test_interval:int32 test_compute_loss:bool test_initialization:bool base_lr:float "
    "display:int32 average_loss:int32 max_iter:int32 iter_size:int32 lr_policy:string gamma:float "
    "power:float momentum:float weight_decay:float regularization_type:string stepsize:int32 "
    "*stepvalue:int32 clip_gradients:float snapshot:int32 snapshot_prefix:string snapshot_diff:bool "
    "snapshot_format:SnapshotFormat solver_mode:SolverMode device_id:int32 random_seed:int64 type:string "
    "delta:float momentum2:float rms_decay:float debug_info:bool snapshot_after_train:bool "
    "solver_type:SolverType layer_wise_reduce:bool *weights:string",
    "SolverState": "iter:int32 learned_net:string *history:BlobProto current_step:int32",
    "NetState": "phase:Phase level:int32 *stage:string",
    "NetStateRule": "phase:Phase min_level:int32 max_level:int32 *stage:string *not_stage:string",
    "ParamSpec": "name:string share_mode:DimCheckMode lr_mult:float decay_mult:float",
    "LayerParameter": "name:string type:string *bottom:string *top:string phase:Phase *loss_weight:float "
    "*param:ParamSpec *blobs:BlobProto *propagate_down:bool *include:NetStateRule *exclude:NetStateRule "
    "transform_param:TransformationParameter loss_param:LossParameter " + _LAYER_PARAMS,
    "TransformationParameter": "scale:float mirror:bool crop_size:uint32 mean_file:string *mean_value:float "
    "force_color:bool force_gray:bool",
    "LossParameter": "ignore_label:int32 normalization:NormalizationMode normalize:bool",
    "AccuracyParameter": "top_k:uint32 axis:int32 ignore_label:int32",
    "ArgMaxParameter": "out_max_val:bool top_k:uint32 axis:int32",
    "ClipParameter": "min:float max:float",
    "ConcatParameter": "axis:int32 concat_dim:uint32",
    "BatchNormParameter": "use_global_stats:bool moving_average_fraction:float eps:float",
    "BiasParameter": "axis:int32 num_axes:int32 filler:FillerParameter",
    "ContrastiveLossParameter": "margin:float legacy_version:bool",
    "ConvolutionParameter": "num_output:uint32 bias_term:bool *pad:uint32 *kernel_size:uint32 "
    "*stride:uint32 *dilation:uint32 pad_h:uint32 pad_w:uint32 kernel_h:uint32 kernel_w:uint32 "
    "stride_h:uint32 stride_w:uint32 group:uint32 weight_filler:FillerParameter bias_filler:FillerParameter "
    "engine:Engine axis:int32 force_nd_im2col:bool",
    "CropParameter": "axis:int32 *offset:uint32",
    "DataParameter": "source:string batch_size:uint32 rand_skip:uint32 backend:DB scale:float "
    "mean_file:string crop_size:uint32 mirror:bool force_encoded_color:bool prefetch:uint32",
    "DropoutParameter": "dropout_ratio:float",
    "DummyDataParameter": "*data_filler:FillerParameter *shape:BlobShape *num:uint32 *channels:uint32 "
    "*height:uint32 *width:uint32",
    "EltwiseParameter": "operation:EltwiseOp *coeff:float stable_prod_grad:bool",
    "ELUParameter": "alpha:float",
    "EmbedParameter": "num_output:uint32 input_dim:uint32 bias_term:bool weight_filler:FillerParameter "
    "bias_filler:FillerParameter",
    "ExpParameter": "base:float scale:float shift:float",
    "FlattenParameter": "axis:int32 end_axis:int32",
    "HDF5DataParameter": "source:string batch_size:uint32 shuffle:bool",
    "HDF5OutputParameter": "file_name:string",
    "HingeLossParameter": "norm:Norm",
    "ImageDataParameter": "source:string batch_size:uint32 rand_skip:uint32 shuffle:bool new_height:uint32 "
    "new_width:uint32 is_color:bool scale:float mean_file:string crop_size:uint32 mirror:bool "
    "root_folder:string",
    "InfogainLossParameter": "source:string axis:int32",
    "InnerProductParameter": "num_output:uint32 bias_term:bool weight_filler:FillerParameter "
    "bias_filler:FillerParameter axis:int32 transpose:bool",
    "InputParameter": "*shape:BlobShape",
    "LogParameter": "base:float scale:float shift:float",
    "LRNParameter": "local_size:uint32 alpha:float beta:float norm_region:NormRegion k:float engine:Engine",
    "MemoryDataParameter": "batch_size:uint32 channels:uint32 height:uint32 width:uint32",
    "MVNParameter": "normalize_variance:bool across_channels:bool eps:float",
    "ParameterParameter": "shape:BlobShape",
    # BVLC's pooling pad/kernel_size/stride are singular (only convolution's are repeated).
    "PoolingParameter": "pool:PoolMethod pad:uint32 pad_h:uint32 pad_w:uint32 kernel_size:uint32 "
    "kernel_h:uint32 kernel_w:uint32 stride:uint32 stride_h:uint32 stride_w:uint32 engine:Engine "
    "global_pooling:bool round_mode:RoundMode",
    "PowerParameter": "power:float scale:float shift:float",
    "PReLUParameter": "filler:FillerParameter channel_shared:bool",
    "PythonParameter": "module:string layer:string param_str:string share_in_parallel:bool",
    "RecurrentParameter": "num_output:uint32 weight_filler:FillerParameter bias_filler:FillerParameter "
    "debug_info:bool expose_hidden:bool",
    "ReductionParameter": "operation:ReductionOp axis:int32 coeff:float",
    "ReLUParameter": "negative_slope:float engine:Engine",
    "ReshapeParameter": "shape:BlobShape axis:int32 num_axes:int32",
    "ScaleParameter": "axis:int32 num_axes:int32 filler:FillerParameter bias_term:bool "
    "bias_filler:FillerParameter",
    "SigmoidParameter": "engine:Engine",
    "SliceParameter": "axis:int32 *slice_point:uint32 slice_dim:uint32",
    "SoftmaxParameter": "engine:Engine axis:int32",
    "SPPParameter": "pyramid_height:uint32 pool:PoolMethod engine:Engine",
    "SwishParameter": "beta:float",
    "TanHParameter": "engine:Engine",
    "ThresholdParameter": "threshold:float",
    "TileParameter": "axis:int32 tiles:int32",
    "WindowDataParameter": "source:string scale:float mean_file:string batch_size:uint32 crop_size:uint32 "
    "mirror:bool fg_threshold:float bg_threshold:float fg_fraction:float context_pad:uint32 crop_mode:string "
    "cache_images:bool root_folder:string",
    # V1's `type` is an enum (CONVOLUTION...), `param` names shared blobs; see upgrade.py.
    "V1LayerParameter": "*bottom:string *top:string name:string *include:NetStateRule "
    "*exclude:NetStateRule type:LayerType *blobs:BlobProto *param:string *blob_share_mode:DimCheckMode "
    "*blobs_lr:float *weight_decay:float *loss_weight:float layer:V0LayerParameter " + _V1_LAYER_PARAMS,
    "V0LayerParameter": "name:string type:string num_output:uint32 biasterm:bool "
    "weight_filler:FillerParameter bias_filler:FillerParameter pad:uint32 kernelsize:uint32 group:uint32 "
    "stride:uint32 pool:PoolMethod dropout_ratio:float local_size:uint32 alpha:float beta:float k:float "
    "source:string scale:float meanfile:string batchsize:uint32 cropsize:uint32 mirror:bool "
    "*blobs:BlobProto *blobs_lr:float *weight_decay:float rand_skip:uint32 det_fg_threshold:float "
    "det_bg_threshold:float det_fg_fraction:float det_context_pad:uint32 det_crop_mode:string new_num:int32 "
    "new_channels:int32 new_height:int32 new_width:int32 shuffle_images:bool concat_dim:uint32 "
    "hdf5_output_param:HDF5OutputParameter",
}

ScalarKind = Literal["int", "float", "bool", "string", "enum"]
_SCALAR_KINDS = frozenset({"int", "float", "bool", "string", "enum"})
_FLOAT_TYPES = frozenset({"float", "double"})


@dataclass(frozen=True)
class FieldSpec:
    """One field of a Caffe message: its kind (a scalar kind or a message name), whether it repeats,
    and caffe.proto's type for it (int32, uint32, int64, float, double, bool, string, an enum name)."""

    kind: str
    repeated: bool
    type: str = ""

    @property
    def is_message(self) -> bool:
        return self.kind not in _SCALAR_KINDS


def _kind(proto_type: str) -> str:
    if proto_type in INT_RANGES:
        return "int"
    if proto_type in _FLOAT_TYPES:
        return "float"
    return "enum" if proto_type in ENUMS else proto_type


def _compile_schema(source: Mapping[str, str]) -> Mapping[str, Mapping[str, FieldSpec]]:
    schema: dict[str, Mapping[str, FieldSpec]] = {}
    for message, fields in source.items():
        specs: dict[str, FieldSpec] = {}
        for item in fields.split():
            name, proto_type = item.split(":")
            kind = _kind(proto_type)
            specs[name.lstrip("*")] = FieldSpec(kind, name.startswith("*"), proto_type)
            assert kind in _SCALAR_KINDS or kind in source, f"{message}.{name}: unknown type {proto_type}"
        schema[message] = MappingProxyType(specs)
    return MappingProxyType(schema)


SCHEMA: Mapping[str, Mapping[str, FieldSpec]] = _compile_schema(_SCHEMA_SOURCE)


def _names_where(predicate: Any) -> frozenset[str]:
    return frozenset(n for fields in SCHEMA.values() for n, s in fields.items() if predicate(s))


# Repeated in every message that declares it: safe to treat as a list even in a message we don't know.
ALWAYS_REPEATED: frozenset[str] = _names_where(lambda s: s.repeated) - _names_where(lambda s: not s.repeated)
# Enum-valued in every message that declares it: written bare even in a message we don't know.
ENUM_FIELDS: frozenset[str] = _names_where(lambda s: s.kind == "enum") - _names_where(
    lambda s: s.kind != "enum"
)
NET_ROOT = "NetParameter"
SOLVER_ROOT = "SolverParameter"


def field_spec(message: str | None, name: str) -> FieldSpec | None:
    """The schema's entry for `message.name`, or None where the message or field is unknown."""
    if message is None:
        return None
    return SCHEMA.get(message, {}).get(name)


# --------------------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------------------

TokenKind = Literal["ident", "string", "number", "punct", "eof"]


@dataclass(frozen=True)
class _Token:
    kind: TokenKind
    text: str
    value: Scalar
    line: int
    col: int

    def describe(self) -> str:
        if self.kind == "eof":
            return "end of file"
        if self.kind == "punct":
            return f"'{self.text}'"
        return f"{'identifier' if self.kind == 'ident' else self.kind} {self.text}"


_TOKEN_RE = re.compile(
    r"""(?P<ws>[ \t\r\n\f\v]+)
      | (?P<comment>\#[^\n]*)
      | (?P<number>(?:0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fF]?)
                   (?![A-Za-z0-9_.]))
      | (?P<badnumber>[0-9.][A-Za-z0-9_.]*)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
      | (?P<open_string>["'][^\n]*)
      | (?P<punct>[{}<>\[\]:;,\-])
      | (?P<bad>.)""",
    re.VERBOSE,
)

_SIMPLE_ESCAPES = {
    "a": 7,
    "b": 8,
    "f": 12,
    "n": 10,
    "r": 13,
    "t": 9,
    "v": 11,
    "\\": 92,
    "'": 39,
    '"': 34,
    "?": 63,
}
_ESCAPE_RE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))")


class _Lines:
    """Offsets to 1-based (line, column)."""

    def __init__(self, text: str) -> None:
        self._starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def at(self, offset: int) -> tuple[int, int]:
        row = bisect.bisect_right(self._starts, offset) - 1
        return row + 1, offset - self._starts[row] + 1


def _unescape(body: str) -> tuple[str, list[tuple[int, str]]]:
    """Decode a string literal's body; escapes build bytes because protobuf strings are UTF-8 bytes."""
    out = bytearray()
    bad: list[tuple[int, str]] = []
    pos = 0
    for m in _ESCAPE_RE.finditer(body):
        out += body[pos : m.start()].encode("utf-8")
        octal, hex2, u4, u8, other = m.groups()
        if octal is not None:
            out.append(int(octal, 8) & 0xFF)
        elif hex2 is not None:
            out.append(int(hex2, 16))
        elif u4 is not None or u8 is not None:
            out += chr(int(u4 or u8, 16)).encode("utf-8", "surrogatepass")
        elif other in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[other])
        else:
            bad.append((m.start(), m.group()))
            out += m.group().encode("utf-8")
        pos = m.end()
    out += body[pos:].encode("utf-8")
    return out.decode("utf-8", "replace"), bad


_MAX_NUMBER_CHARS = 100
_INTEGER_RE = re.compile(r"0[xX][0-9a-fA-F]+|[0-9]+")


def _shown(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(text: str) -> int | float:
    if text[:2] in ("0x", "0X"):
        return int(text, 16)
    if re.fullmatch(r"[0-9]+", text):
        # protobuf reads a leading 0 as octal, as C does.
        return (
            int(text, 8) if len(text) > 1 and text[0] == "0" and set(text) <= set("01234567") else int(text)
        )
    return float(text.rstrip("fF"))


def _tokenize(text: str, file: str) -> tuple[list[_Token], list[Diagnostic]]:
    lines = _Lines(text)
    tokens: list[_Token] = []
    diags: list[Diagnostic] = []
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup
        line, col = lines.at(m.start())
        raw = m.group()
        if kind in ("ws", "comment"):
            continue
        if kind == "bad":
            diags.append(_diag(file, line, col, f"unexpected character {raw!r}"))
        elif kind == "badnumber":
            diags.append(_diag(file, line, col, f"invalid number {raw!r}"))
            tokens.append(_Token("number", raw, 0, line, col))  # recover: keep the parse going
        elif kind == "open_string":
            diags.append(
                _diag(file, line, col, "unterminated string (a string must end on the line it starts)")
            )
            tokens.append(
                _Token("string", raw, _unescape(raw[1:])[0], line, col)
            )  # recover: rest of the line
        elif kind == "string":
            value, bad = _unescape(raw[1:-1])
            for offset, esc in bad:
                diags.append(
                    _diag(file, line, col + 1 + offset, f"invalid escape sequence {esc!r} in string")
                )
            tokens.append(_Token("string", raw, value, line, col))
        elif kind == "number" and len(raw) > _MAX_NUMBER_CHARS and _INTEGER_RE.fullmatch(raw):
            # Far past uint64 (20 digits); Python would refuse to convert it past 4300 digits anyway.
            diags.append(_diag(file, line, col, f"integer {_shown(raw)} ({len(raw)} characters) is out of "
                                                "the range of every caffe.proto integer type"))
            tokens.append(_Token("number", raw, 0, line, col))  # recover: keep the parse going
        elif kind == "number":
            tokens.append(_Token("number", raw, _number(raw), line, col))
        else:
            tokens.append(_Token("ident" if kind == "ident" else "punct", raw, raw, line, col))
    line, col = lines.at(len(text))
    tokens.append(_Token("eof", "", "", line, col))
    return tokens, diags


def _diag(file: str, line: int, col: int, message: str, hint: str | None = None) -> Diagnostic:
    return Diagnostic("error", message, SourceLoc(file, line, col), hint=hint)


# --------------------------------------------------------------------------------------------------------
# Syntax: tokens -> a raw tree that still knows which token kind every value was written as
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RawScalar:
    token: TokenKind
    value: Scalar
    text: str = ""  # a number as written (with its sign): the value of `1e999` and of `-inf` can't tell


@dataclass(frozen=True)
class _RawField:
    name: str
    line: int
    col: int
    value: _RawScalar | list[_RawField] | None  # None: the empty list `name: []`
    from_list: bool = False  # written inside `[...]`, so the field is repeated whatever the schema says
    key: tuple[int, int] | None = None  # the field name's position when line/col are a list element's

    @property
    def key_pos(self) -> tuple[int, int]:
        return self.key or (self.line, self.col)


class _SyntaxError(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


_CLOSER = {"{": "}", "<": ">"}
MAX_DEPTH = 100  # nested messages, as protobuf's TextFormat::Parser's default recursion limit
_INF_NAN = {"inf": float("inf"), "infinity": float("inf"), "nan": float("nan")}


@dataclass
class _Parser:
    tokens: list[_Token]
    file: str
    pos: int = 0
    open_blocks: list[tuple[str, _Token]] = field(default_factory=list)

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        tok = self.tokens[self.pos]
        self.pos = min(self.pos + 1, len(self.tokens) - 1)
        return tok

    def fail(self, tok: _Token, message: str) -> _SyntaxError:
        return _SyntaxError(_diag(self.file, tok.line, tok.col, message))

    def is_punct(self, *texts: str) -> bool:
        tok = self.peek()
        return tok.kind == "punct" and tok.text in texts

    def message_body(self, closer: str | None) -> list[_RawField]:
        fields: list[_RawField] = []
        while True:
            tok = self.peek()
            if tok.kind == "eof":
                if closer is None:
                    return fields
                name, opener = self.open_blocks[0]
                raise self.fail(opener, f"'{opener.text}' of '{name}' is never closed (reached end of file)")
            if tok.kind == "punct" and tok.text == closer:
                self.take()
                return fields
            if tok.kind == "punct" and tok.text in "}>":
                where = f"inside '{self.open_blocks[-1][0]}'" if self.open_blocks else "at the top level"
                raise self.fail(tok, f"unbalanced '{tok.text}' {where}")
            if tok.kind != "ident":
                raise self.fail(tok, f"expected a field name, found {tok.describe()}")
            fields.extend(self.field())
            if self.is_punct(";", ","):
                self.take()

    def field(self) -> list[_RawField]:
        name_tok = self.take()
        name = name_tok.text
        colon = self.is_punct(":")
        if colon:
            self.take()
        if self.is_punct("{", "<"):
            return [_RawField(name, name_tok.line, name_tok.col, self.block(name))]
        if self.is_punct("["):
            return self.bracket_list(name, name_tok)
        if not colon:
            raise self.fail(
                self.peek(), f"expected ':' or '{{' after field name '{name}', found {self.peek().describe()}"
            )
        return [_RawField(name, name_tok.line, name_tok.col, self.scalar(name))]

    def block(self, name: str) -> list[_RawField]:
        opener = self.take()
        if len(self.open_blocks) >= MAX_DEPTH:
            raise self.fail(opener, f"messages nested more than {MAX_DEPTH} deep (protobuf's text parser "
                                    "stops there too)")
        self.open_blocks.append((name, opener))
        body = self.message_body(_CLOSER[opener.text])
        self.open_blocks.pop()
        return body

    def bracket_list(self, name: str, name_tok: _Token) -> list[_RawField]:
        self.take()
        if self.is_punct("]"):
            self.take()
            return [_RawField(name, name_tok.line, name_tok.col, None, from_list=True)]
        key = (name_tok.line, name_tok.col)
        items: list[_RawField] = []
        while True:
            tok = self.peek()
            value = self.block(name) if self.is_punct("{", "<") else self.scalar(name)
            items.append(_RawField(name, tok.line, tok.col, value, from_list=True, key=key))
            if self.is_punct("]"):
                self.take()
                return items
            if not self.is_punct(","):
                raise self.fail(
                    self.peek(),
                    f"expected ',' or ']' in the list of '{name}', found {self.peek().describe()}",
                )
            self.take()

    def scalar(self, name: str) -> _RawScalar:
        tok = self.take()
        if tok.kind == "punct" and tok.text == "-":
            return self.negative(name, tok)
        if tok.kind == "string":
            parts = [str(tok.value)]
            while self.peek().kind == "string":  # adjacent literals concatenate, as in C
                parts.append(str(self.take().value))
            return _RawScalar("string", "".join(parts))
        if tok.kind in ("number", "ident"):
            return _RawScalar(tok.kind, tok.value, tok.text)
        raise self.fail(tok, f"expected a value for field '{name}', found {tok.describe()}")

    def negative(self, name: str, minus: _Token) -> _RawScalar:
        tok = self.take()
        if tok.kind == "number":
            return _RawScalar("number", -tok.value, "-" + tok.text)  # type: ignore[operator]
        if tok.kind == "ident" and tok.text.lower() in _INF_NAN:
            return _RawScalar("number", -_INF_NAN[tok.text.lower()], "-" + tok.text)
        raise self.fail(tok, f"expected a number after '-' for field '{name}', found {tok.describe()}")


# --------------------------------------------------------------------------------------------------------
# Semantics: raw tree + schema -> plain data, positions and type errors
# --------------------------------------------------------------------------------------------------------

_TRUE = {"true", "True", "t"}
_FALSE = {"false", "False", "f"}
_UNKNOWN = ""  # a message the schema does not describe (fork dialect), inside a schema-checked file


@dataclass
class _Builder:
    file: str
    use_schema: bool
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    diags: list[Diagnostic] = field(default_factory=list)

    def message(self, raw: list[_RawField], message: str, path: Path) -> dict[str, Any]:
        groups: dict[str, list[_RawField]] = {}
        for f in raw:
            groups.setdefault(f.name, []).append(f)
        out: dict[str, Any] = {}
        for name, occurrences in groups.items():
            value = self.field(name, occurrences, message, path + (name,))
            if value is not _MISSING:
                out[name] = value
        return out

    def field(self, name: str, occ: list[_RawField], message: str, path: Path) -> Any:
        spec = field_spec(message, name) if self.use_schema else None
        repeated = self.is_repeated(spec, name, message, occ)
        present = [f for f in occ if f.value is not None]
        self.positions[path] = occ[0].key_pos
        if not repeated:
            if any(f.from_list for f in occ):
                self.error(
                    occ[0], f"field '{name}' is not repeated in {message}: write it without [ ]", key=True
                )
                return _MISSING
            if len(occ) > 1:
                self.error(occ[1], f"field '{name}' is given {len(occ)} times but {message} allows it once")
            values = [self.value(f, spec, path) for f in present]  # checks every occurrence's type
            return values[-1]
        values = []
        for f in present:
            self.positions[path + (len(values),)] = (f.line, f.col)
            v = self.value(f, spec, path + (len(values),))
            if v is not _MISSING:
                values.append(v)
        return values

    def is_repeated(self, spec: FieldSpec | None, name: str, message: str, occ: list[_RawField]) -> bool:
        if spec is not None:
            return spec.repeated
        explicit = len(occ) > 1 or any(f.from_list for f in occ)
        return explicit or (self.use_schema and message == _UNKNOWN and name in ALWAYS_REPEATED)

    def value(self, f: _RawField, spec: FieldSpec | None, path: Path) -> Any:
        if isinstance(f.value, list):
            if spec is not None and not spec.is_message:
                self.error(f, f"field '{f.name}' takes a {spec.kind} value, not a message block")
                return _MISSING
            child = spec.kind if spec is not None else _UNKNOWN
            return self.message(f.value, child, path)
        assert f.value is not None
        if spec is not None and spec.is_message:
            self.error(f, f"field '{f.name}' is a message ({spec.kind}): write '{f.name} {{ ... }}'")
            return _MISSING
        return self.scalar(f, f.value, spec)

    def scalar(self, f: _RawField, raw: _RawScalar, spec: FieldSpec | None) -> Any:
        kind = spec.kind if spec else None
        value = _convert(raw, kind)
        if value is _MISSING:
            shown = f'"{raw.value}"' if raw.token == "string" else str(raw.value)
            self.error(f, f"field '{f.name}' expects {_KIND_WORDS[kind or '']}, found {shown}")
            return value
        problem = _out_of_range(f.name, raw, value, spec.type) if spec else None
        if problem is not None:
            self.error(f, problem)
            return _MISSING
        if spec is not None and kind == "enum" and isinstance(value, int):
            # protobuf text format accepts an enum's number; the rest of netspec reads names.
            return next(name for name, number in ENUMS[spec.type].items() if number == value)
        return value

    def error(self, f: _RawField, message: str, *, key: bool = False) -> None:
        line, col = f.key_pos if key else (f.line, f.col)
        self.diags.append(_diag(self.file, line, col, message))


class _Missing:
    pass


_MISSING: Any = _Missing()
_KIND_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a quoted string",
    "enum": "a bare enum name (no quotes)",
    "": "a value",
}


def _out_of_range(name: str, raw: _RawScalar, value: Any, proto_type: str) -> str | None:
    """Why protobuf's text parser refuses `value` for a field of caffe.proto type `proto_type`, if it does:
    an integer outside its type's range, a number past float's, an enum number the enum lacks."""
    if isinstance(value, bool) or raw.token != "number":
        return None
    if proto_type in INT_RANGES:
        low, high = INT_RANGES[proto_type]
        if not low <= value <= high:
            return f"field '{name}' is {proto_type}: {_shown(raw.text)} is out of its range [{low}, {high}]"
    elif proto_type in _FLOAT_TYPES and raw.text.lstrip("-").lower() not in _INF_NAN:
        limit = FLOAT_MAX if proto_type == "float" else sys.float_info.max
        if _magnitude_over(value, limit):
            return f"field '{name}' is {proto_type}: {_shown(raw.text)} is out of its range (±{limit:.7g})"
    elif proto_type in ENUMS and value not in ENUMS[proto_type].values():
        return (f"field '{name}': {value} is not a number of caffe.proto's enum {proto_type} "
                f"({_values(proto_type)})")
    return None


def _values(enum: str) -> str:
    values = ENUMS[enum]
    if len(values) <= 8:
        return ", ".join(f"{k} = {v}" for k, v in values.items())
    numbers = sorted(values.values())
    return f"numbers {numbers[0]} to {numbers[-1]}"


def _magnitude_over(value: int | float, limit: float) -> bool:
    try:
        return abs(float(value)) > limit
    except OverflowError:  # an integer past any float
        return True


def _convert(raw: _RawScalar, kind: str | None) -> Any:
    """A written value read as `kind` the way protobuf's TextFormat reads it; _MISSING if it can't be."""
    v = raw.value
    if kind is None:  # no schema: let the token decide
        if raw.token == "ident" and v in ("true", "True", "false", "False"):
            return v in ("true", "True")
        if raw.token == "ident" and str(v).lower() in _INF_NAN:
            return _INF_NAN[str(v).lower()]
        return v
    if kind == "string":
        return v if raw.token == "string" else _MISSING
    if kind == "enum":
        ok = raw.token == "ident" or (raw.token == "number" and isinstance(v, int))
        return v if ok else _MISSING
    if kind == "bool":
        if raw.token == "ident" and v in _TRUE | _FALSE:
            return v in _TRUE
        return bool(v) if raw.token == "number" and v in (0, 1) and isinstance(v, int) else _MISSING
    if kind == "int":
        return v if raw.token == "number" and isinstance(v, int) else _MISSING
    assert kind == "float"
    if raw.token == "number":
        return v
    return _INF_NAN[str(v).lower()] if raw.token == "ident" and str(v).lower() in _INF_NAN else _MISSING


# --------------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parsed:
    """Parsed protobuf text: plain `data`, and the (line, col) where each path was written."""

    data: dict[str, Any]
    positions: Mapping[Path, tuple[int, int]]
    file: str = "<string>"
    message: str | None = NET_ROOT

    def loc(self, path: Path) -> SourceLoc:
        """Where `path` was written; for a path that was not (a default, an upgrade's addition), its
        nearest written ancestor."""
        for n in range(len(path), -1, -1):
            if path[:n] in self.positions:
                line, col = self.positions[path[:n]]
                return SourceLoc(self.file, line, col)
        return SourceLoc(self.file, 1, 1)

    def get(self, path: Path) -> Any:
        node: Any = self.data
        for key in path:
            node = node[key]
        return node


def guess_message(raw_names: set[str]) -> str:
    """NetParameter or SolverParameter, from the top-level field names."""
    net, solver = set(SCHEMA[NET_ROOT]), set(SCHEMA[SOLVER_ROOT])
    return SOLVER_ROOT if (raw_names & (solver - net)) and not (raw_names & (net - solver)) else NET_ROOT


def parse(text: str, *, file: str = "<string>", message: str | None = "auto") -> Parsed:
    """Parse protobuf text. `message`: the root message ("NetParameter", "SolverParameter", any name in
    SCHEMA), "auto" to choose between net and solver from the top-level fields, or None for no schema.
    Raises PrototxtError with every problem found."""
    tokens, diags = _tokenize(text, file)
    parser = _Parser(tokens, file)
    try:
        raw = parser.message_body(None)
    except _SyntaxError as e:
        raise PrototxtError(_sorted(diags + [e.diagnostic])) from None
    if message == "auto":
        message = guess_message({f.name for f in raw})
    if message is not None and message not in SCHEMA:
        raise ValueError(f"unknown root message {message!r} (known: {', '.join(sorted(SCHEMA))})")
    builder = _Builder(file, use_schema=message is not None)
    data = builder.message(raw, message or _UNKNOWN, ())
    diags += builder.diags
    if diags:
        raise PrototxtError(_sorted(diags))
    positions = {(): (1, 1), **builder.positions}
    return Parsed(data, MappingProxyType(positions), file, message)


def _sorted(diags: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(diags, key=lambda d: (d.loc.line, d.loc.col) if d.loc else (0, 0))


def parse_file(path: str | os.PathLike[str], *, message: str | None = "auto") -> Parsed:
    """Parse a prototxt file (UTF-8); see `parse`."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    return parse(text, file=os.fspath(path), message=message)


def iter_paths(data: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every path in plain data, parents before children (handy for checking `positions`)."""
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from iter_paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from iter_paths(v, prefix + (i,))
