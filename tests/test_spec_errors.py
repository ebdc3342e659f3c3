"""`netspec check` on realistic broken specs: exact messages at exact line:col, all in one pass."""

from __future__ import annotations

import json

import pytest

HEAD = ("name: t\n"
        "layer:\n"
        "  - {name: data, type: Input, top: data, input_param: {shape: {dim: [1, 3, 32, 32]}}}\n")

CONV8 = "convolution_param: {num_output: 8, kernel_size: 3}"

# (id, spec text, exact stderr)
CASES = [
    ("misspelt_field",
     HEAD + "  - name: conv1\n    type: Convolution\n    convolution_param: {num_ouput: 16, kernel_size: 3}\n",
     "net.yaml:6:25: error: conv1: unknown field 'num_ouput' in convolution_param; did you mean 'num_output'?\n"
     "1 error\n"),
    ("unknown_type",
     HEAD + "  - {name: conv1, type: Convolutoin, convolution_param: {num_output: 16, kernel_size: 3}}\n",
     "net.yaml:4:25: error: conv1: unknown layer type 'Convolutoin'; did you mean 'Convolution'?\n1 error\n"),
    ("bottom_typo",
     HEAD + f"  - {{name: conv1, type: Convolution, {CONV8}}}\n  - {{name: relu1, type: ReLU, bottom: cnov1}}\n",
     "net.yaml:5:39: error: relu1: unknown bottom blob 'cnov1'; did you mean 'conv1'?\n1 error\n"),
    ("duplicate_layer",
     HEAD + f"  - {{name: conv1, type: Convolution, {CONV8}}}\n  - {{name: conv1, type: ReLU}}\n",
     "net.yaml:5:12: error: conv1: duplicate layer name 'conv1' (first at line 4)\n1 error\n"),
    ("cycle_via_forward_references",
     HEAD + "  - {name: sum, type: Eltwise, bottom: [data, c]}\n  - {name: b, type: ReLU, bottom: sum}\n"
            "  - {name: c, type: ReLU, bottom: b}\n",
     "net.yaml:4:40: error: sum: the layers form a cycle: sum → b → c → sum\n"
     "  hint: a bottom may name a blob written later in the file, but the data must still flow one way\n"
     "1 error\n"),
    ("kernel_larger_than_input",
     HEAD + "  - {name: conv1, type: Convolution, convolution_param: {num_output: 8, kernel_size: 33}}\n",
     "net.yaml:4:57: error: conv1: kernel 33 is larger than the padded input: 32+2·0 = 32 rows\n"
     "  hint: bottom 'data' is 1×3×32×32\n1 error\n"),
    ("concat_mismatch",
     HEAD + f"  - {{name: a, type: Convolution, bottom: data, {CONV8}}}\n"
            "  - {name: b, type: Convolution, bottom: data, convolution_param: {num_output: 8, kernel_size: 1}}\n"
            "  - {name: cat, type: Concat, bottom: [a, b]}\n",
     "net.yaml:6:5: error: cat: Concat needs bottoms of equal shape except along axis 1; got 1×8×30×30, "
     "1×8×32×32\n  hint: bottom 'a' is 1×8×30×30; bottom 'b' is 1×8×32×32\n1 error\n"),
    ("bad_enum",
     HEAD + "  - {name: pool1, type: Pooling, pooling_param: {pool: MAXX, kernel_size: 2}}\n",
     "net.yaml:4:56: error: pool1: 'pooling_param.pool' must be one of MAX, AVE, STOCHASTIC, got 'MAXX'; "
     "did you mean 'MAX'?\n1 error\n"),
    ("negative_kernel",
     HEAD + "  - name: conv1\n    type: Convolution\n    convolution_param:\n      num_output: 8\n"
            "      kernel_size: -3\n",
     "net.yaml:8:20: error: conv1: 'convolution_param.kernel_size' must be positive, got -3\n1 error\n"),
    ("zero_stride_in_list",
     HEAD + "  - {name: conv1, type: Convolution, convolution_param: {num_output: 8, kernel_size: 3, "
            "stride: [1, 0]}}\n",
     "net.yaml:4:101: error: conv1: 'convolution_param.stride[1]' must be positive, got 0\n1 error\n"),
    ("dummy_data_counts_both_reported",
     "name: t\nlayer:\n  - {name: dd, type: DummyData, top: [a, b, c], dummy_data_param: {shape: [{dim: [2]}, "
     "{dim: [3]}],\n     data_filler: [{type: gaussian}, {type: uniform}]}}\n",
     "net.yaml:3:67: error: dd: 2 shapes for 3 tops\n"
     "net.yaml:4:19: error: dd: 2 data_filler for 3 tops; Caffe takes none, one for all tops, or one per top\n"
     "2 errors\n"),
    ("missing_num_output",
     HEAD + "  - {name: conv1, type: Convolution, convolution_param: {kernel_size: 3}}\n",
     "net.yaml:4:57: error: conv1: missing required field 'num_output' in convolution_param\n1 error\n"),
    ("missing_message",
     HEAD + "  - {name: conv1, type: Convolution}\n",
     "net.yaml:4:5: error: conv1: missing required field 'num_output' in convolution_param\n1 error\n"),
    ("legacy_input_dim_count",
     "name: t\ninput: data\ninput_dim: [1, 3, 32]\nlayer:\n  - {name: relu, type: ReLU, bottom: data}\n",
     "net.yaml:3:12: error: 'input_dim' needs 4 values (N, C, H, W) per input: 1 input(s) need 4, got 3\n"
     "1 error\n"),
    ("yaml_syntax",
     HEAD + "  - {name: conv1, type: Convolution\n  - {name: relu1, type: ReLU}\n",
     "net.yaml:5:5: error: YAML syntax: did not find expected ',' or '}' (while parsing a flow mapping that "
     "opens at line 4, column 5)\n1 error\n"),
    ("tab_indentation",
     "name: t\nlayer:\n\t- {name: data, type: Input}\n",
     "net.yaml:3:1: error: tab character: YAML indents with spaces only\n1 error\n"),
    ("wrong_value_types",
     HEAD + "  - {name: conv1, type: Convolution, convolution_param: {num_output: many, kernel_size: 3, "
            "bias_term: maybe}}\n",
     "net.yaml:4:70: error: conv1: 'convolution_param.num_output' must be an integer, got 'many'\n"
     "net.yaml:4:103: error: conv1: 'convolution_param.bias_term' must be true or false, got 'maybe'\n"
     "2 errors\n"),
    ("number_for_a_name",
     HEAD + "  - {name: 7, type: ReLU}\n",
     "net.yaml:4:12: error: layer #2: 'name' must be a string, got 7 (quote it to make it a string)\n1 error\n"),
    ("repeated_field_of_the_wrong_type",
     HEAD + "  - {name: relu, type: ReLU, bottom: {data: 1}}\n",
     "net.yaml:4:38: error: relu: 'bottom' must be a string (or a list of them), got a mapping\n1 error\n"),
    ("message_not_a_mapping",
     HEAD + "  - {name: conv1, type: Convolution, convolution_param: 5}\n",
     "net.yaml:4:57: error: conv1: 'convolution_param' must be a mapping of fields, got 5\n1 error\n"),
    ("misspelt_message_name",
     HEAD + "  - {name: conv1, type: Convolution, convolution_parm: {num_ouput: 8, kernel_size: 3}}\n",
     "net.yaml:4:38: error: conv1: unknown field 'convolution_parm'; did you mean 'convolution_param'?\n"
     "net.yaml:4:57: error: conv1: unknown field 'num_ouput' in convolution_param; did you mean 'num_output'?\n"
     "2 errors\n"),
    ("misspelt_envelope_field",
     HEAD + "  - {name: relu, type: ReLU, botom: data}\n",
     "net.yaml:4:30: error: relu: unknown field 'botom'; did you mean 'bottom'?\n1 error\n"),
    ("include_and_exclude",
     HEAD + "  - {name: relu, type: ReLU, include: {phase: TRAIN}, exclude: {phase: TEST}}\n",
     "net.yaml:4:55: error: relu: give either 'include' or 'exclude' rules, not both (Caffe refuses a layer "
     "with both)\n1 error\n"),
    ("bottom_only_in_other_phase",
     "name: t\nlayer:\n"
     "  - {name: mnist, type: Data, top: [data, label], include: {phase: TRAIN}, data_param: {source: x}}\n"
     "  - {name: data, type: Input, top: data, include: {phase: TEST}, input_param: {shape: {dim: [1, 1, 28, 28]}}}\n"
     "  - {name: ip, type: InnerProduct, bottom: data, inner_product_param: {num_output: 10}}\n"
     "  - {name: loss, type: SoftmaxWithLoss, bottom: [ip, label]}\n",
     "net.yaml:6:54: error: loss: unknown bottom blob 'label' (bottom 1): layer 'mnist' makes it, but that layer "
     "is not in the TEST net (include: {phase: TRAIN})\n"
     "  hint: exclude 'loss' from TEST too, or give the TEST net its own 'label'\n1 error\n"),
    ("inner_product_k_differs_between_phases",
     "name: t\nlayer:\n"
     "  - {name: data, type: Input, top: data, include: {phase: TRAIN}, input_param: {shape: {dim: [64, 1, 28, 28]}}}\n"
     "  - {name: data, type: Input, top: data, include: {phase: TEST}, input_param: {shape: {dim: [1, 1, 32, 32]}}}\n"
     "  - {name: ip, type: InnerProduct, inner_product_param: {num_output: 10}}\n",
     "net.yaml:5:5: error: ip: input size incompatible with inner product parameters: K = 1·32·32 = 1024 in the "
     "TEST net but 1·28·28 = 784 in the TRAIN net, so the weights would be 10×1024 and 10×784\n"
     "  hint: Caffe's TRAIN net shares this layer's weights by name; give both phases inputs of the same size, "
     "or rename the layer in one of them\n1 error\n"),
    ("in_place_not_allowed",
     HEAD + "  - {name: pool, type: Pooling, bottom: data, top: data, pooling_param: {kernel_size: 2, stride: 2}}\n",
     "net.yaml:4:52: error: pool: Pooling cannot compute in place (top 'data' is also its bottom)\n"
     "  hint: give the top its own name, e.g. 'pool'\n1 error\n"),
    ("in_place_wrong_index",
     HEAD + "  - {name: two, type: Split, bottom: data, top: [a, b]}\n"
            "  - {name: sum, type: Eltwise, bottom: [a, b], top: b}\n",
     "net.yaml:5:53: error: sum: top 0 'b' is the layer's bottom 1; in-place computation pairs top i with "
     "bottom i\n1 error\n"),
    ("top_from_two_layers",
     HEAD + f"  - {{name: a, type: Convolution, bottom: data, top: x, {CONV8}}}\n"
            f"  - {{name: b, type: Convolution, bottom: data, top: x, {CONV8}}}\n",
     "net.yaml:5:53: error: b: top blob 'x' is produced by multiple sources (layers 'a' and 'b')\n"
     "  hint: an in-place layer names the blob as both its bottom and its top; otherwise give this top its "
     "own name\n1 error\n"),
    ("too_few_bottoms",
     HEAD + "  - {name: sum, type: Eltwise, bottom: data}\n",
     "net.yaml:4:40: error: sum: Eltwise takes at least 2 bottoms, got 1\n1 error\n"),
    ("empty_file", "", "net.yaml:1:1: error: empty spec: expected a mapping with a 'layer:' list\n1 error\n"),
    ("not_a_mapping", "- a\n- b\n",
     "net.yaml:1:1: error: a spec must be a mapping (name, layer, ...), not a list\n1 error\n"),
    ("conv_every_lone_h_w_field",
     HEAD + "  - {name: c, type: Convolution, convolution_param: {num_output: 8, kernel_size: 3, stride_h: 2, "
            "pad_w: 1}}\n",
     "net.yaml:4:95: error: c: 'stride_h' and 'stride_w' go together\n  hint: bottom 'data' is 1×3×32×32\n"
     "net.yaml:4:105: error: c: 'pad_h' and 'pad_w' go together\n  hint: bottom 'data' is 1×3×32×32\n"
     "2 errors\n"),
    ("conv_both_group_problems",
     HEAD + "  - {name: c, type: Convolution, convolution_param: {num_output: 7, kernel_size: 3, group: 2}}\n",
     "net.yaml:4:92: error: c: input channels 3 are not divisible by group 2\n  hint: bottom 'data' is 1×3×32×32\n"
     "net.yaml:4:92: error: c: num_output 7 is not divisible by group 2\n  hint: bottom 'data' is 1×3×32×32\n"
     "2 errors\n"),
    ("pool_every_lone_h_w_field",
     HEAD + "  - {name: p, type: Pooling, pooling_param: {kernel_h: 2, stride_w: 2, pad_h: 1, kernel_size: 2}}\n",
     "net.yaml:4:69: error: p: 'stride_h' and 'stride_w' go together\n  hint: bottom 'data' is 1×3×32×32\n"
     "net.yaml:4:79: error: p: 'pad_h' and 'pad_w' go together\n  hint: bottom 'data' is 1×3×32×32\n"
     "net.yaml:4:95: error: p: give either 'kernel_size' or 'kernel_h'/'kernel_w', not both\n"
     "  hint: bottom 'data' is 1×3×32×32\n"
     "3 errors\n"),
    ("scalar_label_shape_is_named",
     "name: t\nlayer:\n  - {name: s, type: Input, input_param: {shape: {dim: [2, 10]}}}\n"
     "  - {name: l, type: Input, input_param: {shape: {}}}\n  - {name: loss, type: SoftmaxWithLoss, bottom: [s, l]}\n",
     "net.yaml:5:5: error: loss: label blob scalar has 1 labels but the scores 2×10 need 2 (one per position "
     "outside axis 1)\n  hint: bottom 's' is 2×10; bottom 'l' is scalar\n1 error\n"),
    ("unknown_top_level_key",
     "name: t\nlayres: []\n",
     "net.yaml:1:1: error: the spec has no 'layer:' list\n"
     "net.yaml:2:1: error: unknown field 'layres'; did you mean 'layers'?\n2 errors\n"),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_broken_spec_messages(check_text, text: str, expected: str) -> None:
    r = check_text(text)
    assert (r.rc, r.out, r.err) == (1, "", expected)


WARNINGS = [
    ("unused_top",
     HEAD + f"  - {{name: a, type: Convolution, bottom: data, {CONV8}}}\n"
            f"  - {{name: b, type: Convolution, bottom: data, {CONV8}}}\n",
     "net.yaml:4:5: warning: a: top 'a' is never used (it becomes a net output)\n"),
    ("lossy_conv",
     "name: t\nlayer:\n  - {name: data, type: Input, top: data, input_param: {shape: {dim: [1, 3, 224, 224]}}}\n"
     "  - {name: conv1, type: Convolution, convolution_param: {num_output: 64, kernel_size: 7, stride: 2, pad: 3}}\n",
     "net.yaml:4:57: warning: conv1: (224−7+2·3)/2+1 = 112.5, floored to 112; the last input row/column is "
     "never read\n"),
    ("ignored_message",
     HEAD + "  - {name: relu, type: ReLU, pooling_param: {kernel_size: 2}}\n",
     "net.yaml:4:30: warning: relu: 'pooling_param' is ignored by ReLU layers (they read relu_param)\n"),
    ("phase_field_trap",
     HEAD + "  - {name: drop, type: Dropout, phase: TRAIN}\n",
     "net.yaml:4:33: warning: drop: 'phase: TRAIN' does not take the layer out of the other phase's net; it "
     "makes the layer behave as in TRAIN in both\n"
     "  hint: to keep the layer in the TRAIN net only, write 'include: {phase: TRAIN}'\n"),
    ("rule_never_holds",
     HEAD + "  - {name: relu, type: ReLU, include: {min_level: 2, max_level: 1}}\n",
     "net.yaml:4:39: warning: relu: this include rule never holds: min_level 2 > max_level 1\n"),
    ("zero_dimension",
     "name: t\nlayer:\n  - {name: data, type: Input, top: data, input_param: {shape: {dim: [1, 0, 32, 32]}}}\n",
     "net.yaml:3:36: warning: data: top 'data' is 1×0×32×32: it holds no values\n"),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in WARNINGS], ids=[c[0] for c in WARNINGS])
