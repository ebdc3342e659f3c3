"""netspec.message: frozen Caffe messages that behave as the frozen pydantic models they replace."""

from __future__ import annotations

import copy
import pickle

import pytest

from netspec.layers.common import FillerParameter
from netspec.layers.conv import ConvolutionParameter
from netspec.layers.data import TransformationParameter
from netspec.layers.norm import LRNParameter
from netspec.message import MessageError, fast_construct, pydantic_model, validate
from netspec.spec import NetStateRule


def test_messages_are_immutable_and_copied_with_updates() -> None:
    p = validate(ConvolutionParameter, {"num_output": 8, "kernel_size": 3})
    with pytest.raises(TypeError, match="immutable"):
        p.num_output = 9  # type: ignore[misc]
    q = p.model_copy(update={"num_output": 16})
    assert (p.num_output, q.num_output, q.kernel_size) == (8, 16, (3,))
    assert q.model_fields_set == {"num_output", "kernel_size"}


def test_a_lone_value_is_a_one_element_list_and_defaults_are_caffes() -> None:
    p = validate(ConvolutionParameter, {"num_output": 8, "kernel_size": 3, "stride": [2, 1]})
    assert (p.kernel_size, p.stride, p.pad, p.group, p.bias_term) == ((3,), (2, 1), (), 1, True)
    assert p.weight_filler == FillerParameter() and p.weight_filler.type == "constant"
    assert p.model_fields_set == {"num_output", "kernel_size", "stride"}


def test_dump_honours_unset_defaults_and_none() -> None:
    p = validate(ConvolutionParameter, {"num_output": 8, "weight_filler": {"type": "xavier"}})
    assert p.model_dump(exclude_unset=True) == {"num_output": 8, "weight_filler": {"type": "xavier"}}
    assert p.model_dump(exclude_defaults=True) == {"num_output": 8, "weight_filler": {"type": "xavier"}}
    full = p.model_dump()
    assert full["pad"] == () and full["bias_filler"]["type"] == "constant" and full["pad_h"] is None
    assert p.model_dump(mode="json")["pad"] == []
    assert "pad_h" not in p.model_dump(exclude_none=True)


def test_equal_messages_hash_alike_and_survive_pickle_and_deepcopy() -> None:
    a = validate(NetStateRule, {"phase": "TEST", "stage": "deploy"})
    b = NetStateRule(phase="TEST", stage=["deploy"])
    assert a == b and hash(a) == hash(b) and a != NetStateRule(phase="TRAIN")
    for c in (pickle.loads(pickle.dumps(a)), copy.deepcopy(a)):
        assert c == a and c.model_fields_set == {"phase", "stage"}


def test_wrong_data_gets_pydantics_error_records() -> None:
    with pytest.raises(MessageError) as info:
        validate(ConvolutionParameter, {"num_output": 0, "kernel_size": [3, "x"], "bogus": 1})
    kinds = sorted((e["type"], tuple(e["loc"])) for e in info.value.errors)
    assert kinds == [("extra_forbidden", ("bogus",)), ("greater_than", ("num_output",)),
                     ("int_parsing", ("kernel_size", 1))]


def test_a_field_validator_runs_on_both_paths() -> None:
    assert fast_construct(LRNParameter, {"local_size": 3}).local_size == 3
    assert fast_construct(LRNParameter, {"local_size": 4}) is None  # pydantic words the error
    with pytest.raises(MessageError, match="local_size must be odd, got 4"):
        validate(LRNParameter, {"local_size": 4})


def test_a_message_inside_a_pydantic_model_takes_instances_data_and_dumps() -> None:
    from pydantic import BaseModel, ValidationError

    class Holder(BaseModel):
        transform_param: TransformationParameter = TransformationParameter()

    given = TransformationParameter(scale=0.5)
    assert Holder(transform_param=given).transform_param is given
    built = Holder.model_validate({"transform_param": {"mirror": True, "mean_value": 3}})
    assert isinstance(built.transform_param, TransformationParameter)
    assert built.transform_param.mean_value == (3.0,)
    assert built.model_dump(exclude_unset=True) == {"transform_param": {"mirror": True, "mean_value": (3.0,)}}
    with pytest.raises(ValidationError) as info:
        Holder.model_validate({"transform_param": {"crop_size": -1}})
    assert [tuple(e["loc"]) for e in info.value.errors()] == [("transform_param", "crop_size")]


def test_the_generated_pydantic_model_keeps_names_fields_and_docs() -> None:
    model = pydantic_model(ConvolutionParameter)
    assert model.__name__ == "ConvolutionParameter" and model.__doc__ == ConvolutionParameter.__doc__
    assert list(model.model_fields) == list(ConvolutionParameter.model_fields)
    assert model.model_fields["num_output"].is_required()
    assert model.model_fields["num_output"].description == "number of output channels"
