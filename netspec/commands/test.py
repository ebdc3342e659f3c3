"""`netspec test SPEC --weights CKPT`: evaluate trained weights on the test data (Caffe's `caffe test`).

Prints every batch's outputs ("Batch i, name = v") and their averages, as `caffe test` does, then
a one-line result.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from netspec.commands.train import _positive, add_common, under_common_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", type=Path, help="the YAML spec (its TEST net and `data:` section)")
    p.add_argument("--weights", type=Path, required=True, metavar="CKPT",
                   help="a run folder, a checkpoint folder, or a .caffemodel")
    p.add_argument("--iterations", type=_positive, metavar="N",
                   help="test batches (default: the solver's test_iter, else the whole test set)")
    p.add_argument("--batch-size", type=_positive, metavar="N", help="test batch size")
    p.add_argument("--quiet", action="store_true", help="only the averages, not every batch")
    add_common(p)
    p.set_defaults(func=run)


@under_common_options
def run(args: argparse.Namespace) -> int:
    from netspec.train import compile_cache
    from netspec.train.progress import fmt, output_text

    cache_problem = compile_cache.enable_default(args.compile_cache)
    if cache_problem:
        print(f"note: {cache_problem}")
    from netspec.data import BatchIterator, data_transformer
    from netspec.lowering import compile as lower
    from netspec.train.evaluate import evaluate, load_for_test
    from netspec.train.loop import TEST_ORDER_SEED
    from netspec.train.plan import make_eval_plan

    plan = make_eval_plan(args.spec, args.batch_size, args.iterations)
    model = lower(plan.spec, "TEST", dtype=args.dtype, batch=plan.batch_size, conv_impl=args.conv_impl)
    variables, report = load_for_test(model, args.weights)
    for line in report.lines():
        print(line)
    for note in plan.notes:
        print(f"note: {note}")
    transform = data_transformer(plan.data, plan.splits.test.images.shape[1:], plan.base_dir)
    # The order `netspec train` tests in: fixed-shuffled, so a partial pass samples every class.
    batches = BatchIterator(plan.splits.test, plan.batch_size, names=plan.feed.names, train=False, shuffle=True,
                            seed=TEST_ORDER_SEED, drop_remainder=True, transform=transform, prefetch=2)

    def show(i: int, values: dict[str, float]) -> None:
        if not args.quiet:
            for name, value in values.items():
                print(f"Batch {i}, {name} = {fmt(value)}")

    try:
        means = evaluate(model, variables, batches, plan.iterations, plan.feed.names, show)
    finally:
        batches.close()
    loss = sum(model.loss_weights[k] * v for k, v in means.items() if k in model.loss_weights)
    print(f"Loss: {fmt(loss)}")
    for name, value in means.items():
        print(output_text(name, value, model.loss_weights))
    samples = plan.iterations * plan.batch_size
    if plan.top1 and plan.top1 in means:
        extra = "".join(f", {v:.1%} ({k})" for k, v in means.items() if k != plan.top1 and k.startswith("top-"))
        print(f"test accuracy {means[plan.top1]:.1%} (top-1){extra} on {samples} samples "
              f"({plan.iterations} batches of {plan.batch_size}), {args.dtype}")
    return 0
