"""How our typed values cross Temporal: the SDK's JSON payloads, with dataclasses decoded from field types
resolved once per class.

The SDK's default converter resolves a dataclass's string annotations (`typing.get_type_hints`, a `compile`
per field) every time it decodes one: ~1.1 ms for a `TaskWorkflowInput` on this machine, paid by the worker
for each task's workflow input, activity input and attempt result, and by every memo read. The encoding is
unchanged (the default JSON), so any client with the default converter reads and writes the same payloads.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any

from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
    JSONTypeConverter,
    value_to_type,
)

Decoded = typing.TypeVar("Decoded")


# What a JSON value of these types decodes to as itself: the SDK would return it unchanged (or an equal copy).
_ANY: frozenset[type] = frozenset({object})
_SCALARS = {str, int, float, bool, type(None)}


@functools.cache
def _as_is(hint: Any) -> frozenset[type]:
    """The JSON value types that `hint` takes unchanged (`_ANY`: every one), else none: the decoding's
    fast path, exact for scalars, their unions and `dict[str, Any]`; anything else goes to the SDK."""
    if hint is Any:
        return _ANY
    if hint in _SCALARS:
        return frozenset({hint})
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        options = [_as_is(option) for option in typing.get_args(hint)]
        return frozenset().union(*options) if all(options) and _ANY not in options else frozenset()
    if typing.get_origin(hint) is dict and typing.get_args(hint) == (str, Any):
        return frozenset({dict})
    return frozenset()


@functools.cache
def _field_types(cls: type) -> tuple[tuple[dataclasses.Field[Any], Any, frozenset[type]], ...]:
    """Each field of the dataclass `cls`: its resolved type hint and the values that hint takes as is."""
    hints = typing.get_type_hints(cls)
    return tuple((f, hints[f.name], _as_is(hints[f.name])) for f in dataclasses.fields(cls))


def _field_value(hint: Any, as_is: frozenset[type], value: Any) -> Any:
    if as_is is _ANY or type(value) in as_is:
        return value
    return value_to_type(hint, value, CONVERTERS)


class DataclassFields(JSONTypeConverter):
    """Dataclasses decoded as the SDK decodes them (unknown keys skipped, a missing required field or a value
    of the wrong type raises TypeError), from field types resolved once per class."""

    def to_typed_value(self, hint: type, value: Any) -> Any:
        if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
            return JSONTypeConverter.Unhandled
        if not isinstance(value, dict):
            raise TypeError(f"Cannot convert to dataclass {hint}, value is {type(value)} not dict")
        init_values: dict[str, Any] = {}
        later_values: dict[str, Any] = {}
        for field, field_type, as_is in _field_types(hint):
            if field.name not in value:
                continue
            try:
                converted = _field_value(field_type, as_is, value[field.name])
            except Exception as err:
                raise TypeError(f"Failed converting field {field.name} on dataclass {hint}: {err}") from err
            (init_values if field.init else later_values)[field.name] = converted
        decoded = hint(**init_values)
        for name, converted in later_values.items():
            object.__setattr__(decoded, name, converted)
        return decoded


CONVERTERS = (DataclassFields(),)


def decode(hint: type[Decoded], value: Any) -> Decoded:
    """`value`, as JSON-decoded from a payload or a memo, as a `hint` (a dataclass, `dict[str, X]`, ...)."""
    return typing.cast(Decoded, value_to_type(hint, value, CONVERTERS))


class TaskPayloadConverter(CompositePayloadConverter):
    """The SDK's default payload converters, with dataclasses decoded by `DataclassFields`."""

    def __init__(self) -> None:
        super().__init__(
            *(
                JSONPlainPayloadConverter(custom_type_converters=CONVERTERS)
                if isinstance(converter, JSONPlainPayloadConverter)
                else converter
                for converter in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


DATA_CONVERTER = DataConverter(payload_converter_class=TaskPayloadConverter)
