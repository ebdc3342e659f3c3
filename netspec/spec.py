"""The spec schema: a Caffe NetParameter written in YAML, as frozen pydantic models.

Validation runs in two stages, as Caffe does: first each layer's envelope (name, type, bottom,
top, param, include/exclude, ...), then the parameter messages its type reads. Every problem in
the file is collected and raised together, each with the line and column it comes from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, ValidationError

from netspec.errors import Diagnostic, NetspecError, SourceLoc, did_you_mean, sort_key
from netspec.layers import REGISTRY, lookup
from netspec.layers.base import Message, Repeated
from netspec.layers.common import BlobShape
from netspec.source import PosDict, PosList, load_yaml, locate

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
    share_mode: Literal["STRICT", "PERMISSIVE"] = "STRICT"
    lr_mult: float = Field(1.0, description="local learning rate = base_lr x lr_mult; 0 freezes")
    decay_mult: float = Field(1.0, description="local weight decay = weight_decay x decay_mult")


class NetStateRule(Message):
    """Caffe `NetStateRule`: when a layer is in the net (include) or out of it (exclude)."""

    phase: Literal["TRAIN", "TEST"] | None = None
    min_level: int | None = None
    max_level: int | None = None
    stage: Repeated[str] = ()
    not_stage: Repeated[str] = ()

    def matches(self, phase: str, level: int = 0, stages: frozenset[str] = frozenset()) -> bool:
        if self.phase is not None and self.phase != phase:
            return False
        if self.min_level is not None and level < self.min_level:
            return False
        if self.max_level is not None and level > self.max_level:
            return False
        return all(s in stages for s in self.stage) and not any(s in stages for s in self.not_stage)


class LayerEnvelope(Message):
    """The fields every Caffe layer has, whatever its type."""

    name: str = Field(..., min_length=1, description="unique layer name")
    type: str = Field(..., min_length=1, description="layer type, e.g. Convolution")
    bottom: Repeated[str] = Field((), description="input blobs (default: the previous layer's top)")
    top: Repeated[str] = Field((), description="output blobs (default: the layer's name)")
    phase: Literal["TRAIN", "TEST"] | None = None
    loss_weight: Repeated[float] = ()
    param: Repeated[ParamSpec] = ()
    propagate_down: Repeated[bool] = ()
    include: Repeated[NetStateRule] = ()
    exclude: Repeated[NetStateRule] = ()


class LayerSpec(BaseModel):
    """A validated layer: the envelope plus its type's messages (Caffe defaults filled in)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

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

    name: str = ""
    input: Repeated[str] = ()
    input_shape: Repeated[BlobShape] = ()
    input_dim: Repeated[NonNegativeInt] = ()
    force_backward: bool = False
    debug_info: bool = False
    state: dict[str, Any] | None = None
    layer: Any = None
    layers: Any = None
    # netspec extensions (validated by their own modules)
    solver: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    blocks: Any = None


