"""Caffe protobuf text: parser, positions, located errors, Caffe's upgrades and the YAML/prototxt writers."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from netspec.caffe import (
    PrototxtError,
    collapse_singletons,
    inputs_to_layer,
    parse,
    parse_file,
    to_prototxt,
    to_yaml,
    upgrade_net,
    upgrade_v1,
)
from netspec.caffe.emit import yaml_string
from netspec.caffe.prototxt import ALWAYS_REPEATED, ENUMS, FLOAT_MAX, INT_RANGES, SCHEMA, iter_paths
from netspec.caffe.upgrade import V1_LAYER_TYPES, V1_NUMBER_BY_TYPE, V1_TYPE_BY_NUMBER

ZOO = Path(__file__).resolve().parents[2] / "shared" / "caffe-zoo"
needs_zoo = pytest.mark.skipif(not ZOO.is_dir(), reason=f"{ZOO} is absent")
ZOO_FILES = sorted(ZOO.glob("*/*.prototxt")) if ZOO.is_dir() else []


def _errors(text: str, **kw: Any) -> list[tuple[int, int, str]]:
    with pytest.raises(PrototxtError) as info:
        parse(text, file="t.prototxt", **kw)
    return [(d.loc.line, d.loc.col, d.message) for d in info.value.diagnostics if d.loc]


def _layer(data: dict[str, Any], name: str) -> dict[str, Any]:
    (layer,) = [lay for lay in data["layer"] if lay["name"] == name]
    return layer


# ----------------------------------------------------------------------------------------- real files


@needs_zoo
@pytest.mark.parametrize("path", ZOO_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_zoo_file_parses_locates_every_value_and_round_trips(path: Path) -> None:
    parsed = parse_file(path)
    assert set(iter_paths(parsed.data)) <= set(parsed.positions)
    assert parse(to_prototxt(parsed.data)).data == parsed.data
    assert yaml.safe_load(to_yaml(parsed.data)) == collapse_singletons(parsed.data)


# Counted independently with `grep -cE '^\s*layers?\s*\{'`.
LAYER_COUNTS = {
    "bvlc_alexnet/deploy.prototxt": 24,
    "bvlc_alexnet/train_val.prototxt": 26,
    "bvlc_googlenet/deploy.prototxt": 143,
    "bvlc_googlenet/train_val.prototxt": 166,
    "bvlc_reference_caffenet/deploy.prototxt": 24,
    "cifar10_full/cifar10_full_train_test.prototxt": 16,
    "cifar10_quick/cifar10_quick_train_test.prototxt": 15,
    "lenet/lenet.prototxt": 9,
    "lenet/lenet_train_test.prototxt": 11,
    "resnet50/ResNet-50-deploy.prototxt": 228,
    "squeezenet_v1.0/deploy.prototxt": 66,
    "squeezenet_v1.0/train_val.prototxt": 70,
}


@needs_zoo
@pytest.mark.parametrize("name,count", LAYER_COUNTS.items())
def test_zoo_layer_counts(name: str, count: int) -> None:
    parsed = parse_file(ZOO / name)
    assert parsed.message == "NetParameter"
    assert len(parsed.data["layer"]) == count


@needs_zoo
def test_alexnet_grouped_convolutions_and_repeated_vs_singular_fields() -> None:
    data = parse_file(ZOO / "bvlc_alexnet/deploy.prototxt").data
    assert [
        _layer(data, n)["convolution_param"].get("group", 1)
        for n in ("conv1", "conv2", "conv3", "conv4", "conv5")
    ] == [1, 2, 1, 2, 2]
    conv1 = _layer(data, "conv1")
    assert conv1["convolution_param"] == {"num_output": 96, "kernel_size": [11], "stride": [4]}
    assert conv1["bottom"] == ["data"] and conv1["param"] == [
        {"lr_mult": 1, "decay_mult": 1},
        {"lr_mult": 2, "decay_mult": 0},
    ]
    # Pooling's kernel_size/stride are singular in caffe.proto, convolution's are repeated.
    assert _layer(data, "pool1")["pooling_param"] == {"pool": "MAX", "kernel_size": 3, "stride": 2}
    assert _layer(data, "drop6")["dropout_param"] == {"dropout_ratio": 0.5}
    assert _layer(data, "norm1")["lrn_param"] == {"local_size": 5, "alpha": 0.0001, "beta": 0.75}


@needs_zoo
def test_vgg16_v1_layers_upgrade_to_v2_types_and_an_input_layer() -> None:
    parsed = parse_file(ZOO / "vgg16/VGG_ILSVRC_16_layers_deploy.prototxt")
    assert "layers" in parsed.data and parsed.data["layers"][0]["type"] == "CONVOLUTION"
    up = upgrade_net(parsed, inputs=True)
    assert "layers" not in up.data and "input" not in up.data and "input_dim" not in up.data
    assert Counter(layer["type"] for layer in up.data["layer"]) == {
        "Input": 1,
        "Convolution": 13,
        "ReLU": 15,
        "Pooling": 5,
        "InnerProduct": 3,
        "Dropout": 2,
        "Softmax": 1,
    }
    assert up.data["layer"][0] == {
        "name": "input",
        "type": "Input",
        "top": ["data"],
        "input_param": {"shape": [{"dim": [10, 3, 224, 224]}]},
    }
    # Positions still point into the V1 file: layer 1 is the first `layers {` (line 7), its type on line 11,
    # and the Input layer's third dim is the third `input_dim` (line 5).
    assert (up.loc(("layer", 1)).line, up.loc(("layer", 1, "type")).line) == (7, 11)
    assert up.loc(("layer", 0, "input_param", "shape", 0, "dim", 2)).line == 5
    assert up.data["layer"][1]["convolution_param"] == {"num_output": 64, "pad": [1], "kernel_size": [3]}


@needs_zoo
def test_resnet50_batchnorm_global_stats_and_tab_columns() -> None:
    parsed = parse_file(ZOO / "resnet50/ResNet-50-deploy.prototxt")
    bns = [layer for layer in parsed.data["layer"] if layer["type"] == "BatchNorm"]
    assert len(bns) == 53
    assert all(bn["batch_norm_param"] == {"use_global_stats": True} for bn in bns)
    assert parsed.data["input"] == ["data"] and parsed.data["input_dim"] == [1, 3, 224, 224]
    # Line 9 is "\tbottom: \"data\"": a tab counts as one column.
    assert parsed.positions[("layer", 0, "bottom", 0)] == (9, 2)
    assert parsed.positions[("layer", 0, "convolution_param", "num_output")] == (14, 3)


@needs_zoo
def test_squeezenet_input_shape() -> None:
    parsed = parse_file(ZOO / "squeezenet_v1.0/deploy.prototxt")
    # The file's own numbers (a batch of 10): input_shape { dim: 10 dim: 3 dim: 227 dim: 227 }.
    assert parsed.data["input_shape"] == [{"dim": [10, 3, 227, 227]}]
    assert parsed.data["input"] == ["data"]
    conv10 = _layer(parsed.data, "conv10")["convolution_param"]
    assert conv10["pad"] == [1] and conv10["kernel_size"] == [1]
    up = inputs_to_layer(parsed)
    assert up.data["layer"][0]["input_param"] == {"shape": [{"dim": [10, 3, 227, 227]}]}
    assert up.data["layer"][1]["name"] == "conv1" and len(up.data["layer"]) == 67


@needs_zoo
def test_googlenet_counts_and_train_val_preprocessing() -> None:
    deploy = parse_file(ZOO / "bvlc_googlenet/deploy.prototxt").data
    assert Counter(layer["type"] for layer in deploy["layer"])["Concat"] == 9
    train = parse_file(ZOO / "bvlc_googlenet/train_val.prototxt").data
    data_train = train["layer"][0]
    assert data_train["include"] == [{"phase": "TRAIN"}]
    assert data_train["transform_param"] == {"mirror": True, "crop_size": 224, "mean_value": [104, 117, 123]}
    assert sum(1 for layer in train["layer"] if layer["type"] == "SoftmaxWithLoss") == 3


@needs_zoo
def test_solver_files_are_recognised_and_typed() -> None:
    solver = parse_file(ZOO / "lenet/lenet_solver.prototxt")
    assert solver.message == "SolverParameter"
    assert solver.data == {
        "net": "examples/mnist/lenet_train_test.prototxt",
        "test_iter": [100],
        "test_interval": 500,
        "base_lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 0.0005,
        "lr_policy": "inv",
        "gamma": 0.0001,
        "power": 0.75,
        "display": 100,
        "max_iter": 10000,
        "snapshot": 5000,
        "snapshot_prefix": "examples/mnist/lenet",
        "solver_mode": "GPU",
    }
    quick = parse_file(ZOO / "bvlc_googlenet/quick_solver.prototxt").data
    assert quick["test_initialization"] is False and quick["lr_policy"] == "poly"


# ------------------------------------------------------------------------------------- syntax features

SNIPPET = """\
# a comment
name: 'tiny'  # trailing comment
layer {
  name: "conv" type: "Convolution"; bottom: "data", top: "conv"
  param: { lr_mult: 1 decay_mult: 1e0 }
\tconvolution_param <
    kernel_size: [3, 5]
    weight_filler { type: "gaussian" std: .01 }
  >
}
layer{name:"pool"type:"Pooling"pooling_param{pool:AVE kernel_size:2 global_pooling:t}
bottom: "co" 'nv' top: "pool"}
"""


def test_snippet_syntax_features() -> None:
    data = parse(SNIPPET).data
    assert data == {
        "name": "tiny",
        "layer": [
            {
                "name": "conv",
                "type": "Convolution",
                "bottom": ["data"],
                "top": ["conv"],
                "param": [{"lr_mult": 1, "decay_mult": 1.0}],
                "convolution_param": {
                    "kernel_size": [3, 5],
                    "weight_filler": {"type": "gaussian", "std": 0.01},
                },
            },
            {
                "name": "pool",
                "type": "Pooling",
                "pooling_param": {"pool": "AVE", "kernel_size": 2, "global_pooling": True},
                "bottom": ["conv"],
                "top": ["pool"],
            },
        ],
    }


def test_snippet_positions() -> None:
    pos = parse(SNIPPET).positions
    assert pos[("name",)] == (2, 1)
    assert pos[("layer", 0)] == (3, 1)
    assert pos[("layer", 0, "type")] == (4, 16)
    assert pos[("layer", 0, "top", 0)] == (4, 53)
    assert pos[("layer", 0, "convolution_param")] == (6, 2)
    assert pos[("layer", 0, "convolution_param", "kernel_size")] == (7, 5)  # the field name
    assert pos[("layer", 0, "convolution_param", "kernel_size", 1)] == (7, 22)  # the element itself
    assert pos[("layer", 1, "pooling_param", "global_pooling")] == (11, 69)
    assert pos[("layer", 1, "bottom", 0)] == (12, 1)


def test_string_escapes_and_numbers() -> None:
    text = r"""
        a: "tab\there \"q\" \\ \101\x42\u00e9 \303\251" b: 'it\'s'
        c: -inf d: nan e: -1.5e-3 f: 0x1F g: 017 h: 1.5f i: -7 j: inf k: -Infinity
    """
    data = parse(text, message=None).data
    assert data["a"] == 'tab\there "q" \\ AB\u00e9 \u00e9' and data["b"] == "it's"
    assert data["c"] == -math.inf and math.isnan(data["d"]) and data["e"] == -1.5e-3
    assert (data["f"], data["g"], data["h"], data["i"], data["j"], data["k"]) == (
        31,
        15,
        1.5,
        -7,
        math.inf,
        -math.inf,
    )


def test_unknown_fields_are_kept() -> None:
    # Fork dialect: ceil_mode is no BVLC field; an unknown message's repeated-everywhere names stay lists.
    data = parse(
        "layer { name: 'p' pooling_param { ceil_mode: false } foo_param { bottom: 'x' k: 1 k: 2 } }"
    ).data
    assert data["layer"][0]["pooling_param"] == {"ceil_mode": False}
    assert data["layer"][0]["foo_param"] == {"bottom": ["x"], "k": [1, 2]}
    assert "bottom" in ALWAYS_REPEATED and "kernel_size" not in ALWAYS_REPEATED


def test_schema_table_matches_caffe_proto_labels() -> None:
    spec = SCHEMA["LayerParameter"]
    assert all(
        spec[n].repeated
        for n in ("bottom", "top", "param", "include", "exclude", "loss_weight", "propagate_down", "blobs")
    )
    assert all(
        SCHEMA["ConvolutionParameter"][n].repeated for n in ("kernel_size", "stride", "pad", "dilation")
    )
    assert not any(SCHEMA["PoolingParameter"][n].repeated for n in ("kernel_size", "stride", "pad"))
    assert (
        SCHEMA["V1LayerParameter"]["type"].kind == "enum"
        and SCHEMA["LayerParameter"]["type"].kind == "string"
    )
    assert SCHEMA["SolverParameter"]["weight_decay"].repeated is False
    assert SCHEMA["V1LayerParameter"]["weight_decay"].repeated is True
    assert SCHEMA["SolverParameter"]["lr_policy"].kind == "string"
    assert SCHEMA["SolverParameter"]["regularization_type"].kind == "string"


# ------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "text,expected",
    [
        (
            'layer {\n  name: "conv1\n}\n',
            [(2, 9, "unterminated string (a string must end on the line it starts)")],
        ),
        ('layer {\n  name: "a"\n}\n}\n', [(4, 1, "unbalanced '}' at the top level")]),
        (
            'name: "n"\nlayer {\n  convolution_param {\n  }\n',
            [(2, 7, "'{' of 'layer' is never closed (reached end of file)")],
        ),
        (
            'layer {\n  name "a"\n}',
            [(2, 8, "expected ':' or '{' after field name 'name', found string \"a\"")],
        ),
        ("layer { x: 1 >", [(1, 14, "unbalanced '>' inside 'layer'")]),
        ("layer {\n  top: }", [(2, 8, "expected a value for field 'top', found '}'")]),
        ("3: 4", [(1, 1, "expected a field name, found number 3")]),
        ("a: - b", [(1, 6, "expected a number after '-' for field 'a', found identifier b")]),
        ("a: 5abc", [(1, 4, "invalid number '5abc'")]),
        ("name: 'a\\qb'", [(1, 9, "invalid escape sequence '\\\\q' in string")]),
        ("a: 1 @ b: 2", [(1, 6, "unexpected character '@'")]),
    ],
)
def test_syntax_errors_are_located(text: str, expected: list[tuple[int, int, str]]) -> None:
    assert _errors(text) == expected


def test_type_errors_are_all_reported_together() -> None:
    text = """layer {
  name: conv1
  type: "Pooling"
  pooling_param { pool: "MAX" kernel_size: 2.5 global_pooling: 2 }
  param: 3
  bottom { a: 1 }
  name: "again"
}
"""
    assert _errors(text) == [
        (2, 3, "field 'name' expects a quoted string, found conv1"),
        (4, 19, "field 'pool' expects a bare enum name (no quotes), found \"MAX\""),
        (4, 31, "field 'kernel_size' expects an integer, found 2.5"),
        (4, 48, "field 'global_pooling' expects true or false, found 2"),
        (5, 3, "field 'param' is a message (ParamSpec): write 'param { ... }'"),
        (6, 3, "field 'bottom' takes a string value, not a message block"),
        (7, 3, "field 'name' is given 2 times but LayerParameter allows it once"),
    ]


def _fields(kind: str) -> list[tuple[str, str, Any]]:
    return [(m, n, spec) for m, fields in SCHEMA.items() for n, spec in fields.items() if spec.kind == kind]


def _one(data: dict[str, Any], name: str) -> Any:
    value = data[name]
    return value[0] if isinstance(value, list) else value


def test_enum_numbers_become_names_by_caffe_protos_numbering() -> None:
    # Every enum field of every message: each number reads as its name; a number the enum lacks is a
    # located error (protobuf's text parser refuses it too).
    enum_fields = _fields("enum")
    assert len(enum_fields) == 28
    for message, name, spec in enum_fields:
        for value, number in ENUMS[spec.type].items():
            assert _one(parse(f"{name}: {number}", message=message).data, name) == value
        bad = max(ENUMS[spec.type].values()) + 1
        with pytest.raises(PrototxtError, match=f"{bad} is not a number of caffe.proto's enum {spec.type}"):
            parse(f"{name}: {bad}", message=message)
    # Spot checks against caffe.proto, where same-named fields have different enums.
    assert parse("operation: 0", message="EltwiseParameter").data == {"operation": "PROD"}
    assert parse("operation: 1", message="ReductionParameter").data == {"operation": "SUM"}
    assert _errors("layer { reduction_param { operation: 0 } }") == [
        (1, 27, "field 'operation': 0 is not a number of caffe.proto's enum ReductionOp (SUM = 1, ASUM = 2, "
                "SUMSQ = 3, MEAN = 4)")]
    assert parse("layer { pooling_param { pool: 1 round_mode: 1 } include { phase: 1 } }").data == {
        "layer": [{"pooling_param": {"pool": "AVE", "round_mode": "FLOOR"}, "include": [{"phase": "TEST"}]}]}
    assert parse("layers { type: 4 }").data == {"layers": [{"type": "CONVOLUTION"}]}
    assert parse("solver_mode: 0 base_lr: 0.1", message="auto").data == {"solver_mode": "CPU", "base_lr": 0.1}


def test_integer_fields_are_range_checked_by_their_caffe_proto_type() -> None:
    types = {(m, n): spec.type for m, n, spec in _fields("int")}
    assert {types[k] for k in types} == {"int32", "uint32", "int64"}
    assert (types["ConvolutionParameter", "num_output"], types["ConvolutionParameter", "axis"],
            types["BlobShape", "dim"], types["SolverParameter", "random_seed"],
            types["SolverParameter", "max_iter"]) == ("uint32", "int32", "int64", "int64", "int32")
    for (message, name), proto_type in types.items():
        low, high = INT_RANGES[proto_type]
        assert _one(parse(f"{name}: {high} {name}: {low}" if SCHEMA[message][name].repeated
                          else f"{name}: {high}", message=message).data, name) == high
        for bad in (low - 1, high + 1):
            refusal = f"field '{name}' is {proto_type}: {bad} is out of its range"
            with pytest.raises(PrototxtError, match=refusal):
                parse(f"{name}: {bad}", message=message)
    # Located, all together; hex and octal are read first (0x100000000 = 2^32).
    assert _errors("layer {\n  convolution_param { num_output: 0x100000000 group: -1 axis: 2147483648 }\n"
                   "  pooling_param { kernel_size: 4294967295 }\n}") == [
        (2, 23, "field 'num_output' is uint32: 0x100000000 is out of its range [0, 4294967295]"),
        (2, 47, "field 'group' is uint32: -1 is out of its range [0, 4294967295]"),
        (2, 57, "field 'axis' is int32: 2147483648 is out of its range [-2147483648, 2147483647]")]


def test_float_fields_are_range_checked_and_huge_integers_never_crash() -> None:
    assert parse("layer { loss_weight: 3.4e38 loss_weight: -inf loss_weight: nan }").data["layer"][0][
        "loss_weight"][:2] == [3.4e38, -math.inf]
    assert _errors("layer { loss_weight: 3.5e38 loss_weight: -1e999 }") == [
        (1, 9, f"field 'loss_weight' is float: 3.5e38 is out of its range (±{FLOAT_MAX:.7g})"),
        (1, 29, f"field 'loss_weight' is float: -1e999 is out of its range (±{FLOAT_MAX:.7g})")]
    assert _errors("layer { blobs { double_data: 1e308 double_data: 1e309 } }") == [
        (1, 36, "field 'double_data' is double: 1e309 is out of its range (±1.797693e+308)")]
    # Past Python's 4300-digit conversion limit: one located error, not a crash.
    assert _errors("layer { convolution_param { num_output: " + "9" * 5000 + " } }") == [
        (1, 41, "integer 999999999999999999999... (5000 characters) is out of the range of every caffe.proto "
                "integer type")]


@pytest.mark.parametrize("depth", [101, 1000, 10000])
def test_nesting_deeper_than_protobufs_limit_is_one_located_error(depth: int) -> None:
    text = "a {\n" * depth + "}" * depth
    assert _errors(text, message=None) == [
        (101, 3, "messages nested more than 100 deep (protobuf's text parser stops there too)")]


def test_nesting_up_to_the_limit_parses() -> None:
    data = parse("a { " * 100 + "b: 1 " + "}" * 100, message=None).data
    for _ in range(100):
        data = data["a"]
    assert data == {"b": 1}


def test_error_text_is_file_line_col() -> None:
    with pytest.raises(PrototxtError) as info:
        parse("layer {\n  name: 'a'\n  name: 'b'\n}", file="net.prototxt")
    assert (
        str(info.value)
        == "net.prototxt:3:3: error: field 'name' is given 2 times but LayerParameter allows it once"
    )


def test_lexical_errors_and_the_syntax_error_come_together() -> None:
    assert [e[:2] for e in _errors("a: 'x\\q'\nb: 1 $\nc {")] == [(1, 6), (2, 6), (3, 3)]


def test_singular_field_in_list_syntax_is_an_error() -> None:
    assert _errors("name: ['a']") == [
        (1, 1, "field 'name' is not repeated in NetParameter: write it without [ ]")
    ]


# ------------------------------------------------------------------------------------------- upgrade

V1_NET = """name: "old"
layers {
  name: "data" type: DATA top: "data" top: "label"
  data_param { source: "db" batch_size: 8 scale: 0.5 mirror: true }
}
layers {
  name: "conv" type: CONVOLUTION bottom: "data" top: "conv"
  blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0 param: "shared_w"
  convolution_param { num_output: 4 kernel_size: 3 }
}
layers { name: "loss" type: 21 bottom: "conv" bottom: "label" top: "loss" loss_weight: 2 }
"""


def test_v1_upgrade_follows_caffe() -> None:
    up = upgrade_v1(parse(V1_NET, file="v1.prototxt"))
    assert up.data == {
        "name": "old",
        "layer": [
            {
                "name": "data",
                "type": "Data",
                "top": ["data", "label"],
                "data_param": {"source": "db", "batch_size": 8},
                "transform_param": {"scale": 0.5, "mirror": True},
            },
            {
                "name": "conv",
                "type": "Convolution",
                "bottom": ["data"],
                "top": ["conv"],
                "param": [
                    {"name": "shared_w", "lr_mult": 1, "decay_mult": 1},
                    {"lr_mult": 2, "decay_mult": 0},
                ],
                "convolution_param": {"num_output": 4, "kernel_size": [3]},
            },
            {
                "name": "loss",
                "type": "SoftmaxWithLoss",
                "bottom": ["conv", "label"],
                "top": ["loss"],
                "loss_weight": [2],
            },
        ],
    }
    pos = up.positions
    assert pos[("layer", 1, "param", 1, "lr_mult")] == (8, 15)
    assert pos[("layer", 1, "param", 1, "decay_mult")] == (8, 43)
    assert pos[("layer", 0, "transform_param", "mirror")] == (4, 54)
    assert pos[("layer", 0, "transform_param")] == (4, 3)
    assert pos[("layer", 2, "type")] == (11, 23)


def test_v1_unknown_types_are_located_errors() -> None:
    text = ("layers { name: 'a' type: CONVOLUTON }\nlayers {\n  name: 'b'\n  type: 4\n}\n"
            "layers { type: NONE }\n")
    with pytest.raises(PrototxtError) as info:
        upgrade_v1(parse(text, file="v1.prototxt"))
    found = [(str(d.loc), d.message, d.hint) for d in info.value.diagnostics]
    assert found[0] == ("v1.prototxt:1:20", "unknown V1 layer type CONVOLUTON", "did you mean 'CONVOLUTION'?")
    assert found[1][:2] == ("v1.prototxt:6:10", "V1 layer type NONE has no layer to upgrade to")
    assert len(found) == 2  # `type: 4` is CONVOLUTION, by caffe.proto's numbering
    # A number LayerType lacks is refused by the parser, as protobuf's text parser does.
    with pytest.raises(PrototxtError) as info:
        parse(text.replace("type: 4", "type: 99"), file="v1.prototxt")
    assert [(str(d.loc), d.message) for d in info.value.diagnostics] == [
        ("v1.prototxt:4:3",
         "field 'type': 99 is not a number of caffe.proto's enum LayerType (numbers 0 to 39)")]


def test_v1_mixed_and_v0_nets_are_refused() -> None:
    with pytest.raises(PrototxtError, match="either V1 'layers' or V2 'layer'"):
        upgrade_v1(parse("layer { name: 'a' }\nlayers { name: 'b' type: RELU }"))
    with pytest.raises(PrototxtError, match="V0 layer definitions"):
        upgrade_v1(parse("layers { layer { name: 'a' type: 'conv' } }"))


def test_the_v1_type_map_imports_without_numpy() -> None:
    # `netspec check` reads V1 `layers:` specs with this map; it must stay a light import.
    import subprocess
    import sys

    code = ("import sys; from netspec.caffe.upgrade import V1_LAYER_TYPES; "
            "print(len(V1_LAYER_TYPES), 'numpy' in sys.modules, 'jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["39", "False", "False"]


def test_v1_type_table() -> None:
    assert sorted(V1_TYPE_BY_NUMBER.values()) == sorted(ENUMS["LayerType"])
    assert len(V1_LAYER_TYPES) == 39  # caffe.proto's LayerType has 40 values, NONE maps to nothing
    assert V1_LAYER_TYPES["SOFTMAX_LOSS"] == "SoftmaxWithLoss" and V1_LAYER_TYPES["TANH"] == "TanH"
    assert V1_LAYER_TYPES["HDF5_DATA"] == "HDF5Data" and V1_LAYER_TYPES["ABSVAL"] == "AbsVal"
    assert V1_NUMBER_BY_TYPE["Convolution"] == 4 and V1_TYPE_BY_NUMBER[39] == "DECONVOLUTION"
    assert len(V1_TYPE_BY_NUMBER) == 40


def test_inputs_to_layer_with_two_inputs_and_dims() -> None:
    text = (
        "input: 'a'\ninput: 'b'\ninput_dim: 1\ninput_dim: 2\ninput_dim: 3\ninput_dim: 4\n"
        "input_dim: 5\ninput_dim: 6\ninput_dim: 7\ninput_dim: 8\nlayer { name: 'x' }\n"
    )
    up = inputs_to_layer(parse(text))
    assert up.data == {
        "layer": [
            {
                "name": "input",
                "type": "Input",
                "top": ["a", "b"],
                "input_param": {"shape": [{"dim": [1, 2, 3, 4]}, {"dim": [5, 6, 7, 8]}]},
            },
            {"name": "x"},
        ]
    }
    assert up.positions[("layer", 0, "top", 1)] == (2, 1)
    assert up.positions[("layer", 0, "input_param", "shape", 1, "dim", 3)] == (10, 1)
    assert up.positions[("layer", 1, "name")] == (11, 9)


def test_inputs_to_layer_errors_and_bare_input() -> None:
    with pytest.raises(PrototxtError) as info:
        inputs_to_layer(parse("input: 'a'\ninput_dim: 1\ninput_dim: 2"))
    assert (
        str(info.value)
        == "<string>:2:1: error: 1 input(s) need 4 input_dim values (N, C, H, W each), found 2"
    )
    with pytest.raises(PrototxtError, match="one input_shape per input"):
        inputs_to_layer(parse("input: 'a' input: 'b' input_shape { dim: 1 }"))
    # As in Caffe, an input with no shape at all (old caffemodels) is simply dropped.
    assert inputs_to_layer(parse("input: 'a'\nlayer { name: 'x' }")).data == {"layer": [{"name": "x"}]}


# ------------------------------------------------------------------------------------------- writers


@pytest.mark.parametrize(
    "s",
    [
        "on",
        "off",
        "yes",
        "No",
        "y",
        "n",
        "null",
        "~",
        "true",
        "False",
        "1.5",
        "1e5",
        "0x10",
        ".inf",
        "-1",
        "",
        " a",
        "a ",
        "a: b",
        "#x",
        "it's",
        "line\nbreak",
        "\t",
        "\x85",
        "\u2028",
        "\x00",
        "[x]",
        "{x}",
        "a #b",
        "@x",
        "'q'",
        '"q"',
        "2024-01-01",
        "1:30",
        "<<",
        "=",
        "-",
        "?x",
        "\\",
        "\u00e9t\u00e9",
    ],
)
def test_yaml_strings_that_need_quotes(s: str) -> None:
    text = yaml_string(s)
    assert text[0] in "'\"" and yaml.safe_load(f"k: {text}") == {"k": s}


@pytest.mark.parametrize(
    "s",
    [
        "conv1",
        "fire2/squeeze1x1",
        "examples/mnist/lenet",
        "SoftmaxWithLoss",
        "MAX",
        "inception_3a/5x5_reduce",
        "VGG ILSVRC 16",
        "ResNet-50",
    ],
)
def test_yaml_plain_strings_stay_plain(s: str) -> None:
    assert yaml_string(s) == s


def test_yaml_layout_is_pinned() -> None:
    data = parse("""name: "net"
