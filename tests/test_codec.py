"""Every event, snapshots included, survives JSON and comes back equal and of the right types."""

from __future__ import annotations

import dataclasses
import json
from enum import Enum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.codec import event_from_json, event_to_json, from_plain, to_plain
from engine.events import (
    EVENT_TYPES,
    CheckpointFailed,
    CheckpointRecovered,
    Event,
    ExtraBytesIgnored,
    HookFailed,
    LimitChanged,
    ProgressUpdated,
    ScheduledLimitChanged,
    SegmentFinished,
    SessionSaveFailed,
    SessionSaveRecovered,
    TaskAdded,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskMoved,
    TaskPaused,
    TaskProbed,
    TaskRemoved,
    TaskRestarted,
    TaskResumed,
    TaskRetrying,
    TaskStarted,
    TaskUrlChanged,
    TaskVerifying,
)
from engine.models import (
    EngineSnapshot,
    ScheduleStatus,
    SegmentSnapshot,
    SegmentState,
    TaskOptions,
    TaskSnapshot,
    TaskState,
)

T = 1_700_000_000.25

OPTIONS = TaskOptions(
    output="out.iso",
    directory="/tmp/dl",
    connections=4,
    speed_limit=500_000,
    checksum="sha256=" + "ab" * 32,
    headers=(("Authorization", "Bearer x"), ("X-Empty", "")),
    user_agent="fetchtop-test/1",
    proxy="http://127.0.0.1:3128",
    insecure=True,
    retries=7,
    timeout=12.5,
    lowest_speed=2048,
    connect_timeout=3.0,
    min_split=65536,
    check_validators=False,
)

TASK = TaskSnapshot(
    id=3,
    url="https://example.com/big.iso",
    state=TaskState.DOWNLOADING,
    options=OPTIONS,
    name="big.iso",
    path="/tmp/dl/big.iso",
    part_path="/tmp/dl/big.iso.part",
    final_url="https://cdn.example.com/big.iso",
    size=10_000_000,
    done=4_500_000,
    speed=1234567.5,
    avg_speed=1000000.0,
    eta=4.45,
    connections=3,
    resumable=True,
    etag='"abc-123"',
    last_modified="Wed, 21 Oct 2015 07:28:00 GMT",
    error=None,
    retries=2,
    last_errors=("timeout", "HTTP 503 Service Unavailable"),
    segments=(
        SegmentSnapshot(0, 2_500_000, 2_500_000, SegmentState.DONE),
        SegmentSnapshot(2_500_000, 5_000_000, 1_000_000, SegmentState.ACTIVE, speed=600000.25, connection=1),
        SegmentSnapshot(5_000_000, 7_500_000, 1_000_000, SegmentState.ACTIVE, speed=634567.25, connection=2),
        SegmentSnapshot(7_500_000, 10_000_000, 0, SegmentState.PENDING),
    ),
    added_at=T - 60,
    finished_at=None,
)

FAILED_TASK = TaskSnapshot(
    id=4,
    url="https://example.com/missing",
    state=TaskState.FAILED,
    options=TaskOptions(),
    error="HTTP 404 Not Found",
    finished_at=T,
)

SNAPSHOT = EngineSnapshot(
    tasks=(TASK, FAILED_TASK),
    speed=1234567.5,
    avg_speed=999.0,
    downloaded=4_500_000,
    speed_limit=None,
    jobs=5,
    connections=3,
    time=T,
    counts={"downloading": 1, "failed": 1},
    save_error="No space left on device",
    schedule=ScheduleStatus(rule="08:00-18:00", limit=1_048_576, next_change=T + 3600, overridden=True),
)