def test_warnings_do_not_fail(check_text, text: str, expected: str) -> None:
    r = check_text(text)
    assert (r.rc, r.err) == (0, expected)
    assert r.out.startswith("t — net.yaml — TEST net")


def test_layer_count_is_bounded(check_text) -> None:
    """A spec may not ask for unbounded work: too many layers fail fast, with the count."""
    text = "layer:\n" + "".join(f"  - {{name: r{i}, type: ReLU}}\n" for i in range(10_001))
    r = check_text(text)
    assert (r.rc, r.err) == (1, "net.yaml:1:1: error: the net has 10,001 layers; netspec check stops at 10,000 "
                                "(ResNet-152 has 670)\n1 error\n")


def test_block_expansion_is_bounded_too(check_text) -> None:
    text = ("blocks:\n  r:\n    args: [k]\n    layer:\n      - {name: \"r${k}\", type: ReLU}\n"
            "layer:\n  - {use: r, repeat: 20000, with: {k: $i}}\n")
    r = check_text(text)
    # the expander refuses before expanding (netspec.blocks), at the repeat count
    assert (r.rc, r.err) == (1, "net.yaml:7:22: error: 'repeat: 20000' exceeds the limit of 10,000\n"
                                "  hint: a net may have at most that many layers\n1 error\n")


