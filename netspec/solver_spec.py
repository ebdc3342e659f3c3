"""The `solver:` section: Caffe's SolverParameter as a frozen message, plus its learning-rate policy.

jax-free on purpose: the spec loader validates a `solver:` section and `netspec check` may print the
learning-rate curve without importing jax. The optax side lives in `netspec.solver`.

Field names, defaults and checks follow `caffe.proto` / `sgd_solver.cpp` (docs/caffe-semantics.md §6).
Extensions beyond Caffe are marked "(extension)" in their descriptions: `lr_policy: cosine`,
`warmup_iter` / `warmup_start_factor`, `type: AdamW`, `max_epochs`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from netspec.message import LISTIFY, Field, Message, NonNegativeInt, PositiveInt, model_validator

LrPolicy = Literal["fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid", "cosine"]
SolverType = Literal["SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam", "AdamW"]
LegacySolverType = Literal["SGD", "NESTEROV", "ADAGRAD", "RMSPROP", "ADADELTA", "ADAM"]

# caffe/util/upgrade_proto.cpp: UpgradeSolverType maps the deprecated enum onto the `type` string.
LEGACY_SOLVER_TYPES: dict[str, SolverType] = {
    "SGD": "SGD",
    "NESTEROV": "Nesterov",
    "ADAGRAD": "AdaGrad",
    "RMSPROP": "RMSProp",
    "ADADELTA": "AdaDelta",
    "ADAM": "Adam",
}

# Caffe fields netspec accepts (so Caffe solver files load unchanged) but does not act on, and why.
IGNORED_FIELDS: dict[str, str] = {
    "net": "the network is the spec's own `layers:`; Caffe's separate net file is not read",
    "net_param": "the network is the spec's own `layers:`",
    "train_net": "the network is the spec's own `layers:` (TRAIN phase)",
    "test_net": "the network is the spec's own `layers:` (TEST phase)",
    "train_net_param": "the network is the spec's own `layers:` (TRAIN phase)",
    "test_net_param": "the network is the spec's own `layers:` (TEST phase)",
    "train_state": "phases come from the spec's include/exclude rules; NetState overrides are not supported",
    "test_state": "phases come from the spec's include/exclude rules; NetState overrides are not supported",
    "test_compute_loss": "a no-op in Caffe itself",
    "solver_mode": "JAX picks the device (CPU/GPU/TPU) itself",
    "device_id": "JAX picks the device; restrict it with CUDA_VISIBLE_DEVICES",
    "snapshot_format": "snapshots are Orbax checkpoints, not BINARYPROTO/HDF5",
    "snapshot_diff": "Orbax checkpoints store weights and optimizer state, never gradients",
    "debug_info": "Caffe's per-blob debug log has no JAX counterpart (everything is one fused step)",
    "layer_wise_reduce": "XLA schedules the gradient all-reduce itself",
    "weights": "the solver does not read weight files; finetuning weights are the train command's business",
}


T = TypeVar("T")
#: Caffe's text format writes a repeated field with one entry as a scalar; YAML users do the same
LoneOrList = Annotated[list[T], LISTIFY]


def _ignored(name: str) -> Any:
    return Field(None, description=f"Ignored: {IGNORED_FIELDS[name]}.")


class SolverSpec(Message):
    """Caffe's SolverParameter. Numeric fields Caffe leaves without a default are 0 here, as in Caffe."""

    # --- learning rate -------------------------------------------------------------------------------
    base_lr: float = Field(0.0, description="Base learning rate (Caffe: no default, so 0).")
    lr_policy: LrPolicy = Field(
        description="Learning-rate policy. Required, as in Caffe, where an unset policy is fatal "
        "('Unknown learning rate policy'); write 'fixed' for a constant rate. 'cosine' (extension): "
        "base_lr * (1 + cos(pi * iter / max_iter)) / 2."
    )
    gamma: float = Field(0.0, description="Decay factor of step/exp/inv/multistep/sigmoid.")
    power: float = Field(0.0, description="Exponent of inv and poly.")
    stepsize: NonNegativeInt = Field(
        0, description="Iterations per step (step); inflection iteration (sigmoid)."
    )
    stepvalue: LoneOrList[NonNegativeInt] = Field(
        default_factory=list,
        description="Iterations at which multistep multiplies the rate by gamma (one step per iteration at "
        "most, as Caffe advances them). A lone value is accepted.",
    )
    warmup_iter: NonNegativeInt = Field(
        0,
        description="(extension) Linear warmup length: for iter < warmup_iter the policy's rate is "
        "multiplied by warmup_start_factor + (1 - warmup_start_factor) * iter / warmup_iter. 0 = off.",
    )
    warmup_start_factor: float = Field(
        0.0, ge=0.0, le=1.0, description="(extension) Rate multiplier at iteration 0 of the warmup."
    )
    # --- length, display, test, snapshot ------------------------------------------------------------
    max_iter: NonNegativeInt = Field(0, description="Number of weight updates (Caffe: no default, so 0).")
    max_epochs: PositiveInt | None = Field(
        None,
        description="(extension) Train for this many passes over the training set instead of max_iter; "
        "the train loop turns it into max_iter with resolve_epochs().",
    )
    iter_size: PositiveInt = Field(
        1, description="Forward/backward passes per update; their gradients are summed, then divided by it."
    )
    display: NonNegativeInt = Field(0, description="Log every this many iterations (0 = never).")
    average_loss: PositiveInt = Field(1, description="Displayed loss = mean of the last this many losses.")
    test_iter: LoneOrList[NonNegativeInt] = Field(
        default_factory=list,
        description="Batches per test pass, one entry per test net. A lone value is accepted.",
    )
    test_interval: NonNegativeInt = Field(0, description="Test every this many iterations (0 = never).")
    test_initialization: bool = Field(True, description="Also test before the first update.")
    snapshot: NonNegativeInt = Field(0, description="Checkpoint every this many iterations (0 = never).")
    snapshot_prefix: str | None = Field(None, description="Checkpoint path prefix.")
    snapshot_after_train: bool = Field(True, description="Checkpoint after the last iteration.")
    random_seed: int = Field(-1, description="Seed; -1 (Caffe's default) means seeded from the clock.")
    # --- update rule --------------------------------------------------------------------------------
    type: SolverType = Field(
        "SGD", description="Update rule. AdamW (extension) is Adam with decoupled weight decay."
    )
    solver_type: LegacySolverType | None = Field(
        None,
        description="Deprecated Caffe enum for `type` (SGD, NESTEROV, ...); may not be set together with it. "
        "Upgraded into `type` on load, as Caffe's UpgradeSolverType does, so it always reads back as None.",
    )
    momentum: float = Field(
        0.0, description="SGD/Nesterov momentum; AdaDelta's rho; Adam's beta1 (Caffe: no default, so 0)."
    )
    momentum2: float = Field(0.999, description="Adam's beta2.")
    delta: float = Field(1e-8, description="Epsilon of AdaGrad, RMSProp, AdaDelta and Adam.")
    rms_decay: float = Field(
        0.99, ge=0.0, lt=1.0, description="RMSProp's decay of the squared-gradient mean."
    )
    weight_decay: float = Field(0.0, description="Weight decay (times each blob's decay_mult).")
    regularization_type: Literal["L2", "L1"] = Field("L2", description="Weight-decay penalty.")
    clip_gradients: float = Field(
        -1.0, description="Clip the global L2 norm of the summed gradient to this value; negative = off."
    )
    # --- accepted and ignored (see IGNORED_FIELDS) --------------------------------------------------
    net: str | None = _ignored("net")
    net_param: dict[str, Any] | None = _ignored("net_param")
    train_net: str | None = _ignored("train_net")
    test_net: LoneOrList[str] | None = _ignored("test_net")
    train_net_param: dict[str, Any] | None = _ignored("train_net_param")
    test_net_param: LoneOrList[dict[str, Any]] | None = _ignored("test_net_param")
    train_state: dict[str, Any] | None = _ignored("train_state")
    test_state: LoneOrList[dict[str, Any]] | None = _ignored("test_state")
    test_compute_loss: bool | None = _ignored("test_compute_loss")
    solver_mode: Literal["CPU", "GPU"] | None = _ignored("solver_mode")
    device_id: int | None = _ignored("device_id")
    snapshot_format: Literal["HDF5", "BINARYPROTO"] | None = _ignored("snapshot_format")
    snapshot_diff: bool | None = _ignored("snapshot_diff")
    debug_info: bool | None = _ignored("debug_info")
    layer_wise_reduce: bool | None = _ignored("layer_wise_reduce")
    weights: LoneOrList[str] | None = _ignored("weights")

    @model_validator(mode="before")
    @classmethod
    def _upgrade_solver_type(cls, data: Any) -> Any:
        # Caffe's UpgradeSolverType: the enum and the string may not both be given.
        if isinstance(data, dict) and data.get("solver_type") is not None:
            if data.get("type") is not None:
                raise ValueError(
                    "solver_type (deprecated enum) and type cannot both be specified; keep only `type`"
                )
            legacy = data["solver_type"]
            if legacy in LEGACY_SOLVER_TYPES:
                # Normalised like Caffe's upgrade, so a dumped spec validates again.
                data = {k: v for k, v in data.items() if k != "solver_type"}
                data["type"] = LEGACY_SOLVER_TYPES[legacy]
        return data

    @model_validator(mode="after")
    def _check_consistency(self) -> SolverSpec:
        problems = _consistency_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _consistency_problems(spec: SolverSpec) -> list[str]:
    """Every cross-field rule Caffe CHECKs at solver start-up (plus ours), all reported together."""
    problems: list[str] = []
    policy = spec.lr_policy
    if policy in ("step", "sigmoid") and spec.stepsize <= 0:
        problems.append(f"lr_policy '{policy}' needs stepsize > 0")
    if policy in ("step", "exp", "inv", "multistep", "sigmoid") and spec.gamma < 0:
        problems.append(f"lr_policy '{policy}' needs gamma >= 0 (got {spec.gamma})")
    if policy in ("poly", "cosine") and spec.max_iter == 0 and spec.max_epochs is None:
        problems.append(
            f"lr_policy '{policy}' decays to 0 at max_iter, so max_iter (or max_epochs) must be set"
        )
    if spec.max_iter > 0 and spec.max_epochs is not None:
        problems.append("set max_iter or max_epochs, not both")
    if spec.type in ("AdaGrad", "RMSProp") and spec.momentum != 0:
        problems.append(f"momentum cannot be used with {spec.type} (Caffe checks momentum == 0)")
    if spec.type == "AdamW" and spec.regularization_type == "L1":
        problems.append("AdamW decays weights decoupled (L2 form); regularization_type L1 is undefined")
    if spec.warmup_iter > 0 and spec.max_iter > 0 and spec.warmup_iter > spec.max_iter:
        problems.append(f"warmup_iter ({spec.warmup_iter}) exceeds max_iter ({spec.max_iter})")
    return problems


