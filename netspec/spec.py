"""The spec schema: a Caffe NetParameter written in YAML, as frozen pydantic models.

Validation runs in two stages, as Caffe does: first each layer's envelope (name, type, bottom,
top, param, include/exclude, ...), then the parameter messages its type reads. Every problem in
the file is collected and raised together, each with the line and column it comes from.

A layer that fails validation is not dropped silently: when its name and tops can still be read it
is kept as a *broken* layer (`NetSpec.broken`), so that the graph stage can wire around it and
report the rest of the net's problems in the same run instead of a cascade of "unknown bottom"s.
"""

from __future__ import annotations

import copy
import functools
import re
import types
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, NonNegativeInt, ValidationError

from netspec.errors import Diagnostic, NetspecError, SourceLoc, closest, did_you_mean, sort_key
from netspec.layers import REGISTRY, lookup
from netspec.layers.base import LayerType, Message, Repeated, _listify
from netspec.layers.common import BlobShape
from netspec.source import PosDict, PosList, load_yaml, locate

#: A bound on the work a spec can ask for (block expansion makes large nets from small files);
#: the largest Caffe nets have a few thousand layers.
MAX_LAYERS = 10_000

# Every `*_param` message of Caffe's LayerParameter. A message not read by the layer's type is
# ignored by Caffe; we warn. A name outside this list is a typo and an error.
CAFFE_MESSAGES = frozenset({
    "transform_param", "loss_param", "accuracy_param", "argmax_param", "batch_norm_param",
    "bias_param", "clip_param", "concat_param", "contrastive_loss_param", "convolution_param",
    "crop_param", "data_param", "dropout_param", "dummy_data_param", "eltwise_param", "elu_param",
    "embed_param", "exp_param", "flatten_param", "hdf5_data_param", "hdf5_output_param",
    "hinge_loss_param", "image_data_param", "infogain_loss_param", "inner_product_param",
    "input_param", "log_param", "lrn_param", "memory_data_param", "mvn_param", "parameter_param",
    "pooling_param", "power_param", "prelu_param", "python_param", "recurrent_param",
    "reduction_param", "relu_param", "reshape_param", "scale_param", "sigmoid_param",
    "softmax_param", "spp_param", "slice_param", "swish_param", "tanh_param", "threshold_param",
    "tile_param", "window_data_param",
})


class ParamSpec(Message):
    """Caffe `ParamSpec`: per-blob learning-rate and weight-decay multipliers, and sharing."""

    name: str = Field("", description="blobs with the same non-empty name are shared")
    share_mode: Literal["STRICT", "PERMISSIVE"] = Field(
        "STRICT", description="STRICT: shared blobs must have equal shapes; PERMISSIVE: equal counts")
    lr_mult: float = Field(1.0, description="local learning rate = base_lr x lr_mult; 0 freezes")
    decay_mult: float = Field(1.0, description="local weight decay = weight_decay x decay_mult")


class NetStateRule(Message):
    """Caffe `NetStateRule`: when a layer is in the net (include) or out of it (exclude)."""

    phase: Literal["TRAIN", "TEST"] | None = Field(None, description="the rule holds in this phase only")
    min_level: int | None = Field(None, description="the rule holds when the net's level is at least this")
    max_level: int | None = Field(None, description="the rule holds when the net's level is at most this")
    stage: Repeated[str] = Field((), description="the rule holds when the net has all these stages")
    not_stage: Repeated[str] = Field((), description="the rule holds when the net has none of these stages")

    def matches(self, phase: str, level: int = 0, stages: frozenset[str] = frozenset()) -> bool:
        if self.phase is not None and self.phase != phase:
            return False
        if self.min_level is not None and level < self.min_level:
            return False
        if self.max_level is not None and level > self.max_level:
            return False
        return all(s in stages for s in self.stage) and not any(s in stages for s in self.not_stage)


class NetState(Message):
    """Caffe `NetState`: the level and stages a net is instantiated with (the phase comes from the
    command line)."""

    phase: Literal["TRAIN", "TEST"] = Field("TEST", description="ignored by check; use --phase")
    level: int = Field(0, description="compared with include/exclude min_level/max_level")
    stage: Repeated[str] = Field((), description="compared with include/exclude stage/not_stage")


class LayerEnvelope(Message):
    """The fields every Caffe layer has, whatever its type."""

    name: str = Field(..., min_length=1, description="unique layer name")
    type: str = Field(..., min_length=1, description="layer type, e.g. Convolution")
    bottom: Repeated[str] = Field((), description="input blobs (default: the previous layer's top)")
    top: Repeated[str] = Field((), description="output blobs (default: the layer's name)")
    phase: Literal["TRAIN", "TEST"] | None = Field(
        None, description="run the layer as in this phase (Caffe sets it; to filter layers use include)")
    loss_weight: Repeated[float] = Field((), description="weight of each top in the loss")
    param: Repeated[ParamSpec] = Field((), description="one entry per parameter blob")
    propagate_down: Repeated[bool] = Field((), description="one per bottom: whether to backpropagate")
    include: Repeated[NetStateRule] = Field((), description="the layer is in the net when any rule holds")
    exclude: Repeated[NetStateRule] = Field((), description="the layer is out of the net when any rule holds")