def test_strict_turns_the_lossy_conv_into_an_error(check_text) -> None:
    text = WARNINGS[1][1]
    r = check_text(text, "--strict")
    assert r.rc == 1
    assert r.err == ("net.yaml:4:57: error: conv1: (224−7+2·3)/2+1 = 112.5, floored to 112; the last input "
                     "row/column is never read\n1 error\n")


ABSURD_IP = HEAD + "  - {name: ip, type: InnerProduct, inner_product_param: {num_output: 1000000000}}\n"


def test_absurd_layer_is_counted_without_allocating_and_refused(check_text) -> None:
    # Caffe's Blob::Reshape: CHECK_LE(count_, INT_MAX) << "blob size exceeds INT_MAX"
    r = check_text(ABSURD_IP)
    assert (r.rc, r.out) == (1, "")
    assert r.err == ("net.yaml:4:5: error: ip: parameter blob 0 is 1000000000×3072 = 3,072,000,000,000 values "
                     "(11.2 TiB as float32); Caffe refuses blobs over 2^31−1 values\n1 error\n")


def test_absurd_layer_with_json_is_an_error_document(check_text) -> None:
    r = check_text(ABSURD_IP, "--json")
    doc = json.loads(r.out)
    assert r.rc == 1 and doc["ok"] is False
    assert [d["severity"] for d in doc["diagnostics"]] == ["error"]