EXAMPLES: list[Event] = [
    TaskAdded(T, 3, task=TASK),
    TaskStarted(T, 3, url="https://example.com/big.iso"),
    TaskProbed(T, 3, name="big.iso", path="/tmp/dl/big.iso", size=None, resumable=False, final_url="u"),
    TaskProbed(T, 3, name="ü.iso", path="/tmp/ü.iso", size=10_000_000, resumable=True, final_url="u"),
    TaskRestarted(T, 3, reason="ETag changed"),
    TaskPaused(T, 3),
    TaskResumed(T, 3),
    TaskRetrying(T, 3, reason="read timed out", kind="timeout", delay=1.75, attempt=2),
    ExtraBytesIgnored(T, 3, extra=1000),
    SegmentFinished(T, 3, start=0, end=2_500_000),
    TaskVerifying(T, 3),
    TaskCompleted(T, 3, path="/tmp/dl/big.iso", size=10_000_000, duration=12.0),
    TaskFailed(T, 4, reason="HTTP 404 Not Found"),
    HookFailed(T, 4, hook="on-error", reason="exit status 3: no room"),
    TaskCancelled(T, 3),
    TaskRemoved(T, 3, deleted_files=True),
    TaskMoved(T, 3, position=0),
    TaskUrlChanged(T, 3, url="https://mirror.example/big.iso", kept=2_500_000, restarted=None),
    TaskUrlChanged(T, 3, url="https://example.com/big.iso", kept=0, restarted="size differs"),
    LimitChanged(T, task_id=None, limit=None),
    LimitChanged(T, task_id=3, limit=250_000),
    ScheduledLimitChanged(T, rule="18:00-08:00", limit=None, next_change=T + 50_400),
    ScheduledLimitChanged(T, rule=None, limit=2_000_000, next_change=None),
    SessionSaveFailed(T, reason="No space left on device"),
    SessionSaveRecovered(T),
    CheckpointFailed(T, 3, reason="Read-only file system"),
    CheckpointRecovered(T, 3),
    ProgressUpdated(T, snapshot=SNAPSHOT),
    ProgressUpdated(T, snapshot=EngineSnapshot()),
]


