"""Writers for Caffe-shaped data: readable netspec YAML (`to_yaml`) and protobuf text (`to_prototxt`).

Both are deterministic (keys keep their order) and exact:
`yaml.safe_load(to_yaml(d)) == collapse_singletons(d)` and `parse(to_prototxt(d)).data == d` for data
that fits Caffe's schema (and for any nested data with `message=None`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import yaml

from .prototxt import ALWAYS_REPEATED, ENUM_FIELDS, NET_ROOT, field_spec, guess_message

# Lists that stay lists even with one element, and whose items are always written as block mappings.
BLOCK_LIST_KEYS = frozenset({"layer", "layers"})
_WIDTH = 88
_FLOW_WIDTH = 110  # flow_layers: a short layer on one line, as the hand-written specs do
_FLOW_MAX_KEYS = 4


def collapse_singletons(data: Any, *, keep: frozenset[str] = BLOCK_LIST_KEYS) -> Any:
    """One-element lists replaced by their element (netspec accepts a lone value for any repeated field),
    except under the keys in `keep`. A list holding a list is left alone: collapsing it would change it."""
    if isinstance(data, Mapping):
        return {k: _collapse_value(v, k in keep, keep) for k, v in data.items()}
    if isinstance(data, list):
        return [collapse_singletons(v, keep=keep) for v in data]
    return data


def _collapse_value(value: Any, keep_list: bool, keep: frozenset[str]) -> Any:
    value = collapse_singletons(value, keep=keep)
    if isinstance(value, list) and len(value) == 1 and not keep_list and not isinstance(value[0], list):
        return value[0]
    return value


# ------------------------------------------------------------------------------------------------ YAML

# YAML 1.1 reads these (any case here, to be safe with every loader) as booleans or null.
_YAML_SPECIAL_WORDS = frozenset({"null", "~", "true", "false", "yes", "no", "on", "off", "y", "n"})
_PLAIN_RE = re.compile(r"[A-Za-z_/][A-Za-z0-9_./+\-() ]*(?<! )")
_YAML_NEEDS_ESCAPE = re.compile(
    "[^\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)
_YAML_NAMED_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "\x85": "\\N",
    "\u2028": "\\L",
    "\u2029": "\\P",
    "\t": "\\t",
    "\n": "\\n",
    "\r": "\\r",
    "\x00": "\\0",
}


@lru_cache(maxsize=4096)
def _is_plain(s: str) -> bool:
    """Safe to write unquoted: conservative characters, not a YAML 1.1 bool/null, and PyYAML reads it back."""
    if not _PLAIN_RE.fullmatch(s) or s.lower() in _YAML_SPECIAL_WORDS:
        return False
    return bool(yaml.safe_load(s) == s)


def _yaml_escape_char(c: str) -> str:
    if c in _YAML_NAMED_ESCAPES:
        return _YAML_NAMED_ESCAPES[c]
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def yaml_string(s: str) -> str:
    """A YAML scalar that loads back as exactly `s`: plain when unambiguous, else single- or double-quoted."""
    if _is_plain(s):
        return s
    if not _YAML_NEEDS_ESCAPE.search(s):
        return "'" + s.replace("'", "''") + "'"
    return (
        '"'
        + "".join(_yaml_escape_char(c) if _YAML_NEEDS_ESCAPE.match(c) or c in '\\"' else c for c in s)
        + '"'
    )


def _yaml_float(v: float) -> str:
    if math.isnan(v):
        return ".nan"
    if math.isinf(v):
        return ".inf" if v > 0 else "-.inf"
    text = repr(v)
    mantissa, _, exponent = text.partition("e")
    # YAML 1.1 (PyYAML) reads 1e-05 as a string: its floats need a '.' and a signed exponent.
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}e{exponent}" if exponent else mantissa


def yaml_scalar(v: Any) -> str:
    """One scalar in YAML."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _yaml_float(v)
    if isinstance(v, str):
        return yaml_string(v)
    raise TypeError(f"cannot write {type(v).__name__} {v!r} as YAML")


