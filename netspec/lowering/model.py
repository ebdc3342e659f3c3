"""The lowering driver: Graph + ShapeReport -> a flax.linen Module and the `Model` users hold.

The module walks the graph's nodes in execution order over a dict of blobs. Everything that does
not depend on array values (which lowering, where each parameter lives, its Caffe shape and
multipliers) is planned once in `compile`; tracing only runs the per-layer array code.

Variables (flax collections, plain dicts):
  {"params":      {layer: {"0": W, "1": b}},                     learnable blobs
   "batch_stats": {layer: {"0": mean_sum, "1": var_sum, "2": f}}}  BatchNorm state
keyed by the spec's layer names and the Caffe blob index. Convolution weights are stored
(k0, k1, ..., I/g, O) (HWIO for 2-D); every other blob in Caffe's layout. A blob shared through
`param { name: ... }` is stored once, under the first layer that declares the name (its *owner*);
sharing layers have no entry for it and read the owner's array (reshaped when share_mode is
PERMISSIVE). Their `param_info` says who owns it.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from netspec.check import check
from netspec.errors import Diagnostic, NetspecError
from netspec.graph import Graph, Node
from netspec.kernels import onednn
from netspec.kernels.conv import batch_minor_pays, compiler_options as conv_compiler_options, library_runs_any
from netspec.layers.spatial import canonical_axis
from netspec.lowering.base import CODECS, Ctx, Layout, Lowering, convert, layer_seed, resolve, top_layout
from netspec.lowering.conv import kernel_geometries
from netspec.lowering.data import dummy_fills
from netspec.lowering.fillers import fill_many
from netspec.lowering.table import LOWERINGS
from netspec.shapes import ShapeReport
from netspec.spec import NetSpec, load_spec

# float64 is for gradient checks (needs jax.enable_x64); float32 and bfloat16 are for use.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float64": jnp.float64}
# netspec.kernels.conv's impl: "auto" (oneDNN's kernels where installed, else netspec's own plan), "planned"
# (never oneDNN), "onednn" (requires it), "xla"; "taps" and "im2col" force one formulation for every pass of
# every 2-D convolution (tests and benchmarks); N-D convolutions always use lax.
CONV_IMPLS = ("auto", "planned", "onednn", "xla", "taps", "im2col")


@dataclass(frozen=True)
class ParamInfo:
    """One Caffe blob of one layer. `owner` is the "LAYER/i" key whose array holds it (itself unless
    shared); `collection` is "params" (learnable) or "batch_stats" (BatchNorm state)."""

    layer: str
    index: int
    caffe_shape: tuple[int, ...]
    lr_mult: float
    decay_mult: float
    learnable: bool
    owner: str
    collection: str


@dataclass(frozen=True)
class _Slot:
    """Where blob `index` of a layer comes from: the owner's (layer, index), both Caffe shapes, codecs."""

    index: int
    owner_layer: str
    owner_index: int
    shape: tuple[int, ...]
    owner_shape: tuple[int, ...]
    codec: str
    owner_codec: str


@dataclass(frozen=True)
class _Step:
    node: Node
    lowering: Lowering
    slots: tuple[_Slot, ...]          # learnable blobs, in Caffe order
    state: tuple[_Slot, ...]          # BatchNorm blobs
    fillers: tuple[Any, ...]          # one FillerParameter per learnable blob this layer owns


def key(layer: str, index: int) -> str:
    return f"{layer}/{index}"


def _set_mult(specs: list[Any], field: str, default: float) -> float:
    """Caffe's rule for shared blobs: the first layer that sets the multiplier decides it."""
    for s in specs:
        if s is not None and field in s.model_fields_set:
            return float(getattr(s, field))
    return default


