"""YAML text -> plain data whose containers remember where they came from.

This is the only module that touches the YAML library. Mappings become `PosDict` and sequences
`PosList`: ordinary dicts and lists (pydantic validates them as such) that also carry the source
position of the container, of each key and of each value. Positions survive `copy.deepcopy`, so
block expansion keeps pointing at the template lines a user wrote.

The data is built from libyaml's event stream, not its composer: the composer recurses in C and
crashes the interpreter on deeply nested input, and building straight from events lets every bound
stop the parse at the first offending event. Hostile input is refused with a located diagnostic,
never a traceback: non-UTF-8 bytes, control characters, tabs in indentation, YAML syntax errors,
tags other than the plain JSON-like ones (`!!python/...` among them), duplicate keys, alias bombs
(the expanded size is bounded), deep nesting, numbers out of range (1e400, 10**30, NaN), huge
strings, and files too large to be a network.

Mapping keys are always strings: the text the user wrote (`1:` is the key '1', `on:` is 'on').
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from netspec.errors import Diagnostic, NetspecError, SourceLoc

MAX_BYTES = 4 * 1024 * 1024  # ResNet-152 is 80 KiB
MAX_NODES = 100_000  # values after alias expansion; ResNet-152 has about 5,000
MAX_DEPTH = 64
MAX_STRING = 10_000  # characters in one scalar
MAX_INT = 2**63 - 1  # Caffe's widest integer fields are int64

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
# Implicitly resolved YAML 1.1 types that are not JSON-like: keep the text the user wrote.
_AS_TEXT = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value", "tag:yaml.org,2002:yaml"}
_SCALAR_TAGS = {_STR, _INT, _FLOAT, _BOOL, _NULL} | _AS_TEXT

_Parser: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_KEY = ("<<",)  # stands for a `<<:` merge key while its value arrives (a tuple: never a real key)


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


def _error(message: str, loc: SourceLoc) -> NetspecError:
    return NetspecError([Diagnostic("error", message, loc)])


def _offset_loc(raw: bytes, offset: int, file: str) -> SourceLoc:
    """Line and column (in characters) of a byte offset."""
    offset = max(0, min(offset, len(raw)))
    start = raw.rfind(b"\n", 0, offset) + 1
    col = len(raw[start:offset].decode("utf-8", "replace")) + 1
    return SourceLoc(file, raw.count(b"\n", 0, offset) + 1, col)


def decode(raw: bytes, file: str) -> str:
    """UTF-8 (with or without BOM) or a located error at the first bad byte."""
    if len(raw) > MAX_BYTES:
        raise _error(f"file is {len(raw):,} bytes; specs larger than {MAX_BYTES // 2**20} MiB are refused "
                     f"(ResNet-152 is 80 KiB)", SourceLoc(file, 1, 1))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        msg = f"file is not valid UTF-8: byte 0x{raw[e.start]:02x} cannot start or continue a character"
        raise _error(msg, _offset_loc(raw, e.start, file)) from None


# YAML 1.2 (and JSON) read `1e-3` and `2.5e4` as numbers; YAML 1.1 wants a dot and a signed
# exponent (`1.0e-3`) and would leave them strings.
_EXPONENT_FLOAT = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+\Z")


def _implicit_tag(value: str) -> str:
    """PyYAML's YAML 1.1 resolution of a plain scalar (Resolver.resolve, without the node), plus
    YAML 1.2's exponent floats."""
    table = Resolver.yaml_implicit_resolvers
    for tag, regexp in table.get(value[:1], []) + table.get(None, []):
        if regexp.match(value):
            return tag  # type: ignore[no-any-return]
    return _FLOAT if _EXPONENT_FLOAT.match(value) else _STR


class _Frame:
    """An open mapping or sequence while its events arrive."""

    __slots__ = ("value", "is_map", "anchor", "start", "key", "key_loc", "merges", "loc")

    def __init__(self, value: PosDict | PosList, anchor: str | None, start: int, loc: SourceLoc) -> None:
        self.value = value
        self.is_map = isinstance(value, PosDict)
        self.anchor = anchor
        self.start = start  # the value counter when it opened, to size it for aliases
        self.key: str | tuple[str] | None = None
        self.key_loc = loc
        self.merges: list[tuple[Any, SourceLoc]] = []
        self.loc = loc


