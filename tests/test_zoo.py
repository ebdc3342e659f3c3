"""The model zoo in specs/: published parameter counts and multiply-adds, shapes, line budgets, and block
expansions that equal the hand-written Caffe prototxts (generated here, or the real files in ../shared)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli
from netspec.check import check
from netspec.graph import build
from netspec.layers import REGISTRY
from netspec.shapes import ShapeReport
from netspec.spec import LayerEnvelope, LayerSpec, NetSpec, load_spec

SPECS = Path(__file__).resolve().parents[1] / "specs"
ZOO = Path(__file__).resolve().parents[2] / "shared" / "caffe-zoo"
ALL = sorted(p.name for p in SPECS.glob("*.yaml"))
MODELINE = "# yaml-language-server: $schema=../netspec/schema/netspec.schema.json"


@cache
def report(name: str, phase: str = "TEST") -> ShapeReport:
    return check(SPECS / name, phase=phase)  # type: ignore[arg-type]


@cache
def spec(name: str) -> NetSpec:
    return load_spec(SPECS / name)


def shape_of(name: str, layer: str) -> tuple[int, ...]:
    return report(name).row(layer).tops[0][1]


# ----------------------------------------------------------------------------------------------
# every spec


def test_the_zoo_is_complete() -> None:
    wanted = {"lenet", "lenet5", "cifar10_quick", "alexnet", "zfnet", "vgg_a", "vgg_a_lrn", "vgg_b", "vgg_c",
              "vgg16", "vgg19", "googlenet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
              "se_resnet50", "densenet121", "alphago_policy", "resnet18_cifar"}
    assert wanted <= {Path(n).stem for n in ALL}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("phase", ["TRAIN", "TEST"])
def test_every_spec_checks_in_both_phases(name: str, phase: str) -> None:
    r = report(name, phase)
    assert r.learnable_params > 0
    assert not [d for d in r.diagnostics if d.severity == "error"]


@pytest.mark.parametrize("name", ALL)
def test_every_spec_says_how_to_run_it_and_names_its_schema(name: str) -> None:
    lines = (SPECS / name).read_text().splitlines()
    assert lines[0].startswith("#") and f"specs/{name}" in lines[0]
    assert any(cmd in lines[0] for cmd in ("netspec check", "netspec train"))
    assert MODELINE in lines[:16]
    header = lines[:lines.index(MODELINE)]
    assert all(l.startswith("#") for l in header) and len(header) >= 3  # the source or paper is cited


# ----------------------------------------------------------------------------------------------
# published totals


@pytest.mark.parametrize("name, params", [
    ("lenet.yaml", 431_080),            # Caffe's examples/mnist LeNet
    ("alexnet.yaml", 60_965_224),       # bvlc_alexnet
    ("vgg16.yaml", 138_357_544),        # VGG-16 (D), torchvision vgg16
    ("vgg19.yaml", 143_667_240),        # VGG-19 (E), torchvision vgg19
    ("googlenet.yaml", 6_998_552),      # bvlc_googlenet deploy
    ("resnet18.yaml", 11_689_512),      # torchvision resnet18 ...
    ("resnet34.yaml", 21_797_672),
    ("resnet50.yaml", 25_557_032),
    ("resnet101.yaml", 44_549_160),
    ("resnet152.yaml", 60_192_808),
    ("densenet121.yaml", 7_978_856),    # torchvision densenet121
    ("se_resnet50.yaml", 28_088_024),   # SENet's SE-ResNet-50 (Cadene's se_resnet50)
    ("cifar10_quick.yaml", 145_578),    # Caffe's examples/cifar10 quick net
    ("resnet18_cifar.yaml", 11_173_962),  # kuangliu/pytorch-cifar ResNet18
    ("alphago_policy.yaml", 3_882_793),  # 48*192*25+192 + 11*(192*192*9+192) + 192 + 361
])
def test_learnable_parameters(name: str, params: int) -> None:
    assert report(name).learnable_params == params


@pytest.mark.parametrize("name, millions", [
    ("vgg_a.yaml", 133), ("vgg_a_lrn.yaml", 133), ("vgg_b.yaml", 133), ("vgg_c.yaml", 134),
    ("vgg16.yaml", 138), ("vgg19.yaml", 144),
])
def test_vgg_parameters_round_to_table_2_of_the_paper(name: str, millions: int) -> None:
    assert round(report(name).learnable_params / 1e6) == millions


@pytest.mark.parametrize("name, published", [
    ("resnet18.yaml", 1.8e9), ("resnet34.yaml", 3.6e9), ("resnet50.yaml", 3.8e9), ("resnet101.yaml", 7.6e9),
    ("resnet152.yaml", 11.3e9),
])
def test_resnet_multiply_adds_match_table_1(name: str, published: float, monkeypatch: pytest.MonkeyPatch) -> None:
    # The totals users see: the report's and `netspec check --json`'s.
    monkeypatch.chdir(SPECS.parent)
    r = run_cli(["check", f"specs/{name}", "--json"])
    totals = json.loads(r.out)["totals"]
    assert r.rc == 0
    assert abs(report(name).macs / published - 1) < 0.02
    assert abs(totals["macs"] / published - 1) < 0.02
    assert totals["flops"] == 2 * totals["macs"]


@pytest.mark.parametrize("name", ALL)
def test_only_convolutions_and_inner_products_count_multiply_adds(name: str) -> None:
    weighted = ("Convolution", "Deconvolution", "InnerProduct")
    rows = report(name).rows
    assert all(row.macs == 0 for row in rows if row.type not in weighted)
    assert report(name).macs == sum(row.macs for row in rows if row.type in weighted) > 0


def test_original_resnet50_puts_the_stride_in_the_first_1x1() -> None:
    rows = {r.name: r for r in report("resnet50.yaml").rows}
    assert rows["res3a_branch2a"].tops[0][1][2:] == (28, 28)  # 1x1 stride 2
    assert rows["res3a_branch2a"].macs == 128 * 28 * 28 * 256
    assert rows["res3a_branch2b"].macs == 128 * 28 * 28 * 128 * 9  # 3x3 at the reduced size


def test_lenet5_layers_have_the_papers_parameter_counts() -> None:
    rows = report("lenet5.yaml").rows
    params = {r.name: r.params for r in rows}
    assert params["c1"] == 156
    assert params["s2/coeff"] == 12  # trainable coefficient and bias per S2 map
    assert sum(p for n, p in params.items() if n.startswith("c3_")) == 1_516
    assert params["s4/coeff"] == 32
    assert params["c5"] == 48_120
    assert params["f6"] == 10_164
    assert sum(params.values()) - params["output"] == 60_000  # "60,000 trainable parameters"
    c3 = [r for r in rows if r.name.startswith("c3_") and r.type == "Convolution"]
    fan_in = sorted(r.blobs[0].shape[1] for r in c3)
    assert fan_in == [3] * 6 + [4] * 9 + [6]  # table I: six 3-input, nine 4-input maps, one with all six
    assert shape_of("lenet5.yaml", "c3") == (64, 16, 10, 10)
    assert shape_of("lenet5.yaml", "c5") == (64, 120, 1, 1)


# ----------------------------------------------------------------------------------------------
# shapes


def test_alexnet_top_shapes() -> None:
    got = [shape_of("alexnet.yaml", n)[1:] for n in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4",
                                                     "conv5", "pool5")]
    assert got == [(96, 55, 55), (96, 27, 27), (256, 27, 27), (256, 13, 13), (384, 13, 13), (384, 13, 13),
                   (256, 13, 13), (256, 6, 6)]


def test_googlenet_pool_shapes() -> None:
    got = {n: shape_of("googlenet.yaml", n)[2:] for n in ("pool1/3x3_s2", "pool2/3x3_s2", "pool3/3x3_s2",
                                                          "pool4/3x3_s2", "pool5/7x7_s1")}
    assert got == {"pool1/3x3_s2": (56, 56), "pool2/3x3_s2": (28, 28), "pool3/3x3_s2": (14, 14),
                   "pool4/3x3_s2": (7, 7), "pool5/7x7_s1": (1, 1)}
    assert shape_of("googlenet.yaml", "inception_5b/output")[1] == 1024


def test_resnet_and_densenet_shapes() -> None:
    assert shape_of("resnet50.yaml", "pool1")[2:] == (56, 56)
    assert shape_of("resnet50.yaml", "res5c")[1:] == (2048, 7, 7)
    assert shape_of("resnet50.yaml", "pool5")[2:] == (1, 1)
    assert shape_of("densenet121.yaml", "pool1")[2:] == (56, 56)  # round_mode FLOOR; Caffe's CEIL gives 57
    assert shape_of("densenet121.yaml", "concat_5_16")[1:] == (1024, 7, 7)
    assert shape_of("se_resnet50.yaml", "conv5_3")[1:] == (2048, 7, 7)
    assert shape_of("resnet18_cifar.yaml", "res5b")[1:] == (512, 4, 4)


def test_zfnet_shapes_follow_figure_3() -> None:
    got = [shape_of("zfnet.yaml", n)[2:] for n in ("conv1", "pool1", "conv2", "pool2", "conv5", "pool5")]
    assert got == [(110, 110), (55, 55), (26, 26), (13, 13), (13, 13), (6, 6)]


def test_alphago_policy_is_a_softmax_over_the_361_points() -> None:
    r = report("alphago_policy.yaml")
    assert all(shape_of("alphago_policy.yaml", f"conv{i}")[1:] == (192, 19, 19) for i in range(1, 13))
    assert shape_of("alphago_policy.yaml", "flat") == (16, 361)
    assert r.row("position_bias").params == 361


# ----------------------------------------------------------------------------------------------
# blocks: line budgets and expansions equal to the hand-written nets


def test_line_budgets() -> None:
    assert len((SPECS / "resnet152.yaml").read_text().splitlines()) <= 60
    assert len((SPECS / "googlenet.yaml").read_text().splitlines()) <= 80  # the whole file, stem included


def kaiming_resnet(blocks: tuple[int, int, int, int], numbered: frozenset[int]) -> list[tuple[Any, ...]]:
    """The layers of KaimingHe/deep-residual-networks' ResNet-N-deploy.prototxt, generated: (name, type,
    bottoms, tops, (num_output, kernel, stride, pad, bias) for convolutions)."""
    out: list[tuple[Any, ...]] = []

    def add(name: str, kind: str, bottom: str | None, top: str, conv: tuple[int, ...] | None = None) -> None:
        out.append((name, kind, (bottom,) if bottom else (), (top,), conv))

    def conv_bn(base: str, bottom: str, n: int, k: int, s: int, relu: bool) -> None:
        blob = f"res{base}"
        add(blob, "Convolution", bottom, blob, (n, k, s, k // 2, False))
        add(f"bn{base}", "BatchNorm", blob, blob)
        add(f"scale{base}", "Scale", blob, blob)
        if relu:
            add(f"{blob}_relu", "ReLU", blob, blob)

    add("data", "Input", None, "data")
    add("conv1", "Convolution", "data", "conv1", (64, 7, 2, 3, False))
    add("bn_conv1", "BatchNorm", "conv1", "conv1")
    add("scale_conv1", "Scale", "conv1", "conv1")
    add("conv1_relu", "ReLU", "conv1", "conv1")
    add("pool1", "Pooling", "conv1", "pool1")
    prev = "pool1"
    for stage, (count, planes) in enumerate(zip(blocks, (64, 128, 256, 512)), start=2):
        for b in range(count):
            tag = "a" if b == 0 else f"b{b}" if stage in numbered else "abcdefghijklmnopqrstuvwxyz"[b]
            name, stride = f"{stage}{tag}", 2 if b == 0 and stage > 2 else 1
            if b == 0:
                conv_bn(f"{name}_branch1", prev, 4 * planes, 1, stride, relu=False)
            conv_bn(f"{name}_branch2a", prev, planes, 1, stride, relu=True)
            conv_bn(f"{name}_branch2b", f"res{name}_branch2a", planes, 3, 1, relu=True)
            conv_bn(f"{name}_branch2c", f"res{name}_branch2b", 4 * planes, 1, 1, relu=False)
            shortcut = f"res{name}_branch1" if b == 0 else prev
            out.append((f"res{name}", "Eltwise", (shortcut, f"res{name}_branch2c"), (f"res{name}",), None))
            add(f"res{name}_relu", "ReLU", f"res{name}", f"res{name}")
            prev = f"res{name}"
    add("pool5", "Pooling", prev, "pool5")
    add("fc1000", "InnerProduct", "pool5", "fc1000")
    add("prob", "Softmax", "fc1000", "prob")
    return out


def _wiring(layer: LayerSpec) -> tuple[Any, ...]:
    conv = None
    if layer.type == "Convolution":
        p = layer.messages["convolution_param"]
        conv = (p.num_output, p.kernel_size[0], (p.stride or (1,))[0], (p.pad or (0,))[0], p.bias_term)
    return (layer.name, layer.type, layer.bottom, layer.top, conv)


@pytest.mark.parametrize("name, blocks, numbered", [
    ("resnet50.yaml", (3, 4, 6, 3), frozenset()),
    ("resnet101.yaml", (3, 4, 23, 3), frozenset({3, 4})),
    ("resnet152.yaml", (3, 8, 36, 3), frozenset({3, 4})),
])
def test_resnet_expansion_equals_kaimings_prototxt(name: str, blocks: tuple[int, int, int, int],
                                                   numbered: frozenset[int]) -> None:
    layers = [n.layer for n in build(spec(name), "TEST").nodes]
    assert [_wiring(l) for l in layers] == kaiming_resnet(blocks, numbered)
    for l in layers:
        if l.type == "Scale":
            assert l.messages["scale_param"].bias_term
        if l.type == "Pooling":
            p = l.messages["pooling_param"]
            assert (p.pool, p.kernel_size, p.stride) == (("MAX", 3, 2) if l.name == "pool1" else ("AVE", 7, 1))


# -- against the real prototxt files (the shared model zoo) ------------------------------------------

needs_zoo = pytest.mark.skipif(not ZOO.is_dir(), reason=f"{ZOO} is absent (the shared model zoo)")
_SPATIAL_DEFAULTS = {"pad": (0,), "stride": (1,), "dilation": (1,)}


def _canonical(name: str, kind: str, bottom: tuple[str, ...], top: tuple[str, ...], param: tuple[Any, ...],
               messages: dict[str, Any]) -> tuple[Any, ...]:
    """A layer as Caffe sees it: every default filled in, `pad: 0` the same as no pad."""
    msgs = {k: dict(v) for k, v in messages.items()}
    if "convolution_param" in msgs:
        for key, default in _SPATIAL_DEFAULTS.items():
            msgs["convolution_param"][key] = tuple(msgs["convolution_param"][key]) or default
    if kind == "Input":
        name = "<input>"  # net-level `input:` upgrades to a layer named after the blob
    return (name, kind, bottom, top, param, msgs)


def _ours(name: str) -> list[tuple[Any, ...]]:
    return [_canonical(l.name, l.type, l.bottom, l.top, tuple(p.model_dump() for p in l.param),
                       {k: v.model_dump() for k, v in l.messages.items()})
            for l in (n.layer for n in build(spec(name), "TEST").nodes)]


def _theirs(path: Path) -> list[tuple[Any, ...]]:
    from netspec.caffe.prototxt import parse_file
    from netspec.caffe.upgrade import upgrade_net

    out = []
    for l in upgrade_net(parse_file(path), inputs=True).data["layer"]:
        env = LayerEnvelope.model_validate({k: v for k, v in l.items() if not k.endswith("_param")})
        msgs = {m: t.model_validate(l.get(m, {})).model_dump() for m, t in REGISTRY[env.type].messages.items()}
        out.append(_canonical(env.name, env.type, env.bottom, env.top, tuple(p.model_dump() for p in env.param),
                              msgs))
    return out


@needs_zoo
@pytest.mark.parametrize("name, prototxt", [
    ("googlenet.yaml", "bvlc_googlenet/deploy.prototxt"),
    ("alexnet.yaml", "bvlc_alexnet/deploy.prototxt"),
    ("vgg16.yaml", "vgg16/VGG_ILSVRC_16_layers_deploy.prototxt"),
])
def test_expansion_equals_the_published_prototxt(name: str, prototxt: str) -> None:
    ours, theirs = _ours(name), _theirs(ZOO / prototxt)
    assert [l[0] for l in ours] == [l[0] for l in theirs]
    assert ours == theirs


@needs_zoo
def test_resnet50_equals_kaimings_deploy_file_up_to_three_documented_choices() -> None:
    ours, theirs = _ours("resnet50.yaml"), _theirs(ZOO / "resnet50" / "ResNet-50-deploy.prototxt")
    assert len(ours) == len(theirs) == 229

    def normalise(layer: tuple[Any, ...]) -> tuple[Any, ...]:
        name, kind, bottom, top, param, msgs = layer
        msgs = {k: dict(v) for k, v in msgs.items()}
        if kind == "Convolution":
            msgs["convolution_param"].pop("weight_filler")  # ours: msra, so the spec can train; deploy: none
            if name == "conv1":
                msgs["convolution_param"].pop("bias_term")  # theirs has a bias; ours matches torchvision
        if kind == "BatchNorm":
            msgs["batch_norm_param"].pop("use_global_stats")  # deploy freezes statistics; ours trains too
        return (name, kind, bottom, top, param, msgs)

    assert [normalise(l) for l in ours] == [normalise(l) for l in theirs]


@needs_zoo
def test_cifar10_quick_and_lenet_equal_caffes_train_test_nets() -> None:
    for name, prototxt in (("cifar10_quick.yaml", "cifar10_quick/cifar10_quick_train_test.prototxt"),
                           ("lenet.yaml", "lenet/lenet_train_test.prototxt")):
        for phase in ("TRAIN", "TEST"):
            ours = [_wiring_full(n.layer) for n in build(spec(name), phase).nodes if n.layer.type != "Input"]
            s = load_spec(ZOO / prototxt, _yaml_of(ZOO / prototxt))
            theirs = [_wiring_full(n.layer) for n in build(s, phase).nodes if not n.kind.is_input]
            assert ours == theirs


def _wiring_full(layer: LayerSpec) -> tuple[Any, ...]:
    return _canonical(layer.name, layer.type, layer.bottom, layer.top, tuple(p.model_dump() for p in layer.param),
                      {k: v.model_dump() for k, v in layer.messages.items()})


def _yaml_of(path: Path) -> str:
    import json

    from netspec.caffe.prototxt import parse_file

    return json.dumps(parse_file(path).data)  # JSON is YAML
