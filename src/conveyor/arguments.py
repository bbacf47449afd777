"""Job arguments: binding them to a task's signature, encoding them as JSON and
checking them against its type hints.

Arguments are stored as one JSON object, parameter name to value, holding only
what the caller passed: defaults are applied when the job runs, by Python.
Types are checked by decoding that JSON into a struct built from the type
hints (msgspec), at enqueue and again at run, so what runs is exactly what a
JSON round trip gives. Dataclasses, msgspec structs, ``TypedDict``, enums,
``datetime``, ``UUID`` and ``Decimal`` work as msgspec defines; a pydantic
model works as a parameter's type, alone or as ``Model | None`` (not nested
inside another type), validated by pydantic. Functions with ``*args`` or
``**kwargs`` cannot be tasks: every argument must have a name to be checked by.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import types
import typing
from collections.abc import Callable
from typing import Any

import msgspec

from conveyor.errors import ConfigurationError, InvalidArguments

_FIELD = re.compile(r"at `\$\.([^.`\[]+)")
_MISSING = re.compile(r"missing required field `([^`]+)`")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")


def _enc_hook(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)  # pydantic v2 models
    if callable(dump):
        return dump(mode="json")
    raise TypeError(f"objects of type {type(obj).__name__} are not JSON-serializable")


encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


def encode(value: Any) -> bytes:
    """JSON for a result or any other value, with pydantic models as objects."""
    return encoder.encode(value)


def _alone(hint: Any) -> Any:
    """The one type a hint names, alone or as ``T | None``; else the hint."""
    found = [h for h in _members(hint) if h is not type(None)]
    return found[0] if len(found) == 1 else hint


def _pydantic_model(hint: Any) -> Any:
    """The pydantic model a hint names, alone or as ``Model | None``; else ``None``."""
    model = _alone(hint)
    if isinstance(model, type) and callable(getattr(model, "model_validate", None)):
        return model
    return None


class Signature:
    """What a task accepts, built once per task."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        try:
            hints = typing.get_type_hints(fn)
        except Exception as exc:
            raise ConfigurationError(f"cannot resolve type hints of {fn!r}: {exc}") from exc
        fields: list[tuple[str, Any, Any]] = []
        self.positional_only: list[str] = []
        self.names: list[str] = []
        self.required: set[str] = set()
        self.pydantic: dict[str, Any] = {}
        self._optional: set[str] = set()  # pydantic parameters that take None
        self._no_bytes: set[str] = set()  # parameters that do not take bytes
        self._dataclasses: dict[str, type] = {}  # parameters of a dataclass type
        for param in inspect.signature(fn).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ConfigurationError(
                    f"task {fn.__qualname__} takes *{param.name}: task parameters must be named"
                )
            hint = hints.get(param.name, Any)
            if not _takes(hint, bytes):
                self._no_bytes.add(param.name)
            model = _dataclass(hint)
            if model is not None:
                self._dataclasses[param.name] = model
            model = _pydantic_model(hint)
            if model is not None:
                self.pydantic[param.name] = model
                if model is not hint:
                    self._optional.add(param.name)
                hint = Any
            self.names.append(param.name)
            if param.kind is param.POSITIONAL_ONLY:
                self.positional_only.append(param.name)
            if param.default is param.empty:
                self.required.add(param.name)
                fields.append((param.name, hint, msgspec.NODEFAULT))
            else:
                fields.append((param.name, hint | msgspec.UnsetType, msgspec.UNSET))
        struct = msgspec.defstruct(
            f"{fn.__name__}_args", fields, kw_only=True, forbid_unknown_fields=True
        )
        self._decoder = msgspec.json.Decoder(struct)
        self._name = fn.__qualname__
        self._fields = fields
        self._piped_decoder: msgspec.json.Decoder[Any] | None = None

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Map call arguments to parameter names, as Python would."""
        if not kwargs and len(args) == len(self.names) and not self.positional_only:
            return dict(zip(self.names, args, strict=True))  # the common case, fast
        if len(args) > len(self.names):
            raise InvalidArguments(
                "args", f"takes {len(self.names)} positional arguments but {len(args)} were given"
            )
        bound = dict(zip(self.names, args, strict=False))
        for key, value in kwargs.items():
            if key in bound:
                raise InvalidArguments(key, "got multiple values for this argument")
            if key not in self.names:
                raise InvalidArguments(key, "is not a parameter of this task")
            if key in self.positional_only:
                raise InvalidArguments(key, "is positional-only")
            bound[key] = value
        for key in self.required:
            if key not in bound:
                raise InvalidArguments(key, "missing required argument")
        return bound

    def bind_piped(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Bind all arguments but the first, which a chain step gets at run time:
        the result of the step before it."""
        if not self.names or self.names[0] in kwargs:
            raise InvalidArguments(
                "args", f"{self._name} needs a first parameter for the previous step's result"
            )
        bound = self.bind((None, *args), kwargs)
        del bound[self.names[0]]
        return bound

    @staticmethod
    def add_piped(payload: bytes, name: str, value: bytes) -> bytes:
        """A piped step's stored arguments with its first one, ``value`` (JSON), added."""
        head = b"{" + encoder.encode(name) + b":" + value
        return head + b"}" if payload.strip() == b"{}" else head + b"," + payload.lstrip()[1:]

    def encode(self, bound: dict[str, Any], *, piped: bool = False) -> bytes:
        """JSON for bound arguments, checked against the type hints (``piped``:
        all but the first, which the job gets when it runs)."""
        unfit = (TypeError, msgspec.EncodeError, ValueError, OverflowError, RecursionError)
        try:
            payload = encoder.encode(bound)
        except unfit as exc:
            for key, value in bound.items():  # name the argument that does not encode
                try:
                    encoder.encode(value)
                except unfit as inner:
                    why = "nested too deeply" if isinstance(inner, RecursionError) else inner
                    raise InvalidArguments(key, f"is not JSON-serializable: {why}") from exc
            raise InvalidArguments("args", f"is not JSON-serializable: {exc}") from exc
        self._refuse_lossy(bound, payload)
        if piped:
            self._check(self._piped(), payload)
        else:
            self.decode(payload)
        return payload

    def _refuse_lossy(self, bound: dict[str, Any], payload: bytes) -> None:
        """Refuse what JSON would carry as something else: NaN and infinity
        (they become null), bytes for a parameter that does not take bytes
        (they become a base64 string), and fields a dataclass parameter does
        not have (dropped when decoded). Dataclass fields are checked at the
        top level of an argument only."""
        nulls = b"null" in payload
        for key, value in bound.items():
            if nulls and _non_finite(value):
                raise InvalidArguments(key, "holds NaN or infinity, which JSON cannot carry")
            if key in self._no_bytes and isinstance(value, bytes | bytearray | memoryview):
                raise InvalidArguments(key, "is bytes, which this parameter does not take")
            model = self._dataclasses.get(key)
            if model is not None and isinstance(value, dict):
                extra = sorted(set(value) - {f.name for f in dataclasses.fields(model)})
                if extra:
                    raise InvalidArguments(key, f"has no field {extra[0]!r}")

    def _piped(self) -> msgspec.json.Decoder[Any]:
        if self._piped_decoder is None:
            name, hint, _ = self._fields[0]
            fields = [(name, hint | msgspec.UnsetType, msgspec.UNSET), *self._fields[1:]]
            struct = msgspec.defstruct(
                "piped_args", fields, kw_only=True, forbid_unknown_fields=True
            )
            self._piped_decoder = msgspec.json.Decoder(struct)
        return self._piped_decoder

    @staticmethod
    def _check(decoder: msgspec.json.Decoder[Any], payload: bytes) -> Any:
        try:
            return decoder.decode(payload)
        except msgspec.ValidationError as exc:
            raise InvalidArguments(_field_of(str(exc)), str(exc)) from exc
        except msgspec.DecodeError as exc:
            raise InvalidArguments("args", f"not valid JSON: {exc}") from exc

    def decode(self, payload: bytes) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments to call the function with."""
        values = self._check(self._decoder, payload)
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for key in self.names:
            value = getattr(values, key)
            if value is msgspec.UNSET:
                continue
            model = self.pydantic.get(key)
            if model is not None and value is None and key not in self._optional:
                raise InvalidArguments(key, f"None given; it takes a {model.__name__}")
            if model is not None and value is not None:
                try:
                    value = model.model_validate(value)
                except ValueError as exc:  # pydantic's ValidationError is a ValueError
                    raise InvalidArguments(key, str(exc).splitlines()[0]) from exc
            if key in self.positional_only:
                args.append(value)
            else:
                kwargs[key] = value
        return args, kwargs


def _field_of(message: str) -> str:
    for pattern in (_FIELD, _MISSING, _UNKNOWN):
        match = pattern.search(message)
        if match:
            return match.group(1)
    return "args"


def _members(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _takes(hint: Any, kind: type) -> bool:
    """Whether a parameter of this hint may be given a ``kind`` value."""
    return any(
        h is Any or h is object or (isinstance(h, type) and issubclass(kind, h))
        for h in _members(hint)
    )


def _dataclass(hint: Any) -> Any:
    """The dataclass a hint names, alone or as ``Model | None``; else ``None``."""
    model = _alone(hint)
    return model if isinstance(model, type) and dataclasses.is_dataclass(model) else None


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return any(_non_finite(v) for v in value)
    return False