@pytest.mark.parametrize("dims, refused", [
    ("[1, 2147483647]", False),  # 2^31−1 values: the most Caffe's int count holds
    ("[1, 2147483648]", True),
    ("[2, 1073741824]", True),
    ("[65536, 3, 224, 224]", True),
])
def test_top_over_int_max_values_is_an_error(check_text, dims: str, refused: bool) -> None:
    r = check_text(f"name: t\nlayer:\n  - {{name: data, type: Input, input_param: {{shape: {{dim: {dims}}}}}}}\n")
    assert r.rc == int(refused), r.err
    assert ("net.yaml:3:5: error: data: top 'data' is" in r.err) is refused


def test_parameter_blob_at_the_limit_is_allowed_and_one_past_it_refused(check_text) -> None:
    head = "name: t\nlayer:\n  - {name: data, type: Input, input_param: {shape: {dim: [1, 1]}}}\n"
    ok = check_text(head + "  - {name: ip, type: InnerProduct, inner_product_param: {num_output: 2147483647}}\n")
    assert ok.rc == 0, ok.err
    big = check_text(head + "  - {name: ip, type: InnerProduct, inner_product_param: {num_output: 1073741824}}\n"
                     "  - {name: ip2, type: InnerProduct, inner_product_param: {num_output: 2}}\n")
    assert big.rc == 1
    assert big.err.splitlines() == [
        "net.yaml:5:5: error: ip2: parameter blob 0 is 2×1073741824 = 2,147,483,648 values (8.0 GiB as float32); "
        "Caffe refuses blobs over 2^31−1 values", "1 error"]


