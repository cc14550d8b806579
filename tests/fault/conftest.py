"""Fixtures of the fault suite: its own Kafka, store and SMTP sink (fresh data every session),
the test backend as a process, and the table printed at the end of the run."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from jobplane_local import LocalConfig
from jobplane_local.platform import PlatformProcess

from tests.fault.checks import HEADER, Outcome
from tests.fault.processes import SERVICES, BackendProcess, Deployment, Infra, fault_dir

_outcomes: list[Outcome] = []
_fuzz_lines: list[str] = []
_began: list[float] = []


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="session")
def fault_infra() -> Iterator[Infra]:
    _began.append(time.monotonic())
    infra = Infra()
    stop_leftovers(infra)
    for leftover in (
        infra.config.local_dir / "kafka" / "data",
        infra.config.local_dir / "store" / "data",
        infra.config.local_dir / "backend",
        infra.mail_dir,
    ):
        shutil.rmtree(leftover, ignore_errors=True)
    infra.start()
    yield infra
    infra.stop()


def stop_leftovers(infra: Infra) -> None:
    """Stop whatever an interrupted run left running (services, backend, servers) and remove
    its data, so that no process of an old run joins this run's servers."""
    for scenario_dir in fault_dir().iterdir() if fault_dir().is_dir() else []:
        if scenario_dir.name != "infra":
            config = LocalConfig(local_dir=scenario_dir)
            for name in SERVICES:
                PlatformProcess(config, name, {}).stop(_quiet)
            shutil.rmtree(scenario_dir, ignore_errors=True)
    BackendProcess(infra.config, Path()).stop(_quiet)
    infra.stop()


@pytest.fixture(scope="session")
def backend(fault_infra: Infra) -> Iterator[BackendProcess]:
    directory = fault_infra.config.local_dir / "backend"
    directory.mkdir(parents=True, exist_ok=True)
    process = BackendProcess(fault_infra.config, directory / "receipts.jsonl")
    process.start(_quiet)
    yield process
    process.stop(_quiet)


@pytest.fixture
def deploy(fault_infra: Infra, backend: BackendProcess) -> Iterator[Callable[[str], Deployment]]:
    """Make a scenario's deployment (four services, not started yet); all of them are
    stopped after the test, however it ended (a timeout included), and whatever a fault
    stopped is running again for the next one."""
    made: list[Deployment] = []

    def make(name: str) -> Deployment:
        made.append(Deployment(f"{name}-{uuid.uuid4().hex[:6]}", fault_infra))
        return made[-1]

    yield make
    for deployment in made:
        deployment.stop()
    fault_infra.start()
    backend.start(_quiet)


@pytest.fixture(scope="session")
def fault_report() -> list[Outcome]:
    return _outcomes


@pytest.fixture(scope="session")
def fuzz_report() -> list[str]:
    return _fuzz_lines


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not (_outcomes or _fuzz_lines):
        return
    write = terminalreporter.write_line
    if _outcomes:
        terminalreporter.section("Jobplane fault suite")
        write(HEADER)
        for outcome in _outcomes:
            write(outcome.row())
        for outcome in _outcomes:
            if not outcome.ok or outcome.wrong_outcome:
                write(f"{outcome.scenario}:")
                write(outcome.details())
    if _fuzz_lines:
        terminalreporter.section("Jobplane gateway fuzz (schemathesis)")
        for line in _fuzz_lines:
            write(line)
    if _began:
        write(f"fault suite wall time: {time.monotonic() - _began[0]:.0f}s")
