"""JSON Schema (draft 2020-12) of the spec format, for editors with a YAML language server.

Generated from the pydantic models `netspec check` validates with where its fast path gives up
(netspec.message.pydantic_model, one per message): the net envelope
(NetEnvelope), one `oneOf` branch per layer type in netspec.layers.REGISTRY (discriminated by a
`const` on `type`, listing the envelope fields and exactly the `*_param` messages that type reads,
`additionalProperties: false` so an editor flags unknown fields), the `solver:` and `data:`
sections (netspec.solver_spec.SolverSpec, netspec.data.spec.DataSpec) and the `blocks:`/`use:`
extension (netspec.blocks.BLOCKS_JSON_SCHEMA), each where that module is present.

Repeated fields take a lone value or a list, as in Caffe's text format. The schema is a little
stricter than `check` in one place: a `*_param` message the layer type does not read is an
unknown property here, where `check` only warns.

The committed copy is netspec/schema/netspec.schema.json (tools/gen_schema.py writes it); point an
editor at it with a first-line comment: `# yaml-language-server: $schema=<path>/netspec.schema.json`.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from pydantic.json_schema import models_json_schema

from netspec.message import Message, accepts_lone_value, hints, messages_in, pydantic_model

DRAFT = "https://json-schema.org/draft/2020-12/schema"
REF = "#/$defs/{model}"


def _reachable(roots: list[type[Message]]) -> list[type[Message]]:
    """Every message the roots contain, roots first, each once."""
    seen: dict[type[Message], None] = {}
    todo = list(roots)
    while todo:
        model = todo.pop(0)
        if model in seen:
            continue
        seen[model] = None
        for annotation in hints(model).values():
            todo += messages_in(annotation)
    return list(seen)


def _lone_or_list(prop: dict[str, Any]) -> dict[str, Any]:
    """An array property that also takes its item alone."""
    def widen(alt: dict[str, Any]) -> list[dict[str, Any]]:
        return [alt["items"], alt] if alt.get("type") == "array" and "items" in alt else [alt]

    if prop.get("type") == "array" and "items" in prop:
        array = {k: prop[k] for k in ("type", "items", "minItems", "maxItems") if k in prop}
        rest = {k: v for k, v in prop.items() if k not in array}
        return {**rest, "anyOf": widen(array)}
    if "anyOf" in prop:
        return {**prop, "anyOf": [w for alt in prop["anyOf"] for w in widen(alt)]}
    return prop


def _strip_titles(node: Any) -> Any:
    """pydantic titles every property with its capitalised name; they only add noise."""
    if isinstance(node, dict):
        return {k: _strip_titles(v) for k, v in node.items() if k != "title" or not isinstance(v, str)}
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


def _extension_models() -> dict[str, type[Message]]:
    from netspec.spec import extension_model

    found = {section: extension_model(section) for section in ("solver", "data")}
    return {k: v for k, v in found.items() if v is not None}


def _blocks_schema() -> dict[str, Any] | None:
    try:
        from netspec.blocks import BLOCKS_JSON_SCHEMA
    except ImportError:
        return None
    return BLOCKS_JSON_SCHEMA  # type: ignore[no-any-return]


def _v1_layer(registry: Mapping[str, Any]) -> dict[str, Any]:
    """A `layers:` entry typed with a V1 enum name: only its name and type are described."""
    from netspec.caffe.upgrade import V1_LAYER_TYPES

    names = sorted(k for k, v in V1_LAYER_TYPES.items() if v in registry)
    return {"description": "A layer whose type is a V1 enum name (CONVOLUTION, RELU, ...), accepted under "
                           "`layers:` only; its other fields are those of the type it stands for.",
            "type": "object", "required": ["name", "type"], "properties": {"type": {"enum": names}}}


def json_schema() -> dict[str, Any]:
    """The whole format as one JSON Schema document."""
    from netspec.layers import REGISTRY
    from netspec.spec import LayerEnvelope, NetEnvelope

    extensions = _extension_models()
    types = [REGISTRY[name] for name in sorted(REGISTRY)]
    roots: list[type[Message]] = [NetEnvelope, LayerEnvelope, *extensions.values()]
    roots += [m for cls in types for m in cls.messages.values()]
    models = _reachable(roots)
    refs, doc = models_json_schema([(pydantic_model(m), "validation") for m in models], ref_template=REF)
    defs: dict[str, Any] = _strip_titles(doc.get("$defs", {}))
    name_of = {m: refs[(pydantic_model(m), "validation")]["$ref"].rsplit("/", 1)[-1] for m in models}
    for model, name in name_of.items():
        props = defs[name].get("properties", {})
        for field in model.model_fields:
            if field in props and accepts_lone_value(model, field):
                props[field] = _lone_or_list(props[field])

    def ref(model: type[Message]) -> dict[str, str]:
        return {"$ref": REF.format(model=name_of[model])}

    envelope_name = name_of[LayerEnvelope]
    envelope = defs[envelope_name]
    blocks = _blocks_schema()
    branches = []
    for cls in types:
        # the shared fields by reference into LayerEnvelope: one copy, whatever the number of types
        props: dict[str, Any] = {f: {"$ref": f"#/$defs/{envelope_name}/properties/{f}"}
                                 for f in envelope["properties"]}
        props["type"] = {"const": cls.type_name, "description": cls.summary or f"a {cls.type_name} layer"}
        required = ["name", "type"]
        for mname, mtype in cls.messages.items():
            props[mname] = ref(mtype)
            if any(f.is_required() for f in mtype.model_fields.values()):
                required.append(mname)
        branches.append({"title": cls.type_name, "type": "object", "properties": props, "required": required,
                         "additionalProperties": False})
    defs["Layer"] = {"description": "A layer: the envelope fields and its type's parameter messages.",
                     "type": "object", "required": ["name", "type"],
                     "properties": {"type": {"enum": [cls.type_name for cls in types]}},
                     "oneOf": branches}
    entry: dict[str, Any] = {"$ref": "#/$defs/Layer"}
    if blocks is not None and "use" in blocks:
        defs["Use"] = blocks["use"]
        entry = {"oneOf": [{"$ref": "#/$defs/Layer"}, {"$ref": "#/$defs/Use"}]}
    defs["LayerEntry"] = entry
    defs["LayerList"] = {"description": "The layers in order (a lone layer may stand for a one-element "
                                        "list).",
                         "anyOf": [{"type": "array", "items": {"$ref": "#/$defs/LayerEntry"}},
                                   {"$ref": "#/$defs/LayerEntry"}]}
    defs["V1Layer"] = _v1_layer(REGISTRY)
    v1_entry = {"anyOf": [{"$ref": "#/$defs/LayerEntry"}, {"$ref": "#/$defs/V1Layer"}]}
    defs["V1LayerList"] = {"description": "The legacy `layers:` list: as `layer:`, and a type may be a V1 "
                                          "enum name.",
                           "anyOf": [{"type": "array", "items": v1_entry}, v1_entry]}

    net = defs.pop(name_of[NetEnvelope])
    if blocks is not None and "blocks" in blocks:
        blocks = {**blocks, "blocks": _strip_titles(blocks["blocks"])}
    props = dict(net["properties"])
    props["layer"] = {"$ref": "#/$defs/LayerList"}
    props["layers"] = {"$ref": "#/$defs/V1LayerList", "description": "legacy spelling of 'layer'"}
    for section in ("solver", "data"):
        model = extensions.get(section)
        props[section] = ref(model) if model is not None else {"type": "object"}
    if blocks is not None and "blocks" in blocks:
        props["blocks"] = blocks["blocks"]
    else:
        props.pop("blocks", None)
    schema: dict[str, Any] = {
        "$schema": DRAFT,
        "title": "netspec spec",
        "description": "A Caffe NetParameter written in YAML, with netspec's solver:, data: and blocks: "
                       "sections. Check one with `netspec check SPEC`.",
        "type": "object",
        "properties": props,
        "additionalProperties": False,
        "$defs": dict(sorted(defs.items())),
    }
    return schema


def render() -> str:
    """The schema as the committed file holds it (and `netspec schema` prints it)."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
