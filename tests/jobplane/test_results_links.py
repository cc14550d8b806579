"""Signed results-page links (pure)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from jobplane.results_links import LinkCheck, check_link, link_signature, results_link

SECRET = "s3cret"


def test_a_link_names_the_job_expiry_and_signature() -> None:
    link = urlsplit(results_link("https://jobs.example/", SECRET, "job1", 2_000_000_000))
    assert (link.scheme, link.netloc, link.path) == ("https", "jobs.example", "/results/job1")
    query = parse_qs(link.query)
    assert query["expires"] == ["2000000000"]
    assert query["sig"] == [link_signature(SECRET, "job1", 2_000_000_000)]


def test_checks() -> None:
    sig = link_signature(SECRET, "job1", 1000)
    assert check_link(SECRET, "job1", 1000, sig, now=999) is LinkCheck.VALID
    assert check_link(SECRET, "job1", 1000, sig, now=1000) is LinkCheck.EXPIRED
    assert check_link(SECRET, "job2", 1000, sig, now=999) is LinkCheck.FORGED
    assert check_link(SECRET, "job1", 1001, sig, now=999) is LinkCheck.FORGED
    assert check_link("other", "job1", 1000, sig, now=999) is LinkCheck.FORGED
    # An expired link with a changed expiry is forged, not expired: no oracle for forgers.
    assert check_link(SECRET, "job1", 5000, sig, now=2000) is LinkCheck.FORGED