input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "c" type: "Convolution" bottom: "data" top: "c"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 8 kernel_size: 3 weight_filler { type: "gaussian" std: 1e-05 } } }
layer { name: "yes" type: "Pooling" bottom: "c" bottom: "c2" top: "p"
  pooling_param { pool: MAX kernel_size: 2 } }
""").data
    assert (
        to_yaml(data, header_comment="netspec check n.yaml")
        == """\
# netspec check n.yaml
name: net
input: data
input_shape: {dim: [1, 3, 8, 8]}
layer:
  - name: c
    type: Convolution
    bottom: data
    top: c
    param:
      - {lr_mult: 1, decay_mult: 1}
      - {lr_mult: 2, decay_mult: 0}
    convolution_param:
      num_output: 8
      kernel_size: 3
      weight_filler: {type: gaussian, std: 1.0e-05}
  - name: 'yes'
    type: Pooling
    bottom: [c, c2]
    top: p
    pooling_param: {pool: MAX, kernel_size: 2}
"""
    )


def test_prototxt_layout_is_pinned() -> None:
    data = {
        "name": "n",
        "layer": [
            {
                "name": "p",
                "type": "Pooling",
                "bottom": "c",
                "top": ["p"],
                "pooling_param": {"pool": "MAX", "kernel_size": 2},
                "include": {"phase": "TEST"},
                "weird": 'quote"d\n',
            }
        ],
    }
    text = to_prototxt(data)
    assert (
        text
        == """\
