"""Solver: Caffe's lr policies and update rules vs NumPy transcriptions of sgd_solver.cpp & co."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from netspec.message import MessageError
from netspec.solver import build_optimizer, lr_schedule
from netspec.solver_spec import (
    IGNORED_FIELDS,
    SolverSpec,
    ignored_settings,
    learning_rate,
    multistep_boundaries,
    resolve_epochs,
)

f32 = np.float32

# --- learning-rate policies --------------------------------------------------------------------------


def caffe_rates(spec: dict, n: int) -> np.ndarray:
    """GetLearningRate from sgd_solver.cpp, stateful as Caffe runs it (multistep's current_step)."""
    base, gamma, power = (float(f32(spec.get(k, 0.0))) for k in ("base_lr", "gamma", "power"))
    policy, stepsize, max_iter = spec["lr_policy"], spec.get("stepsize", 0), spec.get("max_iter", 0)
    stepvalue = spec.get("stepvalue", [])
    current_step, out = 0, []
    for it in range(n):
        if policy == "fixed":
            rate = base
        elif policy == "step":
            rate = base * gamma ** (it // stepsize)
        elif policy == "exp":
            rate = base * gamma**it
        elif policy == "inv":
            rate = base * (1 + gamma * it) ** (-power)
        elif policy == "multistep":
            if current_step < len(stepvalue) and it >= stepvalue[current_step]:
                current_step += 1
            rate = base * gamma**current_step
        elif policy == "poly":
            rate = base * (1 - it / max_iter) ** power
        elif policy == "sigmoid":
            rate = base * (1 / (1 + math.exp(-gamma * (it - stepsize))))
        else:
            raise AssertionError(policy)
        out.append(rate)
    return np.asarray(out)


POLICIES = [
    {"lr_policy": "fixed", "base_lr": 0.01},
    {"lr_policy": "step", "base_lr": 0.01, "gamma": 0.1, "stepsize": 1000},
    {"lr_policy": "exp", "base_lr": 0.01, "gamma": 0.9995},
    {"lr_policy": "inv", "base_lr": 0.01, "gamma": 1e-4, "power": 0.75},  # LeNet's solver
    {"lr_policy": "multistep", "base_lr": 0.1, "gamma": 0.5, "stepvalue": [300, 300, 1200, 800, 5000]},
    {"lr_policy": "multistep", "base_lr": 0.1, "gamma": 0.1, "stepvalue": [1000, 2000, 4000]},
    {"lr_policy": "poly", "base_lr": 0.01, "power": 0.5, "max_iter": 6000},
    {"lr_policy": "sigmoid", "base_lr": 0.01, "gamma": 0.002, "stepsize": 3000},
]


@pytest.mark.parametrize("fields", POLICIES, ids=lambda f: f["lr_policy"] + str(len(f.get("stepvalue", []))))
def test_lr_policy_matches_caffe(fields: dict) -> None:
    n = 6000
    expected = caffe_rates(fields, n)
    spec = SolverSpec(**fields)
    python_rates = np.array([learning_rate(spec)(i) for i in range(n)])
    np.testing.assert_allclose(python_rates, expected, rtol=1e-7, atol=0)
    jnp_rates = np.asarray(jax.jit(lr_schedule(spec))(jnp.arange(n)))
    assert jnp_rates.dtype == np.float32
    np.testing.assert_allclose(jnp_rates, expected, rtol=2e-6, atol=0)


def test_multistep_advances_one_step_per_iteration() -> None:
    # Caffe: stepvalue [3, 3, 10] fires at 3, then (3 >= 3 again) at 4, then at 10.
    assert multistep_boundaries([3, 3, 10]) == (3, 4, 10)
    assert multistep_boundaries([10, 5]) == (10, 11)
    rate = learning_rate(SolverSpec(lr_policy="multistep", base_lr=1.0, gamma=0.5, stepvalue=[3, 3, 10]))
    assert [rate(i) for i in (2, 3, 4, 9, 10)] == [1.0, 0.5, 0.25, 0.25, 0.125]


def test_step_policy_hand_values() -> None:
    rate = learning_rate(SolverSpec(lr_policy="step", base_lr=1.0, gamma=0.5, stepsize=3))
    assert [rate(i) for i in range(7)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]


def test_cosine_and_warmup_extensions() -> None:
    spec = SolverSpec(lr_policy="cosine", base_lr=0.2, max_iter=100, warmup_iter=10, warmup_start_factor=0.1)
    it = np.arange(130)
    cosine = 0.2 * 0.5 * (1 + np.cos(np.pi * np.minimum(it, 100) / 100))
    ramp = np.where(it < 10, 0.1 + 0.9 * it / 10, 1.0)
    expected = cosine * ramp
    np.testing.assert_allclose([learning_rate(spec)(i) for i in it], expected, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(np.asarray(lr_schedule(spec)(jnp.arange(130))), expected, rtol=2e-6, atol=1e-9)
    assert learning_rate(spec)(100) == 0.0 and learning_rate(spec)(129) == 0.0  # clamped, not NaN


def test_warmup_multiplies_any_policy() -> None:
    spec = SolverSpec(lr_policy="step", base_lr=1.0, gamma=0.1, stepsize=2, warmup_iter=4)
    assert [learning_rate(spec)(i) for i in range(5)] == pytest.approx([0.0, 0.25, 0.05, 0.075, 0.01])


# --- SolverSpec validation ---------------------------------------------------------------------------


def test_lr_policy_is_required_like_caffe() -> None:
    with pytest.raises(MessageError, match="lr_policy"):
        SolverSpec(base_lr=0.1)


def test_caffe_defaults() -> None:
    spec = SolverSpec(lr_policy="fixed")
    assert (spec.base_lr, spec.momentum, spec.weight_decay, spec.max_iter) == (0.0, 0.0, 0.0, 0)
    assert (spec.type, spec.momentum2, spec.delta, spec.rms_decay) == ("SGD", 0.999, 1e-8, 0.99)
    assert (spec.clip_gradients, spec.iter_size, spec.regularization_type) == (-1.0, 1, "L2")
    assert spec.random_seed == -1
    assert spec.test_initialization and spec.average_loss == 1


def test_an_empty_stepvalue_is_no_steps() -> None:
    """`stepvalue:` with nothing after it (YAML null) is the absent repeated field: the rate never drops."""
    spec = SolverSpec.model_validate({"lr_policy": "multistep", "base_lr": 0.1, "gamma": 0.5, "stepvalue": None})
    assert spec.stepvalue == []
    rate = learning_rate(spec)
    assert [float(rate(i)) for i in (0, 1000, 10**6)] == [float(np.float32(0.1))] * 3


def test_lone_values_and_legacy_solver_type() -> None:
    spec = SolverSpec(lr_policy="multistep", stepvalue=500, test_iter=100, solver_type="NESTEROV")
    assert spec.stepvalue == [500] and spec.test_iter == [100]
    assert spec.type == "Nesterov" and spec.solver_type is None
    assert SolverSpec.model_validate(spec.model_dump()) == spec
    with pytest.raises(MessageError, match="cannot both be specified"):
        SolverSpec(lr_policy="fixed", type="Adam", solver_type="ADAM")


def test_cross_field_errors_are_reported_together() -> None:
    with pytest.raises(MessageError) as info:
        SolverSpec(lr_policy="step", type="RMSProp", momentum=0.9, gamma=-1)
    text = str(info.value)
    assert "stepsize > 0" in text and "gamma >= 0" in text and "momentum cannot be used with RMSProp" in text
    with pytest.raises(MessageError, match="max_iter"):
        SolverSpec(lr_policy="poly", power=1)
    with pytest.raises(MessageError, match="not both"):
        SolverSpec(lr_policy="fixed", max_iter=10, max_epochs=2)
    with pytest.raises(MessageError, match="L1"):
        SolverSpec(lr_policy="fixed", type="AdamW", regularization_type="L1")
    with pytest.raises(MessageError, match="extra"):
        SolverSpec(lr_policy="fixed", momentun=0.9)
    with pytest.raises(MessageError, match="rms_decay"):
        SolverSpec(lr_policy="fixed", type="RMSProp", rms_decay=1.0)


def test_ignored_fields_are_accepted_and_listed() -> None:
    spec = SolverSpec(lr_policy="fixed", net="examples/mnist/lenet_train_test.prototxt", solver_mode="GPU")
    assert [name for name, _ in ignored_settings(spec)] == ["net", "solver_mode"]
    assert set(IGNORED_FIELDS) <= set(SolverSpec.model_fields)
    assert "solver_mode" in SolverSpec.model_json_schema()["properties"]


def test_resolve_epochs() -> None:
    spec = SolverSpec(lr_policy="poly", base_lr=1.0, power=1.0, max_epochs=3)
    with pytest.raises(ValueError, match="resolve_epochs"):
        learning_rate(spec)
    resolved = resolve_epochs(spec, 10)
    assert (resolved.max_iter, resolved.max_epochs) == (30, None)
    assert learning_rate(resolved)(15) == 0.5


def test_spec_modules_do_not_import_jax() -> None:
    code = (
        "import sys, netspec.solver_spec\n"
        "assert not {'jax', 'optax'} & {m.split('.')[0] for m in sys.modules}"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# --- update rules vs a NumPy transcription of Caffe's CPU code ---------------------------------------

# Caffe's learnable_params, in order, with their ParamSpec multipliers (one lr_mult 0, one decay_mult 0).
SHAPES = {"conv1": {"w": (4, 3, 2, 2), "b": (4,)}, "ip1": {"w": (5, 8), "b": (5,)}, "frozen": {"w": (3, 3)}}
LR_MULT = {"conv1": {"w": 1.0, "b": 2.0}, "ip1": {"w": 0.5, "b": 1.0}, "frozen": {"w": 0.0}}
DECAY_MULT = {"conv1": {"w": 1.0, "b": 0.0}, "ip1": {"w": 2.0, "b": 1.0}, "frozen": {"w": 1.0}}
N_ITER = 20


def caffe_apply_update(spec: dict, params: list, grads: list, hist: list, lr_mults: list, decay_mults: list,
                       it: int, rate: float) -> None:
    """One SGDSolver::ApplyUpdate in float32 NumPy, in place: clip, normalize, regularize, rule, W -= diff."""
    diffs = [np.zeros_like(g) if lm == 0 else g.copy() for g, lm in zip(grads, lr_mults)]  # no backward
    clip = spec.get("clip_gradients", -1.0)
    if clip >= 0:
        l2 = np.sqrt(np.sum([np.sum(d.astype(np.float64) ** 2) for d in diffs]))
        if l2 > clip:
            factor = f32(f32(clip) / f32(l2))
            diffs = [d * factor for d in diffs]
    iter_size = spec.get("iter_size", 1)
    if iter_size > 1:
        diffs = [d * (f32(1) / f32(iter_size)) for d in diffs]
    kind, rule = spec.get("regularization_type", "L2"), spec.get("type", "SGD")
    mom, mom2 = f32(spec.get("momentum", 0)), f32(spec.get("momentum2", 0.999))
    delta = f32(spec.get("delta", 1e-8))
    for i, (w, d) in enumerate(zip(params, diffs)):
        local_decay = f32(spec.get("weight_decay", 0)) * f32(decay_mults[i])
        if local_decay and rule != "AdamW":
            d = d + local_decay * (w if kind == "L2" else np.sign(w))
        local_rate = f32(rate) * f32(lr_mults[i])
        if rule == "SGD":
            hist[i][0] = local_rate * d + mom * hist[i][0]
            d = hist[i][0].copy()
        elif rule == "Nesterov":
            old = hist[i][0].copy()
            hist[i][0] = local_rate * d + mom * hist[i][0]
            d = (f32(1) + mom) * hist[i][0] + (-mom) * old
        elif rule == "AdaGrad":
            hist[i][0] = d * d + hist[i][0]
            d = local_rate * (d / (np.sqrt(hist[i][0]) + delta))
        elif rule == "RMSProp":
            rms = f32(spec.get("rms_decay", 0.99))
            hist[i][0] = (f32(1) - rms) * (d * d) + rms * hist[i][0]
            d = local_rate * (d / (np.sqrt(hist[i][0]) + delta))
        elif rule == "AdaDelta":
            hist[i][0] = (f32(1) - mom) * (d * d) + mom * hist[i][0]
            upd = np.sqrt((delta + hist[i][1]) / (delta + hist[i][0]))
            d = d * upd
            hist[i][1] = (f32(1) - mom) * (d * d) + mom * hist[i][1]
            d = local_rate * d
        elif rule in ("Adam", "AdamW"):
            t = it + 1
            correction = f32(math.sqrt(1 - float(mom2) ** t) / (1 - float(mom) ** t))
            hist[i][0] = (f32(1) - mom) * d + mom * hist[i][0]
            hist[i][1] = (f32(1) - mom2) * (d * d) + mom2 * hist[i][1]
            step = hist[i][0] / (np.sqrt(hist[i][1]) + delta)
            if rule == "Adam":
                d = (local_rate * correction) * step
            else:  # extension: decoupled decay scaled by the local rate (optax.adamw / PyTorch)
                d = local_rate * (correction * step + local_decay * w)
        params[i] = w - d


def flat(tree: dict) -> list:
    return jax.tree.leaves(tree)


def names() -> list[str]:
    paths = jax.tree_util.tree_flatten_with_path(LR_MULT)[0]
    return [".".join(str(k.key) for k in path) for path, _ in paths]


def make_problem() -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.standard_normal(s).astype(np.float32), SHAPES,
                          is_leaf=lambda x: isinstance(x, tuple))
    grads_seq = [jax.tree.map(lambda p: rng.standard_normal(p.shape).astype(np.float32), params)
                 for _ in range(N_ITER)]
    return params, grads_seq


STEP_POLICY = {"lr_policy": "step", "base_lr": 0.05, "gamma": 0.3, "stepsize": 7}  # lr changes at 7 and 14


def run_both(fields: dict) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """N_ITER updates: (netspec params, Caffe reference params), keyed 'layer.blob'."""
    fields = {**STEP_POLICY, **fields}
    spec = SolverSpec(**fields)
    params, grads_seq = make_problem()
    n_slots = 2 if spec.type in ("AdaDelta", "Adam", "AdamW") else 1
    ref = [p.copy() for p in flat(params)]
    hist = [[np.zeros_like(p) for _ in range(n_slots)] for p in ref]
    rate = learning_rate(spec)
    for it, grads in enumerate(grads_seq):
        caffe_apply_update(fields, ref, flat(grads), hist, flat(LR_MULT), flat(DECAY_MULT), it, rate(it))

    tx = build_optimizer(spec, LR_MULT, DECAY_MULT)

    @jax.jit
    def step(p: dict, s: optax.OptState, g: dict) -> tuple[dict, optax.OptState]:
        updates, s = tx.update(g, s, p)
        return optax.apply_updates(p, updates), s

    ours, state = jax.tree.map(jnp.asarray, params), tx.init(params)
    for grads in grads_seq:
        ours, state = step(ours, state, grads)
    return dict(zip(names(), (np.asarray(p) for p in flat(ours)))), dict(zip(names(), ref))


def assert_float32_close(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray], rtol: float = 2e-6) -> None:
    for name, b in ref.items():
        a = ours[name]
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max(), err_msg=name)


RULES = [
    {"type": "SGD", "momentum": 0.9, "weight_decay": 5e-3},
    {"type": "SGD", "momentum": 0.9, "weight_decay": 5e-3, "regularization_type": "L1"},
    {"type": "Nesterov", "momentum": 0.95, "weight_decay": 5e-3},
    {"type": "AdaGrad", "weight_decay": 5e-3, "delta": 1e-7},
    {"type": "RMSProp", "weight_decay": 5e-3, "rms_decay": 0.98},
    {"type": "AdaDelta", "momentum": 0.95, "weight_decay": 5e-3, "delta": 1e-6, "base_lr": 1.0},
    {"type": "Adam", "momentum": 0.9, "momentum2": 0.999, "weight_decay": 5e-3},
    {"type": "AdamW", "momentum": 0.9, "momentum2": 0.99, "weight_decay": 0.1},
    {"type": "SGD", "momentum": 0.9, "weight_decay": 5e-3, "clip_gradients": 4.0},
    {"type": "Adam", "momentum": 0.9, "weight_decay": 5e-3, "clip_gradients": 4.0, "iter_size": 3},
]


@pytest.mark.parametrize("fields", RULES, ids=lambda f: "-".join(str(v) for v in f.values()))
def test_update_rule_matches_caffe(fields: dict) -> None:
    ours, ref = run_both(fields)
    assert_float32_close(ours, ref)
    start = flat(make_problem()[0])[names().index("frozen.w")]
    assert ours["frozen.w"].tobytes() == ref["frozen.w"].tobytes() == start.tobytes()


def test_sgd_reference_is_sensitive_to_lr_inside_momentum() -> None:
    """optax.sgd keeps lr outside the velocity: after the lr step at iteration 7 it disagrees with Caffe."""
    ours, ref = run_both({"momentum": 0.9})
    assert_float32_close(ours, ref)
    params, grads_seq = make_problem()
    tx = optax.sgd(lr_schedule(SolverSpec(**STEP_POLICY)), momentum=0.9)
    state = tx.init(params)
    for grads in grads_seq:
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    # ip1.b has lr_mult 1 and no decay here, so only the momentum convention differs.
    assert not np.allclose(np.asarray(params["ip1"]["b"]), ref["ip1.b"], rtol=1e-4)


def test_clip_gradients_is_active_in_the_clip_test() -> None:
    # With unit-normal grads over 104 numbers the global norm is ~10 > 4: clipping changes the result.
    clipped, _ = run_both({"type": "SGD", "momentum": 0.9, "clip_gradients": 4.0})
    unclipped, _ = run_both({"type": "SGD", "momentum": 0.9})
    assert not np.allclose(clipped["conv1.w"], unclipped["conv1.w"], rtol=1e-3)


def test_clip_below_the_bound_is_a_no_op() -> None:
    # Caffe only scales when ||g|| > c, so a norm at or below the bound leaves the gradient bit for bit.
    spec = SolverSpec(lr_policy="fixed", base_lr=1.0, clip_gradients=5.0)
    tx = build_optimizer(spec)
    params = {"a": jnp.zeros(2), "b": jnp.zeros(1)}
    grads = {"a": jnp.array([0.1, 3.0]), "b": jnp.array([-3.9])}  # norm 4.92
    updates, _ = tx.update(grads, tx.init(params), params)
    assert np.asarray(updates["a"]).tobytes() == (-np.asarray(grads["a"])).tobytes()
    assert np.asarray(updates["b"]).tobytes() == (-np.asarray(grads["b"])).tobytes()


def test_clip_scale_by_hand() -> None:
    spec = SolverSpec(lr_policy="fixed", base_lr=1.0, clip_gradients=1.0)
    tx = build_optimizer(spec)
    params = {"a": jnp.zeros(2), "b": jnp.zeros(1)}
    grads = {"a": jnp.array([3.0, 0.0]), "b": jnp.array([4.0])}  # norm 5
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["a"], [-0.6, 0.0], rtol=1e-7)
    np.testing.assert_allclose(updates["b"], [-0.8], rtol=1e-7)


