"""Caffe's protobuf messages as plain frozen classes, validated by pydantic only when needed.

A message declares its fields the way a pydantic model does (an annotation, and a default or
`Field(default, description=..., ge=...)`), and behaves like a frozen pydantic model for what
netspec uses of one (`model_fields`, `model_fields_set`, `model_dump`, `model_copy`,
`model_construct`, `model_validate`, `model_json_schema`, `field_validator`, `model_validator`,
equality, hashing, pickling).

Why not pydantic models themselves: `netspec check` runs in a fresh process each time, and
importing pydantic and creating ~50 model classes was over half of a check of ResNet-152 (about
200 ms of 400). Most specs are valid and their values already have their field's exact type, so
`validate` converts such data straight from the declarations (the fast path: types, Literal
choices, bounds, lone-value-or-list, nested messages, field and model validators) and gives up on anything
else. Then pydantic validates a model generated from the same declarations (`pydantic_model`),
and either its result is converted back or its errors are raised as `MessageError`. The JSON
Schema comes from the same generated models. Where the fast path accepts, the result equals
pydantic's (tests/test_spec_errors.py compares the two).
"""

from __future__ import annotations

import copy
import functools
import sys
import types
import typing
from typing import Annotated, Any, Callable, NamedTuple, TypeVar

T = TypeVar("T")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: the default of a required field
MISSING: Any = _Missing()


class Bound(NamedTuple):
    """A bound on a value, as annotated-types names them: gt, ge, lt, le, min_length, max_length."""

    kind: str
    value: Any


class _Listify:
    """Marks Caffe's repeated fields: a lone value stands for a one-element list."""

    def __repr__(self) -> str:
        return "Listify"


LISTIFY = _Listify()

Repeated = Annotated[tuple[T, ...], LISTIFY]
PositiveInt = Annotated[int, Bound("gt", 0)]
NonNegativeInt = Annotated[int, Bound("ge", 0)]


def _listify(value: Any) -> Any:
    """Caffe's repeated fields: a lone value stands for a one-element list."""
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return value
    return (value,)


class FieldInfo:
    """One declared field: its default (or factory), bounds and documentation."""

    __slots__ = ("name", "default", "default_factory", "description", "bounds", "exclude", "repr")

    def __init__(self, default: Any = MISSING, *, default_factory: Callable[[], Any] | None = None,
                 description: str | None = None, bounds: tuple[Bound, ...] = (), exclude: bool = False,
                 repr: bool = True) -> None:
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.description = description
        self.bounds = bounds
        self.exclude = exclude
        self.repr = repr

    def is_required(self) -> bool:
        return self.default is MISSING and self.default_factory is None

    def get_default(self) -> Any:
        return self.default_factory() if self.default_factory is not None else self.default


def Field(default: Any = MISSING, *, default_factory: Callable[[], Any] | None = None,  # noqa: N802
          description: str | None = None, gt: Any = None, ge: Any = None, lt: Any = None, le: Any = None,
          min_length: int | None = None, max_length: int | None = None, exclude: bool = False,
          repr: bool = True) -> Any:
    """A field's declaration, with pydantic's `Field` arguments (`...` for required)."""
    given = {"gt": gt, "ge": ge, "lt": lt, "le": le, "min_length": min_length, "max_length": max_length}
    return FieldInfo(MISSING if default is ... else default, default_factory=default_factory,
                     description=description, bounds=tuple(Bound(k, v) for k, v in given.items() if v is not None),
                     exclude=exclude, repr=repr)


def field_validator(*names: str) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Marks a function `(value) -> value` that checks (raising ValueError) fields `names` after
    their type and bounds, as pydantic's after-validators do."""
    def mark(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        fn.__validates__ = names  # type: ignore[attr-defined]
        return fn
    return mark


def model_validator(*, mode: str) -> Callable[[Any], Any]:
    """Marks a whole-message check, as pydantic's `model_validator`: mode "before" is a classmethod
    `(cls, data) -> data` run on the raw data, mode "after" a method `(self) -> self` run on the
    built message (on pydantic's side, on the generated model's instance, which has the same
    fields). Either raises ValueError for invalid data."""
    if mode not in ("before", "after"):
        raise ValueError(f"mode must be 'before' or 'after', got {mode!r}")

    def mark(fn: Any) -> Any:
        getattr(fn, "__func__", fn).__model_validator__ = mode
        return fn
    return mark


class MessageError(ValueError):
    """Data a message refuses: pydantic's error records (`type`, `loc`, `msg`, `input`, `ctx`)."""

    def __init__(self, model: type[Message], errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} validation error(s) for {model.__name__}: "
                         + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']} [type={e['type']}]"
                                     for e in errors))
        self.model = model
        self.errors = errors


