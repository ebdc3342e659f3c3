"""Diagnostics: every problem netspec finds is data with a location, reported together like a compiler."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Literal, NamedTuple

Severity = Literal["error", "warning", "note"]


class SourceLoc(NamedTuple):
    """A 1-based position in a source file. A tuple: the loader makes one per YAML value, cheaply."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem: `FILE:LINE:COL: error: LAYER: message` (gcc style), plus an optional hint line."""

    severity: Severity
    message: str
    loc: SourceLoc | None = None
    layer: str | None = None
    hint: str | None = None
    #: a stable name for the kind of problem where tools may want to filter on it, e.g. "unused-top"
    code: str | None = None

    def format(self) -> str:
        where = f"{printable(str(self.loc))}: " if self.loc else ""
        who = f"{_short(printable(self.layer))}: " if self.layer else ""
        text = f"{where}{self.severity}: {who}{printable(self.message)}"
        if self.hint:
            text += f"\n  hint: {printable(self.hint)}"
        return text

    def as_json(self) -> dict[str, object]:
        return {
            "severity": self.severity,
            "message": self.message,
            "file": self.loc.file if self.loc else None,
            "line": self.loc.line if self.loc else None,
            "col": self.loc.col if self.loc else None,
            "layer": self.layer,
            "hint": self.hint,
            "code": self.code,
        }


@dataclass
class NetspecError(Exception):
    """Raised with every diagnostic a stage collected, errors first in source order."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.format())

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def format(self) -> str:
        return "\n".join(d.format() for d in self.diagnostics)

    def __str__(self) -> str:
        return self.format()


def printable(text: str) -> str:
    """`text` on one line: control characters and line separators a spec smuggled into a name
    become escapes (a layer named "a\\nb" must not start a new diagnostic line)."""
    if text.isprintable():
        return text
    import unicodedata

    return "".join(c if c == " " or unicodedata.category(c) not in _UNPRINTABLE
                   else c.encode("unicode_escape").decode("ascii") for c in text)


_UNPRINTABLE = frozenset({"Cc", "Zl", "Zp", "Cs"})


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else f"{text[:limit - 1]}…"


def sort_key(d: Diagnostic) -> tuple[str, int, int]:
    if d.loc is None:
        return ("", 0, 0)
    return (d.loc.file, d.loc.line, d.loc.col)


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate `word` most likely misspells, or None: a case-only difference first, then a
    close spelling (difflib ratio ≥ 0.7, ignoring case), then the one candidate it abbreviates.

    In a haystack of thousands (the blobs of a huge net) only names of about the same length and
    initial are compared, so that a file full of typos cannot make this quadratic.
    """
    options = sorted(set(candidates))
    lowered = {c.lower(): c for c in options}
    key = word.lower()
    if key in lowered:
        return lowered[key]
    import difflib

    pool = list(lowered)
    if len(pool) > _MAX_POOL:
        pool = [c for c in pool if c[:1] == key[:1] and abs(len(c) - len(key)) <= 2][:_MAX_POOL]
    close = difflib.get_close_matches(key, pool, n=1, cutoff=0.7)
    if close:
        return lowered[close[0]]
    prefixed = [c for c in options if len(word) >= 3 and c.lower().startswith(key)]
    return prefixed[0] if len(prefixed) == 1 else None


_MAX_POOL = 500


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A suggestion phrased for a message ("did you mean 'x'?"), or None when nothing is close."""
    found = closest(word, candidates)
    return f"did you mean '{found}'?" if found is not None else None
