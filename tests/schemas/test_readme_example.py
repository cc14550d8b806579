"""The README's producer example really produces what the platform decodes."""

from __future__ import annotations

import re
import sys
import types
from typing import Any

import pytest
from jobplane.codec import decode, fingerprint_of
from jobplane.events import JobRequested
from jobplane.schemas import schemas_dir


class StubProducer:
    sent: list[dict[str, Any]] = []

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def produce(self, topic: str, **kwargs: Any) -> None:
        StubProducer.sent.append({"topic": topic, **kwargs})

    def flush(self) -> None:
        pass


def test_readme_example_produces_a_decodable_job_requested(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    readme = (schemas_dir() / "README.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    stub = types.ModuleType("confluent_kafka")
    stub.Producer = StubProducer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "confluent_kafka", stub)
    monkeypatch.chdir(schemas_dir())  # the example opens job_requested.avsc
    StubProducer.sent = []

    exec(compile(example, "README.md", "exec"), {})  # noqa: S102 - our own documentation

    (message,) = StubProducer.sent
    assert message["topic"] == "job.requested"
    assert message["value"][:10] == b"\xc3\x01" + fingerprint_of(JobRequested)
    event = decode(message["value"], JobRequested)
    assert message["key"] == event.job_id.encode()
    assert message["headers"] == [("trace_id", event.trace_id.encode())]
    assert event.attempt == 1
    assert event.timeout_seconds is None
    assert event.payload == '{"photo": "s3://bucket/p/123.jpg"}'
