"""Every query the services run on the store, and the indexes that serve them: one list.

`JobStore.prepare()` creates `INDEXES`; the store conformance suite (`tests/store/`) checks
that each of `QUERIES` is answered through an index (`explain`: an index scan, never a
collection scan) on whatever server `MONGODB_URI` names. A new query of the store goes into
`QUERIES`, with its index in `INDEXES` if none serves it yet; otherwise the suite cannot see
it, and a job history that grows would make it slower every day.

The filters are shapes: the operators and fields a store method sends. Their values are
examples (only the plan matters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jobplane.jobs import OPEN_STATUSES

# The collections of the store.
JOBS = "jobs"
APPS = "apps"
USERS = "users"
NOTIFICATIONS = "notifications"
REDRIVE_REQUESTS = "redrive_requests"
REDRIVE_ANSWER_SECONDS = 7 * 24 * 3600

# The name of the TTL index that expires finished jobs (see `retention_index`).
RETENTION_INDEX = "finished_at_1"


@dataclass(frozen=True)
class Index:
    collection: str
    keys: tuple[tuple[str, int], ...]
    unique: bool = False
    # Only documents matching it are in the index (and checked for uniqueness).
    partial_filter: dict[str, Any] | None = None
    expire_after_seconds: int | None = None

    @property
    def name(self) -> str:
        """The server's own default name (`app_id_1_created_at_1`): an index created before
        under that default is recognised as the same one."""
        return "_".join(f"{key}_{direction}" for key, direction in self.keys)

    def options(self) -> dict[str, Any]:
        """The keyword arguments of `create_index` for this index."""
        options: dict[str, Any] = {"name": self.name}
        if self.unique:
            options["unique"] = True
        if self.partial_filter is not None:
            options["partialFilterExpression"] = self.partial_filter
        if self.expire_after_seconds is not None:
            options["expireAfterSeconds"] = self.expire_after_seconds
        return options


@dataclass(frozen=True)
class Query:
    """One query a service runs: find, find_one, find_one_and_update or update filters."""

    name: str
    collection: str
    filter: dict[str, Any]
    sort: tuple[tuple[str, int], ...] = ()
    used_by: str = ""
    # A document the query matches, so that a test can check it is found through the index.
    example: dict[str, Any] = field(default_factory=dict)


_NOW = datetime(2026, 1, 1, tzinfo=UTC)
_RECENT = datetime(2025, 12, 1, tzinfo=UTC)
_OPEN = [s.value for s in OPEN_STATUSES]
# Listings: newest first, the id breaking ties (what a cursor resumes from).
_NEWEST_FIRST = (("created_at", -1), ("_id", -1))

INDEXES: tuple[Index, ...] = (
    # The deadline sweep: open attempts past their deadline. A reported failure unsets
    # deadline_at, so the sweep only ever reads attempts still open.
    Index(JOBS, (("status", 1), ("deadline_at", 1))),
    # The relay: jobs whose event is owed and overdue (the outbox). A job owes nothing most of
    # its life, and a range on dates never reads the entries of those without the field.
    Index(JOBS, (("announce_due_at", 1),)),
    # The Idempotency-Key of a submission is a field of the job: one insert decides.
    Index(
        JOBS,
        (("app_id", 1), ("idempotency_key", 1)),
        unique=True,
        partial_filter={"idempotency_key": {"$exists": True}},
    ),
    # Admin alerts and the mails about a job, looked up by job.
    Index(NOTIFICATIONS, (("job_id", 1),)),
    # Job listings, newest first with the id as tie-break (the cursor): all jobs, an app's
    # (the status API and the admin views), those in a status (the dead letters), an app's in
    # a status. They also count jobs by status for the admin stats. A job type or a failure
    # kind narrows one of these.
    Index(JOBS, (("created_at", 1), ("_id", 1))),
    Index(JOBS, (("app_id", 1), ("created_at", 1), ("_id", 1))),
    Index(JOBS, (("status", 1), ("created_at", 1), ("_id", 1))),
    Index(JOBS, (("app_id", 1), ("status", 1), ("created_at", 1), ("_id", 1))),
    # An app's users in id order (the admin listing).
    Index(USERS, (("app_id", 1), ("user_id", 1))),
    # The answers kept for redrive requests with an Idempotency-Key: a week is ample for a
    # client's retries.
    Index(REDRIVE_REQUESTS, (("created_at", 1),), expire_after_seconds=REDRIVE_ANSWER_SECONDS),
)

# Indexes that earlier versions created and `JobStore.prepare()` drops: every index costs each
# insert (and each update of its fields) a write.
RETIRED_INDEXES: tuple[Index, ...] = (
    # A prefix of (app_id, created_at, _id), which serves all its queries: it cost the store
    # ~15 % of its CPU on a job's writes (an insert and two status changes, 16 at a time).
    Index(JOBS, (("app_id", 1), ("created_at", 1))),
)

QUERIES: tuple[Query, ...] = (
    Query(
        "job by id",
        JOBS,
        {"_id": "job-1"},
        used_by="status API, slow paths of every service",
        example={"_id": "job-1"},
    ),
    Query(
        "job of an app",
        JOBS,
        {"_id": "job-2", "app_id": "app-1"},
        used_by="status API, result callbacks",
        example={"_id": "job-2", "app_id": "app-1"},
    ),
    Query(
        "guarded job transition",
        JOBS,
        {"_id": "job-3", "attempt": 2, "status": {"$in": ["queued", "retry_scheduled"]}},
        used_by="every state change alone (one find_one_and_update)",
        example={"_id": "job-3", "attempt": 2, "status": "queued"},
    ),
    Query(
        # As for the user mail claim, `{_id: {$in}, $or}` is answered by a scan on
        # secantusd-rs 0.5.3 (measured with 20,000 documents: 34 ms for 16 writes against
        # 4.5 ms in this form).
        "batched guarded writes",
        JOBS,
        {
            "$and": [
                {"_id": {"$in": ["job-3b", "job-3c"]}},
                {
                    "$or": [
                        {"_id": "job-3b", "attempt": 1, "status": {"$in": ["queued"]}},
                        {"_id": "job-3c", "attempt": 2, "status": {"$in": ["queued"]}},
                    ]
                },
            ]
        },
        used_by="concurrent state changes and mail claims of one shape (one update_many)",
        example={"_id": "job-3b", "attempt": 1, "status": "queued"},
    ),
    Query(
        "documents of a batched write",
        JOBS,
        {"_id": {"$in": ["job-3d", "job-3e"]}, "write_id": "batch-1"},
        used_by="concurrent state changes (what the update_many wrote)",
        example={"_id": "job-3d", "write_id": "batch-1"},
    ),
    Query(
        "first report of an attempt",
        JOBS,
        {
            "_id": "job-4",
            "attempt": 1,
            "status": {"$in": _OPEN},
            "attempts.1.report": {"$exists": False},
            "attempts.1.callback_token_hash": "hash",
        },
        used_by="result callbacks, the dispatcher's failure reports",
        example={
            "_id": "job-4",
            "attempt": 1,
            "status": "running",
            "attempts": {"1": {"callback_token_hash": "hash"}},
        },
    ),
    Query(
        # An $or beside the _id (`{_id, $or: [...]}`) is answered by a scan of the whole
        # collection on secantusd-rs 0.5.3 (its explain says IXSCAN; measured with 20,000
        # documents: 19 ms per find_one_and_update, 46 ms per upsert): write it as
        # `{$and: [{_id}, {$or: [...]}]}`, which is flat (0.3 ms, 1.3 ms).
        "user mail claim",
        JOBS,
        {
            "$and": [
                {"_id": "job-5"},
                {
                    "$or": [
                        {"mail.succeeded": {"$exists": False}},
                        {
                            "mail.succeeded.state": "claimed",
                            "mail.succeeded.claimed_at": {"$lt": _NOW},
                        },
                    ]
                },
            ]
        },
        used_by="notifier",
        example={"_id": "job-5"},
    ),
    Query(
        "deadline sweep",
        JOBS,
        {"status": {"$in": _OPEN}, "deadline_at": {"$lt": _NOW}},
        used_by="dispatcher's deadline sweeper",
        example={
            "_id": "job-6",
            "status": "dispatched",
            "deadline_at": datetime(2025, 1, 1, tzinfo=UTC),
        },
    ),
    Query(
        "relay: overdue announcements",
        JOBS,
        {"announce_due_at": {"$lt": _NOW}},
        sort=(("announce_due_at", 1),),
        used_by="gateway's relay",
        example={"_id": "job-7", "announce_due_at": datetime(2025, 1, 1, tzinfo=UTC)},
    ),
    Query(
        "jobs of an app, newest first",
        JOBS,
        {"app_id": "app-1"},
        sort=(("created_at", -1),),
        used_by="job listings",
        example={"_id": "job-8", "app_id": "app-1", "created_at": datetime(2025, 1, 1, tzinfo=UTC)},
    ),
    Query(
        "idempotency key",
        JOBS,
        {"app_id": "app-1", "idempotency_key": "key-1"},
        used_by="gateway's submit when the key was used before",
        example={"_id": "job-9", "app_id": "app-1", "idempotency_key": "key-1"},
    ),
    Query(
        "job listing, newest first",
        JOBS,
        {"created_at": {"$gte": _RECENT, "$lt": _NOW}},
        sort=_NEWEST_FIRST,
        used_by="admin job listing (a time range, or none)",
        example={"_id": "job-20", "app_id": "app-1", "status": "queued", "created_at": _RECENT},
    ),
    Query(
        "job listing, the rest of the cursor's millisecond",
        JOBS,
        {"created_at": _RECENT, "_id": {"$lt": "job-zz"}},
        sort=_NEWEST_FIRST,
        used_by="admin job listing (a page after the first)",
        example={"_id": "job-21", "app_id": "app-1", "status": "queued", "created_at": _RECENT},
    ),
    Query(
        "job listing of an app",
        JOBS,
        {"app_id": "app-2", "created_at": {"$lt": _NOW}},
        sort=_NEWEST_FIRST,
        used_by="admin job listing by app",
        example={"_id": "job-22", "app_id": "app-2", "status": "queued", "created_at": _RECENT},
    ),
    Query(
        "job listing by status, type and failure kind",
        JOBS,
        {
            "status": "dead",
            "job_type": "thumbnail",
            "last_failure.kind": "timeout",
            "created_at": {"$lt": _NOW},
        },
        sort=_NEWEST_FIRST,
        used_by="admin job listing (the dead letters)",
        example={
            "_id": "job-23",
            "app_id": "app-1",
            "status": "dead",
            "job_type": "thumbnail",
            "last_failure": {"kind": "timeout"},
            "created_at": _RECENT,
        },
    ),
    Query(
        "job listing of an app by status",
        JOBS,
        {"app_id": "app-3", "status": "dead", "created_at": {"$lt": _NOW}},
        sort=_NEWEST_FIRST,
        used_by="admin job listing by app and status",
        example={"_id": "job-24", "app_id": "app-3", "status": "dead", "created_at": _RECENT},
    ),
    Query(
        "jobs in a status",
        JOBS,
        {"status": "retry_scheduled"},
        used_by="admin stats (a count)",
        example={"_id": "job-25", "status": "retry_scheduled", "created_at": _RECENT},
    ),
    Query(
        "jobs of an app in a status",
        JOBS,
        {"app_id": "app-4", "status": "dead"},
        used_by="admin stats by app (a count)",
        example={"_id": "job-26", "app_id": "app-4", "status": "dead", "created_at": _RECENT},
    ),
    Query(
        "held jobs of an app",
        JOBS,
        {
            "app_id": "app-6",
            "status": {"$in": ["queued", "retry_scheduled"]},
            "held_at": {"$exists": True},
        },
        used_by="gateway: an app enabled again releases the jobs held while it was disabled",
        example={
            "_id": "job-27",
            "app_id": "app-6",
            "status": "queued",
            "held_at": _RECENT,
            "created_at": _RECENT,
        },
    ),
    Query(
        "redrive answer by caller and Idempotency-Key",
        REDRIVE_REQUESTS,
        {"_id": "admin:key-1"},
        used_by="gateway's redrive routes",
        example={"_id": "admin:key-1"},
    ),
    Query(
        "apps in id order",
        APPS,
        {"_id": {"$gt": "zz"}},
        sort=(("_id", 1),),
        used_by="admin app listing",
        example={"_id": "zzz-app"},
    ),
    Query(
        "users of an app in id order",
        USERS,
        {"app_id": "app-5", "user_id": {"$gt": ""}},
        sort=(("app_id", 1), ("user_id", 1)),
        used_by="admin user listing",
        example={"_id": "app-5:user-1", "app_id": "app-5", "user_id": "user-1"},
    ),
    Query("app by id", APPS, {"_id": "app-1"}, used_by="every service (cached)"),
    Query("user by id", USERS, {"_id": "app-1:user-1"}, used_by="gateway, notifier (cached)"),
    Query(
        "notification claim",
        NOTIFICATIONS,
        {
            "$and": [
                {"_id": "job-12:dead:admin@example.com"},
                {
                    "$or": [
                        {"state": {"$exists": False}},
                        {"state": "claimed", "claimed_at": {"$lt": _NOW}},
                    ]
                },
            ]
        },
        used_by="notifier's admin alerts (an upsert)",
        example={"_id": "job-12:dead:admin@example.com"},
    ),
    Query(
        "notifications of a job",
        NOTIFICATIONS,
        {"job_id": "job-13"},
        used_by="notifier, status API",
        example={"_id": "job-13:dead:admin@example.com", "job_id": "job-13"},
    ),
)


def retention_index(retention_days: int) -> Index | None:
    """The TTL index that deletes finished jobs `retention_days` after `finished_at`, or None
    (keep every job) for 0. Unfinished jobs have no `finished_at` and never expire."""
    if retention_days <= 0:
        return None
    return Index(
        JOBS,
        (("finished_at", 1),),
        expire_after_seconds=retention_days * 86_400,
    )
