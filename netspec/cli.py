"""The `netspec` command line. Parses arguments, calls the library, prints, maps errors to exit codes.

Exit status: 0 ok, 1 spec (or data) errors, 2 usage errors. Nothing a user can type produces a
Python traceback: spec problems are NetspecError diagnostics, and anything unexpected is reported
as an internal error with a one-line summary (exit 1; set NETSPEC_TRACEBACK=1 to see the traceback).
Only the subcommand that runs is imported, so `netspec check` never loads the training stack.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Sequence

from netspec.errors import Diagnostic, NetspecError

EXIT_OK, EXIT_SPEC, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad command-line arguments (exit 2)."""


def parse_shape_arg(text: str) -> tuple[str, tuple[int, ...]]:
    """`data=64,1,28,28` -> ('data', (64, 1, 28, 28))."""
    name, sep, dims = text.partition("=")
    try:
        shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
    except ValueError:
        shape = ()
    if not sep or not name or not shape or any(d < 0 for d in shape):
        raise argparse.ArgumentTypeError(f"expected NAME=N,C,H,W (e.g. data=64,1,28,28), got '{text}'")
    return name, shape


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return value


def summary(diags: Sequence[Diagnostic]) -> str:
    """'2 errors' or '2 errors, 1 warning': the last line of a failed check."""
    def count(n: int, what: str) -> str:
        return f"{n} {what}{'s' if n != 1 else ''}"

    distinct = dict.fromkeys(diags)  # as print_diagnostics shows them
    errors = sum(d.severity == "error" for d in distinct)
    warnings = sum(d.severity == "warning" for d in distinct)
    return count(errors, "error") + (f", {count(warnings, 'warning')}" if warnings else "")


def print_diagnostics(diags: Sequence[Diagnostic]) -> None:
    # The same problem found twice (a data file read for the train and the test split) is said once.
    for d in dict.fromkeys(diags):
        print(d.format(), file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    # A spec with errors is validated by pydantic, which would scan every installed distribution for
    # plugins before its first validator (tens of ms); checking has no use for plugins. An explicit
    # setting is respected.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from netspec.check import check
    from netspec.report import as_json, render_table

    try:
        report = check(args.spec, phase=args.phase, input_shapes=dict(args.input_shape or []),
                       batch=args.batch, strict=args.strict)
    except NetspecError as e:
        if args.json:
            print(json.dumps({"format": "netspec-check/1", "ok": False,
                              "diagnostics": [d.as_json() for d in e.diagnostics]}, indent=2))
        print_diagnostics(e.diagnostics)
        print(summary(e.diagnostics), file=sys.stderr)
        return EXIT_SPEC
    if args.json:
        print(json.dumps(as_json(report), indent=2))
    else:
        print(render_table(report))
    print_diagnostics(report.diagnostics)
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from netspec.schema import render

    print(render(), end="")
    return EXIT_OK


def _add_check(sub: Any) -> None:
    p = sub.add_parser("check", help="validate a spec and print every layer's shape and counts",
                       description="Validate a spec; print each layer's top shape, parameters, multiply-adds "
                                   "and receptive field, or every problem with its location.")
    p.add_argument("spec", help="the YAML spec file")
    p.add_argument("--json", action="store_true", help="print the machine-readable form")
    p.add_argument("--strict", action="store_true",
                   help="treat lossy shape arithmetic (a conv that never reads its last rows) as an error")
    p.add_argument("--batch", type=_positive, metavar="N", help="override the inputs' batch size")
    p.add_argument("--input-shape", type=parse_shape_arg, action="append", metavar="NAME=N,C,H,W",
                   help="give or override an input blob's shape (repeatable)")
    p.add_argument("--phase", choices=("TRAIN", "TEST"), default="TEST",
                   help="which phase's net (default TEST)")
    p.set_defaults(func=cmd_check)


def _add_schema(sub: Any) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of the spec format (for editors)",
                       description="Print the JSON Schema (draft 2020-12) of the spec format. Editors with a "
                                   "YAML language server use it for completion and checking: put "
                                   "'# yaml-language-server: $schema=netspec.schema.json' on a spec's first "
                                   "line.")
    p.set_defaults(func=cmd_schema)


def _add_lazy(sub: Any, name: str, module: str, help_text: str, load: bool) -> None:
    """A subcommand whose implementation (and JAX) loads only when it is the one that runs.

    The others get a bare parser for `netspec --help`, so `netspec check` imports none of them.
    """
    import importlib
    import importlib.util

    try:
        if importlib.util.find_spec(module) is None:
            return  # a command whose module is not part of this build
    except ImportError:
        return
    parser = sub.add_parser(name, help=help_text, description=help_text)
    if load:
        importlib.import_module(module).add_arguments(parser)


_LAZY = (
    ("train", "netspec.commands.train", "train a spec with its solver on its data"),
    ("test", "netspec.commands.test", "evaluate a trained checkpoint on the test data"),
    ("time", "netspec.commands.time", "time forward and backward passes per layer, like `caffe time`"),
    ("import-caffe", "netspec.commands.import_caffe", "convert a Caffe .prototxt (and weights) into a spec"),
    ("export-caffe", "netspec.commands.export_caffe", "write a spec as a Caffe .prototxt"),
)


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the top level has no options that take values)."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; only `command`'s module (if it is a lazy one) is imported."""
    parser = argparse.ArgumentParser(prog="netspec", description="A declarative neural-network compiler: "
                                     "Caffe-style YAML specs, checked in pure Python, trained on JAX.")
    from netspec import __version__

    parser.add_argument("--version", action="version", version=f"netspec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_check(sub)
    _add_schema(sub)
    for name, module, help_text in _LAZY:
        _add_lazy(sub, name, module, help_text, load=name == command)
    return parser


def _internal_error(e: BaseException) -> str:
    """One line for a bug report: the exception and the innermost netspec frame it came from."""
    import traceback

    frames = traceback.extract_tb(e.__traceback__)
    ours = [f for f in frames if "netspec" in f.filename.replace("\\", "/").split("/site-packages/")[-1]]
    at = ours[-1] if ours else (frames[-1] if frames else None)
    where = f" (at {at.filename.rsplit('/', 1)[-1]}:{at.lineno} in {at.name})" if at else ""
    text = " ".join(str(e).split())
    text = text if len(text) <= 200 else text[:200] + "…"
    return f"netspec: internal error: {type(e).__name__}: {text}{where}; please report it"


def _tolerant_streams() -> None:
    """Shapes print with × and ·; a terminal or pipe whose encoding lacks them gets escapes, not a crash."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    _tolerant_streams()
    standalone = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    if standalone and args.command == "check":
        # A one-shot process: what the imports built lives until exit, so the cyclic collector need
        # not walk it again on every collection (about 4% of a `netspec check`). Not done when
        # called in-process, where frozen objects would never be collected.
        import gc

        gc.freeze()
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except NetspecError as e:
        print_diagnostics(e.diagnostics)
        return EXIT_SPEC
    except UsageError as e:
        print(f"netspec {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # noqa: BLE001 - the promise is: no traceback, ever
        if os.environ.get("NETSPEC_TRACEBACK"):
            raise
        print(_internal_error(e), file=sys.stderr)
        return EXIT_SPEC


if __name__ == "__main__":
    sys.exit(main())