_new = object.__new__
_set = object.__setattr__


class Message:
    """A Caffe protobuf message: immutable; unknown fields refused when validated from data.

    Subclasses declare fields by annotation; `model_fields` keeps them in order. An instance holds
    every field's value in its `__dict__`, and which were given in `model_fields_set`.
    """

    __slots__ = ("__dict__", "model_fields_set")
    model_fields: typing.ClassVar[dict[str, FieldInfo]] = {}
    #: field name -> functions run after its type and bounds (see `field_validator`)
    __validators__: typing.ClassVar[dict[str, tuple[Callable[[Any], Any], ...]]] = {}
    #: names of the `model_validator`s by mode ("before", "after"), in definition order
    __model_validators__: typing.ClassVar[dict[str, tuple[str, ...]]] = {"before": (), "after": ()}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields = dict(cls.model_fields)
        validators = {k: tuple(v) for k, v in cls.__validators__.items()}
        whole = {k: list(v) for k, v in cls.__model_validators__.items()}
        for name, annotation in cls.__dict__.get("__annotations__", {}).items():
            if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
                continue
            value = cls.__dict__.get(name, MISSING)
            info = value if isinstance(value, FieldInfo) else FieldInfo(value)
            info.name = name
            fields[name] = info
            if name in cls.__dict__:
                delattr(cls, name)  # instances hold every field; no class attribute shadows them
        for attr, value in list(cls.__dict__.items()):
            fn = getattr(value, "__func__", value)  # under @staticmethod/@classmethod
            for name in getattr(fn, "__validates__", ()):
                validators[name] = validators.get(name, ()) + (fn,)
            mode = getattr(fn, "__model_validator__", None)
            if mode is not None:
                whole[mode].append(attr)
        cls.model_fields = fields
        cls.__validators__ = validators
        cls.__model_validators__ = {k: tuple(v) for k, v in whole.items()}

    def __init__(self, **data: Any) -> None:
        built = validate(type(self), data)
        _set(self, "__dict__", built.__dict__)
        _set(self, "model_fields_set", built.model_fields_set)

    @classmethod
    def model_construct(cls, **values: Any) -> Any:
        """An instance from values taken as they are (no validation); the rest get their defaults."""
        return _builder(cls).instance(values)

    @classmethod
    def model_validate(cls, data: Any) -> Any:
        """An instance from plain data, or MessageError with every problem."""
        return validate(cls, data)

    @classmethod
    def model_json_schema(cls) -> dict[str, Any]:
        """The JSON Schema of the message (from its generated pydantic model)."""
        return pydantic_model(cls).model_json_schema()  # type: ignore[no-any-return]

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Any:
        """A copy with some fields replaced (not validated, as pydantic's model_copy)."""
        obj = _new(type(self))
        _set(obj, "__dict__", {**self.__dict__, **(update or {})})
        _set(obj, "model_fields_set", self.model_fields_set | set(update or ()))
        return obj

    def model_dump(self, *, mode: str = "python", exclude_unset: bool = False, exclude_defaults: bool = False,
                   exclude_none: bool = False, exclude: set[str] | None = None) -> dict[str, Any]:
        """The fields as plain data, nested messages as dicts (lists for tuples in "json" mode)."""
        out = {}
        for name, info in self.model_fields.items():
            if info.exclude or (exclude and name in exclude):
                continue
            if exclude_unset and name not in self.model_fields_set:
                continue
            value = self.__dict__[name]
            if exclude_none and value is None:
                continue
            if exclude_defaults and not info.is_required() and value == info.get_default():
                continue
            out[name] = _dump(value, mode, exclude_unset, exclude_defaults, exclude_none)
        return out

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """A message inside a pydantic model (a nested message of a generated model, or the
        TransformationParameter of the `data:` section): an instance passes as it is; data is
        validated by the generated model and converted back; dumped with `model_dump`."""
        from pydantic_core import core_schema

        def instance_or_data(value: Any, validate_data: Callable[[Any], Any]) -> Any:
            return value if isinstance(value, cls) else _from_pydantic(validate_data(value))

        return core_schema.no_info_wrap_validator_function(
            instance_or_data, handler.generate_schema(pydantic_model(cls)),
            serialization=core_schema.plain_serializer_function_ser_schema(_serialize, info_arg=True))

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError(f"{type(self).__name__} is immutable; use model_copy(update=...)")

    def __delattr__(self, name: str) -> None:
        raise TypeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__  # type: ignore[no-any-return]

    def __hash__(self) -> int:
        return hash((type(self), *self.__dict__.values()))

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={self.__dict__[n]!r}" for n, f in self.model_fields.items() if f.repr)
        return f"{type(self).__name__}({shown})"

    def __reduce__(self) -> Any:
        return _rebuild, (type(self), dict(self.__dict__), set(self.model_fields_set))


