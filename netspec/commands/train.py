"""`netspec train SPEC`: train a spec with its solver on its data (Caffe's `caffe train`).

The options are parsed and checked here without JAX; `run` loads the backend.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any, Callable


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got '{text}'")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'")
    return value


def add_common(p: argparse.ArgumentParser) -> None:
    """Options `train`, `test` and `time` share."""
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                   help="compute precision (parameters, optimizer state and BatchNorm statistics stay float32)")
    p.add_argument("--conv-impl", choices=("auto", "planned", "onednn", "xla"), default="auto",
                   help="auto: oneDNN's convolution kernels on the CPU where oneDNN is installed (Linux x86-64), and "
                        "netspec's per-shape lowering of the rest and of max-pooling gradients (docs/performance.md); "
                        "planned: the same without oneDNN; onednn: require it; xla: the plain XLA ops JAX "
                        "differentiates, for comparison")
    p.add_argument("--matmul-precision", choices=("default", "high", "highest"), default="default",
                   help="float32 matmuls and convolutions: default: the backend's (TensorFloat-32 on recent NVIDIA "
                        "GPUs, full float32 on the CPU); highest: full float32 everywhere")
    p.add_argument("--compile-cache", metavar="DIR", type=Path, default=None,
                   help="persistent JAX compilation cache (default $NETSPEC_JAX_CACHE or ~/.cache/netspec/jax; "
                        "'off' disables it)")


def under_common_options(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A `test` or `time` command run under `add_common`'s --matmul-precision. (`train` passes it on in its
    TrainOptions: netspec.train.loop.train applies it, for callers of that function too.)"""

    @functools.wraps(run)
    def wrapped(args: argparse.Namespace) -> int:
        from netspec.train.config import matmul_precision

        with matmul_precision(args.matmul_precision):
            return run(args)

    return wrapped


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", type=Path, help="the YAML spec (with `solver:` and `data:` sections)")
    p.add_argument("--solver", type=Path, metavar="FILE",
                   help="a solver (YAML SolverParameter, or a Caffe solver .prototxt) replacing the spec's `solver:`")
    p.add_argument("-o", "--output", type=Path, metavar="DIR", help="the run folder (default runs/NAME)")
    p.add_argument("--runs", type=Path, default=Path("runs"), metavar="DIR",
                   help="where run folders are created (default ./runs)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --output (or the latest runs/NAME*) from its last checkpoint")
    p.add_argument("--weights", type=Path, metavar="CKPT",
                   help="fine-tune: load blobs matched by layer name and shape from a checkpoint (run folder, "
                        "checkpoint folder) or a .caffemodel; initialise the rest")
    g = p.add_argument_group("solver overrides")
    g.add_argument("--max-iter", type=_positive, metavar="N")
    g.add_argument("--max-epochs", type=_positive, metavar="N")
    g.add_argument("--base-lr", type=_positive_float, metavar="LR")
    g.add_argument("--seed", type=_non_negative, metavar="N", help="random_seed")
    g.add_argument("--test-interval", type=_non_negative, metavar="N",
                   help="0: no periodic test passes (the final one still runs; --test-iter 0 skips it)")
    g.add_argument("--test-iter", type=_non_negative, metavar="N")
    g.add_argument("--display", type=_non_negative, metavar="N")
    g.add_argument("--snapshot", type=_non_negative, metavar="N", help="checkpoint interval (0: only at the end)")
    g.add_argument("--iter-size", type=_positive, metavar="N")
    g.add_argument("--batch-size", type=_positive, metavar="N", help="per-step batch (the data's and the inputs')")
    p.add_argument("--keep", type=_positive, default=3, metavar="N", help="checkpoints kept besides the best (default 3)")
    p.add_argument("--progress", choices=("auto", "rich", "plain", "none"), default="auto",
                   help="live display: rich on a terminal, plain Caffe-style lines otherwise (default auto)")
    p.add_argument("--devices", type=_positive, metavar="N",
                   help="use the first N devices (of each process; default all)")
    m = p.add_argument_group("several processes, e.g. one per host (docs/scale-out.md)")
    m.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address and a free port, the same for all")
    m.add_argument("--num-processes", type=_positive, metavar="P", help="how many processes train together")
    m.add_argument("--process-id", type=_non_negative, metavar="I", help="this process's index, 0 .. P-1")
    m.add_argument("--peer-timeout", type=_positive, default=60, metavar="S",
                   help="stop the run S seconds after a process stops responding (default 60)")
    m.add_argument("--join-timeout", type=_positive, default=300, metavar="S",
                   help="give up if the other processes have not all started within S seconds (default 300)")
    add_common(p)
    p.set_defaults(func=run)


def options_from_args(args: argparse.Namespace) -> Any:
    from netspec.cli import UsageError
    from netspec.train.config import SOLVER_FLAGS, TrainOptions, default_cache_dir
    from netspec.train.distributed import DEFAULT_INIT_TIMEOUT, DEFAULT_PEER_TIMEOUT, Cluster

    if args.resume and args.weights:
        raise UsageError("give --resume to continue a run or --weights to fine-tune, not both")
    if args.max_iter and args.max_epochs:
        raise UsageError("give --max-iter or --max-epochs, not both")
    overrides = {flag: getattr(args, flag) for flag in SOLVER_FLAGS if getattr(args, flag, None) is not None}
    return TrainOptions(
        spec=args.spec, solver_file=args.solver, output=args.output, runs_root=args.runs, resume=args.resume,
        weights=args.weights, dtype=args.dtype, conv_impl=args.conv_impl,
        matmul_precision=args.matmul_precision, batch_size=args.batch_size,
        solver_overrides=overrides,
        keep_last=args.keep, progress=args.progress,
        compile_cache=args.compile_cache if args.compile_cache is not None else default_cache_dir(),
        devices=args.devices, argv=tuple(sys.argv),
        cluster=Cluster(getattr(args, "coordinator", None), getattr(args, "num_processes", None),
                        getattr(args, "process_id", None), getattr(args, "peer_timeout", DEFAULT_PEER_TIMEOUT),
                        getattr(args, "join_timeout", DEFAULT_INIT_TIMEOUT)))


def run(args: argparse.Namespace) -> int:
    import os

    from netspec.errors import NetspecError
    from netspec.train import distributed
    from netspec.train.loop import train
    from netspec.train.progress import make_display

    options = options_from_args(args)
    problems = distributed.check_cluster(options.cluster)
    if problems:
        raise NetspecError(problems)
    several = distributed.wants_processes(options.cluster, os.environ)
    if several and not os.environ.get(distributed.WORKER_ENV):
        # Train in a supervised child: a dead peer then ends this run with one clear error.
        return distributed.supervise(args, options.cluster, sys.stderr)
    display = make_display(options.progress, sys.stdout)
    result = train(options, display)
    if several:
        distributed.shutdown()
    print(result.summary_line)
    return result.exit_code