def test_big_blobs_are_reported_with_the_other_errors(check_text) -> None:
    r = check_text(ABSURD_IP + "  - {name: r, type: ReLU, bottom: dta}\n")
    lines = r.err.splitlines()
    assert r.rc == 1
    assert lines[0].startswith("net.yaml:4:5: error: ip: parameter blob 0 is 1000000000×3072")
    assert lines[1] == "net.yaml:5:35: error: r: unknown bottom blob 'dta'; did you mean 'data'?"


V1_NET = ("name: t\n{key}:\n  - {{name: data, type: Input, input_param: {{shape: {{dim: [2, 3, 32, 32]}}}}}}\n"
          "  - {{name: label, type: Input, input_param: {{shape: {{dim: [2]}}}}}}\n"
          "  - {{name: c, type: {conv}, bottom: data, convolution_param: {{num_output: 8, kernel_size: 3}}}}\n"
          "  - {{name: r, type: {relu}, bottom: c, top: c}}\n"
          "  - {{name: p, type: {pool}, pooling_param: {{kernel_size: 2, stride: 2}}}}\n"
          "  - {{name: ip, type: {ip}, inner_product_param: {{num_output: 10}}}}\n"
          "  - {{name: loss, type: {loss}, bottom: [ip, label]}}\n")
