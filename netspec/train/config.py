"""What a `netspec train` run is asked to do: the options, and the solver they resolve to.

jax-free: the options are checked (and every problem reported) before any backend loads.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager, Literal, Mapping

from netspec.errors import Diagnostic, NetspecError, SourceLoc
from netspec.message import MessageError
from netspec.solver_spec import SolverSpec
from netspec.spec import NetSpec

Dtype = Literal["float32", "bfloat16"]
ProgressMode = Literal["auto", "rich", "plain", "none"]
MatmulPrecision = Literal["default", "high", "highest"]

# Solver fields a command-line flag may override, by flag destination.
SOLVER_FLAGS: Mapping[str, str] = {
    "max_iter": "max_iter",
    "max_epochs": "max_epochs",
    "base_lr": "base_lr",
    "seed": "random_seed",
    "test_interval": "test_interval",
    "test_iter": "test_iter",
    "display": "display",
    "snapshot": "snapshot",
    "iter_size": "iter_size",
}


@dataclass(frozen=True)
class TrainOptions:
    """Everything `netspec train` was told, after argument parsing (paths not yet checked)."""

    spec: Path
    solver_file: Path | None = None
    output: Path | None = None
    runs_root: Path = Path("runs")
    resume: bool = False
    weights: Path | None = None
    dtype: Dtype = "float32"
    conv_impl: str = "auto"  # netspec.compile's conv_impl: "auto", "planned", "onednn" or "xla"
    matmul_precision: MatmulPrecision = "default"  # see matmul_precision()
    batch_size: int | None = None
    solver_overrides: Mapping[str, Any] = field(default_factory=dict)
    keep_last: int = 3
    progress: ProgressMode = "auto"
    compile_cache: Path | None = None
    devices: int | None = None
    check_every: int = 100
    argv: tuple[str, ...] = ()
    cluster: Any = None  # netspec.train.distributed.Cluster: how to join a multi-process run


def matmul_precision(name: MatmulPrecision) -> ContextManager[Any]:
    """JAX's precision for float32 matrix products and convolutions traced inside the block.

    "default" leaves the backend's choice: full float32 on the CPU, TensorFloat-32 on NVIDIA GPUs since Ampere
    (as PyTorch's cuDNN convolutions and cuDNN 8's default math mode do). "highest" asks for float32 products
    everywhere, for results to compare bit-near with a CPU run or Caffe's; "high" is TF32 where the backend has
    it. The whole trace must sit inside: a custom VJP's backward is traced when the step is differentiated."""
    if name == "default":
        return contextlib.nullcontext()
    import jax

    return jax.default_matmul_precision(name)


def default_cache_dir() -> Path:
    """The persistent JAX compilation cache: $NETSPEC_JAX_CACHE, else the user's cache dir."""
    env = os.environ.get("NETSPEC_JAX_CACHE")
    if env is not None:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "netspec" / "jax"


def cache_disabled(path: Path | None) -> bool:
    return path is None or str(path).lower() in ("", "0", "off", "none", "false")


def _validation_diagnostics(err: MessageError, file: str, raw: Any, prefix: tuple[Any, ...]) -> list[Diagnostic]:
    from netspec.source import locate

    out = []
    for e in err.errors:
        path = prefix + tuple(e["loc"])
        field_name = ".".join(str(p) for p in e["loc"]) or "solver"
        where = locate(raw, path, key=e["type"] == "extra_forbidden") if raw is not None else None
        msg = f"unknown solver field '{field_name}'" if e["type"] == "extra_forbidden" else \
            f"solver {field_name}: {e['msg'].rstrip('.')}"
        out.append(Diagnostic("error", msg, where or SourceLoc(file, 1, 1)))
    return out


def load_solver_file(path: Path) -> SolverSpec:
    """A solver from a YAML file (a bare SolverParameter mapping, or a spec-like file with a `solver:`
    section) or from a Caffe solver `.prototxt`."""
    file = str(path)
    if not path.is_file():
        raise NetspecError([Diagnostic("error", f"solver file not found: {file}", SourceLoc(file, 1, 1))])
    if path.suffix in (".prototxt", ".pbtxt", ".txt"):
        from netspec.caffe.prototxt import parse_file

        parsed = parse_file(path, message="SolverParameter")
        data, raw, prefix = parsed.data, None, ()
    else:
        from netspec.source import load_yaml

        raw = load_yaml(path.read_bytes(), file)
        if not isinstance(raw, dict):
            raise NetspecError([Diagnostic("error", "a solver file must be a mapping of SolverParameter "
                                                    "fields", SourceLoc(file, 1, 1))])
        prefix = ("solver",) if isinstance(raw.get("solver"), dict) else ()
        data = raw["solver"] if prefix else raw
    try:
        return SolverSpec.model_validate(_plain(data))
    except MessageError as e:
        raise NetspecError(_validation_diagnostics(e, file, raw, prefix)) from None


def _plain(data: Any) -> Any:
    if isinstance(data, dict):
        return {str(k): _plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_plain(v) for v in data]
    return data


def resolve_solver(spec: NetSpec, solver_file: Path | None, overrides: Mapping[str, Any]) -> SolverSpec:
    """The solver a run uses: `--solver FILE` over the spec's `solver:` section, then the flags.

    A `random_seed` of -1 (Caffe's "seed from the clock") is replaced by a concrete seed here, so the run
    folder records a seed that reproduces the run.
    """
    where = SourceLoc(spec.file, 1, 1)
    if solver_file is not None:
        base = load_solver_file(solver_file)
    elif isinstance(spec.solver, SolverSpec):
        base = spec.solver
    else:
        raise NetspecError([Diagnostic("error", "the spec has no `solver:` section; add one or pass --solver FILE",
                                       where)])
    data = base.model_dump(exclude_unset=True)
    for flag, value in overrides.items():
        if value is None:
            continue
        name = SOLVER_FLAGS[flag]
        if name == "max_iter":
            data.pop("max_epochs", None)
        if name == "max_epochs":
            data.pop("max_iter", None)
        data[name] = value
    if data.get("random_seed", -1) < 0:
        data["random_seed"] = int(time.time_ns() % (2**31 - 1))
    try:
        solver = SolverSpec.model_validate(data)
    except MessageError as e:
        raise NetspecError(_validation_diagnostics(e, str(solver_file or spec.file), None, ())) from None
    problems = []
    if solver.max_iter == 0 and solver.max_epochs is None:
        problems.append("the solver has no max_iter (or max_epochs): nothing to train")
    if problems:
        raise NetspecError([Diagnostic("error", p, where) for p in problems])
    return solver