def _plan(graph: Graph, report: ShapeReport) -> tuple[tuple[_Step, ...], dict[str, ParamInfo]]:
    steps: list[_Step] = []
    infos: dict[str, ParamInfo] = {}
    owners: dict[str, tuple[str, int, tuple[int, ...], str]] = {}   # shared name -> owner
    sharers: dict[str, list[Any]] = {}                               # shared name -> ParamSpecs
    for node in graph.nodes:
        low = LOWERINGS[node.kind.type_name]
        layer = node.layer
        blobs = report.row(layer.name).blobs
        slots, state, fillers = [], [], []
        specs_fill = low.fillers(layer) if low.fillers else ()
        for i, blob in enumerate(blobs):
            spec = layer.param[i] if i < len(layer.param) else None
            shape = tuple(blob.shape)
            codec = low.codec(i)
            if not blob.learnable:
                state.append(_Slot(i, layer.name, i, shape, shape, codec, codec))
                infos[key(layer.name, i)] = ParamInfo(layer.name, i, shape, 0.0, 0.0, False,
                                                      key(layer.name, i), "batch_stats")
                continue
            name = spec.name if spec is not None else ""
            if name and name in owners:
                o_layer, o_index, o_shape, o_codec = owners[name]
                sharers[name].append(spec)
                slots.append(_Slot(i, o_layer, o_index, shape, o_shape, codec, o_codec))
            else:
                if name:
                    owners[name] = (layer.name, i, shape, codec)
                    sharers[name] = [spec]
                slots.append(_Slot(i, layer.name, i, shape, shape, codec, codec))
                fillers.append((i, specs_fill[i] if i < len(specs_fill) else None))
            infos[key(layer.name, i)] = ParamInfo(
                layer.name, i, shape, 1.0 if spec is None else spec.lr_mult,
                1.0 if spec is None else spec.decay_mult, True,
                key(slots[-1].owner_layer, slots[-1].owner_index), "params")
        steps.append(_Step(node, low, tuple(slots), tuple(state), tuple(fillers)))
    # Shared blobs: every user sees the multipliers Caffe would apply to the one array.
    for name, (o_layer, o_index, _, _) in owners.items():
        lr = _set_mult(sharers[name], "lr_mult", 1.0)
        decay = _set_mult(sharers[name], "decay_mult", 1.0)
        for k, info in list(infos.items()):
            if info.owner == key(o_layer, o_index):
                infos[k] = ParamInfo(info.layer, info.index, info.caffe_shape, lr, decay, True, info.owner,
                                     "params")
    return tuple(steps), infos


def _batch_minor_ready(steps: tuple[_Step, ...], report: ShapeReport, n_convs_2d: int) -> bool:
    """Whether the net could run batch-minor without a layout conversion inside it: every layer takes
    any layout or the spatial one, and every Convolution is a 2-D one over Caffe's axis 1."""
    convs = [s.node for s in steps if s.node.kind.type_name == "Convolution"]
    return (all(s.lowering.wants != "nhwc" for s in steps) and len(convs) == n_convs_2d
            and all(len(report.shapes[n.bottoms[0]]) == 4
                    and canonical_axis(n.layer.messages["convolution_param"].axis, 4) == 1 for n in convs))


