"""How many store commands one job costs on the happy path, counted by PyMongo's command
monitoring: submit → dispatch (the backend accepts) → callback → the user's e-mail.

The budget is six: the gateway's insert, the dispatcher's claim and "running", the
callback's "succeeded", the notifier's claim and "sent". Apps and users are read through a
cache, so after the first job of an app they cost nothing.

Under load the gateway's inserts and the notifier's "sent" marks of concurrent jobs share
commands (jobplane.batching): one job alone still costs its six, jobs submitted together cost
fewer each. Both figures are printed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import pytest
from pymongo import monitoring

from tests.e2e.conftest import Platform

HAPPY_PATH_BUDGET = 6


class CommandLog(monitoring.CommandListener):
    """Records every command (name and text) while ``recording``."""

    def __init__(self) -> None:
        self.recording = False
        self.commands: list[tuple[str, str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.recording:
            self.commands.append((event.command_name, str(event.command)))

    def naming(self, *needles: str) -> Counter[str]:
        """How many commands of each kind named any of ``needles``."""
        return Counter(name for name, text in self.commands if any(n in text for n in needles))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


# Registered when the module is imported, before the platform's clients exist: PyMongo
# attaches global listeners to the clients created after registration.
_listener = CommandLog()
monitoring.register(_listener)


@pytest.fixture
def commands() -> Iterator[CommandLog]:
    _listener.commands.clear()
    yield _listener
    _listener.recording = False
    _listener.commands.clear()


async def test_the_happy_path_costs_at_most_six_store_commands(
    platform: Platform, commands: CommandLog
) -> None:
    app = await platform.register_app()
    user_id, email = await platform.register_user(app)
    # A first job warms the app and user caches, as in any running platform.
    await platform.submit(app, user_id, {"behaviour": "succeed"})
    await platform.wait_for_mails(email, 1)

    # The job id is not known before the submit answers: the insert is recognised by a
    # marker in the payload, every later command by the job id.
    marker = "count-me-" + app.app_id
    commands.recording = True
    job_id = await platform.submit(app, user_id, {"behaviour": "succeed", "marker": marker})
    await platform.wait_for_mails(email, 2)
    await asyncio.sleep(0.5)  # let the notifier's last write land
    commands.recording = False
    seen = commands.naming(marker, job_id)
    total = sum(seen.values())
    print(f"\nstore commands for one job (happy path): {total}, by command {dict(seen)}")
    assert total <= HAPPY_PATH_BUDGET, dict(seen)


CONCURRENT_JOBS = 24


async def test_concurrent_jobs_share_store_commands(
    platform: Platform, commands: CommandLog
) -> None:
    app = await platform.register_app()
    user_id, email = await platform.register_user(app)
    await platform.submit(app, user_id, {"behaviour": "succeed"})
    await platform.wait_for_mails(email, 1)

    marker = "count-us-" + app.app_id
    commands.recording = True
    job_ids = await asyncio.gather(
        *(
            platform.submit(app, user_id, {"behaviour": "succeed", "marker": f"{marker}-{n}"})
            for n in range(CONCURRENT_JOBS)
        )
    )
    await platform.wait_for_mails(email, 1 + CONCURRENT_JOBS)
    await asyncio.sleep(0.5)  # let the notifier's last writes land
    commands.recording = False
    # a command counts once however many of the jobs it carries
    seen = commands.naming(marker, *job_ids)
    per_job = sum(seen.values()) / CONCURRENT_JOBS
    print(
        f"\nstore commands per job, {CONCURRENT_JOBS} jobs submitted together: {per_job:.2f}"
        f" (one job alone: at most {HAPPY_PATH_BUDGET}), by command {dict(seen)}"
    )
    assert per_job <= HAPPY_PATH_BUDGET, dict(seen)
