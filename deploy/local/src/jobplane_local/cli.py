"""`jobplane-local up | down | install | status | env`: the local Kafka, store and SMTP sink."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from jobplane_local.config import LocalConfig, forget_ports, remember_ports
from jobplane_local.infra import SERVICE_NAMES, down, endpoints, install, status, up
from jobplane_local.platform import SERVICES, Platform, platform_guide
from jobplane_local.processes import LocalInfraError


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def cmd_up(config: LocalConfig, only: list[str] | None) -> int:
    started = time.monotonic()
    # Remembered first: a later command finds servers that are still starting, too.
    remember_ports(config.local_dir, config.infra_ports())
    up(config, only=only, log=_log)
    _log(f"local infrastructure ready in {time.monotonic() - started:.1f}s")
    for key, value in endpoints(config).env().items():
        _log(f"  {key}={value}")
    return 0


def cmd_down(config: LocalConfig, only: list[str] | None) -> int:
    down(config, only=only, log=_log)
    if only is None:
        forget_ports(config.local_dir, config.infra_ports())
    return 0


def cmd_status(config: LocalConfig) -> int:
    rows = status(config)
    for s in rows:
        state = "running" if s.running else "stopped"
        pid = str(s.pid) if s.pid is not None else "-"
        print(
            f"{s.name:<9} {state:<8} pid {pid:<8} {s.address:<16}"
            f" data {_rel(s.data_dir)}  log {_rel(s.log_file)}"
        )
    return 0 if all(s.running for s in rows) else 3


def cmd_env(config: LocalConfig, export: bool) -> int:
    prefix = "export " if export else ""
    for key, value in endpoints(config).env().items():
        print(f"{prefix}{key}={shlex.quote(value)}")
    return 0


def cmd_platform(config: LocalConfig, action: str, service: str | None) -> int:
    platform = Platform.load(config)
    if action == "down":
        platform.down(_log)
        return 0
    if action == "up":
        api_key = platform.up(_log)
        print(platform_guide(platform, api_key, endpoints(config).mail_dir))
        return 0
    if action == "restart":
        if service is None:
            raise ValueError(f"restart which service? one of {', '.join(SERVICES)}")
        platform.restart(service, _log)
        return 0
    rows = platform.status()
    for s in rows:
        state = "running" if s.running else "stopped"
        pid = f"pid {s.pid}" if s.pid else ""
        print(f"{s.name:<12}{state:<9}{pid:<12}{s.address or '-':<17}log {_rel(s.log_file)}")
    if any(s.running for s in rows):
        print(
            f"dashboard   {platform.gateway_url}/dashboard   API docs {platform.gateway_url}/docs"
        )
        for name, url in platform.metrics_urls().items():
            print(f"metrics     {name:<11}{url}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="jobplane-local",
        description="Run Jobplane's local infrastructure: Kafka (KRaft), the store"
        " (secantusd-rs), an SMTP sink.",
        epilog="Ports and directories: JOBPLANE_KAFKA_PORT, JOBPLANE_KAFKA_CONTROLLER_PORT,"
        " JOBPLANE_STORE_PORT, JOBPLANE_SMTP_PORT, JOBPLANE_GATEWAY_PORT, JOBPLANE_DEMO_PORT,"
        " JOBPLANE_SMTP_MAIL_DIR, JOBPLANE_LOCAL_DIR. The ports in use are remembered in"
        " .local/ports.json until `down`. Every other variable of your environment reaches"
        " the services as their settings (e.g. RETRY_DELAYS_SECONDS=1,2).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("up", "download/build what is missing, start what is not running, wait until ready"),
        ("down", "stop the servers (data is kept)"),
        ("install", "only download/build what is missing (Kafka jars, the store); start nothing"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument(
            "services",
            nargs="*",
            metavar="SERVICE",
            help=f"any of {', '.join(SERVICE_NAMES)} (default: all)",
        )
    sub.add_parser("status", help="show each server: running or not, pid, address, data, log")
    platform = sub.add_parser(
        "platform", help="the four Jobplane services and the demo app (after `up`)"
    )
    platform.add_argument(
        "action",
        choices=("up", "down", "status", "restart"),
        help="restart SERVICE: stop it and start it with the settings of your environment now",
    )
    platform.add_argument(
        "service", nargs="?", choices=SERVICES, help="the service to restart (restart only)"
    )
    env = sub.add_parser(
        "env", help="print KAFKA_BOOTSTRAP_SERVERS=... lines, for eval or sourcing"
    )
    env.add_argument(
        "--export",
        action="store_true",
        help='prefix "export ": eval "$(jobplane-local env --export)"',
    )
    args = parser.parse_args(argv)

    try:
        config = LocalConfig.from_env()
        only = args.services or None if args.command in ("up", "down", "install") else None
        if args.command == "up":
            return cmd_up(config, only)
        if args.command == "install":
            install(config, only=only, log=_log)
            return 0
        if args.command == "down":
            return cmd_down(config, only)
        if args.command == "status":
            return cmd_status(config)
        if args.command == "platform":
            return cmd_platform(config, args.action, args.service)
        return cmd_env(config, args.export)
    except (LocalInfraError, ValueError) as exc:
        print(f"jobplane-local {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