class LayerSpec(BaseModel):
    """A validated layer: the envelope plus its type's messages (Caffe defaults filled in).

    Built with `model_construct` from already-validated parts, so it never builds a validator.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, defer_build=True)

    name: str
    type: str
    bottom: tuple[str, ...]
    top: tuple[str, ...]
    loss_weight: tuple[float, ...] = ()
    param: tuple[ParamSpec, ...] = ()
    propagate_down: tuple[bool, ...] = ()
    include: tuple[NetStateRule, ...] = ()
    exclude: tuple[NetStateRule, ...] = ()
    messages: dict[str, Any] = Field(default_factory=dict)
    index: int = 0
    loc: SourceLoc | None = None
    raw: Any = Field(default=None, exclude=True, repr=False)

    def where(self, *path: Any, key: bool = False) -> SourceLoc | None:
        """Source position of a field of this layer (falls back to the layer itself)."""
        if self.raw is None:
            return self.loc
        return locate(self.raw, path, key=key) or self.loc

    def in_phase(self, phase: str, level: int = 0, stages: frozenset[str] = frozenset()) -> bool:
        if self.include:
            return any(r.matches(phase, level, stages) for r in self.include)
        return not any(r.matches(phase, level, stages) for r in self.exclude)


class NetEnvelope(Message):
    """Caffe `NetParameter` fields other than the layer list, plus netspec's sections."""

    name: str = Field("", description="the net's name")
    input: Repeated[str] = Field((), description="legacy: net input blob names (prefer an Input layer)")
    input_shape: Repeated[BlobShape] = Field((), description="legacy: one shape per input")
    input_dim: Repeated[NonNegativeInt] = Field((), description="legacy: 4 dims (N, C, H, W) per input")
    force_backward: bool = Field(False, description="backpropagate to every layer")
    debug_info: bool = Field(False, description="Caffe's per-blob debug log (ignored)")
    state: NetState | None = Field(None, description="the net's level and stages")
    layer: Any = None
    layers: Any = None
    # netspec extensions (validated by their own modules)
    solver: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    blocks: Any = None


class NetSpec(BaseModel):
    """A whole validated network."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, defer_build=True)

    name: str
    layers: tuple[LayerSpec, ...]
    file: str = "<spec>"
    force_backward: bool = False
    solver: Any = None
    data: Any = None
    warnings: tuple[Diagnostic, ...] = ()
    raw: Any = Field(default=None, exclude=True, repr=False)
    #: layers that failed validation but whose name and tops are known: wired, never computed
    broken: tuple[LayerSpec, ...] = ()
    level: int = 0
    stages: frozenset[str] = frozenset()


# ----------------------------------------------------------------------------------------------
# pydantic errors -> located diagnostics

_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")


def show(value: Any, limit: int = 40) -> str:
    """A value as an error message quotes it: short, and typed where the type is the problem."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, str):
        text = value if len(value) <= limit else value[:limit - 10] + f"…({len(value):,} characters)"
        return repr(text)
    text = repr(value)
    return text if len(text) <= limit else f"a {len(text)}-digit number"


def _label(raw: Any, prefix: tuple[Any, ...], loc: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    """A field path as the user wrote it (`convolution_param.kernel_size[1]`) and the data path.

    pydantic puts list indexes in its paths even where the user gave a lone value for a repeated
    field, and the member names of a union (`int`, `literal[...]`) where a field has several types:
    both are dropped here.
    """
    node: Any = raw
    for step in prefix:
        node = node[step] if _has(node, step) else None
    parts: list[str] = []
    path: list[Any] = []
    for step in loc:
        if isinstance(step, int):
            if isinstance(node, list):
                parts.append(f"[{step}]")
                path.append(step)
                node = node[step] if 0 <= step < len(node) else None
            continue  # a lone value standing for a one-element list
        if isinstance(node, dict) and step in node:
            node = node[step]
        elif _is_schema_tag(step) or (node is not None and not isinstance(node, dict)):
            continue
        else:
            node = None  # a missing or unknown field
        parts.append(("." if parts else "") + step)
        path.append(step)
    return "".join(parts), tuple(path)


_SCHEMA_WORDS = frozenset({"int", "str", "float", "bool", "list", "tuple", "dict", "none", "bytes"})


def _is_schema_tag(step: str) -> bool:
    return step in _SCHEMA_WORDS or not step.replace("_", "a").isalnum()


def _has(node: Any, step: Any) -> bool:
    if isinstance(node, dict):
        return step in node
    return isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)