name: "n"
layer {
  name: "p"
  type: "Pooling"
  bottom: "c"
  top: "p"
  pooling_param {
    pool: MAX
    kernel_size: 2
  }
  include {
    phase: TEST
  }
  weird: "quote\\"d\\n"
}
"""
    )
    # Lone values for repeated fields come back as lists: the schema knows they repeat.
    assert parse(text).data["layer"][0]["bottom"] == ["c"]
    assert parse(text).data["layer"][0]["include"] == [{"phase": "TEST"}]


def test_prototxt_keeps_short_lists_of_unknown_fields() -> None:
    data = {"x": [], "y": [1.5], "z": [{"a": "b"}], "layer": []}
    assert parse(to_prototxt(data)).data == data


# Hypothesis: generic nested data (no schema) and Caffe-shaped nets (schema on).
_keys = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True) | st.sampled_from(
    ["on", "no", "y", "null", "true"]
)
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_scalars = (
    st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, width=64)
    | st.booleans()
    | _text
    | st.sampled_from(["yes", "1e5", "0x1", "~", ".nan", "-", "a: b"])
)
_nested = st.recursive(
    st.dictionaries(_keys, _scalars | st.lists(_scalars, max_size=4), max_size=4),
    lambda children: st.dictionaries(_keys, _scalars | children | st.lists(children, max_size=3), max_size=4),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(_nested)
def test_yaml_round_trip(data: dict[str, Any]) -> None:
    assert yaml.safe_load(to_yaml(data)) == collapse_singletons(data)


@settings(max_examples=100, deadline=None)
@given(_nested)
def test_prototxt_round_trip_without_schema(data: dict[str, Any]) -> None:
    assert parse(to_prototxt(data, message=None), message=None).data == data


_names = st.from_regex(r"[a-z][a-z0-9_/]{0,10}", fullmatch=True)
_param = st.fixed_dictionaries(
    {},
    optional={
        "lr_mult": st.floats(0, 10),
        "decay_mult": st.integers(0, 2),
        "name": _names,
        "share_mode": st.sampled_from(["STRICT", "PERMISSIVE"]),
    },
)
_layer_st = st.fixed_dictionaries(
    {
        "name": _names,
        "type": st.sampled_from(["Convolution", "Pooling", "ReLU", "Eltwise"]),
        "bottom": st.lists(_names, max_size=3),
        "top": st.lists(_names, min_size=1, max_size=2),
    },
    optional={
        "param": st.lists(_param, max_size=2),
        "include": st.lists(st.fixed_dictionaries({"phase": st.sampled_from(["TRAIN", "TEST"])}), max_size=2),
        "convolution_param": st.fixed_dictionaries(
            {"num_output": st.integers(1, 512)},
            optional={
                "kernel_size": st.lists(st.integers(1, 7), max_size=3),
                "bias_term": st.booleans(),
                "weight_filler": st.fixed_dictionaries({"type": st.sampled_from(["xavier", "MAX", "true"])}),
            },
        ),
        "pooling_param": st.fixed_dictionaries(
            {"pool": st.sampled_from(["MAX", "AVE"])},
            optional={"kernel_size": st.integers(1, 5), "round_mode": st.sampled_from(["CEIL", "FLOOR"])},
        ),
        "eltwise_param": st.fixed_dictionaries(
            {"operation": st.sampled_from(["SUM", "PROD", "MAX"])},
            optional={"coeff": st.lists(st.floats(-2, 2), max_size=3)},
        ),
        "loss_weight": st.lists(st.floats(0, 1), max_size=2),
    },
)
_net = st.fixed_dictionaries(
    {"layer": st.lists(_layer_st, max_size=4)},
    optional={
        "name": _text,
        "input": st.lists(_names, max_size=2),
        "input_shape": st.lists(
            st.fixed_dictionaries({"dim": st.lists(st.integers(1, 300), max_size=4)}), max_size=2
        ),
        "force_backward": st.booleans(),
    },
)


@settings(max_examples=100, deadline=None)
@given(_net)
def test_prototxt_round_trip_of_caffe_nets(net: dict[str, Any]) -> None:
    text = to_prototxt(net)
    assert parse(text).data == net
    assert yaml.safe_load(to_yaml(net)) == collapse_singletons(net)