def test_frozen_gradients_do_not_count_in_the_clip_norm() -> None:
    spec = SolverSpec(lr_policy="fixed", base_lr=1.0, clip_gradients=5.0)
    tx = build_optimizer(spec, lr_mult={"a": 1.0, "b": 0.0})
    params = {"a": jnp.zeros(2), "b": jnp.zeros(1)}
    grads = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([100.0])}  # trainable norm 5: no clipping
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_array_equal(updates["a"], [-3.0, -4.0])


@pytest.mark.parametrize("rule", ["SGD", "Nesterov", "AdaDelta", "Adam", "AdamW"])
def test_lr_mult_zero_freezes_bit_identically(rule: str) -> None:
    spec = SolverSpec(lr_policy="fixed", base_lr=0.1, type=rule, momentum=0.9, weight_decay=0.5)
    weights = np.array([-0.0, 0.0, 1e-30, -3.5, np.float32(np.pi), 7e30], np.float32)
    params = {"frozen": jnp.asarray(weights), "live": jnp.ones(3)}
    tx = build_optimizer(spec, lr_mult={"frozen": 0.0, "live": 1.0}, decay_mult={"frozen": 1.0, "live": 1.0})
    state = tx.init(params)
    assert all(leaf.size == 0 for leaf in jax.tree.leaves(state[-1].slots) if leaf.shape == (0,))
    for i in range(5):
        grads = {"frozen": jnp.full(6, 1.0 + i), "live": jnp.full(3, 1.0)}
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    assert np.asarray(params["frozen"]).tobytes() == weights.tobytes()
    assert not np.array_equal(np.asarray(params["live"]), np.ones(3))


