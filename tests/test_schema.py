"""`netspec schema`: the committed JSON Schema is current, well formed, discriminates layers by type,
and (checked with a small validator for exactly the keywords it uses, since `jsonschema` is not a
dependency) accepts the zoo and flags the typical mistakes at the right place."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from conftest import run_cli
from netspec.layers import REGISTRY
from netspec.schema import DRAFT, json_schema, render
from netspec.spec import LayerEnvelope

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "netspec" / "schema" / "netspec.schema.json"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json_schema()


def test_committed_file_is_current() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(), \
        "netspec/schema/netspec.schema.json is stale: run python tools/gen_schema.py"


def test_cli_prints_the_same_document() -> None:
    r = run_cli(["schema"])
    assert (r.rc, r.out, r.err) == (0, render(), "")


def _walk(node: Any, path: str = "#") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}/{i}")


def _resolve(root: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_draft_and_every_reference_resolves(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == DRAFT == "https://json-schema.org/draft/2020-12/schema"
    refs = [n["$ref"] for _, n in _walk(schema) if isinstance(n, dict) and "$ref" in n]
    assert len(refs) > 100
    for ref in refs:
        assert isinstance(_resolve(schema, ref), dict), ref


def test_one_branch_per_layer_type(schema: dict[str, Any]) -> None:
    layer = schema["$defs"]["Layer"]
    branches = {b["properties"]["type"]["const"]: b for b in layer["oneOf"]}
    assert sorted(branches) == sorted(REGISTRY) == layer["properties"]["type"]["enum"]
    for name, branch in branches.items():
        kind = REGISTRY[name]
        assert branch["additionalProperties"] is False
        assert set(branch["properties"]) == set(LayerEnvelope.model_fields) | set(kind.messages)
        assert branch["title"] == name
    assert branches["Convolution"]["required"] == ["name", "type", "convolution_param"]
    assert branches["ReLU"]["required"] == ["name", "type"]


def test_repeated_fields_take_a_lone_value(schema: dict[str, Any]) -> None:
    kernel = schema["$defs"]["ConvolutionParameter"]["properties"]["kernel_size"]
    assert kernel["anyOf"] == [{"exclusiveMinimum": 0, "type": "integer"},
                               {"type": "array", "items": {"exclusiveMinimum": 0, "type": "integer"}}]
    bottom = schema["$defs"]["LayerEnvelope"]["properties"]["bottom"]
    assert bottom["anyOf"][0] == {"type": "string"}
    if "SolverSpec" in schema["$defs"]:  # a before-validator that wraps lone values, found by probing
        stepvalue = schema["$defs"]["SolverSpec"]["properties"]["stepvalue"]
        assert [alt.get("type") for alt in stepvalue["anyOf"]] == ["integer", "array"]


def test_sections(schema: dict[str, Any]) -> None:
    props = schema["properties"]
    assert schema["additionalProperties"] is False
    assert {"name", "layer", "layers", "input", "input_shape", "input_dim", "solver", "data"} <= set(props)
    assert props["layer"] == {"$ref": "#/$defs/LayerList"}


# -- a validator for exactly the keywords the schema uses ---------------------------------------

KEYWORDS = {"$defs", "$ref", "$schema", "additionalProperties", "anyOf", "const", "default", "description",
            "enum", "exclusiveMaximum", "exclusiveMinimum", "items", "maxProperties", "maximum", "minLength",
            "minProperties", "minimum", "oneOf", "pattern", "properties", "propertyNames", "required", "title",
            "type", "maxItems", "minItems", "maxLength"}


def test_validator_knows_every_keyword(schema: dict[str, Any]) -> None:
    used = set()
    for path, node in _walk(schema):
        if isinstance(node, dict) and not re.search(r"/(properties|\$defs)$", path):
            used |= set(node)
    assert used <= KEYWORDS, used - KEYWORDS


TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, TYPES[kind])


def errors(root: dict[str, Any], node: dict[str, Any], value: Any, at: str = "") -> list[str]:
    """Problems of `value` against `node` as 'path: problem' strings (empty = valid)."""
    if "$ref" in node:
        return errors(root, _resolve(root, node["$ref"]), value, at)
    out: list[str] = []
    kinds = node.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(value, k) for k in kinds):
            return [f"{at}: expected {'/'.join(kinds)}"]
    if "const" in node and value != node["const"]:
        out.append(f"{at}: expected {node['const']!r}")
    if "enum" in node and value not in node["enum"]:
        out.append(f"{at}: not one of {node['enum']}")
    if _is(value, "number"):
        for key, ok in (("minimum", lambda b: value >= b), ("maximum", lambda b: value <= b),
                        ("exclusiveMinimum", lambda b: value > b), ("exclusiveMaximum", lambda b: value < b)):
            if key in node and not ok(node[key]):
                out.append(f"{at}: {key} {node[key]}")
    if isinstance(value, str):
        if len(value) < node.get("minLength", 0) or len(value) > node.get("maxLength", len(value)):
            out.append(f"{at}: length")
        if "pattern" in node and not re.search(node["pattern"], value):
            out.append(f"{at}: pattern")
    if isinstance(value, list) and "items" in node:
        for i, item in enumerate(value):
            out += errors(root, node["items"], item, f"{at}[{i}]")
    if isinstance(value, dict):
        out += _object_errors(root, node, value, at)
    if "anyOf" in node:
        tried = [errors(root, alt, value, at) for alt in node["anyOf"]]
        if all(tried):
            out += _closest(tried)
    if "oneOf" in node:
        matching = [alt for alt in node["oneOf"] if not errors(root, alt, value, at)]
        if len(matching) != 1:
            tried = [errors(root, alt, value, at) for alt in node["oneOf"]]
            out += _closest(tried) if not matching else [f"{at}: matches {len(matching)} of oneOf"]
    return out


def _closest(tried: list[list[str]]) -> list[str]:
    """The problems of the alternative that got furthest into the value (the deepest path)."""
    return max(tried, key=lambda errs: (max(len(e.split(": ")[0]) for e in errs), -len(errs)))


def _object_errors(root: dict[str, Any], node: dict[str, Any], value: dict[str, Any], at: str) -> list[str]:
    out = [f"{at}: missing '{k}'" for k in node.get("required", []) if k not in value]
    props = node.get("properties", {})
    for k, v in value.items():
        if k in props:
            out += errors(root, props[k], v, f"{at}.{k}")
        elif node.get("additionalProperties") is False:
            out.append(f"{at}: unknown '{k}'")
        elif isinstance(node.get("additionalProperties"), dict):
            out += errors(root, node["additionalProperties"], v, f"{at}.{k}")
        if "propertyNames" in node:
            out += errors(root, node["propertyNames"], k, f"{at}.{k} (name)")
    if not node.get("minProperties", 0) <= len(value) <= node.get("maxProperties", len(value)):
        out.append(f"{at}: number of properties")
    return out


SPECS = sorted((ROOT / "specs").glob("*.yaml")) + sorted((ROOT / "tests" / "fixtures" / "check").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_zoo_specs_are_valid(schema: dict[str, Any], path: Path) -> None:
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    assert errors(schema, schema, data) == []


LENET = ("name: t\nlayer:\n  - {name: data, type: Input, input_param: {shape: {dim: [1, 1, 28, 28]}}}\n"
         "  - {name: conv1, type: Convolution, convolution_param: {num_output: 20, kernel_size: 5}}\n")


@pytest.mark.parametrize("old,new,problem", [
    ("num_output: 20", "num_ouput: 20", ".layer[1].convolution_param: unknown 'num_ouput'"),
    ("num_output: 20", "num_output: -2", ".layer[1].convolution_param.num_output: exclusiveMinimum 0"),
    ("type: Convolution", "type: Convolutoin", ".layer[1].type: not one of"),
    ("kernel_size: 5", "kernel_size: [5, x]", ".layer[1].convolution_param.kernel_size[1]: expected integer"),
    ("{name: conv1,", "{name: conv1, botom: data,", ".layer[1]: unknown 'botom'"),
    ("name: t", "nmae: t", ": unknown 'nmae'"),
])
def test_typical_mistakes_are_flagged(schema: dict[str, Any], old: str, new: str, problem: str) -> None:
    assert errors(schema, schema, yaml.safe_load(LENET)) == []
    found = errors(schema, schema, yaml.safe_load(LENET.replace(old, new)))
    assert any(e.startswith(problem) for e in found), found


def test_lone_layer_and_lone_values_are_valid(schema: dict[str, Any]) -> None:
    data = yaml.safe_load("layer: {name: d, type: Input, top: data, input_param: {shape: {dim: 3}}}\n")
    assert errors(schema, schema, data) == []
