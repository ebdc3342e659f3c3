"""SolverSpec -> optax: Caffe's learning-rate policies and update rules, in Caffe's ApplyUpdate order.

`build_optimizer` returns an `optax.GradientTransformation` whose updates go through
`optax.apply_updates` (W <- W + update, update = -Caffe's diff). Per iteration it does, like
`SGDSolver::ApplyUpdate` (docs/caffe-semantics.md §6):

1. drop the gradients of frozen blobs (lr_mult 0): Caffe never computes them, so they count 0 in (2);
2. clip_gradients: scale every gradient by c/||g|| when the global L2 norm ||g|| exceeds c;
3. normalise: multiply by 1/iter_size;
4. regularise (not for AdamW): L2 g + wd*decay_mult*W, L1 g + wd*decay_mult*sign(W);
5. the update rule with the local rate lr(iter) * lr_mult, then W <- W - diff.

**iter_size.** `update` expects the *sum* of the iter_size micro-batch gradients, as Caffe accumulates
them in the diffs (clipping acts on that sum, normalisation comes after). The train loop sums them
itself (e.g. a `lax.scan` over micro-batches inside one jitted step) and calls `update` once per
iteration, so the optimizer's step count is Caffe's `iter`. `optax.MultiSteps(tx, iter_size,
use_grad_mean=False)` also works, at the cost of zero updates on the intermediate micro-steps.

**lr_mult 0** freezes a blob bit-identically: its update is -0.0 (the additive identity, so even a
-0.0 weight stays -0.0), its optimizer slots are empty arrays, and weight decay, momentum and
AdamW decay never touch it.

Computation happens in the parameters' dtype (float32 for Caffe parity).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array

from netspec.solver_spec import SolverSpec, multistep_boundaries

PyTree = Any
Slots = tuple[Array, ...]
Step = tuple[Array, Slots]
# (gradient, weight, slots, local_rate, t = iter + 1, local_decay) -> (Caffe's diff, new slots).
LeafRule = Callable[[Array, Array, Slots, Array, Array, np.float32], Step]


def lr_schedule(spec: SolverSpec) -> optax.Schedule:
    """Caffe's learning-rate policy as a jnp-traceable optax schedule of the update count.

    Same formulas as `netspec.solver_spec.learning_rate`, evaluated in float32 (float64 under
    jax_enable_x64); the two agree to float32 rounding.
    """
    if spec.lr_policy in ("poly", "cosine") and spec.max_iter == 0:
        raise ValueError(f"lr_policy '{spec.lr_policy}' needs max_iter; call resolve_epochs() first")
    base, gamma, power = (np.float32(v) for v in (spec.base_lr, spec.gamma, spec.power))
    bounds = np.asarray(multistep_boundaries(spec.stepvalue), dtype=np.int32)
    policy, stepsize, max_iter = spec.lr_policy, spec.stepsize, spec.max_iter
    warm, start = spec.warmup_iter, np.float32(spec.warmup_start_factor)

    def policy_rate(count: Array) -> Array:
        it = count.astype(jnp.result_type(float))
        if policy == "fixed":
            return jnp.full_like(it, base)
        if policy == "step":
            return base * gamma ** (count // stepsize).astype(it.dtype)
        if policy == "exp":
            return base * gamma**it
        if policy == "inv":
            return base * (1 + gamma * it) ** -power
        if policy == "multistep":
            return base * gamma ** jnp.sum(count[..., None] >= bounds, axis=-1).astype(it.dtype)
        if policy == "poly":
            # (T - t)/T rather than Caffe's 1 - t/T, which cancels in float32 near max_iter
            return base * ((max_iter - jnp.minimum(it, max_iter)) / max_iter) ** power
        if policy == "sigmoid":
            return base / (1 + jnp.exp(-gamma * (it - stepsize)))
        # cosine: (1 + cos(pi t/T)) / 2 = sin(pi/2 (T - t)/T)^2, accurate in float32 right up to T
        return base * jnp.sin(jnp.pi / 2 * ((max_iter - jnp.minimum(it, max_iter)) / max_iter)) ** 2

    def schedule(count: Array | int) -> Array:
        count = jnp.asarray(count)
        rate = policy_rate(count)
        if warm > 0:
            ramp = start + (1 - start) * count.astype(rate.dtype) / warm
            rate = jnp.where(count < warm, rate * ramp, rate)
        return rate

    return schedule


def build_optimizer(
    spec: SolverSpec, lr_mult: PyTree | None = None, decay_mult: PyTree | None = None
) -> optax.GradientTransformation:
    """The Caffe solver `spec` as an optax transformation (see the module docstring for the contract).

    Args:
      spec: the validated solver section.
      lr_mult: pytree of Python numbers with the structure of the params (Caffe's `param { lr_mult }`);
        None means 1 everywhere. A 0 freezes the blob.
      decay_mult: the same for `decay_mult`; None means 1 everywhere.

    `update(grads, state, params)` needs `params` (weight decay and freezing read them). Its state
    carries the iteration count (Caffe's `iter`), which drives the schedule and Adam's bias correction.
    """
    stages = []
    if lr_mult is not None and any(float(m) == 0 for m in jax.tree.leaves(lr_mult)):
        stages.append(_drop_frozen_gradients(jax.tree.map(lambda m: float(m) == 0, lr_mult)))
    if spec.clip_gradients >= 0:
        stages.append(_clip_global_norm(spec.clip_gradients))
    if spec.iter_size > 1:
        stages.append(optax.scale(np.float32(1) / np.float32(spec.iter_size)))  # Caffe's float 1/iter_size
    if spec.type != "AdamW" and spec.weight_decay != 0:
        stages.append(_regularize(spec.weight_decay, spec.regularization_type, decay_mult))
    stages.append(_update_rule(spec, lr_schedule(spec), lr_mult, decay_mult))
    return optax.chain(*stages)


# --- stages ------------------------------------------------------------------------------------------


def _mults(tree: PyTree | None, like: PyTree, name: str) -> PyTree:
    """The per-blob multiplier tree, or ones; a structure mismatch is reported with both structures."""
    if tree is None:
        return jax.tree.map(lambda _: 1.0, like)
    if jax.tree.structure(tree) != jax.tree.structure(like):
        raise ValueError(
            f"{name} must have the structure of the params:\n  {name}: {jax.tree.structure(tree)}\n"
            f"  params: {jax.tree.structure(like)}"
        )
    return tree


def _drop_frozen_gradients(frozen: PyTree) -> optax.GradientTransformation:
    def fn(grads: PyTree, params: PyTree) -> PyTree:
        mask = _mults(frozen, grads, "lr_mult")
        return jax.tree.map(lambda g, f: jnp.zeros_like(g) if f else g, grads, mask)

    return optax.stateless(fn)


def _clip_global_norm(clip: float) -> optax.GradientTransformation:
    # Caffe: factor = c / ||g|| then g *= factor, only when ||g|| > c (optax divides, then multiplies).
    c = np.float32(clip)

    def fn(grads: PyTree, params: PyTree) -> PyTree:
        norm = optax.tree.norm(grads)
        factor = c / norm
        return jax.tree.map(lambda g: jnp.where(norm > c, g * factor.astype(g.dtype), g), grads)

    return optax.stateless(fn)


def _regularize(weight_decay: float, kind: str, decay_mult: PyTree | None) -> optax.GradientTransformation:
    wd = np.float32(weight_decay)

    def fn(grads: PyTree, params: PyTree) -> PyTree:
        if params is None:
            raise ValueError("weight decay needs the params: call update(grads, state, params)")
        mults = _mults(decay_mult, params, "decay_mult")

        def leaf(g: Array, w: Array, mult: float) -> Array:
            local = wd * np.float32(mult)  # Caffe's float local_decay; skipped when 0, as Caffe does
            if local == 0:
                return g
            return g + local * (w if kind == "L2" else jnp.sign(w))

        return jax.tree.map(leaf, grads, params, mults)

    return optax.stateless(fn)


class CaffeSolverState(NamedTuple):
    """Update-rule state: `count` is Caffe's iter (updates done); `slots` one history tree per slot."""

    count: Array
    slots: tuple[PyTree, ...]


def _update_rule(
    spec: SolverSpec, schedule: optax.Schedule, lr_mult: PyTree | None, decay_mult: PyTree | None
) -> optax.GradientTransformation:
    n_slots, leaf_rule = _RULES[spec.type](spec)

    def init(params: PyTree) -> CaffeSolverState:
        lrs = _mults(lr_mult, params, "lr_mult")
        # Frozen blobs get empty slots: no memory, and nothing that could ever move them.
        def zeros(w: Array, m: float) -> Array:
            return jnp.zeros_like(w) if float(m) != 0 else jnp.zeros((0,), w.dtype)

        slots = tuple(jax.tree.map(zeros, params, lrs) for _ in range(n_slots))
        return CaffeSolverState(count=jnp.zeros([], jnp.int32), slots=slots)

    def update(
        grads: PyTree, state: CaffeSolverState, params: PyTree = None
    ) -> tuple[PyTree, CaffeSolverState]:
        if params is None:
            raise ValueError("the Caffe update rules need the params: call update(grads, state, params)")
        lrs = _mults(lr_mult, params, "lr_mult")
        decays = _mults(decay_mult, params, "decay_mult")
        rate = schedule(state.count)
        t = state.count + 1
        treedef = jax.tree.structure(params)
        leaves = zip(
            treedef.flatten_up_to(grads),
            treedef.flatten_up_to(params),
            treedef.flatten_up_to(lrs),
            treedef.flatten_up_to(decays),
            *(treedef.flatten_up_to(s) for s in state.slots),
        )
        outs, new_slots = [], []
        for g, w, lr_m, decay_m, *slots in leaves:
            if float(lr_m) == 0:
                outs.append(jnp.full_like(w, -0.0))
                new_slots.append(tuple(slots))
                continue
            local_rate = rate.astype(w.dtype) * np.float32(lr_m)  # Caffe's float rate * lr_mult
            local_decay = np.float32(spec.weight_decay) * np.float32(decay_m)
            diff, slots_out = leaf_rule(g, w, tuple(slots), local_rate, t, local_decay)
            outs.append(-diff)
            new_slots.append(slots_out)
        updates = treedef.unflatten(outs)
        slots_trees = tuple(treedef.unflatten([s[i] for s in new_slots]) for i in range(n_slots))
        return updates, CaffeSolverState(count=state.count + 1, slots=slots_trees)

    return optax.GradientTransformation(init, update)


# --- update rules (sgd_solver.cpp, nesterov_solver.cpp, adagrad_solver.cpp, ...) ---------------------
# Each returns (number of slots, leaf rule). Slots start at 0. Operations keep Caffe's order, so
# results match Caffe's CPU float32 code to rounding (Caffe's BLAS may fuse multiply-adds).


def _sgd(spec: SolverSpec) -> tuple[int, LeafRule]:
    mom = np.float32(spec.momentum)

    def rule(g: Array, w: Array, slots: Slots, rate: Array, t: Array, decay: np.float32) -> Step:
        (h,) = slots
        h = rate * g + mom * h
        return h, (h,)

    return 1, rule


def _nesterov(spec: SolverSpec) -> tuple[int, LeafRule]:
    mom = np.float32(spec.momentum)
    one_plus = np.float32(1) + mom

    def rule(g: Array, w: Array, slots: Slots, rate: Array, t: Array, decay: np.float32) -> Step:
        (h_old,) = slots
        h = rate * g + mom * h_old
        return one_plus * h - mom * h_old, (h,)

    return 1, rule


def _adagrad(spec: SolverSpec) -> tuple[int, LeafRule]:
    delta = np.float32(spec.delta)

    def rule(g: Array, w: Array, slots: Slots, rate: Array, t: Array, decay: np.float32) -> Step:
        (h,) = slots
        h = h + g * g
        return rate * (g / (jnp.sqrt(h) + delta)), (h,)

    return 1, rule


def _rmsprop(spec: SolverSpec) -> tuple[int, LeafRule]:
    delta, decay_rate = np.float32(spec.delta), np.float32(spec.rms_decay)
    keep = np.float32(1) - decay_rate

    def rule(g: Array, w: Array, slots: Slots, rate: Array, t: Array, decay: np.float32) -> Step:
        (h,) = slots
        h = keep * (g * g) + decay_rate * h
        return rate * (g / (jnp.sqrt(h) + delta)), (h,)

    return 1, rule


def _adadelta(spec: SolverSpec) -> tuple[int, LeafRule]:
    delta, rho = np.float32(spec.delta), np.float32(spec.momentum)
    keep = np.float32(1) - rho

    def rule(g: Array, w: Array, slots: Slots, rate: Array, t: Array, decay: np.float32) -> Step:
        sq_grad, sq_update = slots
        sq_grad = keep * (g * g) + rho * sq_grad
        u = g * jnp.sqrt((delta + sq_update) / (delta + sq_grad))
        sq_update = keep * (u * u) + rho * sq_update
        return rate * u, (sq_grad, sq_update)

    return 2, rule


def _adam_family(spec: SolverSpec, decoupled: bool) -> tuple[int, LeafRule]:
    beta1, beta2, eps = np.float32(spec.momentum), np.float32(spec.momentum2), np.float32(spec.delta)

    def rule(g: Array, w: Array, slots: Slots, rate: Array, t: Array, decay: np.float32) -> Step:
        m, v = slots
        m = (1 - beta1) * g + beta1 * m
        v = (1 - beta2) * (g * g) + beta2 * v
        tf = t.astype(g.dtype)
        # Caffe's bias correction sits on the rate; eps is added to the uncorrected sqrt(v).
        correction = jnp.sqrt(1 - beta2**tf) / (1 - beta1**tf)
        step = m / (jnp.sqrt(v) + eps)
        if decoupled:  # optax.adamw / PyTorch AdamW: the decay is scaled by the (local) rate too
            return rate * (correction * step + decay * w), (m, v)
        return (rate * correction) * step, (m, v)

    return 2, rule


_RULES: dict[str, Callable[[SolverSpec], tuple[int, LeafRule]]] = {
    "SGD": _sgd,
    "Nesterov": _nesterov,
    "AdaGrad": _adagrad,
    "RMSProp": _rmsprop,
    "AdaDelta": _adadelta,
    "Adam": lambda spec: _adam_family(spec, decoupled=False),
    "AdamW": lambda spec: _adam_family(spec, decoupled=True),
}
