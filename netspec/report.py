"""ShapeReport -> the `netspec check` table and its JSON form. Pure formatting; golden files pin it.

The table (plain text, deterministic) has one row per layer of the checked phase in execution
order, and one more line per extra top:

    layer   type         top    shape      params      MACs  RF  jump
    conv1   Convolution  conv1  64×20×24×24   520   288,000   5     1

`shape` is the full top shape, N first (`scalar` for a loss); a top marked `*` is computed in
place and shares its bottom's storage. `params` are learnable values; `MACs` are
multiply-accumulates per input sample (FLOPs = 2 × MACs); `RF` is the receptive field in input
pixels and `jump` the distance in input pixels between neighbouring outputs (the effective stride,
a fraction after upsampling), `-` where no spatial input reaches the layer. Both numeric columns
are exact, and the totals under the table are their sums.

JSON form (`netspec check --json`), stable for tools:
  {"format": "netspec-check/1", "ok": true, "name", "file", "phase", "batch",
   "layers": [{"name", "type",
               "tops": [{"name", "shape": [N, C, H, W], "in_place": bool}],
               "params", "state", "macs", "activation_bytes",
               "blobs": [{"shape": [...], "learnable": bool}],
               "receptive_field": {"size": [h, w], "jump": [h, w]} | null}],
   "outputs": [blob names],
   "totals": {"layers", "learnable_params", "state", "macs", "flops", "activation_bytes",
              "param_bytes"},
   "diagnostics": [{"severity", "message", "file", "line", "col", "layer", "hint", "code"}]}
When the spec has errors: {"format": "netspec-check/1", "ok": false, "diagnostics": [...]}.
`params`/`state` count values (BatchNorm statistics are state); `macs` are per input sample;
`activation_bytes` are the float32 top blobs at the report's batch size, in-place tops sharing
their bottom's storage; `param_bytes` are learnable parameters and state as float32. A jump is an
integer, or a float after upsampling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from netspec.errors import printable
from netspec.shapes import BYTES_PER_VALUE, Receptive, Row, ShapeReport

if TYPE_CHECKING:
    from fractions import Fraction


def _scientific(n: int) -> str:
    """An integer too large for a float, as 1.23e456."""
    digits = str(abs(n))
    sign = "-" if n < 0 else ""
    return f"{sign}{digits[0]}.{digits[1:3].ljust(2, '0')}e{len(digits) - 1}"


def count_text(n: int) -> str:
    """An exact count with thousands separators; scientific only where a net is absurd (≥ 10^18)."""
    return f"{n:,}" if abs(n) < 10**18 else _scientific(n)


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23M'; exact below 10,000; never fails on huge integers."""
    if abs(n) < 10_000:
        return f"{int(n):,}{unit}" if float(n).is_integer() else f"{n:.3g}{unit}"
    if abs(n) >= 10**15:
        return f"{_scientific(int(n))}{unit}"
    for scale, suffix in ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}{unit}"
    return f"{n}{unit}"


def human_bytes(n: int) -> str:
    """Bytes in binary units: '4.8 MiB'; '1.23e45 bytes' beyond PiB."""
    if n >= 2**60:
        return f"{_scientific(n)} bytes"
    for unit, size in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,} bytes"


def _jump(j: int | Fraction) -> str:
    return str(j.numerator) if j.denominator == 1 else f"{j.numerator}/{j.denominator}"


def _per_axis(values: list[str]) -> str:
    return values[0] if len(set(values)) == 1 else "×".join(values)


def rf_text(rf: Receptive | None) -> tuple[str, str]:
    """(receptive field, jump) cells: '5', '2'; '3×5' where the axes differ; '-' when unknown."""
    if rf is None or not rf.size:
        return "-", "-"
    sizes = [count_text(s).replace(",", "") for s in rf.size]
    return _per_axis(sizes), _per_axis([_jump(j) for j in rf.jump])


def shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(str(d) if d < 10**18 else _scientific(d) for d in shape) if shape else "scalar"


def _lines(row: Row) -> list[list[str]]:
    tops = row.tops or (("", ()),)
    rf, jump = rf_text(row.rf)
    star = "*" if row.in_place else ""
    out = []
    for i, (name, shape) in enumerate(tops):
        shown = shape_text(shape) if name else ""
        if i == 0:
            params = count_text(row.params) if row.params else "-"
            macs = count_text(row.macs) if row.macs else "-"
            out.append([printable(row.name), row.type, printable(name) + star, shown, params, macs, rf, jump])
        else:
            out.append(["", "", printable(name), shown, "", "", "", ""])
    return out


HEADER = ["layer", "type", "top", "shape", "params", "MACs", "RF", "jump"]
_RIGHT = {4, 5, 6, 7}


def render_table(report: ShapeReport) -> str:
    spec = report.graph.spec
    body = [line for row in report.rows for line in _lines(row)]
    widths = [max(len(r[i]) for r in [HEADER] + body) for i in range(len(HEADER))]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in _RIGHT else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "-" * len(fmt(HEADER))
    title = printable(f"{spec.name or '(unnamed net)'} — {spec.file} — {report.graph.phase} net, "
                      f"batch {report.batch}")
    out = [title, "", fmt(HEADER), rule, *(fmt(r) for r in body), rule]
    if any(r.in_place for r in report.rows):
        out.append("* computed in place: the top shares its bottom's storage")
    out += totals_lines(report)
    return "\n".join(out)


def param_bytes(report: ShapeReport) -> int:
    return (report.learnable_params + report.state) * BYTES_PER_VALUE


def _both(n: int) -> str:
    """'60,192,808 (60.2M)': exact, with the rounded form where it helps."""
    return count_text(n) if abs(n) < 10_000 or abs(n) >= 10**18 else f"{count_text(n)} ({human(n)})"


def totals_lines(report: ShapeReport) -> list[str]:
    outputs = printable(", ".join(report.graph.blob_names[b] for b in report.graph.outputs)) or "-"
    n = report.state
    state = f"{count_text(n)} ({human(n) + '; ' if n >= 10_000 else ''}running statistics)" if n else "0"
    return [
        f"layers                {len(report.rows)}",
        f"learnable parameters  {_both(report.learnable_params)}",
        f"non-learnable state   {state}",
        f"parameter memory      {human_bytes(param_bytes(report))} (float32)",
        f"multiply-adds         {count_text(report.macs)} per sample ({human(report.macs)}; "
        f"FLOPs = 2 × MACs = {human(2 * report.macs)})",
        f"activation memory     {human_bytes(report.activation_bytes)} at batch {report.batch} "
        "(float32 tops)",
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
        "ok": True,
        "name": spec.name,
        "file": spec.file,
        "phase": report.graph.phase,
        "batch": report.batch,
        "layers": [{
            "name": r.name, "type": r.type,
            "tops": [{"name": n, "shape": list(s), "in_place": r.in_place and i == 0}
                     for i, (n, s) in enumerate(r.tops)],
            "params": r.params, "state": r.state, "macs": r.macs,
            "activation_bytes": r.activation_bytes,
            "blobs": [{"shape": list(b.shape), "learnable": b.learnable} for b in r.blobs],
            "receptive_field": _rf_json(r.rf),
        } for r in report.rows],
        "outputs": [report.graph.blob_names[b] for b in report.graph.outputs],
        "totals": {
            "layers": len(report.rows), "learnable_params": report.learnable_params, "state": report.state,
            "macs": report.macs, "flops": 2 * report.macs, "activation_bytes": report.activation_bytes,
            "param_bytes": param_bytes(report),
        },
        "diagnostics": [d.as_json() for d in report.diagnostics],
    }