V1_NAMES = {"conv": "CONVOLUTION", "relu": "RELU", "pool": "POOLING", "ip": "INNER_PRODUCT", "loss": "SOFTMAX_LOSS"}
V2_NAMES = {"conv": "Convolution", "relu": "ReLU", "pool": "Pooling", "ip": "InnerProduct", "loss": "SoftmaxWithLoss"}


def test_legacy_layers_take_v1_type_names(check_text) -> None:
    v1 = check_text(V1_NET.format(key="layers", **V1_NAMES), "--json")
    v2 = check_text(V1_NET.format(key="layer", **V2_NAMES), "--json")
    assert (v1.rc, v1.err) == (0, "")
    assert json.loads(v1.out)["layers"] == json.loads(v2.out)["layers"]  # the upgraded types, same counts
    assert [layer["type"] for layer in json.loads(v1.out)["layers"]][2:] == list(V2_NAMES.values())


def test_v1_type_names_are_errors_under_layer(check_text) -> None:
    r = check_text(V1_NET.format(key="layer", **V1_NAMES))
    assert r.rc == 1
    assert r.err.splitlines()[:2] == [
        "net.yaml:5:21: error: c: unknown layer type 'CONVOLUTION'; did you mean 'Convolution'?",
        "net.yaml:6:21: error: r: unknown layer type 'RELU'; did you mean 'ReLU'?"]


def test_legacy_layers_suggest_v1_names_and_name_unsupported_ones(check_text) -> None:
    r = check_text(V1_NET.format(key="layers", **{**V1_NAMES, "conv": "CONVOLUTON", "relu": "HDF5_OUTPUT"}))
    assert r.rc == 1
    first, second, hint, summary = r.err.splitlines()
    assert first == "net.yaml:5:21: error: c: unknown layer type 'CONVOLUTON'; did you mean 'CONVOLUTION'?"
    assert second == ("net.yaml:6:21: error: r: V1 layer type 'HDF5_OUTPUT' is Caffe's 'HDF5Output', which "
                      "netspec does not support")
    assert hint.startswith("  hint: known types: AbsVal, ") and summary == "2 errors"


def test_unknown_type_without_a_close_match_lists_the_known_ones(check_text) -> None:
    r = check_text(HEAD + "  - {name: x, type: Frobnicate}\n")
    first, hint, summary = r.err.splitlines()
    assert first == "net.yaml:4:21: error: x: unknown layer type 'Frobnicate'"
    assert hint.startswith("  hint: known types: AbsVal, Accuracy, BNLL, BatchNorm, ")
    assert summary == "1 error"


def test_every_problem_in_one_pass(check_text) -> None:
    """Independent problems in different stages (schema, wiring, shapes) all come out together,
    and a broken layer does not cascade into errors about its consumers."""
    text = (HEAD +
            "  - {name: conv1, type: Convolution, convolution_param: {num_ouput: 8, kernel_size: 3}}\n"  # 4
            "  - {name: relu1, type: ReLU, bottom: conv1, top: conv1}\n"  # 5: reads a broken layer: quiet
            "  - {name: pool1, type: Pooling, bottom: data, pooling_param: {pool: MAXX, kernel_size: 2}}\n"  # 6
            "  - {name: conv2, type: Convolution, bottom: dta, convolution_param: {num_output: 8, kernel_size: 3}}\n"
            "  - {name: conv3, type: Convolution, bottom: data, convolution_param: {num_output: 8, kernel_size: 40}}\n"
            "  - {name: conv3, type: ReLU, bottom: data}\n")  # 9
    r = check_text(text)
    assert r.rc == 1
    assert r.err.splitlines() == [
        "net.yaml:4:58: error: conv1: unknown field 'num_ouput' in convolution_param; did you mean 'num_output'?",
        "net.yaml:6:70: error: pool1: 'pooling_param.pool' must be one of MAX, AVE, STOCHASTIC, got 'MAXX'; "
        "did you mean 'MAX'?",
        "net.yaml:7:46: error: conv2: unknown bottom blob 'dta'; did you mean 'data'?",
        "net.yaml:8:71: error: conv3: kernel 40 is larger than the padded input: 32+2·0 = 32 rows",
        "  hint: bottom 'data' is 1×3×32×32",
        "net.yaml:9:12: error: conv3: duplicate layer name 'conv3' (first at line 8)",
        "5 errors",
    ]