class _Builder:
    """libyaml events -> PosDict/PosList/scalars, with bounds on size, depth and expansion.

    One loop with the common cases (scalars, keys) inlined: it runs once per YAML token.
    """

    def __init__(self, file: str) -> None:
        self.file = file
        self.nodes = 0
        self.aliased = 0  # values added by aliases
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.open_anchors: set[str] = set()
        self.stack: list[_Frame] = []
        self.root: Any = None
        self.done = False
        self.tags: dict[str, str] = {}
        self.scalars: dict[tuple[str, str], Any] = {}
        self.constructor = SafeConstructor()

    def loc(self, mark: Any) -> SourceLoc:
        return tuple.__new__(SourceLoc, (self.file, mark.line + 1, mark.column + 1))

    def too_many(self, mark: Any) -> NetspecError:
        if self.aliased:
            return _error(f"aliases expand the document to more than {MAX_NODES:,} values (an alias "
                          "bomb?); refusing to expand it", self.loc(mark))
        return _error(f"the document has more than {MAX_NODES:,} values; specs this large are refused "
                      "(ResNet-152 has about 5,000)", self.loc(mark))

    def run(self, parser: Any) -> Any:
        # The common cases (a plain key, a plain string or number value in a mapping or list) are
        # inlined: this loop runs once per YAML token.
        file, stack, get_event, tags = self.file, self.stack, parser.get_event, self.tags
        scalar_event, stream_end = yaml.ScalarEvent, yaml.StreamEndEvent
        new_loc = tuple.__new__  # SourceLoc(...) without the NamedTuple constructor's extra call
        while True:
            event = get_event()
            if type(event) is scalar_event:
                self.nodes += 1
                mark = event.start_mark
                loc = new_loc(SourceLoc, (file, mark.line + 1, mark.column + 1))
                text = event.value
                plain = event.tag is None and event.implicit[0]
                frame = stack[-1] if stack else None
                if frame is not None and frame.is_map and frame.key is None:
                    if plain and text != "<<" and len(text) <= MAX_STRING:
                        frame.key = text
                        frame.key_loc = loc
                    else:
                        self.on_key(frame, event, loc)
                    continue
                if plain and tags.get(text) == _STR and len(text) <= MAX_STRING:
                    value: Any = text
                elif plain:
                    value = self.plain(text, mark)
                else:
                    value = self.scalar(event)
                if event.anchor is not None:
                    self.anchors[event.anchor] = (value, 1)
                if frame is None or event.anchor is not None:
                    self.attach(value, loc)
                elif frame.is_map:
                    key = frame.key
                    container = frame.value
                    if key is _MERGE_KEY or key in container:
                        self.attach(value, loc)
                    else:
                        frame.key = None
                        container[key] = value
                        container.key_locs[key] = frame.key_loc  # type: ignore[union-attr]
                        container.value_locs[key] = loc  # type: ignore[union-attr]
                else:
                    frame.value.append(value)
                    frame.value.item_locs.append(loc)  # type: ignore[union-attr]
            elif type(event) is stream_end:
                return self.root
            else:
                self.other(event, type(event))
            if self.nodes > MAX_NODES:
                raise self.too_many(event.start_mark)

    def other(self, event: Any, kind: type) -> None:
        if kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            self.on_start(event, kind is yaml.MappingStartEvent)
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            self.on_end()
        elif kind is yaml.AliasEvent:
            self.on_alias(event)
        elif kind is yaml.DocumentStartEvent and self.done:
            raise _error("a spec is a single YAML document, but a second one starts here (---)",
                         self.loc(event.start_mark))

    def on_key(self, frame: _Frame, event: Any, loc: SourceLoc) -> None:
        value: str = event.value
        if event.tag not in (None, "!", _STR, _MERGE):
            raise _error(f"unsupported YAML tag '{event.tag}' on a key", loc)
        if len(value) > MAX_STRING:
            raise _error(f"a key of {len(value):,} characters; keys are field names", loc)
        merge = value == "<<" and event.implicit[0] and event.tag in (None, _MERGE)
        frame.key = _MERGE_KEY if merge else value
        frame.key_loc = loc

    def on_start(self, event: Any, mapping: bool) -> None:
        loc = self.loc(event.start_mark)
        frame = self.stack[-1] if self.stack else None
        if frame is not None and frame.is_map and frame.key is None:
            raise _error("mapping keys must be plain scalars (field names), not "
                         f"{'mappings' if mapping else 'lists'}", loc)
        if event.tag not in (None, "!", _MAP if mapping else _SEQ):
            raise _error(f"unsupported YAML tag '{event.tag}'; specs use plain "
                         f"{'mappings' if mapping else 'lists'}", loc)
        if len(self.stack) >= MAX_DEPTH:
            raise _error(f"nesting deeper than {MAX_DEPTH} levels; a spec nests a few levels at most", loc)
        self.nodes += 1
        value: PosDict | PosList = PosDict(loc=loc) if mapping else PosList(loc=loc)
        if event.anchor is not None:
            self.open_anchors.add(event.anchor)
        self.stack.append(_Frame(value, event.anchor, self.nodes, loc))

    def on_end(self) -> None:
        frame = self.stack.pop()
        if frame.merges:
            self.apply_merges(frame)
        if frame.anchor is not None:
            self.open_anchors.discard(frame.anchor)
            self.anchors[frame.anchor] = (frame.value, self.nodes - frame.start + 1)
        self.attach(frame.value, frame.loc)

    def on_alias(self, event: Any) -> None:
        loc = self.loc(event.start_mark)
        if event.anchor in self.open_anchors:
            raise _error(f"alias '*{event.anchor}' refers to a node that contains it (a recursive alias)",
                         loc)
        if event.anchor not in self.anchors:
            raise _error(f"undefined alias '*{event.anchor}' (an anchor '&{event.anchor}' must come first)",
                         loc)
        frame = self.stack[-1] if self.stack else None
        if frame is not None and frame.is_map and frame.key is None:
            raise _error("mapping keys must be plain scalars (field names), not aliases", loc)
        value, size = self.anchors[event.anchor]
        self.nodes += size
        self.aliased += size
        if self.nodes > MAX_NODES:
            raise self.too_many(event.start_mark)
        self.attach(value, loc)

    def attach(self, value: Any, loc: SourceLoc) -> None:
        if not self.stack:
            self.root = value
            self.done = True
            return
        frame = self.stack[-1]
        container = frame.value
        if not frame.is_map:
            container.append(value)
            container.item_locs.append(loc)  # type: ignore[union-attr]
            return
        key, key_loc = frame.key, frame.key_loc
        frame.key = None
        if key is _MERGE_KEY:  # applied when the mapping closes, so that explicit keys win
            frame.merges.append((value, key_loc))
            return
        if key in container:
            first = container.key_locs[key]  # type: ignore[union-attr]
            raise _error(f"duplicate key '{key}' (first given at line {first.line})", key_loc)
        container[key] = value  # type: ignore[index]
        container.key_locs[key] = key_loc  # type: ignore[union-attr]
        container.value_locs[key] = loc  # type: ignore[union-attr]

    def apply_merges(self, frame: _Frame) -> None:
        """YAML `<<:` merge keys: explicit keys win, then earlier merged mappings over later ones."""
        out = frame.value
        assert isinstance(out, PosDict)
        for value, at in frame.merges:
            sources = value if isinstance(value, PosList) else [value]
            for src in sources:
                if not isinstance(src, PosDict):
                    raise _error("a '<<' merge key needs a mapping or a list of mappings", at)
                for k, v in src.items():
                    if k not in out:
                        out[k] = v
                        out.key_locs[k] = src.key_locs.get(k, at)
                        out.value_locs[k] = src.value_locs.get(k, at)

    def plain(self, value: str, mark: Any) -> Any:
        """An untagged, unquoted scalar: resolved as YAML 1.1 does (cached: specs repeat values)."""
        tag = self.tags.get(value)
        if tag is None:
            tag = self.tags[value] = _implicit_tag(value)
        if tag == _STR or tag in _AS_TEXT:
            if len(value) > MAX_STRING:
                raise _error(f"a string of {len(value):,} characters; the limit is {MAX_STRING:,}",
                             self.loc(mark))
            return value
        key = (tag, value)
        if key not in self.scalars:
            self.scalars[key] = self.construct(tag, value, mark)
        return self.scalars[key]

    def scalar(self, event: Any) -> Any:
        value: str = event.value
        tag = event.tag
        if tag is None or tag == "!":
            tag = _implicit_tag(value) if event.implicit[0] else _STR
        if tag not in _SCALAR_TAGS:
            raise _error(f"unsupported YAML tag '{tag}'; only plain strings, numbers, booleans and null "
                         "are allowed", self.loc(event.start_mark))
        if len(value) > MAX_STRING:
            raise _error(f"a string of {len(value):,} characters; the limit is {MAX_STRING:,}",
                         self.loc(event.start_mark))
        if tag == _STR or tag in _AS_TEXT:
            return value
        return self.construct(tag, value, event.start_mark)

    def construct(self, tag: str, value: str, mark: Any) -> Any:
        if tag == _INT and len(value.lstrip("+-0").replace("_", "")) > 20:
            raise _error(f"integer {_short(value)} is out of range (Caffe's widest fields are 64-bit)",
                         self.loc(mark))
        node = yaml.ScalarNode(tag, value, mark, mark)
        try:
            out = self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError) as e:
            raise _error(f"'{_short(value)}' is not a valid {tag.rsplit(':', 1)[-1]}: {e}",
                         self.loc(mark)) from None
        if isinstance(out, bool) or out is None:
            return out
        if isinstance(out, int) and abs(out) > MAX_INT:
            raise _error(f"integer {_short(value)} is out of range (Caffe's widest fields are 64-bit)",
                         self.loc(mark))
        if isinstance(out, float):
            if math.isnan(out):
                raise _error("NaN is not a usable value in a spec", self.loc(mark))
            if math.isinf(out) and "inf" not in value.lower():
                raise _error(f"number {_short(value)} is too large for a float (it would be infinity; "
                             "write .inf if you mean it)", self.loc(mark))
        return out


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else f"{text[:limit - 10]}…({len(text):,} characters)"


