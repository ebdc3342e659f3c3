"""ShapeReport -> the `netspec check` table and its JSON form. Pure formatting; golden files pin it.

JSON form (version 1), stable for tools:
  {"format": "netspec-check/1", "name", "file", "phase", "batch",
   "layers": [{"name", "type", "tops": [{"name", "shape"}], "params", "state", "macs",
               "activation_bytes", "receptive_field": {"size": [h, w], "jump": [h, w]} | null}],
   "outputs": [blob names], "totals": {"learnable_params", "state", "macs", "flops",
   "activation_bytes"}, "diagnostics": [{"severity", "message", "file", "line", "col", "layer", "hint"}]}
`macs` are multiply-accumulates per input sample (FLOPs = 2 × MACs); `activation_bytes` are the
float32 top blobs at the report's batch size, in-place tops sharing their bottom's storage.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from netspec.shapes import Receptive, Row, ShapeReport


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23M'; exact below 10,000."""
    if abs(n) < 10_000:
        return f"{int(n):,}{unit}" if float(n).is_integer() else f"{n:.3g}{unit}"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}{unit}"
    return f"{n}{unit}"


def mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n / 2**10:,.1f} KiB"


def _jump(j: Fraction) -> str:
    return str(j.numerator) if j.denominator == 1 else f"{j.numerator}/{j.denominator}"


def rf_text(rf: Receptive | None) -> str:
    if rf is None or not rf.size:
        return "-"
    size = str(rf.size[0]) if len(set(rf.size)) == 1 else "×".join(map(str, rf.size))
    jump = _jump(rf.jump[0]) if len(set(rf.jump)) == 1 else "×".join(_jump(j) for j in rf.jump)
    return f"{size} /{jump}"


def shape_text(shape: tuple[int, ...]) -> str:
    return "scalar" if not shape else "×".join(str(d) for d in shape[1:]) or "1"


def _lines(row: Row) -> list[list[str]]:
    first = [row.name, row.type, *(["", ""] if not row.tops else [row.tops[0][0], shape_text(row.tops[0][1])]),
             f"{row.params:,}" if row.params else "-", human(row.macs) if row.macs else "-", rf_text(row.rf)]
    more = [["", "", name, shape_text(shape), "", "", ""] for name, shape in row.tops[1:]]
    return [first] + more


def render_table(report: ShapeReport) -> str:
    spec = report.graph.spec
    head = ["layer", "type", "top", "shape (C×H×W)", "params", "MACs", "RF /jump"]
    body = [line for row in report.rows for line in _lines(row)]
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    right = {4, 5}

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "-" * len(fmt(head))
    title = f"{spec.name or '(unnamed net)'} — {spec.file} — phase {report.graph.phase}, batch {report.batch}"
    out = [title, "", fmt(head), rule, *(fmt(r) for r in body), rule]
    out += totals_lines(report)
    return "\n".join(out)


def totals_lines(report: ShapeReport) -> list[str]:
    outputs = ", ".join(report.graph.blob_names[b] for b in report.graph.outputs) or "-"
    return [
        f"learnable parameters  {report.learnable_params:,} ({human(report.learnable_params)})",
        f"non-learnable state   {report.state:,} (BatchNorm statistics)",
        f"multiply-adds         {report.macs:,} per sample ({human(report.macs)}; "
        f"FLOPs = 2 × MACs = {human(2 * report.macs)})",
        f"activation memory     {mib(report.activation_bytes)} at batch {report.batch} (float32 tops, "
        "in-place layers share storage)",
        f"net outputs           {outputs}",
    ]


def _rf_json(rf: Receptive | None) -> dict[str, list[Any]] | None:
    if rf is None or not rf.size:
        return None
    jump = [int(j) if j.denominator == 1 else float(j) for j in rf.jump]
    return {"size": list(rf.size), "jump": jump}


def as_json(report: ShapeReport) -> dict[str, Any]:
    spec = report.graph.spec
    return {
        "format": "netspec-check/1",
        "name": spec.name,
        "file": spec.file,
        "phase": report.graph.phase,
        "batch": report.batch,
        "layers": [{
            "name": r.name, "type": r.type,
            "tops": [{"name": n, "shape": list(s)} for n, s in r.tops],
            "params": r.params, "state": r.state, "macs": r.macs,
            "activation_bytes": r.activation_bytes, "receptive_field": _rf_json(r.rf),
        } for r in report.rows],
        "outputs": [report.graph.blob_names[b] for b in report.graph.outputs],
        "totals": {
            "learnable_params": report.learnable_params, "state": report.state, "macs": report.macs,
            "flops": 2 * report.macs, "activation_bytes": report.activation_bytes,
        },
        "diagnostics": [d.as_json() for d in report.diagnostics],
    }