class NetSpec(BaseModel):
    """A whole validated network."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    layers: tuple[LayerSpec, ...]
    file: str = "<spec>"
    force_backward: bool = False
    solver: Any = None
    data: Any = None
    warnings: tuple[Diagnostic, ...] = ()
    raw: Any = Field(default=None, exclude=True, repr=False)


# ----------------------------------------------------------------------------------------------
# pydantic errors -> located diagnostics


def _pydantic_diagnostics(err: ValidationError, raw: Any, prefix: tuple[Any, ...], file: str,
                          layer: str | None, model: type[BaseModel] | None) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        path = prefix + loc
        field = ".".join(str(p) for p in loc) or "(value)"
        hint = None
        if e["type"] == "extra_forbidden":
            known = _fields_at(model, loc[:-1])
            msg = f"unknown field '{field}'"
            hint = did_you_mean(str(loc[-1]), known) if known else None
            where = locate(raw, path, key=True)
        elif e["type"] == "missing":
            msg = f"missing required field '{field}'"
            where = locate(raw, path[:-1])
        else:
            got = e.get("input")
            shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
            msg = f"{field}: {e['msg'].rstrip('.')}{shown}"
            where = locate(raw, path)
        out.append(Diagnostic("error", msg, where or SourceLoc(file, 1, 1), layer, hint))
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
        diags.append(Diagnostic("error", "the spec has no 'layer:' list", raw.loc or SourceLoc(file, 1, 1)))
        return key, PosList()
    if isinstance(items, dict):
        items = PosList([items], loc=getattr(items, "loc", None))
        items.item_locs = [items.loc]
    if not isinstance(items, list):
        diags.append(Diagnostic("error", f"'{key}' must be a list of layers",
                                locate(raw, (key,)) or SourceLoc(file, 1, 1)))
        return key, PosList()
    return key, items


def _parse_layer(item: Any, index: int, key: str, raw: PosDict, file: str,
                 diags: list[Diagnostic]) -> LayerSpec | None:
    at = locate(raw, (key, index)) or SourceLoc(file, 1, 1)
    if not isinstance(item, dict):
        diags.append(Diagnostic("error", f"layer #{index + 1} must be a mapping with name and type", at))
        return None
    name = item.get("name") if isinstance(item.get("name"), str) else None
    envelope_part = {k: v for k, v in item.items() if not str(k).endswith("_param")}
    message_part = {k: v for k, v in item.items() if str(k).endswith("_param")}
    before = len(diags)
    try:
        env = LayerEnvelope.model_validate(envelope_part)
    except ValidationError as e:
        diags.extend(_pydantic_diagnostics(e, raw, (key, index), file, name, LayerEnvelope))
        env = None
    ltype = item.get("type") if isinstance(item.get("type"), str) else None
    cls = lookup(ltype) if ltype else None
    if ltype and cls is None:
        diags.append(Diagnostic("error", f"unknown layer type '{ltype}'",
                                locate(raw, (key, index, "type")), name,
                                did_you_mean(ltype, REGISTRY.keys()) or
                                f"known types: {', '.join(sorted(REGISTRY))}"))
    messages: dict[str, Any] = {}
    for mname, mvalue in message_part.items():
        if mname not in CAFFE_MESSAGES:
            diags.append(Diagnostic("error", f"unknown field '{mname}'",
                                    locate(raw, (key, index, mname), key=True), name,
                                    did_you_mean(mname, CAFFE_MESSAGES)))
        elif cls is not None and mname not in cls.messages:
            diags.append(Diagnostic("warning", f"'{mname}' is ignored by {cls.type_name} layers",
                                    locate(raw, (key, index, mname), key=True), name))
    if cls is not None:
        for mname, mtype in cls.messages.items():
            value = message_part.get(mname)
            try:
                messages[mname] = mtype.model_validate(value if value is not None else {})
            except ValidationError as e:
                diags.extend(_pydantic_diagnostics(e, raw, (key, index, mname), file, name, mtype))
    if env is None or cls is None or len(diags) > before and any(
            d.severity == "error" for d in diags[before:]):
        return None
    return LayerSpec(
        name=env.name, type=cls.type_name, bottom=env.bottom, top=env.top, loss_weight=env.loss_weight,
        param=env.param, propagate_down=env.propagate_down, include=env.include, exclude=env.exclude,
        messages=messages, index=index, loc=at, raw=item)


def _legacy_inputs(env: NetEnvelope, raw: PosDict, file: str, diags: list[Diagnostic]) -> list[LayerSpec]:
    """Net-level `input` + `input_dim`/`input_shape` become Input layers, as Caffe upgrades them."""
    if not env.input:
        if env.input_dim or env.input_shape:
            diags.append(Diagnostic("error", "'input_dim'/'input_shape' given without 'input' names",
                                    locate(raw, ("input_dim",) if env.input_dim else ("input_shape",))))
        return []
    shapes: list[tuple[int, ...]] = []
    if env.input_shape:
        shapes = [s.dim for s in env.input_shape]
    elif env.input_dim:
        dims = env.input_dim
        if len(dims) != 4 * len(env.input):
            diags.append(Diagnostic("error", f"'input_dim' needs 4 values per input: {len(env.input)} "
                                             f"input(s) but {len(dims)} values", locate(raw, ("input_dim",))))
            return []
        shapes = [tuple(dims[4 * i: 4 * i + 4]) for i in range(len(env.input))]
    if len(shapes) != len(env.input):
        diags.append(Diagnostic("error", f"{len(env.input)} input name(s) but {len(shapes)} shape(s)",
                                locate(raw, ("input",))))
        return []
    from netspec.layers.data import InputParameter

    layers = []
    for i, (name, shape) in enumerate(zip(env.input, shapes)):
        msg = InputParameter(shape=(BlobShape(dim=shape),))
        layers.append(LayerSpec(name=name, type="Input", bottom=(), top=(name,),
                                messages={"input_param": msg}, index=-len(env.input) + i,
                                loc=locate(raw, ("input", i)) or locate(raw, ("input",))))
    return layers


def parse(raw: Any, file: str = "<spec>") -> NetSpec:
    """Validate loaded YAML data (from `source.load_yaml`) into a NetSpec, or raise every problem."""
    diags: list[Diagnostic] = []
    if raw is None:
        raise NetspecError([Diagnostic("error", "empty spec: expected a mapping with a 'layer:' list",
                                       SourceLoc(file, 1, 1))])
    if not isinstance(raw, PosDict):
        raise NetspecError([Diagnostic("error", "a spec must be a mapping (name, layer, ...), not a "
                                                f"{type(raw).__name__}", SourceLoc(file, 1, 1))])
    from netspec.blocks import expand

    raw = expand(raw, file, diags)
    try:
        env = NetEnvelope.model_validate(raw)
    except ValidationError as e:
        diags.extend(_pydantic_diagnostics(e, raw, (), file, None, NetEnvelope))
        env = NetEnvelope.model_validate({k: v for k, v in raw.items() if k in ("layer", "layers")})
    key, items = _layer_list(raw, file, diags)
    layers: list[LayerSpec] = _legacy_inputs(env, raw, file, diags)
    for i, item in enumerate(items):
        parsed = _parse_layer(item, i, key, raw, file, diags)
        if parsed is not None:
            layers.append(parsed)
    solver = _extension("solver", env.solver, raw, file, diags)
    data = _extension("data", env.data, raw, file, diags)
    errors = [d for d in diags if d.severity == "error"]
    if errors:
        raise NetspecError(sorted(diags, key=sort_key))
    return NetSpec(name=env.name, layers=tuple(layers), file=file, force_backward=env.force_backward,
                   solver=solver, data=data, warnings=tuple(sorted(diags, key=sort_key)), raw=raw)


def _extension(section: str, value: Any, raw: PosDict, file: str, diags: list[Diagnostic]) -> Any:
    """Validate a netspec section (`solver:`, `data:`) with its own jax-free model, if present."""
    if value is None:
        return None
    model = _extension_model(section)
    if model is None:
        return value
    try:
        return model.model_validate(value)
    except ValidationError as e:
        diags.extend(_pydantic_diagnostics(e, raw, (section,), file, None, model))
        return None


def _extension_model(section: str) -> type[BaseModel] | None:
    import importlib

    where = {"solver": ("netspec.solver_spec", "SolverSpec"), "data": ("netspec.data.spec", "DataSpec")}
    module, name = where[section]
    try:
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
    except (ImportError, AttributeError):
        return None


def load_spec(path: str | Path, text: str | bytes | None = None) -> NetSpec:
    """Read, parse and validate a YAML spec file. Raises NetspecError with every problem found."""
    file = str(path)
    if text is None:
        try:
            text = Path(path).read_bytes()
        except OSError as e:
            raise NetspecError([Diagnostic("error", f"cannot read spec: {e.strerror or e}",
                                           SourceLoc(file, 1, 1))]) from None
    return parse(load_yaml(text, file), file)