def _describe(e: dict[str, Any], label: str, lone: bool = False) -> str:
    """A pydantic error in words. `lone`: the value stood for a one-element list (a repeated field),
    so a wrong type may also be fixed by a list of the right ones."""
    kind, got = e["type"], e.get("input")
    ctx = e.get("ctx") or {}
    what = f"'{label}'" if label else "the value"
    either = " (or a list of them)" if lone else ""
    if kind in ("int_type", "int_parsing"):
        return f"{what} must be an integer{either}, got {show(got)}"
    if kind == "int_from_float":
        return f"{what} must be a whole number, got {show(got)}"
    if kind in ("float_type", "float_parsing"):
        return f"{what} must be a number{either}, got {show(got)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"{what} must be true or false{either}, got {show(got)}"
    if kind == "string_type":
        quote = " (quote it to make it a string)" if isinstance(got, (int, float)) else ""
        return f"{what} must be a string{either}, got {show(got)}{quote}"
    if kind == "literal_error":
        allowed = _QUOTED.findall(str(ctx.get("expected", "")))
        return f"{what} must be one of {', '.join(allowed)}, got {show(got)}"
    if kind == "greater_than":
        bound = ctx.get("gt")
        return f"{what} must be positive, got {show(got)}" if bound == 0 else \
            f"{what} must be greater than {bound}, got {show(got)}"
    if kind == "greater_than_equal":
        bound = ctx.get("ge")
        return f"{what} must not be negative, got {show(got)}" if bound == 0 else \
            f"{what} must be at least {bound}, got {show(got)}"
    if kind == "less_than":
        return f"{what} must be less than {ctx.get('lt')}, got {show(got)}"
    if kind == "less_than_equal":
        return f"{what} must be at most {ctx.get('le')}, got {show(got)}"
    if kind in ("model_type", "model_attributes_type", "dict_type", "mapping_type"):
        return f"{what} must be a mapping of fields{either}, got {show(got)}"
    if kind in ("tuple_type", "list_type", "iterable_type", "set_type", "frozen_set_type"):
        return f"{what} must be a list, got {show(got)}"
    if kind == "too_short" and isinstance(got, str):
        return f"{what} must not be empty"
    if kind in ("value_error", "assertion_error"):
        text = str(e.get("msg", "")).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        return f"{what}: {text}" if label else text
    return f"{what}: {str(e.get('msg', 'invalid value')).rstrip('.')} (got {show(got)})"


def pydantic_diagnostics(err: ValidationError, raw: Any, prefix: tuple[Any, ...], file: str,
                         layer: str | None, model: type[BaseModel] | None,
                         section: str = "") -> list[Diagnostic]:
    """Each pydantic error as a located diagnostic in the user's words.

    `prefix` is the data path of the validated mapping inside `raw`; `section` names it in
    messages (e.g. 'convolution_param'). A misspelt field that pydantic reports twice (unknown
    'num_ouput' and missing 'num_output') becomes one error with a did-you-mean.
    """
    errors = err.errors(include_url=False)

    def known(parent: tuple[Any, ...]) -> list[str]:
        return _fields_at(model, parent)

    unknown: dict[tuple[Any, ...], set[str]] = {}
    for e in errors:
        if e["type"] == "extra_forbidden":
            loc = tuple(e["loc"])
            suggestion = did_you_mean(str(loc[-1]), known(loc[:-1]))
            if suggestion:
                unknown.setdefault(loc[:-1], set()).add(suggestion)
    out: list[Diagnostic] = []
    for e in errors:
        loc = tuple(e["loc"])
        label, path = _label(raw, prefix, loc)
        full = f"{section}.{label}" if section and label else (section or label)
        parent, _ = _label(raw, prefix, loc[:-1]) if loc else ("", ())
        parent_full = f"{section}.{parent}" if section and parent else (section or parent)
        inside = f" in {parent_full}" if parent_full else ""
        if e["type"] == "extra_forbidden":
            hint = did_you_mean(str(loc[-1]), known(loc[:-1]))
            msg = f"unknown field '{loc[-1]}'{inside}" + (f"; {hint}" if hint else "")
            where = locate(raw, prefix + path, key=True)
        elif e["type"] == "missing":
            if f"did you mean '{loc[-1]}'?" in unknown.get(loc[:-1], ()):
                continue  # reported as the misspelt field
            msg = f"missing required field '{loc[-1]}'{inside}"
            where = locate(raw, prefix + path[:-1])
        else:
            lone = bool(loc) and isinstance(loc[-1], int) and not label.endswith("]")
            msg = _describe(e, full, lone)
            if e["type"] == "literal_error" and isinstance(e.get("input"), str):
                allowed = _QUOTED.findall(str((e.get("ctx") or {}).get("expected", "")))
                hint = did_you_mean(e["input"], allowed)
                msg += f"; {hint}" if hint else ""
            where = locate(raw, prefix + path)
        out.append(Diagnostic("error", msg, where or SourceLoc(file, 1, 1), layer))
    return out