def _rebuild(cls: type[Message], values: dict[str, Any], given: set[str]) -> Message:
    obj = _new(cls)
    _set(obj, "__dict__", values)
    _set(obj, "model_fields_set", given)
    return obj


def _serialize(value: Message, info: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = _dump(value, info.mode, info.exclude_unset, info.exclude_defaults, info.exclude_none)
    return dumped


def _dump(value: Any, mode: str, *flags: bool) -> Any:
    if isinstance(value, Message):
        unset, defaults, none = flags
        return value.model_dump(mode=mode, exclude_unset=unset, exclude_defaults=defaults, exclude_none=none)
    if isinstance(value, (tuple, list)):
        items = [_dump(v, mode, *flags) for v in value]
        return items if mode == "json" or isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {k: _dump(v, mode, *flags) for k, v in value.items()}
    if mode == "json" and isinstance(value, (set, frozenset)):
        return [_dump(v, mode, *flags) for v in value]
    return value


@functools.cache
def hints(model: type[Message]) -> dict[str, Any]:
    """The fields' annotations, evaluated (they are strings until a model is first validated)."""
    module = sys.modules[model.__module__].__dict__
    out = {}
    for klass in reversed(model.__mro__):
        for name, annotation in klass.__dict__.get("__annotations__", {}).items():
            if name in model.model_fields:
                out[name] = eval(annotation, module, dict(vars(klass))) if isinstance(annotation, str) \
                    else annotation
    return out


def messages_in(annotation: Any) -> list[type[Message]]:
    """The message classes inside an annotation (`X`, `X | None`, `Repeated[X]`, ...), outermost first."""
    if isinstance(annotation, type) and issubclass(annotation, Message):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in messages_in(arg)]


def accepts_lone_value(model: type[Message], name: str) -> bool:
    """Whether a field is Caffe-repeated (`Repeated[...]`, directly or inside `X | None`)."""
    def marked(tp: Any) -> bool:
        if typing.get_origin(tp) is Annotated:
            return any(m is LISTIFY for m in tp.__metadata__) or marked(typing.get_args(tp)[0])
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            return any(marked(arg) for arg in typing.get_args(tp))
        return False
    return marked(hints(model)[name])


# ----------------------------------------------------------------------------------------------
# validation: the fast path, else pydantic


def validate(model: type[Message], data: Any) -> Any:
    """An instance of `model` from plain data; MessageError (pydantic's errors) when it is wrong."""
    built = fast_construct(model, data)
    return built if built is not None else pydantic_validate(model, data)


def fast_construct(model: type[Message], data: Any) -> Any:
    """The message built straight from `data`, or None where only pydantic can decide."""
    plan = _plan(model)
    if plan is None:
        return None
    try:
        for hook in plan.before:
            data = hook(data)
    except ValueError:
        return None  # pydantic words the error
    if not isinstance(data, dict):
        return None
    convert = plan.convert
    values = {}
    for key, value in data.items():
        to = convert.get(key)
        if to is None:
            return None
        value = to(value)
        if value is _REJECT:
            return None
        values[key] = value
    if plan.required and not plan.required <= values.keys():
        return None
    built = plan.instance(values)
    try:
        for hook in plan.after:
            hook(built)
    except ValueError:
        return None
    return built


def pydantic_validate(model: type[Message], data: Any) -> Any:
    """`validate` without the fast path: pydantic decides, and its result is converted back."""
    from pydantic import ValidationError

    try:
        checked = pydantic_model(model).model_validate(data)
    except ValidationError as e:
        raise MessageError(model, e.errors(include_url=False)) from None
    return _from_pydantic(checked)


def _from_pydantic(value: Any) -> Any:
    """A pydantic result converted back: generated models to their messages, inside tuples too."""
    model = getattr(type(value), "__netspec_message__", None)
    if model is not None:
        obj = _new(model)
        _set(obj, "__dict__", {name: _from_pydantic(getattr(value, name)) for name in model.model_fields})
        _set(obj, "model_fields_set", set(value.model_fields_set))
        return obj
    if isinstance(value, tuple):
        return tuple(_from_pydantic(v) for v in value)
    return value


_Convert = Callable[[Any], Any]
_REJECT = object()  # a converter's "not for the fast path" answer


@functools.cache
def _builder(model: type[Message]) -> _Plan:
    return _Plan(model, {})


