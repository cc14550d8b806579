"""docker-compose.yml (no Docker engine here, so it is read, not run): health checks, start
order, MongoDB as a one-node replica set, and each service's settings in step with its
Settings class."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from docs.gen_config import SERVICES, env_vars, required_env_vars
from tests.deploy.settings_check import clean_stop_seconds, starts_with

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
INFRASTRUCTURE = {"kafka", "mongo", "mail"}
# Compose's `${NAME:-default}` / `${NAME-default}`: the tests read the defaults.
_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}")


def interpolate(value: Any) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return _INTERPOLATION.sub(lambda m: m.group("default") or "", text)


def compose() -> dict[str, Any]:
    return cast(dict[str, Any], yaml.safe_load(COMPOSE_FILE.read_text()))


def environment(service: dict[str, Any]) -> dict[str, str]:
    return {name: interpolate(value) for name, value in service.get("environment", {}).items()}


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, duration
    return int(match[1]) * (60 if match[2] == "m" else 1)


def test_every_service_and_its_infrastructure_are_there() -> None:
    assert set(SERVICES) | INFRASTRUCTURE <= set(compose()["services"])


def test_the_infrastructure_and_the_gateway_have_health_checks() -> None:
    services = compose()["services"]
    for name in [*INFRASTRUCTURE, "gateway"]:
        assert services[name]["healthcheck"]["test"], name
    gateway_check = " ".join(services["gateway"]["healthcheck"]["test"])
    assert "/readyz" in gateway_check
    assert environment(services["gateway"])["PORT"] in gateway_check


def test_services_start_after_what_they_need_is_healthy() -> None:
    services = compose()["services"]
    for name in SERVICES:
        needs = services[name]["depends_on"]
        assert {"kafka", "mongo"} <= set(needs), name
        assert all(needs[dep]["condition"] == "service_healthy" for dep in needs), name
    assert "mail" in services["notifier"]["depends_on"]


def test_mongodb_runs_as_a_one_node_replica_set_the_services_name() -> None:
    services = compose()["services"]
    command = services["mongo"]["command"]
    replica_set = command[command.index("--replSet") + 1]
    assert f"rs.initiate({{_id: '{replica_set}'" in " ".join(
        services["mongo"]["healthcheck"]["test"]
    )
    for name in SERVICES:
        assert f"replicaSet={replica_set}" in environment(services[name])["MONGODB_URI"], name


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_each_service_gets_settings_it_reads_and_starts_with_them(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_class = SERVICES[service]
    env = environment(compose()["services"][service])
    assert set(env) - env_vars(settings_class) == set(), "variables the service does not read"
    assert required_env_vars(settings_class) <= set(env)
    starts_with(settings_class, env, monkeypatch)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_a_stopping_service_gets_the_time_a_clean_stop_takes(service: str) -> None:
    definition = compose()["services"][service]
    stop = clean_stop_seconds(environment(definition))
    assert seconds(definition["stop_grace_period"]) >= stop
