"""`netspec export-caffe SPEC -o net.prototxt [--solver-out solver.prototxt]`: a spec as Caffe files.

Pure Python (no JAX). See netspec/caffe/exporter.py for the rules and docs/caffe-import.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from netspec.cli import EXIT_OK, print_diagnostics
from netspec.errors import Diagnostic, NetspecError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", type=Path, help="the YAML spec")
    p.add_argument("-o", "--output", type=Path, metavar="PROTOTXT",
                   help="the net prototxt (default: print it)")
    p.add_argument("--solver-out", type=Path, metavar="PROTOTXT",
                   help="also write the spec's `solver:` section as a Caffe solver prototxt (its `net:` "
                        "names the -o file)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from netspec.files import unwritable, write_atomically
    from netspec.caffe.exporter import export_net, export_solver
    from netspec.spec import load_spec

    spec = load_spec(args.spec)
    in_the_way = [Diagnostic("error", f"{flag} {path}: {why}") for flag, path in
                  (("-o", args.output), ("--solver-out", args.solver_out))
                  if path is not None and (why := unwritable(path)) is not None]
    if in_the_way:  # before either file is written
        raise NetspecError(in_the_way)
    left_out = [s for s in ("solver", "data") if isinstance(spec.raw, dict) and spec.raw.get(s) is not None]
    header = [f"Exported from {args.spec} by netspec export-caffe."]
    if left_out:
        header.append(f"The spec's {' and '.join(f'`{s}:`' for s in left_out)} section(s) are not part of a "
                      "Caffe net" + (" (the solver is in its own file)." if args.solver_out else "."))
    solver = None
    if args.solver_out is not None:
        net_path = str(args.output) if args.output is not None else None
        solver = export_solver(spec, net_path=net_path,
                               header=f"Exported from the `solver:` section of {args.spec} by netspec "
                                      "export-caffe.")
    net = export_net(spec, header="\n".join(header))
    print_diagnostics(net.diagnostics)
    # Both files are made before either is written; each is written whole or not at all.
    if args.output is None:
        sys.stdout.write(net.text)
    else:
        write_atomically(args.output, net.text)
        print(f"wrote {args.output}: {sum(1 for x in spec.layers if x.index >= 0)} layers")
    if solver is not None:
        write_atomically(args.solver_out, solver.text)
        print(f"wrote {args.solver_out}")
    return EXIT_OK
