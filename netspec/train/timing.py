"""`netspec time`: forward/backward time per layer and for the whole net, like `caffe time`.

XLA fuses the whole net into one program, so a layer has no time of its own inside it. Here each
layer is jitted on its own, fed its real bottoms (computed once by the whole net, in the layout
the compiled net keeps them in) and its real parameters; its backward pass is the VJP closure of
that forward, jitted and timed separately (residuals precomputed, as Caffe's Backward reuses what
Forward stored). The whole net is timed as the one fused program training runs, so it is usually
faster than the sum of its layers; the report shows both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from netspec.lowering.base import convert, resolve, top_layout
from netspec.lowering.model import Model, _layer_ctx, _shared_view
from netspec.train.probe import every_blob_module


@dataclass(frozen=True)
class LayerTime:
    name: str
    type: str
    forward_ms: float
    backward_ms: float | None  # None: nothing to differentiate (no parameters, no float bottoms)


@dataclass(frozen=True)
class NetTime:
    layers: tuple[LayerTime, ...]
    forward_ms: float
    backward_ms: float | None
    forward_backward_ms: float | None
    iterations: int
    total_ms: float


def bench(fn: Callable[..., Any], args: tuple[Any, ...], iterations: int) -> float:
    """Mean milliseconds per call, each call waited for; the first (compiling) call is not counted."""
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(iterations):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - start) * 1000 / iterations


def _cast(x: Any, cast: str, dtype: Any) -> Any:
    """The compiled net's casting rule (NetModule._cast) for a layer's bottoms and parameters."""
    if cast == "none" or not jnp.issubdtype(x.dtype, jnp.floating):
        return x
    if cast == "float32":
        return x.astype(jnp.float32) if jnp.finfo(x.dtype).bits < 32 else x
    return x.astype(dtype)


def _layouts(model: Model) -> dict[str, str]:
    """Which layout each blob has inside the compiled net (the NetModule rule, replayed on shapes)."""
    layouts: dict[str, str] = {}
    shapes = model.report.shapes
    for step in model.module.steps:
        low, node = step.lowering, step.node
        if low.is_input:
            layouts.update({t: "nchw" for t in node.tops})
            continue
        first = layouts[node.bottoms[0]] if node.bottoms else "nchw"
        layout = resolve(low.wants, first, model.module.spatial_layout)
        for t in node.tops:
            layouts[t] = top_layout(low.wants, layout, len(shapes[t]))
    return layouts


def random_inputs(model: Model, label: str | None, classes: int | None, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in model.input_shapes.items():
        if name == label:
            out[name] = rng.integers(0, max(classes or 1, 1), shape).astype(np.int32)
        else:
            out[name] = rng.standard_normal(shape).astype(np.float32)
    return out


def time_layers(model: Model, variables: Mapping[str, Any], inputs: Mapping[str, Any], train: bool,
                iterations: int, on_layer: Callable[[LayerTime], None] | None = None) -> list[LayerTime]:
    key = jax.random.PRNGKey(0)
    blobs = jax.jit(lambda v, x: every_blob_module(model).apply(
        {k: w for k, w in v.items() if w or k == "params"}, x, train, key))(dict(variables), dict(inputs))
    layouts = _layouts(model)
    opts = model.compiler_options
    dtype = model.module.dtype
    out = []
    for step in model.module.steps:
        low, node = step.lowering, step.node
        if low.is_input:
            continue
        first = layouts[node.bottoms[0]] if node.bottoms else "nchw"
        layout = resolve(low.wants, first, model.module.spatial_layout)
        xs = [_cast(convert(blobs[b], "nchw", layout), low.cast, dtype) for b in node.bottoms]
        params = tuple(_cast(_shared_view(variables["params"][s.owner_layer][str(s.owner_index)], s), low.cast, dtype)
                       for s in step.slots)
        state = tuple(variables["batch_stats"][node.name][str(s.index)] for s in step.state)
        floats = [i for i, x in enumerate(xs) if jnp.issubdtype(x.dtype, jnp.floating)]

        def forward(p: tuple[Any, ...], fx: list[Any], node: Any = node, low: Any = low, layout: str = layout,
                    xs: list[Any] = xs, floats: list[int] = floats, state: tuple[Any, ...] = state) -> Any:
            args = list(xs)
            for i, x in zip(floats, fx):
                args[i] = x
            ctx = _layer_ctx(model.module, node.layer, layout, p, state, train, key)  # type: ignore[arg-type]
            tops = low.forward(ctx, *args)
            return tops[0] if low.stateful else tops

        fx = [xs[i] for i in floats]
        fwd_ms = bench(jax.jit(forward, compiler_options=opts), (params, fx), iterations)
        bwd_ms = None
        if params or fx:
            tops, vjp = jax.vjp(forward, params, fx)
            cotangent = jax.tree.map(lambda t: jnp.ones_like(t) if jnp.issubdtype(t.dtype, jnp.floating)
                                     else np.zeros(t.shape, jax.dtypes.float0), tops)
            bwd_ms = bench(jax.jit(lambda f, c: f(c), compiler_options=opts), (vjp, cotangent), iterations)
        result = LayerTime(node.name, node.kind.type_name, fwd_ms, bwd_ms)
        out.append(result)
        if on_layer is not None:
            on_layer(result)
    return out


def time_net(model: Model, variables: Mapping[str, Any], inputs: Mapping[str, Any], train: bool,
             iterations: int) -> tuple[float, float | None, float | None]:
    """(forward, backward, forward+backward) ms of the whole net as one jitted program each."""
    key = jax.random.PRNGKey(0)
    v = dict(variables)
    opts = model.compiler_options
    forward = jax.jit(lambda v, x: model.apply(v, x, train=train, rng=key), compiler_options=opts)
    fwd = bench(forward, (v, dict(inputs)), iterations)
    if not model.loss_weights or not jax.tree.leaves(v["params"]):
        return fwd, None, None

    def loss(params: Any, x: Any) -> Any:
        return model.loss(model.apply({**v, "params": params}, x, train=train, rng=key))

    _, vjp = jax.vjp(loss, v["params"], dict(inputs))
    bwd = bench(jax.jit(lambda f: f(jnp.float32(1)), compiler_options=opts), (vjp,), iterations)
    both = bench(jax.jit(jax.value_and_grad(loss), compiler_options=opts), (v["params"], dict(inputs)), iterations)
    return fwd, bwd, both


def report_lines(layers: list[LayerTime], net: tuple[float, float | None, float | None], iterations: int,
                 header: str) -> list[str]:
    width = max([len(t.name) for t in layers] + [13])
    twidth = max([len(t.type) for t in layers] + [4])
    lines = [header, f"{'layer':<{width}}  {'type':<{twidth}}  {'forward ms':>10}  {'backward ms':>11}"]
    for t in layers:
        bwd = f"{t.backward_ms:11.4f}" if t.backward_ms is not None else f"{'-':>11}"
        lines.append(f"{t.name:<{width}}  {t.type:<{twidth}}  {t.forward_ms:10.4f}  {bwd}")
    fsum = sum(t.forward_ms for t in layers)
    bsum = sum(t.backward_ms or 0.0 for t in layers)
    lines.append(f"{'sum of layers':<{width}}  {'':<{twidth}}  {fsum:10.4f}  {bsum:11.4f}")
    fwd, bwd, both = net
    lines.append(f"Average Forward pass: {fwd:.4f} ms (whole net, one jitted program).")
    if bwd is not None and both is not None:
        lines.append(f"Average Backward pass: {bwd:.4f} ms.")
        lines.append(f"Average Forward-Backward: {both:.4f} ms.")
    total = (both if both is not None else fwd) * iterations
    lines.append(f"Total Time: {total:.2f} ms for {iterations} iterations.")
    return lines