class _Plan:
    """How to build one message from plain data: a converter per field, and its defaults.

    `instance` starts from one template dict of the defaults. A default factory runs once when it
    yields a message (instances may share it: messages are immutable); other factories run per
    instance, as do copies of mutable defaults.
    """

    def __init__(self, model: type[Message], convert: dict[str, _Convert]) -> None:
        self.model = model
        self.convert = convert
        self.before = [getattr(model, name) for name in model.__model_validators__["before"]]
        self.after = [getattr(model, name) for name in model.__model_validators__["after"]]
        fields = model.model_fields
        self.required = frozenset(n for n, f in fields.items() if f.is_required())
        self.template: dict[str, Any] = {}  # every field in order; required ones get overwritten
        self.fresh: dict[str, Callable[[], Any]] = {}
        for name, info in fields.items():
            self.template[name] = None
            if info.is_required():
                continue
            factory = info.default_factory
            if factory is None:
                if isinstance(info.default, (list, dict, set)):
                    self.fresh[name] = functools.partial(copy.deepcopy, info.default)
                else:
                    self.template[name] = info.default
                continue
            if isinstance(factory, type) and issubclass(factory, Message):
                value = _builder(factory).instance({})
            else:
                value = factory()
            if isinstance(value, Message):
                self.template[name] = value
            else:
                self.fresh[name] = factory

    def instance(self, values: dict[str, Any]) -> Any:
        every = {**self.template, **values}
        for name, make in self.fresh.items():
            if name not in values:
                every[name] = make()
        obj = _new(self.model)
        _set(obj, "__dict__", every)
        _set(obj, "model_fields_set", set(values))
        return obj


@functools.cache
def _plan(model: type[Message]) -> _Plan | None:
    """The fast path for a message, or None when some field needs pydantic."""
    resolved = hints(model)
    convert = {}
    for name, info in model.model_fields.items():
        to = _converter(resolved[name], info.bounds)
        if to is None:
            return None
        for check in model.__validators__.get(name, ()):
            to = _then(to, check)
        convert[name] = to
    return _Plan(model, convert)


def _then(to: _Convert, check: Callable[[Any], Any]) -> _Convert:
    def converted(v: Any) -> Any:
        v = to(v)
        if v is _REJECT:
            return v
        try:
            return check(v)
        except ValueError:
            return _REJECT  # pydantic words the error
    return converted


