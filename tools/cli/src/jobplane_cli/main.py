"""`jobplane`: look at apps, users and jobs, cancel jobs, redrive dead letters, tail topics.

Configured by environment, or the global options before the command:
``JOBPLANE_URL`` (``--url``), ``JOBPLANE_ADMIN_KEY`` (``--admin-key``), ``JOBPLANE_API_KEY``
(``--api-key``, one app's key: its own jobs only), ``KAFKA_BOOTSTRAP_SERVERS`` and
``TOPIC_PREFIX`` (``tail``).
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from jobplane_cli import redrive as redriving
from jobplane_cli.client import ApiError, Config, Gateway
from jobplane_cli.tail import TOPIC_NAMES, follow

app = typer.Typer(
    help="Operate Jobplane: apps, users, jobs, dead-letter redrive, Kafka events.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
jobs_app = typer.Typer(help="List, show and cancel jobs.", no_args_is_help=True)
dead_app = typer.Typer(help="The dead letters: list them, redrive them.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(dead_app, name="dead")

out = Console()
err = Console(stderr=True)

STATUS_STYLE = {
    "succeeded": "green",
    "dead": "red",
    "cancelled": "dim",
    "retry_scheduled": "yellow",
    "queued": "yellow",
    "dispatched": "cyan",
    "running": "cyan",
}


class State:
    config: Config


state = State()


@app.callback()
def configure(
    url: Annotated[
        str, typer.Option(envvar="JOBPLANE_URL", help="The gateway's base URL.")
    ] = "http://127.0.0.1:8000",
    admin_key: Annotated[
        str | None,
        typer.Option(envvar="JOBPLANE_ADMIN_KEY", help="The admin key: every app's jobs."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="JOBPLANE_API_KEY", help="An app's API key: its own jobs only."),
    ] = None,
    kafka: Annotated[
        str, typer.Option(envvar="KAFKA_BOOTSTRAP_SERVERS", help="Kafka, for `tail`.")
    ] = "127.0.0.1:9092",
    topic_prefix: Annotated[
        str, typer.Option(envvar="TOPIC_PREFIX", help="The platform's topic prefix.")
    ] = "",
) -> None:
    state.config = Config(url, admin_key or None, api_key or None, kafka, topic_prefix)


def _gateway() -> Gateway:
    return Gateway(state.config)


def _fail(exc: ApiError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc}")
    return typer.Exit(2 if exc.status in (None, 401, 403) else 1)


def _status(value: str) -> str:
    return f"[{STATUS_STYLE.get(value, 'white')}]{value}[/]"


def _when(value: str | None) -> str:
    return value.replace("T", " ")[:19] if value else "-"


def _print_json(value: Any) -> None:
    out.print_json(json.dumps(value))


JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON as it is.")]
LimitOption = Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")]


# -- apps and users ------------------------------------------------------------------------


@app.command()
def apps(as_json: JsonOption = False, limit: LimitOption = 500) -> None:
    """The registered apps (admin key)."""
    gateway = _gateway()
    try:
        found = gateway.pages("/v1/admin/apps", "apps", admin=True, params={}, limit=limit)
    except ApiError as exc:
        raise _fail(exc) from None
    if as_json:
        return _print_json(found)
    table = Table("app", "backend", "timeout", "concurrency", "admins", "state")
    for a in found:
        table.add_row(
            a["app_id"],
            a["backend_url"],
            f"{a['default_timeout_seconds']} s",
            str(a["max_concurrency"]),
            ", ".join(a["admin_emails"]),
            "[red]disabled[/]" if a["disabled"] else "enabled",
        )
    out.print(table)


@app.command()
def users(app_id: str, as_json: JsonOption = False, limit: LimitOption = 500) -> None:
    """An app's registered users (admin key)."""
    gateway = _gateway()
    try:
        found = gateway.pages(
            f"/v1/admin/apps/{app_id}/users", "users", admin=True, params={}, limit=limit
        )
    except ApiError as exc:
        raise _fail(exc) from None
    if as_json:
        return _print_json(found)
    table = Table("user", "e-mail", "language")
    for u in found:
        table.add_row(u["user_id"], u["email"], u["language"])
    out.print(table)


# -- jobs --------------------------------------------------------------------------------------