def ignored_settings(spec: SolverSpec) -> list[tuple[str, str]]:
    """(field, reason) for every accepted-but-ignored Caffe field the spec sets, for the loader's notes."""
    return [(name, IGNORED_FIELDS[name]) for name in IGNORED_FIELDS if name in spec.model_fields_set]


def resolve_epochs(spec: SolverSpec, iters_per_epoch: int) -> SolverSpec:
    """The spec with max_epochs turned into max_iter (a no-op when max_epochs is unset)."""
    if spec.max_epochs is None:
        return spec
    if iters_per_epoch <= 0:
        raise ValueError(f"iters_per_epoch must be positive, got {iters_per_epoch}")
    data = spec.model_dump(exclude_unset=True, exclude={"max_epochs"})
    return SolverSpec.model_validate({**data, "max_iter": spec.max_epochs * iters_per_epoch})


def multistep_boundaries(stepvalue: list[int]) -> tuple[int, ...]:
    """Iterations at which Caffe's multistep counter advances.

    Caffe keeps `current_step` and, once per iteration, advances it by one if
    `iter >= stepvalue[current_step]`. So step j fires at T_j = max(T_{j-1} + 1, stepvalue[j]) (T_0 =
    stepvalue[0]); for strictly increasing stepvalues T_j = stepvalue[j]. The rate at iter is
    base_lr * gamma^#{j : T_j <= iter}, a pure function of iter, so resuming needs no extra state.
    """
    bounds: list[int] = []
    for value in stepvalue:
        bounds.append(value if not bounds else max(bounds[-1] + 1, value))
    return tuple(bounds)


