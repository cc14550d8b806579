"""The SDK's job.requested encoding is the platform's: its schema is the published one and
the platform decodes what it encodes."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

from jobplane import codec
from jobplane.events import JobRequested
from jobplane_client.kafka import encode_job_requested, job_requested

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_the_packaged_schema_is_the_published_one() -> None:
    packaged = files("jobplane_client").joinpath("job_requested.avsc").read_text()
    assert json.loads(packaged) == json.loads((SCHEMAS / "job_requested.avsc").read_text())


def test_the_platform_decodes_what_the_sdk_encodes() -> None:
    record = job_requested("photos", "u1", "thumbnail", {"width": 5}, timeout_seconds=60)

    event = codec.decode(encode_job_requested(record), JobRequested)

    assert (event.job_id, event.app_id, event.user_id, event.attempt) == (
        record["job_id"],
        "photos",
        "u1",
        1,
    )
    assert json.loads(event.payload) == {"width": 5}
    assert event.timeout_seconds == 60
    assert encode_job_requested(record)[2:10] == codec.fingerprint_of(JobRequested)