def _list_jobs(gateway: Gateway, params: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    if not gateway.as_admin:
        params = {k: v for k, v in params.items() if k != "app_id"}
    path = "/v1/admin/jobs" if gateway.as_admin else "/v1/jobs"
    return gateway.pages(path, "jobs", admin=gateway.as_admin, params=params, limit=limit)


def _jobs_table(found: list[dict[str, Any]]) -> Table:
    table = Table("job", "app", "user", "type", "status", "attempt", "last error", "created")
    for j in found:
        error = j.get("last_error") or {}
        table.add_row(
            j["job_id"],
            j["app_id"],
            j["user_id"],
            j["job_type"],
            _status(j["status"]),
            str(j["attempt"]),
            f"{error.get('kind', '')} {error.get('message', '')}".strip(),
            _when(j["created_at"]),
        )
    return table


AppOption = Annotated[str | None, typer.Option("--app", help="Only this app's jobs (admin).")]
KindOption = Annotated[
    str | None, typer.Option("--failure-kind", help="unreachable, timeout, reported, ...")
]
SinceOption = Annotated[
    datetime | None, typer.Option(help="Created at or after (ISO 8601; UTC if no zone).")
]
UntilOption = Annotated[datetime | None, typer.Option(help="Created before (ISO 8601).")]


def _aware(moment: datetime | None) -> datetime | None:
    """The moment as given, in UTC when it names no zone."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _utc(moment: datetime | None) -> str | None:
    aware = _aware(moment)
    return aware.isoformat() if aware else None


@jobs_app.command("list")
def jobs_list(
    status: Annotated[str | None, typer.Option(help="queued, running, dead, ...")] = None,
    app_id: AppOption = None,
    job_type: Annotated[str | None, typer.Option("--type", help="Only this job type.")] = None,
    failure_kind: KindOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: LimitOption = 50,
    as_json: JsonOption = False,
) -> None:
    """Jobs, newest first (the admin key: every app's; an app key: its own)."""
    params = {
        "status": status,
        "app_id": app_id,
        "job_type": job_type,
        "failure_kind": failure_kind,
        "created_from": _utc(since),
        "created_before": _utc(until),
    }
    _show_jobs(params, limit, as_json)


def _show_jobs(params: dict[str, Any], limit: int, as_json: bool) -> None:
    """The jobs the gateway lists for ``params``, as a table or JSON."""
    try:
        found = _list_jobs(_gateway(), params, limit)
    except ApiError as exc:
        raise _fail(exc) from None
    if as_json:
        _print_json(found)
    else:
        out.print(_jobs_table(found))


@jobs_app.command("show")
def jobs_show(job_id: str, as_json: JsonOption = False) -> None:
    """One job with its attempt timeline."""
    gateway = _gateway()
    path = f"/v1/admin/jobs/{job_id}" if gateway.as_admin else f"/v1/jobs/{job_id}"
    try:
        job = gateway.request("GET", path, admin=gateway.as_admin)
    except ApiError as exc:
        raise _fail(exc) from None
    if as_json:
        return _print_json(job)
    out.print(f"job [bold]{job['job_id']}[/]  {_status(job['status'])}")
    out.print(f"app {job['app_id']}  user {job['user_id']}  type {job['job_type']}")
    out.print(f"created {_when(job['created_at'])}  updated {_when(job['updated_at'])}")
    table = Table("attempt", "dispatched", "accepted", "ended", "report", "error")
    for a in job.get("attempts", []):
        error = a.get("error") or {}
        report = a.get("report") or {}
        table.add_row(
            str(a["attempt"]),
            _when(a.get("dispatched_at")),
            _when(a.get("accepted_at")),
            _when(a.get("ended_at")),
            _status(report["status"]) if report else "-",
            f"{error.get('kind', '')} {error.get('message', '')}".strip(),
        )
    out.print(table)
    for r in job.get("redrives", []):
        error = r.get("error") or {}
        out.print(
            f"redriven {_when(r['at'])} by {r['by']}: the earlier run died at attempt"
            f" {r['from_attempt']} ({error.get('kind', '?')}: {error.get('message', '')})"
        )
    if job.get("cancelled"):
        out.print(f"cancelled {_when(job['cancelled']['at'])} by {job['cancelled']['by']}")
    if job.get("result") is not None:
        out.print("result:")
        _print_json(job["result"])


@jobs_app.command("cancel")
def jobs_cancel(job_id: str) -> None:
    """Cancel a job: a queued or retry-scheduled job never runs again."""
    gateway = _gateway()
    path = f"/v1/admin/jobs/{job_id}/cancel" if gateway.as_admin else f"/v1/jobs/{job_id}/cancel"
    try:
        job = gateway.request("POST", path, admin=gateway.as_admin, body={})
    except ApiError as exc:
        raise _fail(exc) from None
    out.print(f"job {job_id}: {_status(job['status'])}")


# -- dead letters ---------------------------------------------------------------------------


@dead_app.command("list")
def dead_list(
    app_id: AppOption = None,
    failure_kind: KindOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: LimitOption = 50,
    as_json: JsonOption = False,
) -> None:
    """The dead jobs, newest first."""
    params = {
        "status": "dead",
        "app_id": app_id,
        "failure_kind": failure_kind,
        "created_from": _utc(since),
        "created_before": _utc(until),
    }
    _show_jobs(params, limit, as_json)


@dead_app.command("redrive")
def dead_redrive(
    job_ids: Annotated[
        list[str] | None, typer.Argument(help="These jobs; else the filter.")
    ] = None,
    app_id: AppOption = None,
    failure_kind: KindOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be.")] = False,
    rate: Annotated[
        float, typer.Option(min=0.01, max=1000, help="Jobs redriven per second at most.")
    ] = 20.0,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many jobs.")] = 100,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Run dead jobs again (their attempts start over; their history keeps the earlier ones)."""
    if not job_ids and not any((app_id, failure_kind, since, until)):
        err.print("[red]error:[/red] give job ids, or a filter (--app, --failure-kind, --since)")
        raise typer.Exit(2)
    selection = redriving.Selection(
        job_ids=list(job_ids) if job_ids else None,
        app_id=app_id,
        failure_kind=failure_kind,
        since=_aware(since),
        until=_aware(until),
    )
    gateway = _gateway()
    try:
        plan = redriving.dry_run(gateway, selection, limit)
        _show_skipped(plan.skipped)
        if dry_run or not plan.redriven:
            out.print(
                f"{plan.matched} matched; would redrive {len(plan.redriven)}"
                + ("" if dry_run else " (nothing to do)")
            )
            for job_id in plan.redriven:
                out.print(f"  {job_id}")
            return
        if not yes and not typer.confirm(f"Redrive {len(plan.redriven)} dead jobs?"):
            raise typer.Exit(1)
        with Progress(
            TextColumn("redriving"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
        ) as progress:
            task = progress.add_task("redrive", total=len(plan.redriven))
            done = redriving.redrive(
                gateway, plan.redriven, rate, lambda n: progress.advance(task, n)
            )
    except ApiError as exc:
        raise _fail(exc) from None
    _show_skipped(done.skipped)
    out.print(f"redriven {len(done.redriven)}, skipped {len(done.skipped)}")
    for job_id in done.redriven:
        out.print(f"  {job_id}")


def _show_skipped(skipped: list[dict[str, str]]) -> None:
    for s in skipped:
        out.print(f"  [yellow]skipped[/] {s.get('job_id')}: {s.get('reason')}")


# -- Kafka ------------------------------------------------------------------------------------


@app.command()
def tail(
    topic: Annotated[str, typer.Argument(help=f"One of {', '.join(TOPIC_NAMES)}.")],
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="From the topic's start, not only new ones.")
    ] = False,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many events.")] = None,
    seconds: Annotated[float | None, typer.Option(min=0.1, help="Stop after this long.")] = None,
) -> None:
    """Print the events of a topic, decoded from Avro, one JSON line each (Ctrl-C stops)."""
    prefix = state.config.topic_prefix
    name = topic if prefix and topic.startswith(prefix) else prefix + topic
    seen = 0
    deadline = threading.Event()
    timer = threading.Timer(seconds, deadline.set) if seconds else None
    if timer is not None:
        timer.start()
    try:
        for line in follow(
            state.config.kafka_bootstrap,
            name,
            from_beginning=from_beginning,
            stop=deadline.is_set,
        ):
            print(line.as_json(), flush=True)
            seen += 1
            if count is not None and seen >= count:
                break
    except KeyboardInterrupt:
        pass
    finally:
        if timer is not None:
            timer.cancel()


def main() -> None:
    app()