def assert_same(a: Any, b: Any, where: str = "value") -> None:
    """Equal, and of the same type all the way down (a str is not a TaskState, a list not a tuple)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    else:
        assert a == b, where


def round_trip(event: Event) -> Event:
    """Through the codec and a real JSON text, as a remote dashboard would get it."""
    text = json.dumps(event_to_json(event), allow_nan=False)
    return event_from_json(json.loads(text))


def test_examples_cover_every_event_type() -> None:
    assert {type(e).__name__ for e in EXAMPLES} == set(EVENT_TYPES)


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_round_trip(event: Event) -> None:
    back = round_trip(event)
    assert back == event
    assert_same(back, event)


def test_json_shape_is_plain() -> None:
    data = json.loads(json.dumps(event_to_json(ProgressUpdated(T, snapshot=SNAPSHOT))))
    assert data["type"] == "ProgressUpdated"
    task = data["snapshot"]["tasks"][0]
    assert task["state"] == "downloading"
    assert task["segments"][0]["state"] == "done"
    assert task["options"]["headers"] == [["Authorization", "Bearer x"], ["X-Empty", ""]]
    assert task["eta"] == 4.45


def test_ints_in_float_fields_come_back_as_floats() -> None:
    # Another implementation, or JSON from a hand-written client, may send 12 for 12.0.
    data = event_to_json(TaskCompleted(T, 3, path="p", size=1, duration=12.0))
    data["duration"] = 12
    data["time"] = 1700000000
    back = event_from_json(data)
    assert isinstance(back, TaskCompleted)
    assert type(back.duration) is float and type(back.time) is float


def test_missing_fields_with_defaults_are_filled_in() -> None:
    data = event_to_json(TaskAdded(T, 1, task=TaskSnapshot(1, "u", TaskState.QUEUED, TaskOptions())))
    for key in ("segments", "eta", "done", "last_errors"):
        del data["task"][key]
    del data["task"]["options"]["headers"]
    back = event_from_json(data)
    assert isinstance(back, TaskAdded)
    assert back.task == TaskSnapshot(1, "u", TaskState.QUEUED, TaskOptions())


@pytest.mark.parametrize(
    "data",
    [
        {"type": "NoSuchEvent", "time": 1.0},
        {"time": 1.0},
        {"type": "Event", "time": 1.0},  # the base class is not a concrete event
        {"type": "TaskPaused"},  # required fields missing
        {"type": "TaskPaused", "time": "yesterday", "task_id": 1},
        {"type": "TaskPaused", "time": 1.0, "task_id": True},
        {"type": "TaskMoved", "time": 1.0, "task_id": 1, "position": 1.5},
        {"type": "TaskRemoved", "time": 1.0, "task_id": 1, "deleted_files": "yes"},
        {"type": "TaskStarted", "time": 1.0, "task_id": 1, "url": ["u"]},
        {"type": "ProgressUpdated", "time": 1.0, "snapshot": {"counts": [1]}},
        {"type": "ProgressUpdated", "time": 1.0, "snapshot": {"tasks": {"a": 1}}},
        {"type": "TaskAdded", "time": 1.0, "task_id": 1, "task": {"id": 1}},
        {"type": "TaskAdded", "time": 1.0, "task_id": 1, "task": None},
        {"type": "ProgressUpdated", "time": 1.0, "snapshot": {"tasks": [{"state": "exploded"}]}},
        {"type": "ProgressUpdated", "time": 1.0, "snapshot": "nonsense"},
        {"type": "TaskProbed", "time": 1.0, "task_id": 1},
    ],
)
def test_bad_input_raises_value_error(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        event_from_json(data)


def test_unexpected_extra_keys_are_ignored() -> None:
    # A newer engine may add fields; an older dashboard must still read the event.
    data = event_to_json(TaskPaused(T, 1))
    data["new_field"] = [1, 2]
    assert event_from_json(data) == TaskPaused(T, 1)


def test_to_plain_basics() -> None:
    assert to_plain(TaskState.PAUSED) == "paused"
    assert to_plain((1, (2, 3))) == [1, [2, 3]]
    assert to_plain({"a": (SegmentState.DONE,)}) == {"a": ["done"]}
    assert from_plain(tuple[int, ...], [1, 2]) == (1, 2)
    assert from_plain(TaskState, "queued") is TaskState.QUEUED
    assert from_plain(int | None, None) is None


# ----- generated snapshots ---------------------------------------------------------------

texts = st.text(max_size=12)
floats = st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False)
ints = st.integers(0, 2**53)

options_st = st.builds(
    TaskOptions,
    output=st.none() | texts,
    directory=texts,
    connections=st.integers(1, 32),
    speed_limit=st.none() | ints,
    checksum=st.none() | texts,
    headers=st.lists(st.tuples(texts, texts), max_size=3).map(tuple),
    user_agent=st.none() | texts,
    proxy=st.none() | texts,
    insecure=st.booleans(),
    retries=st.integers(0, 100),
    timeout=floats,
    lowest_speed=st.none() | ints,
    connect_timeout=floats,
    min_split=ints,
    check_validators=st.booleans(),
)
segment_st = st.builds(
    SegmentSnapshot,
    start=ints,
    end=ints,
    done=ints,
    state=st.sampled_from(SegmentState),
    speed=floats,
    connection=st.none() | st.integers(0, 64),
)
task_st = st.builds(
    TaskSnapshot,
    id=ints,
    url=texts,
    state=st.sampled_from(TaskState),
    options=options_st,
    name=st.none() | texts,
    path=st.none() | texts,
    part_path=st.none() | texts,
    final_url=st.none() | texts,
    size=st.none() | ints,
    done=ints,
    speed=floats,
    avg_speed=floats,
    eta=st.none() | floats,
    connections=st.integers(0, 32),
    resumable=st.none() | st.booleans(),
    etag=st.none() | texts,
    last_modified=st.none() | texts,
    error=st.none() | texts,
    retries=st.integers(0, 1000),
    last_errors=st.lists(texts, max_size=3).map(tuple),
    segments=st.lists(segment_st, max_size=4).map(tuple),
    added_at=floats,
    finished_at=st.none() | floats,
)
snapshot_st = st.builds(
    EngineSnapshot,
    tasks=st.lists(task_st, max_size=3).map(tuple),
    speed=floats,
    avg_speed=floats,
    downloaded=ints,
    speed_limit=st.none() | ints,
    jobs=st.integers(1, 64),
    connections=st.integers(0, 512),
    time=floats,
    counts=st.dictionaries(st.sampled_from([s.value for s in TaskState]), st.integers(0, 100)),
    save_error=st.none() | texts,
)


@settings(max_examples=60, deadline=None)
@given(snapshot_st)
def test_generated_snapshots_round_trip(snapshot: EngineSnapshot) -> None:
    event = ProgressUpdated(T, snapshot=snapshot)
    back = round_trip(event)
    assert back == event
    assert_same(back, event)


@settings(max_examples=60, deadline=None)
@given(task_st, floats)
def test_generated_task_added_round_trip(task: TaskSnapshot, when: float) -> None:
    event = TaskAdded(when, task.id, task=task)
    back = round_trip(event)
    assert_same(back, event)


def test_every_enum_value_round_trips() -> None:
    enums: list[type[Enum]] = [TaskState, SegmentState]
    for enum in enums:
        for member in enum:
            assert from_plain(enum, json.loads(json.dumps(to_plain(member)))) is member