def _is_scalar(v: Any) -> bool:
    return not isinstance(v, (Mapping, list))


def _flow(v: Any) -> str | None:
    """The one-line form of a scalar, a list of scalars or a small mapping of those; None if too deep."""
    if _is_scalar(v):
        return yaml_scalar(v)
    if isinstance(v, list):
        return "[" + ", ".join(yaml_scalar(x) for x in v) + "]" if all(_is_scalar(x) for x in v) else None
    if len(v) > _FLOW_MAX_KEYS:
        return None
    parts = []
    for k, x in v.items():
        inner = yaml_scalar(x) if _is_scalar(x) else _flow(x) if isinstance(x, list) else None
        if inner is None:
            return None
        parts.append(f"{yaml_string(str(k))}: {inner}")
    return "{" + ", ".join(parts) + "}"


def _flow_any(v: Any) -> str:
    """The one-line form of any nesting (netspec's house style for short layers)."""
    if _is_scalar(v):
        return yaml_scalar(v)
    if isinstance(v, list):
        return "[" + ", ".join(_flow_any(x) for x in v) + "]"
    return "{" + ", ".join(f"{yaml_string(str(k))}: {_flow_any(x)}" for k, x in v.items()) + "}"


def _fits(indent: int, prefix: str, flow: str | None, deep: bool = False) -> bool:
    return flow is not None and indent + len(prefix) + len(flow) <= (_FLOW_WIDTH if deep else _WIDTH)


def _yaml_mapping(d: Mapping[str, Any], indent: int, deep: bool = False) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for k, v in d.items():
        key = f"{yaml_string(str(k))}:"
        if _is_scalar(v) or not v:
            lines.append(
                f"{pad}{key} {yaml_scalar(v) if _is_scalar(v) else '[]' if isinstance(v, list) else '{}'}"
            )
            continue
        flow = None if k in BLOCK_LIST_KEYS else _flow_any(v) if deep else _flow(v)
        if _fits(indent, key + " ", flow, deep):
            lines.append(f"{pad}{key} {flow}")
        elif isinstance(v, list):
            block = k in BLOCK_LIST_KEYS
            lines += [f"{pad}{key}"] + _yaml_sequence(v, indent + 2, block_items=block, deep=deep)
        else:
            lines += [f"{pad}{key}"] + _yaml_mapping(v, indent + 2, deep)
    return lines


def _yaml_sequence(items: list[Any], indent: int, *, block_items: bool, deep: bool = False) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for item in items:
        flow = _flow_any(item) if deep else None if block_items and isinstance(item, Mapping) else _flow(item)
        if (_is_scalar(item) or not item) or _fits(indent, "- ", flow, deep):
            lines.append(f"{pad}- {yaml_scalar(item) if _is_scalar(item) else flow or _empty(item)}")
        elif isinstance(item, Mapping):
            body = _yaml_mapping(item, indent + 2, deep)
            lines += [f"{pad}- {body[0].lstrip()}"] + body[1:]
        else:
            lines += [f"{pad}-"] + _yaml_sequence(item, indent + 2, block_items=False, deep=deep)
    return lines


def _empty(v: Any) -> str:
    return "[]" if isinstance(v, list) else "{}"


def to_yaml(
    data: Mapping[str, Any],
    *,
    header_comment: str | None = None,
    flow_layers: bool = False,
    keep_lists: frozenset[str] = BLOCK_LIST_KEYS,
) -> str:
    """Readable netspec YAML: block mappings for layers, flow style for short leaf mappings and lists,
    one-element lists written as their value (except `layer`/`layers`), strings quoted only when needed.
    With `flow_layers`, anything that fits on one line is written in flow style, layers included
    (the style of the hand-written specs in specs/). `keep_lists`: keys whose one-element lists stay
    lists (as in `collapse_singletons`)."""
    lines = [f"# {line}".rstrip() for line in header_comment.splitlines()] if header_comment else []
    collapsed = collapse_singletons(data, keep=keep_lists)
    lines += _yaml_mapping(collapsed, 0, flow_layers) if collapsed else ["{}"]
    return "\n".join(lines) + "\n"