def _fields_at(model: type[BaseModel] | None, path: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) message at `path`, for did-you-mean."""
    for step in path:
        if model is None or isinstance(step, int):
            continue
        info = model.model_fields.get(str(step))
        if info is None:
            return []
        model = _message_type(info.annotation)
    return list(model.model_fields) if model is not None else []


def _message_type(annotation: Any) -> type[BaseModel] | None:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _message_type(arg)
        if found is not None:
            return found
    return None


# ----------------------------------------------------------------------------------------------
# parsing


def _layer_list(raw: PosDict, file: str, diags: list[Diagnostic]) -> tuple[str, Any]:
    if raw.get("layer") is not None and raw.get("layers") is not None:
        diags.append(Diagnostic("error", "give either 'layer' or the legacy 'layers', not both",
                                locate(raw, ("layers",), key=True)))
    key = "layer" if raw.get("layer") is not None else "layers"
    items = raw.get(key)
    if items is None:
        if "layer" not in raw and "layers" not in raw:
            diags.append(Diagnostic("error", "the spec has no 'layer:' list",
                                    raw.loc or SourceLoc(file, 1, 1)))
        return key, PosList()
    if isinstance(items, dict):
        items = PosList([items], loc=getattr(items, "loc", None))
        items.item_locs = [items.loc]
    if not isinstance(items, list):
        diags.append(Diagnostic("error", f"'{key}' must be a list of layers, got {show(items)}",
                                locate(raw, (key,)) or SourceLoc(file, 1, 1)))
        return key, PosList()
    return key, items


def _strings(value: Any) -> tuple[str, ...] | None:
    """A repeated string field read leniently (for broken layers), or None if it is not one."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    return tuple(items) if all(isinstance(v, str) for v in items) else None


def _message(mtype: type[Message], value: Any) -> Message:
    """Validate a parameter message (an absent one is all defaults)."""
    return validate(mtype, value if value is not None else {})


# ----------------------------------------------------------------------------------------------
# the fast path: plain data that is already exactly right needs no pydantic validator
#
# Building a pydantic validator costs about a millisecond per model (the first one also loads
# pydantic's plugin machinery), a net names a dozen models, and a check runs in a fresh process.
# Most specs are valid and their values already have the field's exact type, so `fast_construct`
# builds the model directly from the field declarations
# (types, Literal choices, bounds, lone-value-or-list, nested messages) and gives up, returning
# None, on anything else: a value of another type, a failed bound, an unknown or missing field, a
# model with validators. pydantic then validates as before and reports the problems. Where it
# accepts, the result equals pydantic's (tests/test_spec_errors.py compares the two).

_Convert = Callable[[Any], Any]
_REJECT = object()  # a converter's "not for the fast path" answer


def validate(model: type[BaseModel], data: Any) -> Any:
    """`model.model_validate(data)`, without building pydantic's validator when the data allows."""
    built = fast_construct(model, data)
    return built if built is not None else model.model_validate(data)


def fast_construct(model: type[BaseModel], data: Any) -> Any:
    """The model built straight from `data`, or None where only pydantic can decide."""
    plan = _plan(model)
    if plan is None or not isinstance(data, dict):
        return None
    convert = plan.convert
    values = {}
    for key, value in data.items():
        to = convert.get(key)
        if to is None:
            return None
        value = to(value)
        if value is _REJECT:
            return None
        values[key] = value
    if plan.required and not plan.required <= values.keys():
        return None
    return plan.instance(values)


def _construct(model: type[BaseModel], **values: Any) -> Any:
    """`model.model_construct(**values)` without its per-field default resolution."""
    return _builder(model).instance(values)


@functools.cache
def _builder(model: type[BaseModel]) -> _Plan:
    return _Plan(model, {})


_new_object = object.__new__
_set = object.__setattr__


class _Plan:
    """How to build one model from plain data: a converter per field, and its defaults.

    `instance` makes what `model.model_construct` makes (for models without private attributes or
    extra fields), from one template dict: model_construct re-resolves and copies every default
    on every call. A default factory runs once when it yields a frozen model (instances may share
    it); a message class as factory is built without a validator.
    """

    def __init__(self, model: type[BaseModel], convert: dict[str, _Convert]) -> None:
        self.model = model
        self.convert = convert
        fields = model.model_fields
        self.required = frozenset(n for n, f in fields.items() if f.is_required())
        self.template: dict[str, Any] = {}  # every field in order; required ones get overwritten
        self.fresh: dict[str, Callable[[], Any]] = {}
        for name, info in fields.items():
            self.template[name] = None
            if info.is_required():
                continue
            factory = info.default_factory
            if factory is None:
                if isinstance(info.default, (list, dict, set)):
                    self.fresh[name] = functools.partial(copy.deepcopy, info.default)
                else:
                    self.template[name] = info.default
                continue
            if isinstance(factory, type) and issubclass(factory, BaseModel) and _plan(factory) is not None \
                    and not _plan(factory).required:  # type: ignore[union-attr]
                value = _plan(factory).instance({})  # type: ignore[union-attr]
            else:
                value = factory()  # type: ignore[call-arg]
            if isinstance(value, BaseModel) and value.model_config.get("frozen"):
                self.template[name] = value
            else:
                self.fresh[name] = factory  # type: ignore[assignment]

    def instance(self, values: dict[str, Any]) -> Any:
        every = {**self.template, **values}
        for name, make in self.fresh.items():
            if name not in values:
                every[name] = make()
        obj = _new_object(self.model)
        _set(obj, "__dict__", every)
        _set(obj, "__pydantic_fields_set__", set(values))
        _set(obj, "__pydantic_extra__", None)
        _set(obj, "__pydantic_private__", None)
        return obj


