"""The spec schema: a Caffe NetParameter written in YAML, as frozen messages (netspec.message:
declared like pydantic models, validated by pydantic where the data is not plainly right).

Validation runs in two stages, as Caffe does: first each layer's envelope (name, type, bottom,
top, param, include/exclude, ...), then the parameter messages its type reads. Every problem in
the file is collected and raised together, each with the line and column it comes from.

A layer that fails validation is not dropped silently: when its name and tops can still be read it
is kept as a *broken* layer (`NetSpec.broken`), so that the graph stage can wire around it and
report the rest of the net's problems in the same run instead of a cascade of "unknown bottom"s.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Mapping

from netspec.errors import Diagnostic, NetspecError, SourceLoc, closest, did_you_mean, sort_key
from netspec.layers import REGISTRY, lookup
from netspec.layers.base import LayerType
from netspec.layers.common import BlobShape
from netspec.message import Field, Message, MessageError, NonNegativeInt, Repeated, hints, messages_in, validate
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


class LayerSpec(Message):
    """A validated layer: the envelope plus its type's messages (Caffe defaults filled in).

    Built with `model_construct` from already-validated parts; never validated from data.
    """

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


class NetSpec(Message):
    """A whole validated network (built with `model_construct`, as LayerSpec)."""

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


def pydantic_diagnostics(errors: list[dict[str, Any]], raw: Any, prefix: tuple[Any, ...], file: str,
                         layer: str | None, model: type[Message] | None, section: str = "") -> list[Diagnostic]:
    """Each pydantic error record (`MessageError.errors`) as a located diagnostic in the user's words.

    `prefix` is the data path of the validated mapping inside `raw`; `section` names it in
    messages (e.g. 'convolution_param'). A misspelt field that pydantic reports twice (unknown
    'num_ouput' and missing 'num_output') becomes one error with a did-you-mean.
    """
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


def _fields_at(model: type[Message] | None, path: tuple[Any, ...]) -> list[str]:
    """Field names of the (nested) message at `path`, for did-you-mean."""
    for step in path:
        if model is None or isinstance(step, int):
            continue
        if str(step) not in model.model_fields:
            return []
        model = next(iter(messages_in(hints(model)[str(step)])), None)
    return list(model.model_fields) if model is not None else []


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
    return validate(mtype, value if value is not None else {})  # type: ignore[no-any-return]


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
            return LayerSpec.model_construct(
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
        except MessageError as e:
            self.diags.extend(pydantic_diagnostics(e.errors, fixed, (), self.file, who, LayerEnvelope))
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
            except MessageError as e:
                diags.extend(pydantic_diagnostics(e.errors, fixed, (mname,), self.file, who, mtype, section=mname))
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
        return LayerSpec.model_construct(
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
    stubs = [LayerSpec.model_construct(name=name, type="Input", bottom=(), top=(name,), index=-len(env.input) + i,
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
        layers.append(LayerSpec.model_construct(
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
    except MessageError as e:
        diags.extend(pydantic_diagnostics(e.errors, raw, (), file, None, NetEnvelope))
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
    """Validate a netspec section (`solver:`, `data:`) with its own jax-free message, if present."""
    if value is None:
        return None
    model = extension_model(section)
    if model is None:
        return value
    try:
        return validate(model, value)
    except MessageError as e:
        diags.extend(pydantic_diagnostics(e.errors, raw, (section,), file, None, model, section=section))
        return None


def extension_model(section: str) -> type[Message] | None:
    """The message of a netspec section (`solver`, `data`), or None where that module is absent."""
    import importlib

    where = {"solver": ("netspec.solver_spec", "SolverSpec"), "data": ("netspec.data.spec", "DataSpec")}
    module, name = where[section]
    try:
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
    except (ImportError, AttributeError):
        return None


def read_spec(path: str | Path, text: str | bytes | None = None) -> Any:
    """The file's positioned YAML data (NetspecError when it cannot be read or parsed, or is Caffe's)."""
    file = str(path)
    if text is None:
        try:
            text = Path(path).read_bytes()
        except OSError as e:
            raise NetspecError([Diagnostic("error", f"cannot read spec: {e.strerror or e}",
                                           SourceLoc(file, 1, 1))]) from None
    try:
        raw = load_yaml(text, file)
    except NetspecError:
        kind = _caffe_text_kind(file, text)
        if kind is None:
            raise
        raise NetspecError([_caffe_file(file, kind)]) from None
    # A solver prototxt's flat `field: value` lines load as YAML; as a spec they would be a dozen
    # unknown fields that all mean one thing.
    is_net = isinstance(raw, dict) and bool({"layer", "layers"} & set(raw))
    if isinstance(raw, dict) and not is_net and _caffe_text_kind(file, text) == "solver":
        raise NetspecError([_caffe_file(file, "solver")])
    return raw


def load_spec(path: str | Path, text: str | bytes | None = None) -> NetSpec:
    """Read, parse and validate a YAML spec file. Raises NetspecError with every problem found."""
    return parse(read_spec(path, text), str(path))


# A net prototxt's top-level blocks; solver prototxts are flat `field: value` lines like YAML's.
_NET_BLOCK = re.compile(rb"^[ \t]*(?:layers?|input_shape|net_param|train_net_param)[ \t]*\{", re.M)
_SOLVER_FIELD = re.compile(rb"^[ \t]*(?:base_lr|lr_policy|train_net|max_iter)[ \t]*:", re.M)


def _caffe_text_kind(path: str, text: str | bytes) -> Literal["net", "solver"] | None:
    """"net" or "solver" when ``path`` is a Caffe text protobuf (by its suffix, or a net's blocks)."""
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    prototxt = Path(path).suffix.lower() in (".prototxt", ".pbtxt")
    if _NET_BLOCK.search(data):
        return "net"
    return "solver" if prototxt and _SOLVER_FIELD.search(data) else "net" if prototxt else None


def _caffe_file(file: str, kind: Literal["net", "solver"]) -> Diagnostic:
    if kind == "solver":
        hint = (f"convert it with its net: netspec import-caffe NET.prototxt --solver {file} -o net.yaml "
                "(the solver becomes the spec's `solver:` section)")
    else:
        hint = (f"convert it: netspec import-caffe {file} -o {Path(file).stem}.yaml (with --weights "
                "X.caffemodel for trained weights)")
    return Diagnostic("error", f"this is a Caffe {kind} prototxt, not a netspec YAML spec",
                      SourceLoc(file, 1, 1), hint=hint)
