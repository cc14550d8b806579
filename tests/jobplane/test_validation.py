"""The shared validation rules: pure, no servers."""

from __future__ import annotations

import math

import pytest
from jobplane.validation import (
    MAX_TIMEOUT_SECONDS,
    MIN_TIMEOUT_SECONDS,
    check_id,
    check_job_type,
    check_json_text,
    check_timeout_seconds,
    clamp_timeout_seconds,
)


@pytest.mark.parametrize("value", ["a", "app-1", "user@example.com", "A.b_c:d-9", "x" * 128])
def test_good_ids_pass(value: str) -> None:
    assert check_id(value) is None


@pytest.mark.parametrize(
    "value",
    ["", "-a", ".a", "a b", "a/b", "x" * 129, "a\n", "a\x1c", "a\x1e", "a\x85", "a\u2028", "é"],
)
def test_bad_ids_fail_with_the_name_of_the_field(value: str) -> None:
    problem = check_id(value, "user id")
    assert problem is not None and problem.startswith("user id ")


@pytest.mark.parametrize("value", ["thumbnail", "video/encode", "a:b.c_d-e", "x" * 100])
def test_good_job_types_pass(value: str) -> None:
    assert check_job_type(value) is None


@pytest.mark.parametrize("value", ["", "/a", "a b", "a@b", "x" * 101, "a\x1c", "a\r\n"])
def test_bad_job_types_fail(value: str) -> None:
    assert check_job_type(value) is not None


@pytest.mark.parametrize("value", [None, MIN_TIMEOUT_SECONDS, 60, MAX_TIMEOUT_SECONDS, 30.0])
def test_timeouts_in_range_pass(value: float | None) -> None:
    assert check_timeout_seconds(value) is None


@pytest.mark.parametrize("value", [0, -1, MAX_TIMEOUT_SECONDS + 1, 2**31, 1e12, 1.5, math.inf])
def test_timeouts_out_of_range_fail(value: float) -> None:
    assert check_timeout_seconds(value) is not None


def test_json_text() -> None:
    assert check_json_text('{"a": [1]}') is None
    problem = check_json_text("{not json")
    assert problem is not None and problem.startswith("payload is not valid JSON")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1e12, MAX_TIMEOUT_SECONDS), (0, MIN_TIMEOUT_SECONDS), (-5, 1), (60, 60), (math.inf, 86_400)],
)
def test_stored_timeouts_are_clamped(value: float, expected: int) -> None:
    assert clamp_timeout_seconds(value) == expected