@functools.cache
def _plan(model: type[BaseModel]) -> _Plan | None:
    """The fast path for a model, or None when some field (or a validator) needs pydantic."""
    decorators = model.__pydantic_decorators__
    if (decorators.validators or decorators.field_validators or decorators.root_validators
            or decorators.model_validators or model.model_config.get("extra") != "forbid"
            or model.model_config.get("strict") or model.__private_attributes__):
        return None
    convert = {}
    for name, info in model.model_fields.items():
        if info.alias not in (None, name) or info.validation_alias is not None \
                or getattr(info, "default_factory_takes_data", False):
            return None
        to = _converter(info.annotation, tuple(info.metadata))
        if to is None:
            return None
        convert[name] = to
    return _Plan(model, convert)


def _converter(annotation: Any, metadata: tuple[Any, ...]) -> _Convert | None:
    """What pydantic does to a value of this annotation, on values that need no coercion."""
    import typing

    lone = [m for m in metadata if isinstance(m, BeforeValidator)]
    metadata = tuple(m for m in metadata if not isinstance(m, BeforeValidator))
    if lone:
        if len(lone) > 1 or getattr(lone[0].func, "__name__", "") != "_listify":
            return None
        if typing.get_origin(annotation) is not tuple or metadata:
            return None
        args = typing.get_args(annotation)
        item = _converter(args[0], ()) if len(args) == 2 and args[1] is Ellipsis else None
        if item is None:
            return None

        def lone_or_tuple(v: Any) -> Any:  # netspec's Repeated: _listify, then tuple[T, ...]
            if v is None:
                return ()
            if not isinstance(v, (list, tuple)):
                v = _REJECT if (x := item(v)) is _REJECT else (x,)
                return v
            out = tuple([item(x) for x in v])
            return _REJECT if _REJECT in out else out
        return lone_or_tuple
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(annotation)
        return _converter(base, metadata + tuple(extra))
    check = _bounds(metadata)
    if check is None:
        return None
    if annotation is Any:
        return None if metadata else (lambda v: v)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(annotation)
        others = [a for a in args if a is not type(None)]
        if len(others) != 1 or len(args) != 2:
            return None
        inner = _converter(others[0], metadata)
        return None if inner is None else (lambda v: None if v is None else inner(v))
    if origin is typing.Literal:
        choices = frozenset(typing.get_args(annotation))
        if not all(type(c) is str for c in choices) or metadata:
            return None
        return lambda v: v if type(v) is str and v in choices else _REJECT
    if origin is tuple:
        args = typing.get_args(annotation)
        if len(args) != 2 or args[1] is not Ellipsis or metadata:
            return None
        item = _converter(args[0], ())
        if item is None:
            return None

        def tuple_of(v: Any) -> Any:
            if not isinstance(v, (list, tuple)):
                return _REJECT
            out = tuple([item(x) for x in v])
            return _REJECT if _REJECT in out else out
        return tuple_of
    if origin is dict:
        key, value = typing.get_args(annotation)
        if key is not str or value is not Any or metadata:
            return None
        return lambda v: dict(v) if isinstance(v, dict) and all(type(k) is str for k in v) else _REJECT
    if annotation is int:
        return lambda v: v if type(v) is int and check(v) else _REJECT
    if annotation is float:
        def to_float(v: Any) -> Any:
            if type(v) is not float and type(v) is not int:
                return _REJECT
            try:
                f = float(v)
            except OverflowError:
                return _REJECT
            return f if check(f) else _REJECT
        return to_float
    if annotation is bool and not metadata:
        return lambda v: v if type(v) is bool else _REJECT
    if annotation is str:
        return lambda v: v if type(v) is str and check(v) else _REJECT
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and not metadata:
        if _plan(annotation) is None:
            return None
        return lambda v: _REJECT if (built := fast_construct(annotation, v)) is None else built
    return None


def _bounds(metadata: tuple[Any, ...]) -> Callable[[Any], bool] | None:
    """A predicate for annotated-types bounds (Gt, Ge, Lt, Le, MinLen, MaxLen); None for others."""
    import annotated_types as at

    tests: list[Callable[[Any], bool]] = []
    for m in metadata:
        if isinstance(m, at.Gt):
            tests.append(lambda v, b=m.gt: v > b)
        elif isinstance(m, at.Ge):
            tests.append(lambda v, b=m.ge: v >= b)
        elif isinstance(m, at.Lt):
            tests.append(lambda v, b=m.lt: v < b)
        elif isinstance(m, at.Le):
            tests.append(lambda v, b=m.le: v <= b)
        elif isinstance(m, at.MinLen):
            tests.append(lambda v, b=m.min_length: len(v) >= b)
        elif isinstance(m, at.MaxLen):
            tests.append(lambda v, b=m.max_length: len(v) <= b)
        else:
            return None
    if not tests:
        return _always
    if len(tests) == 1:
        return tests[0]
    return lambda v: all(t(v) for t in tests)


def _always(value: Any) -> bool:
    return True


_ENVELOPE_FIELDS = tuple(LayerEnvelope.model_fields)
_KNOWN_KEYS = frozenset(_ENVELOPE_FIELDS) | CAFFE_MESSAGES


