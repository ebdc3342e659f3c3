"""`netspec import-caffe NET.prototxt -o net.yaml`: a Caffe model definition (and solver, and weights)
as a netspec spec. See docs/caffe-import.md.

Everything up to writing the YAML is pure Python; `--weights` compiles the spec, so it loads JAX.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from netspec.cli import EXIT_OK, EXIT_SPEC, UsageError, parse_shape_arg, print_diagnostics
from netspec.errors import Diagnostic, NetspecError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prototxt", type=Path,
                   help="the Caffe net (deploy.prototxt, train_val.prototxt; V1 or V2)")
    p.add_argument("-o", "--output", type=Path, metavar="YAML",
                   help="the spec to write (default: print it)")
    p.add_argument("--solver", type=Path, metavar="PROTOTXT",
                   help="a Caffe solver prototxt, written as the spec's `solver:` section")
    p.add_argument("--weights", type=Path, metavar="CAFFEMODEL",
                   help="a .caffemodel whose blobs become a netspec checkpoint (needs -o; loads JAX)")
    p.add_argument("--checkpoint", type=Path, metavar="DIR",
                   help="where --weights writes its checkpoint (default: the -o path with .ckpt for .yaml)")
    p.add_argument("--compact", action="store_true",
                   help="fold repeated runs of layers into reusable `blocks:` (expands to the same layers)")
    p.add_argument("--fix-dialect", action="store_true",
                   help="convert fork fields that have a BVLC equivalent (pooling ceil_mode -> round_mode)")
    p.add_argument("--input-shape", type=parse_shape_arg, action="append", metavar="NAME=N,C,H,W",
                   help="the shape of a data layer's top (train_val files), to check the net (repeatable)")
    p.set_defaults(func=run)


def command_line(args: argparse.Namespace) -> str:
    """The command as the user would retype it (for the YAML's header), independent of sys.argv."""
    words = ["netspec", "import-caffe", str(args.prototxt)]
    options = (("--solver", args.solver), ("--weights", args.weights), ("--checkpoint", args.checkpoint))
    for flag, value in options:
        if value is not None:
            words += [flag, str(value)]
    words += [flag for flag, on in (("--compact", args.compact), ("--fix-dialect", args.fix_dialect)) if on]
    for name, shape in args.input_shape or []:
        words += ["--input-shape", f"{name}={','.join(str(d) for d in shape)}"]
    if args.output is not None:
        words += ["-o", str(args.output)]
    return shlex.join(words)


def _checkpoint_dir(args: argparse.Namespace) -> Path:
    if args.checkpoint is not None:
        return Path(args.checkpoint)
    out = Path(args.output)
    return out.with_suffix(".ckpt") if out.suffix in (".yaml", ".yml") else out.with_name(out.name + ".ckpt")


def _summary(net: Any, layers: int) -> str:
    report = net.report
    if report is None:
        top = next(t for t in net.unchecked if not net.data_shapes[t].complete)
        return f"{layers} layers; shapes not checked (give --input-shape {top}={net.data_shapes[top].text()})"
    derived = [f"{t}={net.data_shapes[t].text()}" for t in net.unchecked]
    shape = f" (checked with {', '.join(derived)}, by Caffe's rules)" if derived else ""
    return (f"{layers} layers; TEST phase: {report.learnable_params:,} learnable parameters, "
            f"{report.state:,} BatchNorm statistics{shape}")


def run(args: argparse.Namespace) -> int:
    """Everything is checked before anything is written: the net, the solver, the checkpoint folder and
    (with --weights) every blob. On any error nothing is written; the spec is written atomically."""
    from netspec.files import unwritable, write_atomically
    from netspec.caffe.importer import import_net, import_solver, render

    if args.weights is not None and args.output is None:
        raise UsageError("--weights writes a checkpoint beside the spec: give -o")
    shapes = dict(args.input_shape or [])
    problems: list[Diagnostic] = []
    net = solver = None
    try:
        net = import_net(args.prototxt, fix_dialect=args.fix_dialect, input_shapes=shapes)
    except NetspecError as e:
        problems += e.diagnostics
    if args.solver is not None:
        try:
            solver = import_solver(args.solver)
        except NetspecError as e:
            problems += e.diagnostics
    why = unwritable(args.output) if args.output is not None else None
    if why is not None:
        problems.append(Diagnostic("error", f"-o {args.output}: {why}"))
    if args.weights is not None:
        from netspec.caffe.importer import checkpoint_in_the_way

        problem = checkpoint_in_the_way(_checkpoint_dir(args))
        problems += [problem] if problem is not None else []
    if problems or net is None:
        return _fail(problems)
    output = str(args.output) if args.output is not None else "net.yaml"
    text = render(net, command=command_line(args), output=output, solver=solver, compact=args.compact,
                  input_shapes=shapes)
    _check_it_loads(output, text)
    print_diagnostics([d for d in net.diagnostics if d.severity != "note"])
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    if args.weights is None:
        write_atomically(args.output, text)
        print(f"wrote {args.output}: {_summary(net, len(net.layers))}")
        return EXIT_OK
    try:
        weights = _mapped_weights(args, net)
    except NetspecError as e:
        return _fail(e.diagnostics)
    # The checkpoint first: should writing it fail, no spec names a checkpoint that is not there.
    done = _write_weights(args, weights)
    write_atomically(args.output, text)
    print(f"wrote {args.output}: {_summary(net, len(net.layers))}")
    print(done)
    return EXIT_OK


def _check_it_loads(path: str, text: str) -> None:
    """The YAML as netspec will read it must load (blocks expanded) before anything is written."""
    from netspec.spec import load_spec

    load_spec(path, text=text.encode("utf-8"))


def _mapped_weights(args: argparse.Namespace, net: Any) -> Any:
    """The caffemodel's blobs on the net's parameters (NetspecError if they do not fit). The net's
    spec is the prototxt's, so a mismatch is located in the prototxt: the YAML is not written yet.
    Data tops are shaped as the import checked them (--input-shape, else what Caffe's rules fix)."""
    from netspec.caffe.importer import import_weights

    weights = import_weights(net.spec, args.weights, input_shapes=net.checked_shapes)
    print_diagnostics(weights.diagnostics)
    return weights


def _write_weights(args: argparse.Namespace, weights: Any) -> str:
    """Writes the checkpoint; returns the line that says so."""
    from netspec.caffe.importer import write_checkpoint

    target = _checkpoint_dir(args)
    meta = {"caffemodel": str(args.weights), "spec": str(args.output)}
    folder = write_checkpoint(target, weights, meta=meta)
    n = len(weights.loaded)
    return (f"wrote {folder}: blobs of {n} layer{'s' if n != 1 else ''} from {args.weights} "
            f"(load with: netspec train {args.output} --weights {target})")


def _fail(problems: list[Diagnostic]) -> int:
    print_diagnostics(problems)
    n = sum(d.severity == "error" for d in problems)
    print(f"{n} error{'s' if n != 1 else ''}", file=sys.stderr)
    return EXIT_SPEC
