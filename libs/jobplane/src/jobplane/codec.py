"""Avro single-object encoding of events: the value format of every Jobplane topic.

Wire format (Avro specification, "Single object encoding"):
`C3 01` | CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form, 8 bytes
little-endian | Avro binary body. The fingerprint lets a reader find the exact writer schema
among every version ever published, so producers may lag behind or run ahead of consumers.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form
from fastavro.types import Schema

from jobplane.events import EVENT_TYPES, E, Event, from_record, to_record
from jobplane.schemas import current_schema, schema_history, schemas_dir

MARKER = b"\xc3\x01"
HEADER_SIZE = len(MARKER) + 8


class DecodeError(ValueError):
    """The bytes are not an event of the expected type; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def schema_fingerprint(schema: Any) -> bytes:
    """The 8 fingerprint bytes, in wire order, of a schema (JSON value or parsed)."""
    # fastavro's hex digest is already the little-endian byte sequence the spec puts on the wire
    # (for "int": 8f5c393f1ad57572, i.e. the 64-bit value 0x7275d51a3f395c8f).
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def single_object_header(schema: Any) -> bytes:
    return MARKER + schema_fingerprint(schema)


@dataclass(frozen=True, slots=True)
class KnownSchema:
    event_type: type[Event]
    version: int | None  # None: the current file, not (yet) recorded in history
    fingerprint: bytes
    schema: Schema  # parsed by fastavro


class SchemaRegistry:
    """Every known version of every event schema, read once from a schemas directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._current: dict[type[Event], KnownSchema] = {}
        self._by_fingerprint: dict[bytes, KnownSchema] = {}
        for event_type in EVENT_TYPES:
            name = event_type.schema_name
            # Current last, so that a fingerprint is named by the oldest version that has it.
            versions: list[tuple[int | None, dict[str, Any]]] = [
                *schema_history(name, directory),
                (None, current_schema(name, directory)),
            ]
            for version, raw in versions:
                known = KnownSchema(event_type, version, schema_fingerprint(raw), parse_schema(raw))
                first = self._by_fingerprint.setdefault(known.fingerprint, known)
            # The canonical form ignores docs and defaults, so the current file may share its
            # fingerprint with an older version; keep its own parse: it is the reader schema for
            # older writers, and its defaults are the ones that count.
            self._current[event_type] = dataclasses.replace(known, version=first.version)

    def known(self) -> list[KnownSchema]:
        return list(self._by_fingerprint.values())

    def current(self, event_type: type[Event]) -> KnownSchema:
        return self._current[event_type]

    def encode(self, event: Event) -> bytes:
        known = self._current[type(event)]
        buf = io.BytesIO()
        buf.write(MARKER)
        buf.write(known.fingerprint)
        fastavro.schemaless_writer(buf, known.schema, to_record(event))
        return buf.getvalue()

    def decode(self, data: bytes, expected: type[E]) -> E:
        """Decode into the current schema of `expected` (`Event`: whichever type was written)."""
        if len(data) < HEADER_SIZE:
            raise DecodeError(f"too short for a single-object encoded event: {len(data)} bytes")
        if data[:2] != MARKER:
            raise DecodeError(f"bad marker {data[:2].hex()}, expected {MARKER.hex()}")
        writer = self._by_fingerprint.get(data[2:HEADER_SIZE])
        if writer is None:
            raise DecodeError(f"unknown writer schema fingerprint {data[2:HEADER_SIZE].hex()}")
        event_type = writer.event_type
        if expected is not Event and event_type is not expected:
            raise DecodeError(f"expected {expected.__name__}, got {event_type.__name__}")
        reader = self._current[event_type]
        # Same fingerprint, same fields: skip schema resolution, the hot path.
        resolve_to = None if reader.fingerprint == writer.fingerprint else reader.schema
        buf = io.BytesIO(data)
        buf.seek(HEADER_SIZE)
        try:
            record = fastavro.schemaless_reader(buf, writer.schema, resolve_to)
            if buf.tell() != len(data):
                raise ValueError(f"{len(data) - buf.tell()} trailing bytes")
            if not isinstance(record, dict):
                raise TypeError(f"record expected, got {type(record).__name__}")
            event = from_record(event_type, record)
        except Exception as exc:  # fastavro raises many kinds on garbage; all mean the same here
            raise DecodeError(f"corrupt or invalid {event_type.__name__}: {exc!r}") from exc
        return event  # type: ignore[return-value]  # event_type is expected, or expected is Event


@cache
def default_registry() -> SchemaRegistry:
    return SchemaRegistry(schemas_dir())


def encode(event: Event) -> bytes:
    """Single-object encoding of `event` with the current schema of its class."""
    return default_registry().encode(event)


def decode(data: bytes, expected: type[E]) -> E:
    """Decode single-object encoded `data`, written with any known version, as `expected`.

    Raises DecodeError when the data is not a valid `expected` event.
    """
    return default_registry().decode(data, expected)


def fingerprint_of(event_type: type[Event]) -> bytes:
    """The 8-byte fingerprint of the current schema of `event_type`, as on the wire."""
    return default_registry().current(event_type).fingerprint


def known_schemas() -> list[KnownSchema]:
    """Every schema version `decode` accepts."""
    return default_registry().known()