class _LayerParser:
    """One layer's validation; problems go to `diags`."""

    def __init__(self, raw: PosDict, key: str, file: str, diags: list[Diagnostic]) -> None:
        self.raw, self.key, self.file, self.diags = raw, key, file, diags

    def parse(self, item: Any, index: int) -> tuple[LayerSpec | None, LayerSpec | None]:
        """(valid layer, None), (None, broken layer) or (None, None) when nothing is readable."""
        key, raw, diags = self.key, self.raw, self.diags
        at = locate(raw, (key, index)) or SourceLoc(self.file, 1, 1)
        if not isinstance(item, dict):
            diags.append(Diagnostic("error", f"each entry of '{key}' must be a mapping with name and "
                                             f"type, got {show(item)}", at, f"layer #{index + 1}"))
            return None, None
        name = item.get("name") if isinstance(item.get("name"), str) and item.get("name") else None
        who = name or f"layer #{index + 1}"
        before = len(diags)
        ltype = item.get("type") if isinstance(item.get("type"), str) else None
        cls = lookup(ltype) if ltype else None
        v1 = _v1_types() if ltype and cls is None and key == "layers" and ltype.isupper() else None
        if v1 is not None and ltype in v1:
            cls = lookup(v1[ltype])  # Caffe's UpgradeV1LayerType
        fixed = self.known_keys(item, cls, who)
        env = self.envelope({k: v for k, v in fixed.items() if k in _ENVELOPE_FIELDS}, fixed, who)
        if ltype and cls is None:
            diags.append(_unknown_type(ltype, v1, locate(fixed, ("type",)), who))
        messages = self.messages(cls, fixed, who)
        if env is not None:
            self.rules(env, fixed, who)
        failed = any(d.severity == "error" for d in diags[before:])
        if env is not None and cls is not None and not failed:
            return _construct(
                LayerSpec,
                name=env.name, type=cls.type_name, bottom=env.bottom, top=env.top,
                loss_weight=env.loss_weight, param=env.param, propagate_down=env.propagate_down,
                include=env.include, exclude=env.exclude, messages=messages, index=index, loc=at,
                raw=item), None
        return None, self.broken(item, index, name, env, at)

    def known_keys(self, item: PosDict, cls: type[LayerType] | None, who: str) -> PosDict:
        """The layer's mapping with every misspelt key reported, and renamed to the field it most
        likely means when that field is not given, so that its contents are still checked."""
        if _KNOWN_KEYS.issuperset(item):
            return item if isinstance(item, PosDict) else PosDict(item, loc=None)
        fixed = PosDict(loc=item.loc)
        readers = list(cls.messages) if cls is not None else []
        for k, v in item.items():
            target = k
            if k not in _ENVELOPE_FIELDS and k not in CAFFE_MESSAGES:
                guess = closest(k, list(_ENVELOPE_FIELDS) + readers) or closest(k, CAFFE_MESSAGES)
                self.diags.append(Diagnostic("error", f"unknown field '{k}'" + (f"; did you mean '{guess}'?"
                                                                                if guess else ""),
                                             item.key_locs.get(k, item.loc), who))
                if guess is None or guess in item or guess in fixed:
                    continue
                target = guess
            fixed[target] = v
            fixed.key_locs[target] = item.key_locs.get(k, item.loc)  # type: ignore[assignment]
            fixed.value_locs[target] = item.value_locs.get(k, item.loc)  # type: ignore[assignment]
        return fixed

    def envelope(self, part: dict[str, Any], fixed: PosDict, who: str) -> LayerEnvelope | None:
        try:
            return validate(LayerEnvelope, part)  # type: ignore[no-any-return]
        except ValidationError as e:
            self.diags.extend(pydantic_diagnostics(e, fixed, (), self.file, who, LayerEnvelope))
            return None

    def messages(self, cls: type[LayerType] | None, fixed: PosDict, who: str) -> dict[str, Any]:
        diags = self.diags
        if cls is not None:
            for mname in fixed:
                if mname in CAFFE_MESSAGES and mname not in cls.messages:
                    reads = ", ".join(cls.messages) or "no parameter messages"
                    where = locate(fixed, (mname,), key=True)
                    diags.append(Diagnostic("warning", f"'{mname}' is ignored by {cls.type_name} layers "
                                                       f"(they read {reads})", where, who))
        messages: dict[str, Any] = {}
        if cls is None:
            return messages
        for mname, mtype in cls.messages.items():
            try:
                messages[mname] = _message(mtype, fixed.get(mname))
            except ValidationError as e:
                diags.extend(pydantic_diagnostics(e, fixed, (mname,), self.file, who, mtype, section=mname))
        return messages

    def rules(self, env: LayerEnvelope, fixed: PosDict, who: str) -> None:
        """Caffe's NetStateRule checks, and the `phase:` trap."""
        diags = self.diags
        if env.include and env.exclude:
            diags.append(Diagnostic("error", "give either 'include' or 'exclude' rules, not both (Caffe "
                                             "refuses a layer with both)",
                                    locate(fixed, ("exclude",), key=True), who))
        for field in ("include", "exclude"):
            for i, rule in enumerate(getattr(env, field)):
                lo, hi = rule.min_level, rule.max_level
                if lo is not None and hi is not None and lo > hi:
                    diags.append(Diagnostic("warning", f"this {field} rule never holds: min_level {lo} > "
                                                       f"max_level {hi}", locate(fixed, (field, i)),
                                            who))
                both = set(rule.stage) & set(rule.not_stage)
                if both:
                    diags.append(Diagnostic("warning", f"this {field} rule never holds: stage "
                                                       f"'{sorted(both)[0]}' is both required and excluded",
                                            locate(fixed, (field, i)), who))
        if env.phase is not None:
            diags.append(Diagnostic(
                "warning", f"'phase: {env.phase}' does not take the layer out of the other phase's net; it "
                           f"makes the layer behave as in {env.phase} in both",
                locate(fixed, ("phase",), key=True), who,
                f"to keep the layer in the {env.phase} net only, write 'include: {{phase: {env.phase}}}'"))

    def broken(self, item: PosDict, index: int, name: str | None, env: LayerEnvelope | None,
               at: SourceLoc) -> LayerSpec | None:
        """What the graph needs of a layer that failed validation: its name, bottoms and tops."""
        if name is None:
            return None
        bottom = env.bottom if env is not None else _strings(item.get("bottom"))
        top = env.top if env is not None else _strings(item.get("top"))
        if bottom is None or top is None:
            return None
        include = env.include if env is not None else ()
        exclude = env.exclude if env is not None else ()
        return _construct(
                LayerSpec,
            name=name, type=str(item.get("type")), bottom=bottom, top=top or (name,), include=include,
            exclude=exclude, index=index, loc=at, raw=item)


