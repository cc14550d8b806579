"""Generate docs/configuration.md from the services' Settings classes.

    uv run python -m docs.gen_config            # rewrite docs/configuration.md
    uv run python -m docs.gen_config --check    # exit 1 if it is out of step

Each setting's description is the comment written above its field in the source, so the
reference says what the code says. `tests/docs/test_configuration.py` keeps the file in step.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import annotated_types
from jobplane.config import CommonSettings
from jobplane_dispatcher.config import Settings as DispatcherSettings
from jobplane_gateway.config import Settings as GatewaySettings
from jobplane_notifier.config import Settings as NotifierSettings
from jobplane_retry.config import Settings as RetrySettings
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

OUTPUT = Path(__file__).with_name("configuration.md")

# Each service and the Settings class its process reads (services/<name>/src/*/config.py).
SERVICES: dict[str, type[CommonSettings]] = {
    "gateway": GatewaySettings,
    "dispatcher": DispatcherSettings,
    "retry": RetrySettings,
    "notifier": NotifierSettings,
}

_BOUNDS = {
    annotated_types.Ge: ("ge", "≥"),
    annotated_types.Gt: ("gt", ">"),
    annotated_types.Le: ("le", "≤"),
    annotated_types.Lt: ("lt", "<"),
    annotated_types.MinLen: ("min_length", "length ≥"),
}


# What the fields that carry no comment in their class are for.
_PLAIN = {
    "kafka_bootstrap_servers": "Kafka's bootstrap servers, `host:port[,host:port…]`.",
    "topic_partitions": "Partitions of each topic the service creates (existing topics are "
    "left alone): the most instances of one consumer group that get work.",
    "topic_replication_factor": "Replicas of each topic the service creates.",
    "mongodb_uri": "The job store: a MongoDB replica set (transactions, change streams).",
    "mongodb_database": "The database of the job store.",
    "log_level": "`DEBUG`, `INFO`, `WARNING` or `ERROR`; logs are JSON lines on stdout.",
    "host": "The address the HTTP server listens on (`0.0.0.0` in a container).",
    "port": "The port the HTTP server listens on.",
    "group_id": "The Kafka consumer group: every instance of the service joins it.",
    "connect_timeout_seconds": "How long connecting to a backend may take.",
    "router_group_id": "The consumer group of the router (reads `job.failed`).",
    "tiers_group_id": "The consumer group of the delay tiers (read `job.retry.1`…`5`).",
    "smtp_host": "The SMTP server.",
    "smtp_port": "Its port.",
    "smtp_username": "SMTP login; unset: no login.",
    "smtp_password": "SMTP password (a secret); used with `SMTP_USERNAME`.",
    "smtp_starttls": "Upgrade the connection with STARTTLS.",
    "mail_from": "The From of every mail.",
}


def env_name(field_name: str) -> str:
    """The environment variable of a field (no prefix; pydantic-settings ignores case)."""
    return field_name.upper()


def env_vars(settings_class: type[CommonSettings]) -> set[str]:
    """Every environment variable a Settings class reads."""
    return {env_name(name) for name in settings_class.model_fields}


def required_env_vars(settings_class: type[CommonSettings]) -> set[str]:
    """The variables without a default: the process does not start without them."""
    return {
        env_name(name) for name, info in settings_class.model_fields.items() if info.is_required()
    }


def _own_fields(settings_class: type[CommonSettings]) -> list[str]:
    """Fields declared in the class itself, in source order."""
    return list(settings_class.__annotations__)


def _comments(settings_class: type[CommonSettings]) -> dict[str, str]:
    """The comment lines right above each field's declaration, joined. A field without
    one takes its line in _PLAIN, or else, declared right under a commented one without a
    blank line, belongs to that comment."""
    source = textwrap.dedent(inspect.getsource(settings_class))
    lines = source.splitlines()
    found: dict[str, str] = {}
    class_def = ast.parse(source).body[0]
    assert isinstance(class_def, ast.ClassDef)
    previous: ast.AnnAssign | None = None
    group_head = ""
    for node in class_def.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above: list[str] = []
            index = node.lineno - 2
            while index >= 0 and lines[index].strip().startswith("#"):
                above.insert(0, lines[index].strip().lstrip("#").strip())
                index -= 1
            adjacent = previous is not None and previous.end_lineno == node.lineno - 1
            if above:
                found[node.target.id] = " ".join(above)
                group_head = node.target.id
            elif node.target.id in _PLAIN:
                found[node.target.id] = _PLAIN[node.target.id]
                group_head = ""
            elif adjacent and group_head:
                found[node.target.id] = f"See `{env_name(group_head)}` above."
            else:
                found[node.target.id] = ""
                group_head = ""
            previous = node
        else:
            previous = None
    return found


def _annotations(settings_class: type[CommonSettings]) -> dict[str, str]:
    source = textwrap.dedent(inspect.getsource(settings_class))
    class_def = ast.parse(source).body[0]
    assert isinstance(class_def, ast.ClassDef)
    return {
        node.target.id: ast.unparse(node.annotation)
        for node in class_def.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    value: Any = info.default
    if value is PydanticUndefined and info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    if value is None:
        return "unset"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    return f"`{json.dumps(value)}`"


def _bounds(info: FieldInfo) -> str:
    parts = []
    for item in info.metadata:
        for kind, (attribute, sign) in _BOUNDS.items():
            if isinstance(item, kind):
                parts.append(f"{sign} {getattr(item, attribute)}")
    return ", ".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(settings_class: type[CommonSettings], names: list[str]) -> list[str]:
    comments = _comments(settings_class)
    annotations = _annotations(settings_class)
    rows = [
        "| variable | type | default | bounds | what it does |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        info = settings_class.model_fields[name]
        rows.append(
            "| "
            + " | ".join(
                [
                    f"`{env_name(name)}`",
                    _cell(f"`{annotations[name]}`"),
                    _cell(_default(info)),
                    _cell(_bounds(info)),
                    _cell(comments.get(name, "")),
                ]
            )
            + " |"
        )
    return rows


def render() -> str:
    """The whole reference, as Markdown."""
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated by `uv run python -m docs.gen_config` from the Settings classes;"
        " do not edit by hand. -->",
        "",
        "Every Jobplane service is configured by environment variables, read by one typed",
        "pydantic-settings class per service. Names are case-insensitive, have no prefix, and",
        "unknown variables are ignored (so one ConfigMap can serve every service). Lists are",
        "JSON (`ADMIN_EMAILS='[\"ops@example.com\"]'`). A value out of its bounds stops the",
        "process at start with a message naming the variable.",
        "",
        "## Every service",
        "",
        "`libs/jobplane/src/jobplane/config.py` (`CommonSettings`): the gateway, dispatcher,",
        "retry and notifier all read these.",
        "",
        *_table(CommonSettings, _own_fields(CommonSettings)),
    ]
    for service, settings_class in SERVICES.items():
        module = settings_class.__module__.split(".")[0]
        out += [
            "",
            f"## {service}",
            "",
            f"`services/{service}/src/{module}/config.py`: the common settings above, and:",
            "",
            *_table(settings_class, _own_fields(settings_class)),
        ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is out of step: run `uv run python -m docs.gen_config`")
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