def _yaml_error(e: yaml.YAMLError, text: str, file: str) -> NetspecError:
    """A libyaml error as a located diagnostic, reworded where libyaml is cryptic."""
    if isinstance(e, yaml.reader.ReaderError):
        raw = text.encode("utf-8")
        loc = _offset_loc(raw, e.position, file)
        char = e.character if isinstance(e.character, str) else chr(e.character or 0)
        return _error(f"control character U+{ord(char):04X} is not allowed in YAML"
                      f"{' (a binary file?)' if char == chr(0) else ''}", loc)
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        loc = SourceLoc(file, mark.line + 1, mark.column + 1) if mark is not None else SourceLoc(file, 1, 1)
        problem = e.problem or e.context or "malformed YAML"
        at = _char_at(text, loc)
        if at == "\t":
            return _error("tab character: YAML indents with spaces only", loc)
        if "cannot start any token" in problem and at:
            return _error(f"YAML syntax: character {at!r} cannot start a value here"
                          f"{' (quote the value)' if at in '@`%' else ''}", loc)
        context = ""
        if e.context and e.problem:
            cm = e.context_mark
            opened = f" that opens at line {cm.line + 1}, column {cm.column + 1}" \
                if cm is not None and cm.line != (mark.line if mark is not None else -1) else ""
            context = f" ({e.context}{opened})"
        return _error(f"YAML syntax: {problem}{context}", loc)
    return _error(f"YAML: {e}", SourceLoc(file, 1, 1))


def _char_at(text: str, loc: SourceLoc) -> str:
    lines = text.split("\n", loc.line)
    if loc.line - 1 < len(lines):
        line = lines[loc.line - 1]
        if 0 <= loc.col - 1 < len(line):
            return line[loc.col - 1]
    return ""


def load_yaml(text: str | bytes, file: str = "<spec>") -> Any:
    """Parse one YAML document into PosDict/PosList/scalars; None for an empty document."""
    if isinstance(text, bytes):
        text = decode(text, file)
    elif len(text) > MAX_BYTES:
        raise _error(f"text is {len(text):,} characters; specs larger than {MAX_BYTES // 2**20} MiB are "
                     "refused", SourceLoc(file, 1, 1))
    parser = _Parser(text)
    try:
        return _Builder(file).run(parser)
    except yaml.YAMLError as e:
        raise _yaml_error(e, text, file) from None
    finally:
        parser.dispose()


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