def _unsupported(report: ShapeReport, dtype: str, conv_impl: str) -> list[Diagnostic]:
    graph = report.graph
    diags = [Diagnostic("error", f"layer type {n.kind.type_name} has no JAX lowering", n.layer.loc, n.name)
             for n in graph.nodes if n.kind.type_name not in LOWERINGS]
    if dtype not in DTYPES:
        diags.append(Diagnostic("error", f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}"))
    if conv_impl not in CONV_IMPLS:
        diags.append(Diagnostic("error", f"conv_impl must be one of {', '.join(CONV_IMPLS)}, got {conv_impl!r}"))
    elif conv_impl == "onednn" and not onednn.available():
        diags.append(Diagnostic("error", f"conv_impl onednn: {onednn.unavailable_reason()}",
                                hint="pip install onednn-cpu-gomp==2023.2.0, Linux x86-64 only, or use conv_impl auto"))
    return diags


# ----------------------------------------------------------------------------------------------
# the flax module


def _shared_view(arr: Any, slot: _Slot) -> Any:
    """The owner's stored array as this layer stores it (identity unless shapes or codecs differ)."""
    if slot.shape == slot.owner_shape and slot.codec == slot.owner_codec:
        return arr
    caffe = CODECS[slot.owner_codec][1](arr).reshape(slot.shape)
    return CODECS[slot.codec][0](caffe)


def _layer_ctx(module: NetModule, layer: Any, layout: Layout, params: tuple[Any, ...], state: tuple[Any, ...],
               train: bool, rng: jax.Array | None) -> Ctx:
    """The Ctx a layer's lowering sees in ``module`` (netspec time's per-layer timing builds the same one)."""
    return Ctx(layer, layout, params, state, train, rng, module.dtype, module.conv_impl, module.xla_convs)


class NetModule(nn.Module):
    """The compiled net. `create` makes the variables; `__call__` runs the graph."""

    steps: tuple[_Step, ...]
    blob_names: Mapping[str, str]
    returns: tuple[str, ...]
    dtype: Any = jnp.float32
    conv_impl: str = "auto"
    spatial_layout: Layout = "nhwc"  # netspec.lowering.base: "nhwc" or "chwn"
    xla_convs: bool = False  # compiled with options that turn YNNPACK's convolutions off (Model.compiler_options)

    def _stats(self, step: _Step) -> Any:
        def init() -> dict[str, jax.Array]:
            return {str(s.index): jnp.zeros(s.shape, jnp.float32) for s in step.state}

        return self.variable("batch_stats", step.node.name, init) if step.state else None

    @nn.compact
    def create(self, root: jax.Array) -> None:
        # Keys come from `root` and the layer name, not from flax's call-order counter, so a
        # layer's initial values do not change when other layers are added or removed.
        requests, owners = [], []
        for step in self.steps:
            shapes = {s.index: s.shape for s in step.slots}
            for i, filler in step.fillers:
                if filler is None:
                    raise ValueError(f"layer '{step.node.name}': no filler for blob {i}")
                requests.append((layer_seed(step.node.name), i, filler, shapes[i]))
                owners.append((step, i))
        values: dict[str, dict[str, jax.Array]] = {}
        for (step, i), caffe in zip(owners, fill_many(requests, root)):
            values.setdefault(step.node.name, {})[str(i)] = CODECS[step.lowering.codec(i)][0](caffe)
        for step in self.steps:
            if step.node.name in values:
                self.param(step.node.name, lambda _, v=values[step.node.name]: v)
            self._stats(step)

    @nn.compact
    def __call__(self, inputs: Mapping[str, Any], train: bool = False, rng: jax.Array | None = None,
                 wanted: tuple[str, ...] | None = None) -> dict[str, Any]:
        owned = {s.node.name: self._params(s) for s in self.steps if s.fillers}
        blobs: dict[tuple[str, Layout], Any] = {}
        layouts: dict[str, Layout] = {}

        def get(blob: str, want: Layout) -> Any:
            if (blob, want) not in blobs:
                blobs[(blob, want)] = convert(blobs[(blob, layouts[blob])], layouts[blob], want)
            return blobs[(blob, want)]

        dummies = self._dummies(inputs, rng)
        for step in self.steps:
            node, low = step.node, step.lowering
            if low.is_input:
                for i, t in enumerate(node.tops):
                    blobs[(t, "nchw")] = self._feed(inputs, node, i, dummies)
                    layouts[t] = "nchw"
                continue
            first = layouts[node.bottoms[0]] if node.bottoms else "nchw"
            layout = resolve(low.wants, first, self.spatial_layout)
            xs = [self._cast(get(b, layout), low) for b in node.bottoms]
            params = tuple(self._cast(_shared_view(owned[s.owner_layer][str(s.owner_index)], s), low)
                           for s in step.slots)
            var = self._stats(step)
            state = tuple(var.value[str(s.index)] for s in step.state) if var is not None else ()
            ctx = _layer_ctx(self, node.layer, layout, params, state, train, rng)
            if low.stateful:
                tops, new = low.forward(ctx, *xs)
                if new is not None and var is not None and self.is_mutable_collection("batch_stats"):
                    var.value = {str(s.index): v for s, v in zip(step.state, new)}
            else:
                tops = low.forward(ctx, *xs)
            for t, y in zip(node.tops, tops):
                tag = top_layout(low.wants, layout, y.ndim)
                blobs[(t, tag)] = y
                layouts[t] = tag
        return {self.blob_names[b]: get(b, "nchw") for b in (self.returns if wanted is None else wanted)}

    def _params(self, step: _Step) -> Any:
        value = self.get_variable("params", step.node.name)
        if value is None:
            raise ValueError(f"variables['params'] has no entry for layer '{step.node.name}'")
        return value

    def _cast(self, x: Any, low: Lowering) -> Any:
        if low.cast == "none":
            return x
        if low.cast == "float32":  # at least float32: bfloat16 goes up, float64 stays
            if jnp.issubdtype(x.dtype, jnp.floating) and jnp.finfo(x.dtype).bits < 32:
                return x.astype(jnp.float32)
            return x
        return x.astype(self.dtype) if x.dtype != self.dtype else x

    def _dummies(self, inputs: Mapping[str, Any], rng: jax.Array | None) -> dict[str, Any]:
        """The values of this forward's unfed DummyData tops, by top id, drawn in one go."""
        unfed = [(node, i, t) for node in (s.node for s in self.steps) if node.kind.type_name == "DummyData"
                 for i, t in enumerate(node.tops) if self.blob_names[t] not in inputs]
        values = dummy_fills([(node.layer, i, node.kind.source_shapes(node.layer, {})[i])  # type: ignore[attr-defined]
                              for node, i, _ in unfed], rng)
        return {t: v for (_, _, t), v in zip(unfed, values)}

    def _feed(self, inputs: Mapping[str, Any], node: Node, i: int, dummies: Mapping[str, Any]) -> Any:
        name = self.blob_names[node.tops[i]]
        if name in inputs:
            return jnp.asarray(inputs[name])
        if node.tops[i] in dummies:
            return dummies[node.tops[i]]
        raise ValueError(f"input '{name}' (layer '{node.name}') was not given; inputs are "
                         f"{sorted(inputs)}")


# ----------------------------------------------------------------------------------------------
# the user-facing model


class Model:
    """A compiled net: a pure `init`/`apply` pair plus everything the trainer needs to know."""

    def __init__(self, graph: Graph, report: ShapeReport, dtype: str, conv_impl: str,
                 spatial_layout: str | None = None) -> None:
        self.graph = graph
        self.report = report
        self.phase = graph.phase
        self.dtype = dtype
        self.conv_impl = conv_impl
        self._steps, self.param_info = _plan(graph, report)
        names = graph.blob_names
        self.input_shapes: dict[str, tuple[int, ...]] = {
            names[t]: tuple(report.shapes[t]) for t in graph.inputs}
        self.output_names: tuple[str, ...] = tuple(names[b] for b in graph.outputs)
        self.loss_weights: dict[str, float] = _loss_weights(graph)
        loss_ids = tuple(t for n in graph.nodes for t in n.tops
                         if names[t] in self.loss_weights and t not in graph.outputs)
        convs = [g for n in graph.nodes if n.kind.type_name == "Convolution"
                 for g in kernel_geometries(n.layer, tuple(report.shapes[n.bottoms[0]]), dtype)]
        # The layout of spatial blobs (netspec.lowering.base): batch-minor for a TRAIN net whose every
        # convolution trains faster that way and no layer of which would have to convert, else channels-last.
        # TEST nets stay channels-last: a forward alone runs faster on XLA's NHWC convolution (LeNet b64:
        # 5.8 ms vs 8.2 batch-minor, docs/performance.md item 9).
        self.spatial_layout: Layout = spatial_layout or (  # type: ignore[assignment]
            "chwn" if (self.phase == "TRAIN" and _batch_minor_ready(self._steps, report, len(convs))
                       and batch_minor_pays(jax.default_backend(), conv_impl, convs)) else "nhwc")
        # The XLA options the convolution lowering was tuned under (a TRAIN net's are its train step's). Only the
        # outermost jit's options count: a caller that jits a whole train step around apply/apply_train passes
        # jax.jit(step, compiler_options=model.compiler_options).
        self.compiler_options: dict[str, Any] = conv_compiler_options(jax.default_backend(), conv_impl, convs,
                                                                      train=self.phase == "TRAIN")
        # What runs the convolutions, for the run's summary: "oneDNN 3.2.0" where its kernels run any of them.
        self.conv_library: str | None = (
            f"oneDNN {onednn.version()}" if library_runs_any(jax.default_backend(), conv_impl, convs) else None)
        # Any option here turns YNNPACK's convolutions off for every layer, narrow ones included.
        self.module = NetModule(self._steps, dict(names), graph.outputs + loss_ids, DTYPES[dtype], conv_impl,
                                self.spatial_layout, xla_convs=bool(self.compiler_options))
        # One compiled program each: eager filler ops would compile every random op separately. JAX takes
        # compiler options on a top-level jit only, so apply/apply_train pick the plain jit under a jit trace.
        self._init_jit = jax.jit(self._init)
        self._apply_nested = jax.jit(self._apply, static_argnames=("train", "wanted"))
        self._apply_train_nested = jax.jit(self._apply_train)
        self._apply_jit, self._apply_train_jit = self._apply_nested, self._apply_train_nested
        if self.compiler_options:
            self._apply_jit = jax.jit(self._apply, static_argnames=("train", "wanted"),
                                      compiler_options=self.compiler_options)
            self._apply_train_jit = jax.jit(self._apply_train, compiler_options=self.compiler_options)
        # A user name means its last version (after any in-place layers), as in pycaffe's net.blobs.
        self._latest = {names[t]: t for n in graph.nodes for t in n.tops}

    # -- variables ---------------------------------------------------------------------------

    def init(self, seed_or_key: int | jax.Array) -> dict[str, Any]:
        """Fresh variables {"params": ..., "batch_stats": ...} from Caffe's fillers (both keys always present).
        `seed_or_key`: any integer (Python or NumPy) or a JAX key."""
        if isinstance(seed_or_key, numbers.Integral):  # NumPy's integer scalars are registered here too
            rng = jax.random.PRNGKey(int(seed_or_key))
        else:
            rng = seed_or_key
        return self._init_jit(rng)

    def _init(self, rng: jax.Array) -> dict[str, Any]:
        variables = self.module.init({"params": rng}, rng, method=NetModule.create)
        return {"params": dict(variables.get("params", {})), "batch_stats": dict(variables.get("batch_stats", {}))}

    def lr_mults(self) -> dict[str, dict[str, float]]:
        return self._mults("lr_mult")

    def decay_mults(self) -> dict[str, dict[str, float]]:
        return self._mults("decay_mult")

    def _mults(self, field: str) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for k, info in self.param_info.items():
            if info.collection == "params" and info.owner == k:
                out.setdefault(info.layer, {})[str(info.index)] = getattr(info, field)
        return out

    # -- running -----------------------------------------------------------------------------

    def _inputs(self, inputs: Any) -> dict[str, Any]:
        if isinstance(inputs, Mapping):
            return dict(inputs)
        dummy = {self.graph.blob_names[t] for n in self.graph.nodes if n.kind.type_name == "DummyData"
                 for t in n.tops}
        fed = [n for n in self.input_shapes if n not in dummy]
        if len(fed) != 1:
            raise ValueError(f"this net has inputs {fed}; pass a dict keyed by input name")
        return {fed[0]: inputs}

    def _apply(self, variables: Mapping[str, Any], inputs: dict[str, Any], train: bool,
               rng: jax.Array | None, wanted: tuple[str, ...] | None = None) -> dict[str, Any]:
        return self.module.apply(_flax_vars(variables), inputs, train, rng, wanted)

    def _apply_train(self, variables: Mapping[str, Any], inputs: dict[str, Any], rng: jax.Array | None
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
        out, mutated = self.module.apply(_flax_vars(variables), inputs, True, rng, mutable=["batch_stats"])
        return out, dict(mutated.get("batch_stats", variables.get("batch_stats", {})))

    def apply(self, variables: Mapping[str, Any], inputs: Any, train: bool = False,
              rng: jax.Array | None = None, *, blobs: tuple[str, ...] | None = None) -> dict[str, Any]:
        """Forward pass. `inputs`: one N,C,H,W array or a dict by input blob name. Returns the net's
        output blobs (and every top with a loss weight) by name, in Caffe's order (N,C,H,W; N,C,D,H,W
        ...); or, with `blobs`, those blobs instead (a name means its last in-place version). With
        train=True, Dropout is active (needs rng) and BatchNorm uses batch statistics unless
        use_global_stats says otherwise; the statistics update is discarded (see apply_train).
        Unfed DummyData tops with a random filler are drawn from `rng` in either phase (from
        PRNGKey(0) when rng is None, so such calls repeat the same draw; see lowering/data.py)."""
        wanted = None
        if blobs is not None:
            unknown = [b for b in blobs if b not in self._latest]
            if unknown:
                raise ValueError(f"unknown blob(s) {unknown}; this net has {sorted(self._latest)}")
            wanted = tuple(self._latest[b] for b in blobs)
        fn = self._apply_jit if self._top_level(variables, inputs, rng) else self._apply_nested
        return fn(variables, self._inputs(inputs), train=train, rng=rng, wanted=wanted)

    def apply_train(self, variables: Mapping[str, Any], inputs: Any, rng: jax.Array | None = None
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The TRAIN forward pass: (outputs, new batch_stats) with Caffe's moving-average update."""
        fn = self._apply_train_jit if self._top_level(variables, inputs, rng) else self._apply_train_nested
        return fn(variables, self._inputs(inputs), rng)

    def _top_level(self, *args: Any) -> bool:
        """Whether a call may use the jit that carries compiler_options: not inside another jit's trace."""
        if not self.compiler_options:
            return True  # both jits are the same one
        if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(args)):
            return False
        # Every argument concrete (closed over by an outer jit, say): a value made now is a tracer exactly when a
        # jit is tracing this call.
        return not isinstance(lax.full((), 0, np.int32), jax.core.Tracer)

    def loss(self, outputs: Mapping[str, Any]) -> jax.Array:
        """Caffe's total loss: Σ loss_weight × sum(top), in float32 (float64 for dtype float64)."""
        acc = jnp.promote_types(DTYPES[self.dtype], jnp.float32)
        total = jnp.zeros((), acc)
        for name, w in self.loss_weights.items():
            total = total + w * jnp.sum(outputs[name].astype(acc))
        return total

    def __repr__(self) -> str:
        return (f"Model({self.graph.spec.name or self.graph.spec.file!r}, phase={self.phase}, dtype={self.dtype}, "
                f"inputs={self.input_shapes}, outputs={self.output_names})")


def _flax_vars(variables: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in variables.items() if v or k == "params"}


def _loss_weights(graph: Graph) -> dict[str, float]:
    out: dict[str, float] = {}
    for n in graph.nodes:
        is_loss = n.kind.is_loss or n.kind.type_name.endswith("Loss")
        for i, t in enumerate(n.tops):
            if i < len(n.layer.loss_weight):
                w = float(n.layer.loss_weight[i])
            else:
                w = 1.0 if (is_loss and i == 0) else 0.0
            if w != 0:
                out[graph.blob_names[t]] = w
    return out


def compile(spec_or_path: NetSpec | str | Path, phase: str = "TEST", *, dtype: str = "float32",
            conv_impl: str = "auto", input_shapes: Mapping[str, tuple[int, ...]] | None = None,
            batch: int | None = None, spatial_layout: str | None = None) -> Model:
    """Check a spec (raising NetspecError on any problem) and lower it to a JAX/Flax `Model`.

    `spatial_layout` ("nhwc" or "chwn", netspec.lowering.base) overrides the layout the Model picks for
    spatial blobs; results are the same either way, only speed differs (tests and benchmarks)."""
    spec = spec_or_path if isinstance(spec_or_path, NetSpec) else load_spec(spec_or_path)
    if phase not in ("TRAIN", "TEST"):
        raise NetspecError([Diagnostic("error", f"phase must be TRAIN or TEST, got {phase!r}")])
    report = check(spec, phase=phase, input_shapes=input_shapes, batch=batch)  # type: ignore[arg-type]
    diags = _unsupported(report, dtype, conv_impl)
    if spatial_layout not in (None, "nhwc", "chwn"):
        diags.append(Diagnostic("error", f"spatial_layout must be nhwc or chwn, got {spatial_layout!r}"))
    if diags:
        raise NetspecError(diags)
    return Model(report.graph, report, dtype, conv_impl, spatial_layout)


# ----------------------------------------------------------------------------------------------
# Caffe blob import / export


def caffe_blobs(model: Model, variables: Mapping[str, Any]) -> dict[str, list[np.ndarray]]:
    """Every layer's blobs in Caffe's layout and order (shared blobs appear under every user)."""
    out: dict[str, list[np.ndarray]] = {}
    for step in model._steps:
        arrays: dict[int, np.ndarray] = {}
        for s in step.slots:
            stored = np.asarray(variables["params"][s.owner_layer][str(s.owner_index)])
            arrays[s.index] = np.asarray(CODECS[s.owner_codec][1](stored)).reshape(s.shape)
        for s in step.state:
            arrays[s.index] = np.asarray(variables["batch_stats"][step.node.name][str(s.index)])
        if arrays:
            out[step.node.name] = [arrays[i] for i in sorted(arrays)]
    return out


def set_caffe_blobs(model: Model, variables: Mapping[str, Any],
                    blobs: Mapping[str, list[Any]]) -> dict[str, Any]:
    """The inverse of caffe_blobs: new variables with the given layers' blobs replaced.

    Layers not in `blobs` keep their values. A blob shared by several layers takes the value given
    for the last of them (as when Caffe copies a caffemodel into shared blobs). Every unknown
    layer, wrong blob count and shape mismatch is reported together in one ValueError.
    """
    params = {k: dict(v) for k, v in variables.get("params", {}).items()}
    stats = {k: dict(v) for k, v in variables.get("batch_stats", {}).items()}
    by_name = {s.node.name: s for s in model._steps}
    problems: list[str] = []
    for layer, arrays in blobs.items():
        step = by_name.get(layer)
        slots = {s.index: s for s in (step.slots + step.state)} if step is not None else {}
        if not slots:
            problems.append(f"layer '{layer}': not a layer with blobs in this net")
            continue
        if len(arrays) != len(slots):
            problems.append(f"layer '{layer}': expected {len(slots)} blobs, got {len(arrays)}")
            continue
        for i, arr in enumerate(arrays):
            s = slots[i]
            is_state = s in step.state  # type: ignore[union-attr]
            a = np.asarray(arr, _stored_dtype(stats, layer, i) if is_state
                           else _stored_dtype(params, s.owner_layer, s.owner_index))
            if a.shape != s.shape:
                # Caffe's legacy 4-D blobs (1,1,N,K) etc. have the same count; accept them reshaped.
                if a.size != int(np.prod(s.shape)) or not _legacy_compatible(a.shape, s.shape):
                    problems.append(f"layer '{layer}' blob {i}: expected shape {s.shape}, got {a.shape}")
                    continue
                a = a.reshape(s.shape)
            if is_state:
                stats.setdefault(layer, {})[str(i)] = jnp.asarray(a)
            else:
                owner = np.asarray(a).reshape(s.owner_shape)
                params.setdefault(s.owner_layer, {})[str(s.owner_index)] = jnp.asarray(
                    CODECS[s.owner_codec][0](owner))
    if problems:
        raise ValueError("cannot set Caffe blobs:\n  " + "\n  ".join(problems))
    return {**variables, "params": params, "batch_stats": stats}


def _stored_dtype(collection: Mapping[str, Any], layer: str, index: int) -> Any:
    """The dtype the variables already hold for this blob (float32 for a blob they lack), so that
    set_caffe_blobs inverts caffe_blobs exactly for float32 and float64 variables alike."""
    current = collection.get(layer, {}).get(str(index))
    return np.float32 if current is None else np.dtype(current.dtype)


def _legacy_compatible(got: tuple[int, ...], want: tuple[int, ...]) -> bool:
    """Old caffemodels store every blob 4-D, padding with leading 1s (e.g. bias (1,1,1,N))."""
    strip = tuple(d for i, d in enumerate(got) if not (d == 1 and i < len(got) - len(want)))
    return strip == want