def _v1_types() -> Mapping[str, str]:
    """V1 enum names (CONVOLUTION, SOFTMAX_LOSS, ...) -> type names, as Caffe's upgrade maps them.

    Imported only when a V1 net needs it: netspec.caffe.upgrade brings the prototxt parser with it,
    which a V2 spec's check has no use for.
    """
    from netspec.caffe.upgrade import V1_LAYER_TYPES

    return V1_LAYER_TYPES


def _unknown_type(ltype: str, v1: Mapping[str, str] | None, at: SourceLoc | None, who: str) -> Diagnostic:
    """An unknown type, with a did-you-mean among the names valid here (V1 names only under `layers:`)."""
    if v1 is not None and ltype in v1:
        return Diagnostic("error", f"V1 layer type '{ltype}' is Caffe's '{v1[ltype]}', which netspec does not "
                                   "support", at, who, f"known types: {', '.join(sorted(REGISTRY))}")
    # an upper-case name under `layers:` most likely misspells a V1 one
    hint = did_you_mean(ltype, [k for k, v in v1.items() if v in REGISTRY]) if v1 is not None else None
    hint = hint or did_you_mean(ltype, REGISTRY.keys())
    return Diagnostic("error", f"unknown layer type '{ltype}'" + (f"; {hint}" if hint else ""), at, who,
                      None if hint else f"known types: {', '.join(sorted(REGISTRY))}")


def _legacy_inputs(env: NetEnvelope, raw: PosDict, file: str,
                   diags: list[Diagnostic]) -> tuple[list[LayerSpec], list[LayerSpec]]:
    """Net-level `input` + `input_dim`/`input_shape` become Input layers, as Caffe upgrades them.

    Returns (valid input layers, broken ones): a wrong shape still defines the input's blob.
    """
    before = len(diags)
    layers = _legacy_input_layers(env, raw, file, diags)
    if len(diags) == before:
        return layers, []
    stubs = [_construct(LayerSpec, name=name, type="Input", bottom=(), top=(name,), index=-len(env.input) + i,
                                       loc=locate(raw, ("input", i)) or locate(raw, ("input",)))
             for i, name in enumerate(env.input)]
    return [], stubs


def _legacy_input_layers(env: NetEnvelope, raw: PosDict, file: str,
                         diags: list[Diagnostic]) -> list[LayerSpec]:
    if not env.input:
        if env.input_dim or env.input_shape:
            field = "input_dim" if env.input_dim else "input_shape"
            diags.append(Diagnostic("error", f"'{field}' given without 'input' names",
                                    locate(raw, (field,), key=True)))
        return []
    if env.input_dim and env.input_shape:
        diags.append(Diagnostic("error", "give either 'input_shape' or the legacy 'input_dim', not both",
                                locate(raw, ("input_dim",), key=True)))
        return []
    shapes: list[tuple[int, ...]] = []
    if env.input_shape:
        shapes = [s.dim for s in env.input_shape]
    elif env.input_dim:
        dims = env.input_dim
        if len(dims) != 4 * len(env.input):
            diags.append(Diagnostic("error", f"'input_dim' needs 4 values (N, C, H, W) per input: "
                                             f"{len(env.input)} input(s) need {4 * len(env.input)}, got "
                                             f"{len(dims)}", locate(raw, ("input_dim",))))
            return []
        shapes = [tuple(dims[4 * i: 4 * i + 4]) for i in range(len(env.input))]
    if len(shapes) != len(env.input):
        diags.append(Diagnostic("error", f"{len(env.input)} input name(s) but {len(shapes)} shape(s)",
                                locate(raw, ("input",))))
        return []
    from netspec.layers.data import InputParameter

    layers = []
    for i, (name, shape) in enumerate(zip(env.input, shapes)):
        msg = InputParameter.model_construct(shape=(BlobShape.model_construct(dim=tuple(shape)),))
        layers.append(_construct(
                LayerSpec,
            name=name, type="Input", bottom=(), top=(name,), messages={"input_param": msg},
            index=-len(env.input) + i, loc=locate(raw, ("input", i)) or locate(raw, ("input",))))
    return layers


