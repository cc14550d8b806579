"""The events services exchange on Kafka, as Python values.

The Avro schemas in `schemas/` are the contract; these dataclasses mirror them field for field
(a test keeps the two from drifting). `to_record`/`from_record` convert to and from the plain
dicts fastavro reads and writes.
"""

from __future__ import annotations

import dataclasses
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any, ClassVar, TypeVar


class FailureKind(StrEnum):
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    HTTP_STATUS = "http_status"
    REPORTED = "reported"
    REJECTED = "rejected"
    UNDECODABLE = "undecodable"


def new_event_id() -> str:
    return uuid.uuid4().hex


def utc_now() -> datetime:
    """Now, truncated to milliseconds: the wire keeps milliseconds, so an event equals itself
    after a round trip."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def field_names(cls: type) -> tuple[str, ...]:
    """The fields of dataclass ``cls``, in order (read once per class: every event of every
    service goes through them)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _require_aware(obj: object) -> None:
    # A naive datetime would be silently read as UTC by fastavro; refuse it early instead.
    for name in field_names(type(obj)):
        value = getattr(obj, name)
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError(f"{type(obj).__name__}.{name} must be timezone-aware")


@dataclass(frozen=True, kw_only=True, slots=True)
class Failure:
    kind: FailureKind
    message: str
    retryable: bool
    http_status: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AttemptRecord:
    attempt: int
    dispatched_at: datetime | None = None
    ended_at: datetime | None = None
    failure: Failure | None = None  # None: succeeded or still running

    def __post_init__(self) -> None:
        _require_aware(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class Envelope:
    """What every event about a job carries on to the next one: whose job it is, which
    attempt, which trace, what kind of work. One value, so that no service copies it field by
    field."""

    job_id: str
    app_id: str
    user_id: str
    attempt: int
    trace_id: str
    job_type: str

    def fields(self, **changes: Any) -> dict[str, Any]:
        """As keyword arguments of an event (``changes`` replace some, e.g. ``attempt``)."""
        return {**{name: getattr(self, name) for name in field_names(Envelope)}, **changes}


@dataclass(frozen=True, kw_only=True, slots=True)
class Event:
    """Fields common to every event, in schema order."""

    schema_name: ClassVar[str]  # base name of the `.avsc` file

    event_id: str = field(default_factory=new_event_id)
    job_id: str
    app_id: str
    user_id: str
    attempt: int
    occurred_at: datetime = field(default_factory=utc_now)
    trace_id: str
    job_type: str

    def __post_init__(self) -> None:
        if self.attempt < 1:
            raise ValueError(f"attempt is 1-based, got {self.attempt}")
        _require_aware(self)

    @property
    def envelope(self) -> Envelope:
        return Envelope(
            job_id=self.job_id,
            app_id=self.app_id,
            user_id=self.user_id,
            attempt=self.attempt,
            trace_id=self.trace_id,
            job_type=self.job_type,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class JobRequested(Event):
    schema_name: ClassVar[str] = "job_requested"

    payload: str  # JSON text, passed to the backend untouched
    timeout_seconds: int | None = None  # None: the app's default
    # A retry is requested ahead of its due time and carries it here: the dispatcher calls
    # the backend at this instant, not before. None: at once.
    not_before: datetime | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class JobFailed(Event):
    schema_name: ClassVar[str] = "job_failed"

    # The request travels along so that the retry service can re-emit it as is.
    payload: str
    timeout_seconds: int | None = None
    failure: Failure


@dataclass(frozen=True, kw_only=True, slots=True)
class JobRetryScheduled(Event):
    schema_name: ClassVar[str] = "job_retry_scheduled"

    payload: str
    timeout_seconds: int | None = None
    failure: Failure
    retry_number: int  # the N-th retry, also the tier N of `job.retry.N`
    due_at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class JobCompleted(Event):
    schema_name: ClassVar[str] = "job_completed"

    result: str  # JSON text


@dataclass(frozen=True, kw_only=True, slots=True)
class JobDead(Event):
    schema_name: ClassVar[str] = "job_dead"

    reason: str
    failure: Failure | None = None
    attempts: tuple[AttemptRecord, ...] = ()
    source_topic: str | None = None
    raw_event: bytes | None = None  # the value of an undecodable event, kept for inspection


EVENT_TYPES: tuple[type[Event], ...] = (
    JobRequested,
    JobFailed,
    JobRetryScheduled,
    JobCompleted,
    JobDead,
)

E = TypeVar("E", bound=Event)


def to_record(event: Event) -> dict[str, Any]:
    """The event as the dict fastavro writes with the event's schema."""
    return {name: _to_avro(getattr(event, name)) for name in field_names(type(event))}


def from_record(cls: type[E], record: Mapping[str, Any]) -> E:
    """Build `cls` from a dict fastavro read with the current schema of `cls`.

    Raises KeyError for a missing required field and ValueError for an invalid value.
    """
    return _reader(cls)(record)  # type: ignore[no-any-return]


def _to_avro(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (Failure, AttemptRecord)):
        return {name: _to_avro(getattr(value, name)) for name in field_names(type(value))}
    if isinstance(value, tuple):
        return [_to_avro(item) for item in value]
    return value  # str, int, bool, bytes, None, aware datetime: fastavro takes them as they are


Reader = Callable[[Any], Any]
# One reader per type, made from its type hints the first time: every consumed event goes
# through them, and inspecting the hints again for each field of each event cost more than
# fastavro's decoding itself.
_READERS: dict[Any, Reader] = {}


def _reader(tp: Any) -> Reader:
    """How a value fastavro read (never None here) becomes a value of type ``tp``."""
    reader = _READERS.get(tp)
    if reader is None:
        reader = _READERS[tp] = _make_reader(tp)
    return reader


def _make_reader(tp: Any) -> Reader:
    origin = typing.get_origin(tp)
    if origin is types.UnionType:  # `X | None`: None is handled by whoever holds the field
        (inner,) = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        return _reader(inner)
    if origin is tuple:  # tuple[X, ...] <- Avro array
        read_item = _reader(typing.get_args(tp)[0])
        return lambda items: tuple(None if i is None else read_item(i) for i in items)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        fields = [(name, _reader(hints[name])) for name in field_names(tp)]
        cls = tp

        def read_dataclass(value: Mapping[str, Any]) -> Any:
            return cls(
                **{
                    name: None if (v := value[name]) is None else read(v)
                    for name, read in fields
                    if name in value
                }
            )

        return read_dataclass
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp
    if tp is datetime:
        # fastavro already returns aware UTC datetimes for timestamp-millis; normalise anyway.
        return lambda value: value.astimezone(UTC)
    return _as_read


def _as_read(value: Any) -> Any:
    return value