def _converter(annotation: Any, bounds: tuple[Bound, ...]) -> _Convert | None:
    """What pydantic does to a value of this annotation, on values that need no coercion."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base = typing.get_args(annotation)[0]
        meta = annotation.__metadata__
        if LISTIFY in meta:
            container = typing.get_origin(base)
            args = typing.get_args(base)
            if bounds or len(meta) != 1 or container not in (tuple, list) or \
                    (container is tuple and (len(args) != 2 or args[1] is not Ellipsis)):
                return None
            item = _converter(args[0], ())
            return None if item is None else _lone_or_many(item, container)
        if not all(isinstance(m, Bound) for m in meta):
            return None
        return _converter(base, bounds + tuple(meta))
    check = _bounds(bounds)
    if check is None:
        return None
    if annotation is Any:
        return None if bounds else (lambda v: v)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(annotation)
        others = [a for a in args if a is not type(None)]
        if len(others) != 1 or len(args) != 2:
            return None
        inner = _converter(others[0], bounds)
        return None if inner is None else (lambda v: None if v is None else inner(v))
    if origin is typing.Literal:
        choices = frozenset(typing.get_args(annotation))
        if not all(type(c) is str for c in choices) or bounds:
            return None
        return lambda v: v if type(v) is str and v in choices else _REJECT
    if origin in (tuple, list):
        args = typing.get_args(annotation)
        if (origin is tuple and (len(args) != 2 or args[1] is not Ellipsis)) or bounds:
            return None
        item = _converter(args[0], ())
        return None if item is None else _many(item, origin)
    if origin is dict:
        key, value = typing.get_args(annotation)
        if key is not str or value is not Any or bounds:
            return None
        return lambda v: dict(v) if isinstance(v, dict) and all(type(k) is str for k in v) else _REJECT
    if annotation is int:
        return lambda v: v if type(v) is int and check(v) else _REJECT
    if annotation is float:
        def to_float(v: Any) -> Any:
            if type(v) is not float and type(v) is not int:
                return _REJECT
            try:
                f = float(v)
            except OverflowError:
                return _REJECT
            return f if check(f) else _REJECT
        return to_float
    if annotation is bool and not bounds:
        return lambda v: v if type(v) is bool else _REJECT
    if annotation is str:
        return lambda v: v if type(v) is str and check(v) else _REJECT
    if isinstance(annotation, type) and issubclass(annotation, Message) and not bounds:
        if _plan(annotation) is None:
            return None
        return lambda v: _REJECT if (built := fast_construct(annotation, v)) is None else built
    return None


def _lone_or_many(item: _Convert, container: type) -> _Convert:
    many = _many(item, container)

    def lone_or_many(v: Any) -> Any:  # Repeated: _listify, then tuple[T, ...] (or list[T])
        if v is None:
            return container()
        if not isinstance(v, (list, tuple)):
            return _REJECT if (x := item(v)) is _REJECT else container((x,))
        return many(v)
    return lone_or_many


def _many(item: _Convert, container: type) -> _Convert:
    def many(v: Any) -> Any:
        if not isinstance(v, (list, tuple)):
            return _REJECT
        out = container([item(x) for x in v])
        return _REJECT if any(x is _REJECT for x in out) else out
    return many


_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda v, b: v > b, "ge": lambda v, b: v >= b, "lt": lambda v, b: v < b, "le": lambda v, b: v <= b,
    "min_length": lambda v, b: len(v) >= b, "max_length": lambda v, b: len(v) <= b,
}


def _bounds(bounds: tuple[Bound, ...]) -> Callable[[Any], bool] | None:
    """A predicate for the bounds; None for a kind the fast path does not know."""
    if not bounds:
        return _always
    if any(b.kind not in _TESTS for b in bounds):
        return None
    pairs = [(_TESTS[b.kind], b.value) for b in bounds]
    return lambda v: all(test(v, bound) for test, bound in pairs)


def _always(value: Any) -> bool:
    return True


# ----------------------------------------------------------------------------------------------
# the pydantic side: the same declarations as pydantic models (slow path, JSON Schema)


@functools.cache
def pydantic_model(model: type[Message]) -> Any:
    """The frozen pydantic model that validates like `model` (generated once, on first need)."""
    from pydantic import AfterValidator, ConfigDict, create_model
    from pydantic import Field as PydanticField
    from pydantic import model_validator as pydantic_model_validator

    resolved = hints(model)
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation = _to_pydantic(resolved[name])
        checks = model.__validators__.get(name, ())
        if checks:
            annotation = Annotated[(annotation, *[AfterValidator(c) for c in checks])]  # type: ignore[valid-type]
        kwargs: dict[str, Any] = {b.kind: b.value for b in info.bounds}
        if info.description is not None:
            kwargs["description"] = info.description
        if info.exclude:
            kwargs["exclude"] = True
        if info.default_factory is not None:
            kwargs["default_factory"] = info.default_factory
            fields[name] = (annotation, PydanticField(**kwargs))
        else:
            default = ... if info.is_required() else info.default
            fields[name] = (annotation, PydanticField(default, **kwargs))
    whole = {name: pydantic_model_validator(mode=mode)(_class_attribute(model, name))  # type: ignore[call-overload]
             for mode, names in model.__model_validators__.items() for name in names}
    built = create_model(  # type: ignore[call-overload]
        model.__name__, __config__=ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True),
        __doc__=model.__doc__, __module__=model.__module__, __validators__=whole, **fields)
    built.__netspec_message__ = model
    return built


def _class_attribute(model: type, name: str) -> Any:
    """The attribute as the class body defined it (a classmethod stays a classmethod)."""
    for klass in model.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    raise AttributeError(name)


def _to_pydantic(annotation: Any) -> Any:
    """An annotation with netspec's markers replaced by pydantic's (LISTIFY → a `_listify`
    before-validator, Bound → annotated-types bounds). Messages stay: pydantic validates them
    through `Message.__get_pydantic_core_schema__`."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
        from pydantic import BeforeValidator

        kinds = {"gt": Gt, "ge": Ge, "lt": Lt, "le": Le, "min_length": MinLen, "max_length": MaxLen}
        meta = [BeforeValidator(_listify) if m is LISTIFY else kinds[m.kind](m.value) if isinstance(m, Bound)
                else m for m in annotation.__metadata__]
        return Annotated[(_to_pydantic(typing.get_args(annotation)[0]), *meta)]  # type: ignore[valid-type]
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_to_pydantic(a) for a in typing.get_args(annotation))]
    if origin is tuple:
        args = typing.get_args(annotation)
        return tuple[(*[_to_pydantic(a) if a is not Ellipsis else a for a in args],)]  # type: ignore[misc]
    if origin is list:
        return list[_to_pydantic(typing.get_args(annotation)[0])]  # type: ignore[misc]
    return annotation
