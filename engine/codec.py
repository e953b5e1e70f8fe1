"""Turning events and snapshots into JSON-ready dicts and back, losslessly."""

from __future__ import annotations

import dataclasses
import types
import typing
from enum import Enum
from functools import cache
from typing import Any

from engine.events import EVENT_TYPES, Event


def to_plain(value: Any) -> Any:
    """A JSON-ready copy of a dataclass tree (enums become their values, tuples lists)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_plain(tp: Any, value: Any) -> Any:
    """Rebuild a value of type ``tp`` from :func:`to_plain` output.

    Raises ValueError when ``value`` does not fit ``tp`` (JSON from a peer may be anything):
    a wrong type, a missing required field, an unknown enum value, None where not optional.
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ValueError(f"null where {tp} is expected")
        options = [a for a in args if a is not type(None)]
        return from_plain(options[0], value) if len(options) == 1 else value
    if tp is Any or tp is object:
        return value
    if value is None:
        raise ValueError(f"null where {_name(tp)} is expected")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"expected a list for {tp}, got {type(value).__name__}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_plain(args[0], v) for v in value)
        if len(args) != len(value):
            raise ValueError(f"expected {len(args)} items for {tp}, got {len(value)}")
        return tuple(from_plain(a, v) for a, v in zip(args, value, strict=True))
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"expected an object for {tp}, got {type(value).__name__}")
        kt, vt = typing.get_args(tp)
        return {from_plain(kt, k): from_plain(vt, v) for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp(value)  # ValueError for an unknown value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"expected an object for {tp.__name__}, got {type(value).__name__}")
        hints = _hints(tp)
        # Unknown keys are ignored so an older reader copes with a newer writer's extra fields.
        kwargs = {
            f.name: from_plain(hints[f.name], value[f.name])
            for f in dataclasses.fields(tp)
            if f.name in value
        }
        try:
            return tp(**kwargs)
        except TypeError as exc:  # a required field is missing
            raise ValueError(f"{tp.__name__}: {exc}") from None
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"expected a number, got {type(value).__name__}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"expected an integer, got {type(value).__name__}")
    if tp in (str, bool) and not isinstance(value, tp):
        raise ValueError(f"expected {_name(tp)}, got {type(value).__name__}")
    return value


def _name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp)


def event_to_json(event: Event) -> dict[str, Any]:
    """A JSON-ready dict for an event, tagged with its type name."""
    data = to_plain(event)
    data["type"] = type(event).__name__
    return typing.cast(dict[str, Any], data)


def event_from_json(data: dict[str, Any]) -> Event:
    """The event a dict from :func:`event_to_json` describes."""
    cls = EVENT_TYPES.get(str(data.get("type")))
    if cls is None:
        raise ValueError(f"unknown event type {data.get('type')!r}")
    event = from_plain(cls, data)
    assert isinstance(event, Event)
    return event