def _pow(base: float, exponent: float) -> float:
    try:
        return base**exponent
    except OverflowError:  # Caffe's float pow gives inf; Python raises
        return math.inf


def _f32(x: float) -> float:
    # caffe.proto stores every rate hyperparameter as a 32-bit float. (NumPy imported here: `netspec
    # check` validates solver sections without it.)
    import numpy as np

    return float(np.float32(x))


def learning_rate(spec: SolverSpec) -> Callable[[int], float]:
    """Caffe's GetLearningRate as a pure-Python function of the iteration (number of updates done).

    Hyperparameters are first rounded to float32 (as caffe.proto stores them), the formula is evaluated
    in double and the result is rounded to float32 (Caffe returns a float rate). Caffe evaluates some
    intermediates in float, so values can differ from Caffe's in the last bit. poly and cosine clamp
    iter to max_iter (Caffe never evaluates them past it; NaN there would help nobody).
    """
    if spec.lr_policy in ("poly", "cosine") and spec.max_iter == 0:
        raise ValueError(f"lr_policy '{spec.lr_policy}' needs max_iter; call resolve_epochs() first")
    base, gamma, power = _f32(spec.base_lr), _f32(spec.gamma), _f32(spec.power)
    bounds = multistep_boundaries(spec.stepvalue)
    policy, stepsize, max_iter = spec.lr_policy, spec.stepsize, spec.max_iter
    warm, start = spec.warmup_iter, _f32(spec.warmup_start_factor)

    def policy_rate(it: int) -> float:
        if policy == "fixed":
            return base
        if policy == "step":
            return base * _pow(gamma, it // stepsize)
        if policy == "exp":
            return base * _pow(gamma, it)
        if policy == "inv":
            return base * _pow(1.0 + gamma * it, -power)
        if policy == "multistep":
            return base * _pow(gamma, sum(it >= b for b in bounds))
        if policy == "poly":
            return base * _pow(1.0 - min(it, max_iter) / max_iter, power)
        if policy == "sigmoid":
            z = -gamma * (it - stepsize)
            return base / (1.0 + math.exp(z)) if z < 700 else 0.0
        return base * math.sin(math.pi / 2 * (max_iter - min(it, max_iter)) / max_iter) ** 2  # (1 + cos)/2

    def rate(it: int) -> float:
        if it < 0:
            raise ValueError(f"iteration must be >= 0, got {it}")
        value = policy_rate(it)
        if it < warm:
            value *= start + (1.0 - start) * it / warm
        return _f32(value)

    return rate
