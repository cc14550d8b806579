"""The shared validation rules: pure, no servers."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from jobplane.validation import (
    MAX_NOT_BEFORE_AHEAD_SECONDS,
    MAX_TIMEOUT_SECONDS,
    MIN_TIMEOUT_SECONDS,
    check_app_id,
    check_job_id,
    check_job_type,
    check_json_text,
    check_not_before,
    check_timeout_seconds,
    check_user_id,
    clamp_timeout_seconds,
)


@pytest.mark.parametrize("value", ["a", "u-1", "user@example.com", "A.b_c:d-9~+", "x" * 128])
def test_good_user_ids_pass(value: str) -> None:
    assert check_user_id(value) is None


BAD_TEXT = ["", "a b", "a/b", "a\n", "a\x1c", "a\x1e", "a\x85", "a\u2028", "é"]


@pytest.mark.parametrize("value", [*BAD_TEXT, "-a", ".a", "x" * 129])
def test_bad_user_ids_fail_with_the_name_of_the_field(value: str) -> None:
    problem = check_user_id(value)
    assert problem is not None and problem.startswith("user id ")


@pytest.mark.parametrize("value", ["a", "app-1", "x" * 63])
def test_good_app_ids_pass(value: str) -> None:
    assert check_app_id(value) is None


@pytest.mark.parametrize("value", [*BAD_TEXT, "App", "a_b", "-a", "x" * 64])
def test_bad_app_ids_fail(value: str) -> None:
    problem = check_app_id(value)
    assert problem is not None and problem.startswith("app id ")


@pytest.mark.parametrize("value", ["0f3a9c", "ext:job.1_2-3", "x" * 200])
def test_good_job_ids_pass(value: str) -> None:
    assert check_job_id(value) is None


@pytest.mark.parametrize("value", [*BAD_TEXT, "x" * 201])
def test_bad_job_ids_fail(value: str) -> None:
    assert check_job_id(value) is not None


@pytest.mark.parametrize("value", ["thumbnail", "video/encode", "a:b.c_d-e", "x" * 100])
def test_good_job_types_pass(value: str) -> None:
    assert check_job_type(value) is None


@pytest.mark.parametrize("value", ["", "/a", "a b", "a@b", "x" * 101, "a\x1c", "a\r\n"])
def test_bad_job_types_fail(value: str) -> None:
    assert check_job_type(value) is not None


NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("ahead", [None, -3600.0, 0.0, 1.0, MAX_NOT_BEFORE_AHEAD_SECONDS])
def test_a_not_before_in_the_past_or_shortly_ahead_passes(ahead: float | None) -> None:
    value = None if ahead is None else NOW + timedelta(seconds=ahead)
    assert check_not_before(value, NOW) is None


def test_a_not_before_far_ahead_fails() -> None:
    far = NOW + timedelta(seconds=MAX_NOT_BEFORE_AHEAD_SECONDS + 1)
    assert check_not_before(far, NOW) == (
        f"not_before is {MAX_NOT_BEFORE_AHEAD_SECONDS + 1} s ahead: at most "
        f"{MAX_NOT_BEFORE_AHEAD_SECONDS} s (it is for the retry service's early requests, "
        "not for scheduling jobs)"
    )


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


@pytest.mark.parametrize("text", ['{"score": NaN}', "[Infinity]", "-Infinity"])
def test_json_text_has_no_nan_nor_infinity(text: str) -> None:
    problem = check_json_text(text)
    assert problem is not None and "is no JSON value" in problem


@pytest.mark.parametrize("text", ['"\\ud800"', '{"a": ["x\\udfff"]}', '"\\udc00\\ud800"'])
def test_json_text_has_no_lone_surrogate(text: str) -> None:
    problem = check_json_text(text)
    assert problem is not None and "surrogates not allowed" in problem


@pytest.mark.parametrize("text", ['"\\ud83d\\ude00"', '"\\u00e9\\u0001"', '"\\\\ud800"'])
def test_json_text_takes_escapes_that_are_characters(text: str) -> None:
    assert check_json_text(text) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1e12, MAX_TIMEOUT_SECONDS), (0, MIN_TIMEOUT_SECONDS), (-5, 1), (60, 60), (math.inf, 86_400)],
)
def test_stored_timeouts_are_clamped(value: float, expected: int) -> None:
    assert clamp_timeout_seconds(value) == expected
