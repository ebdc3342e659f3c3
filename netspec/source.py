"""YAML text -> plain data whose containers remember where they came from.

This is the only module that touches the YAML library. Mappings become `PosDict` and sequences
`PosList`: ordinary dicts and lists (pydantic validates them as such) that also carry the source
position of the container, of each key and of each value. Positions survive `copy.deepcopy`, so
block expansion keeps pointing at the template lines a user wrote.

Hostile input is refused with a located diagnostic, never a traceback: non-UTF-8 bytes, YAML
syntax errors, tags other than the plain JSON-like ones (`!!python/...` among them), duplicate keys,
alias bombs (expansion is bounded) and deep nesting (depth is bounded).
"""

from __future__ import annotations

from typing import Any

import yaml

from netspec.errors import Diagnostic, NetspecError, SourceLoc

MAX_BYTES = 16 * 1024 * 1024
MAX_NODES = 500_000  # after alias expansion; a ResNet-152 spec has a few hundred
MAX_DEPTH = 64

_STR = "tag:yaml.org,2002:str"
_PLAIN_TAGS = {
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    _STR,
}
_MERGE = "tag:yaml.org,2002:merge"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
# Implicitly resolved YAML 1.1 types that are not JSON-like: keep the text the user wrote.
_AS_TEXT = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value", "tag:yaml.org,2002:yaml"}

_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class PosDict(dict):  # type: ignore[type-arg]
    """A dict with `loc` (where the mapping starts), `key_locs` and `value_locs` per key."""

    loc: SourceLoc | None
    key_locs: dict[Any, SourceLoc]
    value_locs: dict[Any, SourceLoc]

    def __init__(self, *args: Any, loc: SourceLoc | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.loc = loc
        self.key_locs = {}
        self.value_locs = {}


class PosList(list):  # type: ignore[type-arg]
    """A list with `loc` (where the sequence starts) and `item_locs`, one per item."""

    loc: SourceLoc | None
    item_locs: list[SourceLoc | None]

    def __init__(self, *args: Any, loc: SourceLoc | None = None) -> None:
        super().__init__(*args)
        self.loc = loc
        self.item_locs = [None] * len(self)


def _loc(file: str, mark: Any) -> SourceLoc:
    return SourceLoc(file, mark.line + 1, mark.column + 1)


def decode(raw: bytes, file: str) -> str:
    """UTF-8 (with or without BOM) or a located error at the first bad byte."""
    if len(raw) > MAX_BYTES:
        raise NetspecError([Diagnostic("error", f"file is {len(raw)} bytes; specs larger than "
                                                f"{MAX_BYTES} bytes are refused", SourceLoc(file, 1, 1))])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        msg = f"file is not valid UTF-8: byte 0x{raw[e.start]:02x} cannot start or continue a character"
        raise NetspecError([Diagnostic("error", msg, SourceLoc(file, line, col))]) from None


class _Converter:
    """Node graph -> positioned data, with bounds on expansion and depth."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.nodes = 0
        self.scalars = yaml.constructor.SafeConstructor()

    def fail(self, node: Any, message: str) -> NetspecError:
        return NetspecError([Diagnostic("error", message, _loc(self.file, node.start_mark))])

    def convert(self, node: Any, depth: int = 0) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.fail(node, f"document expands to more than {MAX_NODES} nodes "
                                  "(an alias bomb?); refusing to expand it")
        if depth > MAX_DEPTH:
            raise self.fail(node, f"nesting deeper than {MAX_DEPTH} levels (a recursive alias?)")
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, depth)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ:
                raise self.fail(node, f"unsupported YAML tag '{node.tag}'; specs use plain lists")
            out = PosList(loc=_loc(self.file, node.start_mark))
            for item in node.value:
                out.append(self.convert(item, depth + 1))
                out.item_locs.append(_loc(self.file, item.start_mark))
            return out
        return self.scalar(node)

    def scalar(self, node: Any) -> Any:
        if node.tag in _AS_TEXT:
            return node.value
        if node.tag not in _PLAIN_TAGS:
            raise self.fail(node, f"unsupported YAML tag '{node.tag}'; only plain strings, numbers, "
                                  "booleans and null are allowed")
        if node.tag == _STR:
            return node.value
        try:
            return self.scalars.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError) as e:
            raise self.fail(node, f"bad scalar {node.value!r}: {e}") from None

    def mapping(self, node: Any, depth: int) -> PosDict:
        if node.tag != _MAP:
            raise self.fail(node, f"unsupported YAML tag '{node.tag}'; specs use plain mappings")
        out = PosDict(loc=_loc(self.file, node.start_mark))
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                self.merge(out, value_node, depth)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, "mapping keys must be plain scalars")
            key = self.scalar(key_node)
            if key in out and key not in getattr(out, "_merged", set()):
                first = out.key_locs[key]
                raise self.fail(key_node, f"duplicate key '{key}' (first given at line {first.line})")
            out[key] = self.convert(value_node, depth + 1)
            out.key_locs[key] = _loc(self.file, key_node.start_mark)
            out.value_locs[key] = _loc(self.file, value_node.start_mark)
        return out

    def merge(self, out: PosDict, value_node: Any, depth: int) -> None:
        """YAML `<<:` merge keys: explicit keys win over merged ones."""
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for src in sources:
            merged = self.convert(src, depth + 1)
            if not isinstance(merged, PosDict):
                raise self.fail(src, "a '<<' merge key needs a mapping")
            for k, v in merged.items():
                if k not in out:
                    out[k] = v
                    out.key_locs[k] = merged.key_locs[k]
                    out.value_locs[k] = merged.value_locs[k]
                    out.__dict__.setdefault("_merged", set()).add(k)


def load_yaml(text: str | bytes, file: str = "<spec>") -> Any:
    """Parse one YAML document into PosDict/PosList/scalars; None for an empty document."""
    if isinstance(text, bytes):
        text = decode(text, file)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        loc = _loc(file, mark) if mark is not None else SourceLoc(file, 1, 1)
        problem = e.problem or e.context or "malformed YAML"
        context = f" ({e.context})" if e.context and e.problem else ""
        raise NetspecError([Diagnostic("error", f"YAML syntax: {problem}{context}", loc)]) from None
    except yaml.YAMLError as e:
        raise NetspecError([Diagnostic("error", f"YAML: {e}", SourceLoc(file, 1, 1))]) from None
    except RecursionError:
        raise NetspecError([Diagnostic("error", f"nesting deeper than the parser can follow; specs "
                                                f"nest at most {MAX_DEPTH} levels",
                                       SourceLoc(file, 1, 1))]) from None
    if node is None:
        return None
    try:
        return _Converter(file).convert(node)
    except RecursionError:
        raise NetspecError([Diagnostic("error", f"nesting deeper than {MAX_DEPTH} levels",
                                       _loc(file, node.start_mark))]) from None


def locate(data: Any, path: tuple[Any, ...], *, key: bool = False) -> SourceLoc | None:
    """The source position of `data[path[0]][path[1]]...`, or of the nearest enclosing container.

    With `key=True` a final mapping key points at the key itself (for "unknown field" errors).
    """
    best: SourceLoc | None = getattr(data, "loc", None)
    node = data
    for i, step in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, PosDict) and step in node:
            best = (node.key_locs if (key and last) else node.value_locs).get(step, best)
            node = node[step]
        elif isinstance(node, PosDict) and last and key:
            return best
        elif isinstance(node, PosList) and isinstance(step, int) and 0 <= step < len(node):
            best = node.item_locs[step] or best
            node = node[step]
        else:
            break
    return best
