"""`netspec time SPEC`: forward/backward milliseconds per layer and for the whole net (`caffe time`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from netspec.commands.train import _positive, add_common, under_common_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", type=Path, help="the YAML spec")
    p.add_argument("--iterations", type=_positive, default=50, metavar="N", help="timed runs of each (default 50)")
    p.add_argument("--phase", choices=("TRAIN", "TEST"), default="TRAIN", help="which phase's net (default TRAIN)")
    p.add_argument("--batch", "--batch-size", dest="batch", type=_positive, metavar="N",
                   help="override the inputs' batch size")
    add_common(p)
    p.set_defaults(func=run)


@under_common_options
def run(args: argparse.Namespace) -> int:
    from netspec.train import compile_cache

    cache_problem = compile_cache.enable_default(args.compile_cache)
    if cache_problem:
        print(f"note: {cache_problem}")
    import jax

    from netspec.check import check
    from netspec.lowering import compile as lower
    from netspec.train.plan import choose_feed, classifier
    from netspec.train.timing import random_inputs, report_lines, time_layers, time_net

    report = check(args.spec, phase=args.phase, batch=args.batch)
    model = lower(report.graph.spec, args.phase, dtype=args.dtype, batch=args.batch, conv_impl=args.conv_impl)
    feed = choose_feed(report) if report.graph.inputs else None
    found = classifier(report)
    inputs = random_inputs(model, feed.label if feed else None, found[1] if found else None)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0))
    train = args.phase == "TRAIN"
    batch = next(iter(model.input_shapes.values()))[0] if model.input_shapes else 0
    header = (f"netspec time {report.graph.spec.name or args.spec.stem}: {args.phase} net, batch {batch}, "
              f"{args.dtype} on {jax.default_backend()}, {args.iterations} iterations; each layer jitted on its own")
    layers = time_layers(model, variables, inputs, train, args.iterations)
    net = time_net(model, variables, inputs, train, args.iterations)
    for line in report_lines(layers, net, args.iterations, header):
        print(line)
    return 0
