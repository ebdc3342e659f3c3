"""The graph stage: phase filtering, implicit chaining, in-place blob ids, forward references,
topological order and cycles, all wiring problems collected in one pass."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netspec.errors import NetspecError
from netspec.graph import build, build_partial
from netspec.source import load_yaml
from netspec.spec import NetStateRule, parse

INPUT = "  - {name: data, type: Input, top: data, input_param: {shape: {dim: [1, 3, 8, 8]}}}\n"


def spec_of(body: str, head: str = "name: t\n") -> object:
    return parse(load_yaml(head + "layer:\n" + INPUT + body, "g.yaml"), "g.yaml")


def test_in_place_writes_get_their_own_blob_ids() -> None:
    g = build(spec_of("  - {name: conv, type: Convolution, convolution_param: {num_output: 4, kernel_size: 3}}\n"
                      "  - {name: relu, type: ReLU, bottom: conv, top: conv}\n"
                      "  - {name: pool, type: Pooling, bottom: conv, pooling_param: {kernel_size: 2}}\n"))
    assert [(n.name, n.bottoms, n.tops) for n in g.nodes] == [
        ("data", (), ("data",)), ("conv", ("data",), ("conv",)), ("relu", ("conv",), ("conv@relu",)),
        ("pool", ("conv@relu",), ("pool",))]
    assert g.blob_names["conv@relu"] == "conv"
    assert g.outputs == ("pool",)


def test_implicit_chaining_reads_the_previous_top() -> None:
    g = build(spec_of("  - {name: a, type: ReLU}\n  - {name: b, type: Sigmoid}\n"))
    assert [(n.name, n.bottoms, n.tops) for n in g.nodes][1:] == [("a", ("data",), ("a",)), ("b", ("a",), ("b",))]


def test_forward_reference_is_ordered() -> None:
    g = build(spec_of("  - {name: late, type: ReLU, bottom: early}\n  - {name: early, type: Sigmoid, bottom: data}\n"))
    assert [n.name for n in g.nodes] == ["data", "early", "late"]


@pytest.mark.parametrize("phase,names", [("TRAIN", ["data", "drop", "loss_train"]), ("TEST", ["data", "acc"])])
def test_phase_filtering(phase: str, names: list[str]) -> None:
    s = spec_of("  - {name: drop, type: Dropout, include: {phase: TRAIN}}\n"
                "  - {name: loss_train, type: ReLU, exclude: {phase: TEST}}\n"
                "  - {name: acc, type: Sigmoid, bottom: data, include: [{phase: TEST}]}\n")
    assert [n.name for n in build(s, phase).nodes] == names  # type: ignore[arg-type]


def test_levels_and_stages_from_the_net_state() -> None:
    body = ("  - {name: deep, type: ReLU, include: {min_level: 1}}\n"
            "  - {name: staged, type: Sigmoid, bottom: data, include: {stage: deploy}}\n"
            "  - {name: unstaged, type: TanH, bottom: data, exclude: {stage: deploy}}\n")
    plain = build(spec_of(body))
    assert [n.name for n in plain.nodes] == ["data", "unstaged"]
    state = build(spec_of(body, "name: t\nstate: {level: 2, stage: deploy}\n"))
    assert [n.name for n in state.nodes] == ["data", "deep", "staged"]


def test_rule_matching_is_caffes() -> None:
    rule = NetStateRule(phase="TRAIN", min_level=1, max_level=3, stage=("a",), not_stage=("b",))
    assert rule.matches("TRAIN", 2, frozenset({"a"}))
    assert not rule.matches("TEST", 2, frozenset({"a"}))
    assert not rule.matches("TRAIN", 4, frozenset({"a"}))
    assert not rule.matches("TRAIN", 2, frozenset({"a", "b"}))
    assert not rule.matches("TRAIN", 2, frozenset())


def test_same_name_in_two_phases_is_not_a_duplicate() -> None:
    s = parse(load_yaml("layer:\n"
                        "  - {name: data, type: Input, top: data, include: {phase: TRAIN}, input_param: {shape: {dim: [2, 3]}}}\n"
                        "  - {name: data, type: Input, top: data, include: {phase: TEST}, input_param: {shape: {dim: [1, 3]}}}\n"
                        "  - {name: out, type: ReLU}\n"))
    assert [n.name for n in build(s, "TRAIN").nodes] == ["data", "out"]


def test_wiring_problems_come_together_and_broken_layers_stay_wired() -> None:
    s = spec_of("  - {name: a, type: Eltwise, bottom: data}\n"              # too few bottoms
                "  - {name: b, type: ReLU, bottom: a}\n"                    # fine: 'a' is defined
                "  - {name: c, type: ReLU, bottom: nope}\n"                 # unknown bottom
                "  - {name: b, type: Sigmoid, bottom: data, top: bb}\n")    # duplicate name
    graph, diags = build_partial(s)  # type: ignore[arg-type]
    assert [(d.loc.line if d.loc else 0, d.layer, d.message) for d in diags] == [
        (4, "a", "Eltwise takes at least 2 bottoms, got 1"),
        (6, "c", "unknown bottom blob 'nope'"),
        (7, "b", "duplicate layer name 'b' (first at line 5)"),
    ]
    assert [n.name for n in graph.nodes] == ["data", "b", "b"]  # 'a' and 'c' are left out
    with pytest.raises(NetspecError):
        build(s)  # type: ignore[arg-type]


def test_cycle_is_reported_once_with_its_path() -> None:
    s = spec_of("  - {name: a, type: Concat, bottom: [data, c]}\n  - {name: b, type: ReLU, bottom: a}\n"
                "  - {name: c, type: ReLU, bottom: b}\n  - {name: d, type: ReLU, bottom: c}\n")
    graph, diags = build_partial(s)  # type: ignore[arg-type]
    assert [d.message for d in diags] == ["the layers form a cycle: a → b → c → a"]
    assert [n.name for n in graph.nodes] == ["data"]  # d waits on the cycle: left out, not reported


@pytest.mark.parametrize("shape", ["unknown bottoms", "chain behind a cycle"])
@pytest.mark.timeout(120)  # a hang guard, not a speed test (speed: tools/bench_check.py)
def test_many_errors_are_reported_once_each(shape: str) -> None:
    """Thousands of problems: each reported once (a chain behind a cycle adds nothing)."""
    if shape == "unknown bottoms":
        body = "".join(f"  - {{name: l{i}, type: ReLU, bottom: x{i}}}\n" for i in range(4000))
    else:
        body = ("  - {name: a, type: Concat, bottom: [data, c]}\n  - {name: b, type: ReLU, bottom: a}\n"
                "  - {name: c, type: ReLU, bottom: b}\n" +
                "".join(f"  - {{name: t{i}, type: ReLU, bottom: {'c' if i == 0 else f't{i - 1}'}}}\n"
                        for i in range(4000)))
    s = spec_of(body)
    _, diags = build_partial(s)  # type: ignore[arg-type]
    assert len([d for d in diags if d.severity == "error"]) == (4000 if shape == "unknown bottoms" else 1)


# -- properties over random DAGs ------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> list[tuple[str, list[str]]]:
    """Layers (name, bottoms), each reading earlier blobs: a DAG in creation order."""
    n = draw(st.integers(1, 12))
    layers: list[tuple[str, list[str]]] = []
    for i in range(n):
        blobs = ["data"] + [name for name, _ in layers]
        bottoms = draw(st.lists(st.sampled_from(blobs), min_size=1, max_size=3, unique=True))
        layers.append((f"l{i}", bottoms))
    return layers


def _yaml(layers: list[tuple[str, list[str]]]) -> str:
    return "".join(f"  - {{name: {name}, type: Concat, bottom: [{', '.join(b)}]}}\n" for name, b in layers)


@settings(max_examples=60, deadline=None)
@given(dag=dags(), seed=st.integers(0, 2**32 - 1))
def test_any_file_order_of_a_dag_is_ordered_topologically(dag: list[tuple[str, list[str]]], seed: int) -> None:
    shuffled = dag[:]
    random.Random(seed).shuffle(shuffled)
    graph = build(spec_of(_yaml(shuffled)))  # type: ignore[arg-type]
    position = {n.name: i for i, n in enumerate(graph.nodes)}
    assert set(position) == {"data"} | {name for name, _ in dag}
    for name, bottoms in dag:
        assert all(position[b] < position[name] for b in bottoms)


@settings(max_examples=100, deadline=None)
@given(dag=dags(), data=st.data())
def test_a_back_edge_is_a_cycle_or_a_forward_reference(dag: list[tuple[str, list[str]]],
                                                       data: st.DataObject) -> None:
    """Layer i also reads layer j ≥ i: a cycle exactly when j already depends on i."""
    i = data.draw(st.integers(0, len(dag) - 1))
    j = data.draw(st.integers(i, len(dag) - 1))
    depends = {name: set(bottoms) for name, bottoms in dag}
    for name, _ in dag:  # creation order: the transitive closure in one pass
        depends[name] |= {x for b in set(depends[name]) if b in depends for x in depends[b]}
    dag = [(name, bottoms + ([dag[j][0]] if k == i else [])) for k, (name, bottoms) in enumerate(dag)]
    edges = {(b, name) for name, bottoms in dag for b in bottoms}
    graph, diags = build_partial(spec_of(_yaml(dag)))  # type: ignore[arg-type]
    errors = [d for d in diags if d.severity == "error"]
    if i != j and dag[i][0] not in depends[dag[j][0]]:
        assert errors == [] and len(graph.nodes) == len(dag) + 1
        return
    assert len(errors) == 1
    if i == j:  # a layer reading its own top
        k = len(dag[i][1]) - 1
        assert errors[0].message == (f"top 0 '{dag[i][0]}' is the layer's bottom {k}; in-place computation "
                                     "pairs top i with bottom i")
        return
    path = errors[0].message.removeprefix("the layers form a cycle: ").split(" → ")
    assert path[0] == path[-1] and len(path) >= 3
    assert all((a, b) in edges for a, b in zip(path, path[1:]))