def test_input_shape_that_changes_inner_product_k_is_explained(check_text) -> None:
    text = ("name: t\nlayer:\n  - {name: data, type: Input, top: data, input_param: {shape: {dim: [1, 1, 28, 28]}}}\n"
            "  - {name: ip, type: InnerProduct, inner_product_param: {num_output: 10}}\n")
    r = check_text(text, "--input-shape", "data=1,1,32,32")
    assert r.rc == 0
    assert r.err == ("net.yaml:4:5: warning: ip: input size incompatible with inner product parameters: K = "
                     "1·32·32 = 1024 with --input-shape data=1,1,32,32 but 1·28·28 = 784 with the spec's own "
                     "input shape, so the weights would be 10×1024 and 10×784\n"
                     "  hint: weights made for the spec's input size will not load into this net; a global "
                     "pooling before this layer makes the net independent of the input size\n")


def test_errors_as_json(check_text) -> None:
    r = check_text(CASES[0][1], "--json")
    assert r.rc == 1
    doc = json.loads(r.out)
    assert doc == {"format": "netspec-check/1", "ok": False, "diagnostics": [{
        "severity": "error", "file": "net.yaml", "line": 6, "col": 25, "layer": "conv1", "hint": None,
        "code": None,
        "message": "unknown field 'num_ouput' in convolution_param; did you mean 'num_output'?"}]}


# -- the validation fast path builds exactly what pydantic builds ---------------------------

from typing import Any  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from netspec.layers import REGISTRY  # noqa: E402
from netspec.message import Message, MessageError, fast_construct, pydantic_validate  # noqa: E402
from netspec.spec import LayerEnvelope, NetEnvelope  # noqa: E402

MODELS = sorted({m for cls in REGISTRY.values() for m in cls.messages.values()} | {LayerEnvelope, NetEnvelope},
                key=lambda m: m.__name__)
POOL = [0, 1, -1, 3, 7, 2**40, 0.5, 1.0, -2.5, 1e30, float("inf"), True, False, None, "", "x", "MAX", "AVE",
        "SUM", "TRAIN", "TEST", "xavier", "constant", "FAN_IN", [], [1, 2], [0], [-1], ["a", "b"], [1.5], [True],
        {}, {"type": "xavier"}, {"dim": [1, 3, 8, 8]}, {"dim": 4}, {"phase": "TRAIN"}, {"lr_mult": 0},
        [{"lr_mult": 1}, {"lr_mult": 2}], {"bogus": 1}, {"value": "x"}, [{"dim": [2]}]]


def _typed(x: Any) -> Any:
    """A value with its types spelt out, so that 1 and 1.0 and True differ."""
    if isinstance(x, Message):
        return (type(x).__name__, sorted(x.model_fields_set), {k: _typed(v) for k, v in x.__dict__.items()})
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, [_typed(v) for v in x])
    if isinstance(x, dict):
        return ("dict", {k: _typed(v) for k, v in x.items()})
    return (type(x).__name__, x)


@settings(max_examples=600, deadline=None)
@given(data=st.data())
def test_fast_path_builds_what_pydantic_builds(data: st.DataObject) -> None:
    model = data.draw(st.sampled_from(MODELS))
    keys = list(model.model_fields) + ["bogus"]
    value = data.draw(st.dictionaries(st.sampled_from(keys), st.sampled_from(POOL), max_size=4))
    fast = fast_construct(model, value)
    try:
        slow = pydantic_validate(model, value)
    except MessageError:
        slow = None
    if fast is not None:
        assert slow is not None, (model, value)
        assert _typed(fast) == _typed(slow), (model, value)


@pytest.mark.parametrize("model", MODELS, ids=[m.__name__ for m in MODELS])
def test_fast_path_takes_defaults_and_exact_values(model: type[Message]) -> None:
    required = {n for n, f in model.model_fields.items() if f.is_required()}
    if required:
        assert fast_construct(model, {}) is None
    else:
        assert _typed(fast_construct(model, {})) == _typed(pydantic_validate(model, {}))