def _needs_blocks(raw: PosDict) -> bool:
    """Whether the block expander has anything to do (so plain specs never import it)."""
    if raw.get("blocks") is not None:
        return True
    for key in ("layer", "layers"):
        items = raw.get(key)
        items = [items] if isinstance(items, dict) else items
        if isinstance(items, list) and any(isinstance(i, dict) and "use" in i for i in items):
            return True
    return False


def parse_partial(raw: Any, file: str = "<spec>") -> tuple[NetSpec, list[Diagnostic]]:
    """Validate what can be validated: the NetSpec of the valid layers (plus `broken` ones for
    wiring) and every diagnostic, errors included. Raises only when nothing is usable."""
    diags: list[Diagnostic] = []
    if raw is None:
        raise NetspecError([Diagnostic("error", "empty spec: expected a mapping with a 'layer:' list",
                                       SourceLoc(file, 1, 1))])
    if not isinstance(raw, PosDict):
        where = getattr(raw, "loc", None) or SourceLoc(file, 1, 1)
        raise NetspecError([Diagnostic("error", f"a spec must be a mapping (name, layer, ...), not {show(raw)}",
                                       where)])
    original = raw
    if _needs_blocks(raw):
        from netspec.blocks import expand

        raw = expand(raw, file, diags)
    try:
        env = validate(NetEnvelope, raw)
    except ValidationError as e:
        diags.extend(pydantic_diagnostics(e, raw, (), file, None, NetEnvelope))
        env = NetEnvelope.model_construct()
    key, items = _layer_list(raw, file, diags)
    if len(items) > MAX_LAYERS:
        expanded = " after block expansion" if raw is not original else ""
        diags.append(Diagnostic("error", f"the net has {len(items):,} layers{expanded}; netspec check stops "
                                         f"at {MAX_LAYERS:,} (ResNet-152 has 670)",
                                locate(raw, (key,), key=True) or SourceLoc(file, 1, 1)))
        items = PosList()
    layers, broken = _legacy_inputs(env, raw, file, diags)
    parser = _LayerParser(raw, key, file, diags)
    for i, item in enumerate(items):
        good, bad = parser.parse(item, i)
        if good is not None:
            layers.append(good)
        elif bad is not None:
            broken.append(bad)
    solver = _extension("solver", env.solver, raw, file, diags)
    data = _extension("data", env.data, raw, file, diags)
    state = env.state
    spec = NetSpec.model_construct(
        name=env.name, layers=tuple(layers), file=file, force_backward=env.force_backward, solver=solver,
        data=data, warnings=tuple(sorted((d for d in diags if d.severity != "error"), key=sort_key)),
        raw=raw, broken=tuple(broken), level=state.level if state else 0,
        stages=frozenset(state.stage) if state else frozenset())
    return spec, sorted(diags, key=sort_key)


def parse(raw: Any, file: str = "<spec>") -> NetSpec:
    """Validate loaded YAML data (from `source.load_yaml`) into a NetSpec, or raise every problem."""
    spec, diags = parse_partial(raw, file)
    if any(d.severity == "error" for d in diags):
        raise NetspecError(diags)
    return spec


def _extension(section: str, value: Any, raw: PosDict, file: str, diags: list[Diagnostic]) -> Any:
    """Validate a netspec section (`solver:`, `data:`) with its own jax-free model, if present."""
    if value is None:
        return None
    model = extension_model(section)
    if model is None:
        return value
    try:
        return model.model_validate(value)
    except ValidationError as e:
        diags.extend(pydantic_diagnostics(e, raw, (section,), file, None, model, section=section))
        return None


def extension_model(section: str) -> type[BaseModel] | None:
    """The model of a netspec section (`solver`, `data`), or None where that module is absent."""
    import importlib

    where = {"solver": ("netspec.solver_spec", "SolverSpec"), "data": ("netspec.data.spec", "DataSpec")}
    module, name = where[section]
    try:
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
    except (ImportError, AttributeError):
        return None


def read_spec(path: str | Path, text: str | bytes | None = None) -> Any:
    """The file's positioned YAML data (NetspecError when it cannot be read or parsed)."""
    file = str(path)
    if text is None:
        try:
            text = Path(path).read_bytes()
        except OSError as e:
            raise NetspecError([Diagnostic("error", f"cannot read spec: {e.strerror or e}",
                                           SourceLoc(file, 1, 1))]) from None
    return load_yaml(text, file)


def load_spec(path: str | Path, text: str | bytes | None = None) -> NetSpec:
    """Read, parse and validate a YAML spec file. Raises NetspecError with every problem found."""
    return parse(read_spec(path, text), str(path))