def test_iter_size_expects_the_summed_gradient_and_multisteps_agrees() -> None:
    spec = SolverSpec(lr_policy="fixed", base_lr=0.1, momentum=0.9, iter_size=3, clip_gradients=2.0)
    rng = np.random.default_rng(1)
    params = {"w": jnp.asarray(rng.standard_normal(4).astype(np.float32))}
    micro = [{"w": jnp.asarray(rng.standard_normal(4).astype(np.float32))} for _ in range(6)]
    tx = build_optimizer(spec)
    summed, state = params, tx.init(params)
    for k in range(2):
        g = jax.tree.map(lambda *gs: sum(gs[1:], gs[0]), *micro[3 * k: 3 * k + 3])
        updates, state = tx.update(g, state, summed)
        summed = optax.apply_updates(summed, updates)
    multi = optax.MultiSteps(tx, every_k_schedule=3, use_grad_mean=False)
    stepped, mstate = params, multi.init(params)
    for g in micro:
        updates, mstate = multi.update(g, mstate, stepped)
        stepped = optax.apply_updates(stepped, updates)
    np.testing.assert_allclose(stepped["w"], summed["w"], rtol=1e-6)


def test_state_count_is_caffe_iter() -> None:
    spec = SolverSpec(lr_policy="step", base_lr=1.0, gamma=0.5, stepsize=2)
    tx = build_optimizer(spec)
    params = {"w": jnp.zeros(1)}
    state = tx.init(params)
    steps = []
    for _ in range(5):
        updates, state = tx.update({"w": jnp.ones(1)}, state, params)
        steps.append(float(-updates["w"][0]))
    assert steps == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert int(state[-1].count) == 5


def test_mult_tree_structure_mismatch_is_reported() -> None:
    tx = build_optimizer(SolverSpec(lr_policy="fixed", weight_decay=0.1), lr_mult={"w": 1.0})
    with pytest.raises(ValueError, match="lr_mult must have the structure of the params"):
        tx.init({"w": jnp.zeros(1), "b": jnp.zeros(1)})