# Keys whose one-element lists stay lists in a spec import-caffe writes (a block's `args` included).
SPEC_LIST_KEYS = BLOCK_LIST_KEYS | {"args"}


def spec_yaml(data: Mapping[str, Any], *, header_comment: str | None = None) -> str:
    """A spec as import-caffe writes it: `to_yaml` with short layers on one line."""
    return to_yaml(data, header_comment=header_comment, flow_layers=True, keep_lists=SPEC_LIST_KEYS)


# ------------------------------------------------------------------------------------------- prototxt

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Bare words the parser reads as something other than a string.
_RESERVED_WORDS = frozenset({"true", "false", "True", "False", "t", "f"})
_PT_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNKNOWN = ""


def prototxt_string(s: str) -> str:
    """A double-quoted protobuf string; control characters as octal escapes, as protobuf writes them."""
    out = []
    for c in s:
        if c in _PT_ESCAPES:
            out.append(_PT_ESCAPES[c])
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\{ord(c):03o}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _is_enum(message: str | None, key: str) -> bool:
    spec = field_spec(message, key)
    if spec is not None:
        return spec.kind == "enum"
    return message == _UNKNOWN and key in ENUM_FIELDS


def _pt_scalar(v: Any, enum: bool) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        bare = (
            enum
            and _IDENT_RE.fullmatch(v)
            and v not in _RESERVED_WORDS
            and v.lower() not in ("inf", "infinity", "nan")
        )
        return v if bare else prototxt_string(v)
    raise TypeError(f"cannot write {type(v).__name__} {v!r} as protobuf text")


def _child(message: str | None, key: str) -> str | None:
    if message is None:
        return None
    spec = field_spec(message, key)
    return spec.kind if spec is not None and spec.is_message else _UNKNOWN


def _always_list(message: str | None, key: str) -> bool:
    """Whether the parser makes `key` a list even when it is written once."""
    spec = field_spec(message, key)
    if spec is not None:
        return spec.repeated
    return message == _UNKNOWN and key in ALWAYS_REPEATED


def _pt_occurrence(key: str, v: Any, message: str | None, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(v, Mapping):
        if not v:
            return [f"{pad}{key} {{", f"{pad}}}"]
        return [f"{pad}{key} {{"] + _pt_message(v, _child(message, key), indent + 2) + [f"{pad}}}"]
    if isinstance(v, list):
        raise TypeError(f"field {key!r}: protobuf text cannot hold a list inside a list")
    return [f"{pad}{key}: {_pt_scalar(v, _is_enum(message, key))}"]


def _pt_bracketed(key: str, items: list[Any], message: str | None, indent: int) -> list[str]:
    """`key: [...]`: keeps a 0- or 1-element list a list where the schema would not."""
    pad = " " * indent
    if not items:
        return [f"{pad}{key}: []"]
    (item,) = items
    if not isinstance(item, Mapping):
        return [f"{pad}{key}: [{_pt_scalar(item, _is_enum(message, key))}]"]
    body = _pt_message(item, _child(message, key), indent + 4)
    return [f"{pad}{key}: [", f"{pad}  {{"] + body + [f"{pad}  }}", f"{pad}]"]


def _pt_message(d: Mapping[str, Any], message: str | None, indent: int) -> list[str]:
    lines: list[str] = []
    for key, v in d.items():
        if isinstance(v, list) and len(v) < 2 and not (v and _always_list(message, key)):
            lines += _pt_bracketed(key, v, message, indent)
        else:
            for item in v if isinstance(v, list) else [v]:
                lines += _pt_occurrence(key, item, message, indent)
    return lines


def to_prototxt(data: Mapping[str, Any], *, message: str | None = "auto") -> str:
    """Protobuf text as Caffe writes it: one field per line, 2-space indent, enums bare, strings quoted.
    `message` as in `parse`: the schema tells enums from strings and which fields are lists anyway."""
    if message == "auto":
        message = guess_message(set(data)) if data else NET_ROOT
    lines = _pt_message(data, message, 0)
    return "\n".join(lines) + "\n" if lines else ""
