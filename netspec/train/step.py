"""The jitted training and evaluation steps, and the device mesh they run on.

One iteration = one weight update, as in Caffe: `iter_size` forward/backward passes whose gradients
are summed (a `lax.scan` inside the same jitted step), then the optimizer. The step is a plain
`jax.jit` over a 1-D `data` mesh: the state is replicated, every batch is sharded along its batch
axis, and XLA inserts the gradient all-reduce. On one device the mesh has one device and the same
code runs.

Each iteration's dropout key is `fold_in(run_key, iteration)` (and `fold_in(that, micro_batch)`
under iter_size), a pure function of the iteration, so a resumed run draws the same numbers.

A non-finite loss freezes the state: the step records the first bad iteration in `bad_step` and
from then on keeps params, optimizer state and BatchNorm statistics as they were before it. The
loop reads `bad_step` only at display/checkpoint boundaries (no per-step sync), and then still has
the last good parameters to diagnose with.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

PyTree = Any
Batch = Mapping[str, Any]


class TrainState(NamedTuple):
    """Everything that changes during training; a pytree, checkpointed as a whole."""

    params: PyTree
    batch_stats: PyTree
    opt_state: PyTree
    step: jax.Array  # int32: Caffe's iter (updates done)
    key: jax.Array  # uint32 raw key data of the run's base PRNG key
    bad_step: jax.Array  # int32: first iteration whose loss was non-finite, -1 if none


def make_mesh(devices: int | None = None) -> Mesh:
    """A 1-D `data` mesh over the first `devices` devices (all by default)."""
    available = jax.devices()
    n = len(available) if devices is None else devices
    if not 1 <= n <= len(available):
        raise ValueError(f"--devices {n}: this machine has {len(available)} {jax.default_backend()} device(s)")
    return jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=available[:n])


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, stacked: bool) -> NamedSharding:
    """Batch axis sharded over `data` (axis 1 when micro-batches are stacked for iter_size)."""
    return NamedSharding(mesh, P(None, "data") if stacked else P("data"))


def init_state(variables: PyTree, tx: optax.GradientTransformation, seed: int) -> TrainState:
    params = variables["params"]
    return TrainState(
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        step=jnp.zeros([], jnp.int32),
        key=jax.random.key_data(jax.random.key(seed)),
        bad_step=jnp.full([], -1, jnp.int32),
    )


def scalar_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The net outputs worth logging: scalars (losses, accuracies), as float32."""
    return {k: jnp.asarray(v, jnp.float32) for k, v in outputs.items() if jnp.ndim(v) == 0}


def make_train_step(model: Any, tx: optax.GradientTransformation, iter_size: int) -> Callable[..., Any]:
    """(state, batch) -> (state, metrics); batch leaves are [iter_size, N, ...] when iter_size > 1."""

    def forward_backward(params: PyTree, batch_stats: PyTree, inputs: Batch, key: jax.Array) -> tuple[Any, ...]:
        def loss_fn(p: PyTree) -> tuple[jax.Array, Any]:
            outputs, new_stats = model.apply_train({"params": p, "batch_stats": batch_stats}, inputs, key)
            return jnp.asarray(model.loss(outputs), jnp.float32), (scalar_outputs(outputs), new_stats)

        (loss, (outs, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return loss, outs, new_stats, grads

    def step(state: TrainState, inputs: Batch) -> tuple[TrainState, dict[str, Any]]:
        key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
        if iter_size == 1:
            loss, outs, new_stats, grads = forward_backward(state.params, state.batch_stats, inputs, key)
        else:
            def micro(carry: tuple[PyTree, PyTree], xs: tuple[Batch, jax.Array]) -> tuple[Any, Any]:
                acc, stats = carry
                micro_inputs, i = xs
                loss_i, outs_i, stats, grads_i = forward_backward(
                    state.params, stats, micro_inputs, jax.random.fold_in(key, i))
                return (jax.tree.map(jnp.add, acc, grads_i), stats), (loss_i, outs_i)

            zeros = jax.tree.map(jnp.zeros_like, state.params)
            (grads, new_stats), (losses, outs) = jax.lax.scan(
                micro, (zeros, state.batch_stats), (inputs, jnp.arange(iter_size)))
            loss = jnp.mean(losses)  # Caffe: loss averaged over iter_size, gradients summed
            outs = jax.tree.map(lambda v: jnp.mean(v, axis=0), outs)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        healthy = jnp.logical_and(state.bad_step < 0, jnp.isfinite(loss))

        def keep(new: PyTree, old: PyTree) -> PyTree:
            return jax.tree.map(lambda n, o: jnp.where(healthy, n, o), new, old)

        bad_step = jnp.where(jnp.logical_or(state.bad_step >= 0, healthy), state.bad_step, state.step)
        new_state = TrainState(
            params=keep(params, state.params),
            batch_stats=keep(new_stats, state.batch_stats),
            opt_state=keep(opt_state, state.opt_state),
            step=state.step + 1,
            key=state.key,
            bad_step=bad_step.astype(jnp.int32),
        )
        return new_state, {"loss": loss, "outputs": outs}

    return step


def make_eval_step(model: Any, extra: Callable[[Mapping[str, Any], Batch], Mapping[str, Any]] | None = None
                   ) -> Callable[..., Any]:
    """(variables, batch, sums) -> sums: adds this batch's scalar outputs to running sums on device."""

    def step(variables: PyTree, inputs: Batch, sums: Mapping[str, Any]) -> dict[str, Any]:
        outputs = model.apply(variables, inputs, train=False)
        values = scalar_outputs(outputs)
        if extra is not None:
            values.update(extra(outputs, inputs))
        return {k: sums[k] + v for k, v in values.items()}

    return step


def zero_sums(eval_step: Callable[..., Any], variables: PyTree, inputs: Batch) -> dict[str, Any]:
    """Zeros with the structure eval_step produces (from its abstract evaluation; nothing runs)."""
    shapes = jax.eval_shape(lambda v, b: eval_step(v, b, _ZeroDict()), variables, inputs)
    return {k: jnp.zeros(s.shape, s.dtype) for k, s in shapes.items()}


class _ZeroDict(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> float:
        return 0.0


def stack_micro_batches(batches: list[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.stack([b[k] for b in batches]) for k in batches[0]}
