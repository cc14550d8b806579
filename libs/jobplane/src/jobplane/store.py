"""The job store: jobs, apps, users and sent notifications in MongoDB.

Every change of a job's state is one atomic write guarded by the state it starts from (the
attempt number and the statuses it may leave). A replayed or late event therefore matches
nothing and changes nothing: the caller sees ``None`` and knows. Concurrent changes of one
shape (claims, outcomes, mail marks) share one ``update_many`` whose filter is the ``$or``
of their guards (group commit, see ``GuardedWrite``); each job still changes by its own.
The code is plain MongoDB 7/8 code; the local store (secantusd-rs) applies it the same
way, which the store conformance suite (tests/store/) checks. Every query is listed, with
its index, in jobplane.indexes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum, StrEnum
from typing import Any

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, WriteError

from jobplane import indexes
from jobplane.batching import Coalescer
from jobplane.cache import TtlCache
from jobplane.config import CommonSettings
from jobplane.events import Failure, JobRequested
from jobplane.jobs import (
    CANCELLABLE_STATUSES,
    FAILABLE_STATUSES,
    OPEN_STATUSES,
    Job,
    JobStatus,
    Redrive,
    Report,
    failure_to_document,
)

Document = dict[str, Any]

log = logging.getLogger(__name__)

# The longest a change of an app or a user stays unseen by a service that read it before
# (see jobplane.cache): a new backend URL or e-mail address is used within these seconds.
APP_CACHE_TTL_SECONDS = 10.0
USER_CACHE_TTL_SECONDS = 5.0
# How long an owed event may stay unpublished before the relay publishes it (the
# announce_due_at outbox); the services pass their own setting.
DEFAULT_ANNOUNCE_GRACE = timedelta(seconds=30)
# Guarded writes sent as one command at most; and the field that marks a job written by
# one (which of a batch's documents its guards matched, when the count falls short).
GUARDED_WRITE_BATCH = 64
WRITE_ID = "write_id"


def utcnow() -> datetime:
    # BSON dates hold milliseconds: rounding here keeps what we compare equal to what we read.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class AlreadyExistsError(Exception):
    """The document to create exists already."""


@dataclass(frozen=True, slots=True)
class App:
    app_id: str
    backend_url: str
    default_timeout_seconds: int
    admin_emails: list[str]
    api_key_hash: str
    max_concurrency: int
    created_at: datetime
    # A disabled app's new jobs are refused at the door; its stored jobs stay as they are.
    disabled: bool = False
    updated_at: datetime | None = None
    # Where the app's job outcomes are POSTed (signed with the secret), or None.
    webhook_url: str | None = None
    # Kept as it is (it signs every delivery, so it cannot be a hash); never shown or logged.
    webhook_secret: str | None = field(default=None, repr=False)
    # The secret a rotation replaced: deliveries are signed with it too until
    # ``webhook_previous_until``, so that receivers can switch without losing any.
    webhook_secret_previous: str | None = field(default=None, repr=False)
    webhook_previous_until: datetime | None = None

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets the app's webhooks and dispatches are signed with now."""
        secrets = [self.webhook_secret] if self.webhook_secret else []
        if (
            self.webhook_secret_previous
            and self.webhook_previous_until is not None
            and now < self.webhook_previous_until
        ):
            secrets.append(self.webhook_secret_previous)
        return secrets

    @classmethod
    def from_document(cls, doc: Document) -> App:
        return cls(
            app_id=doc["_id"],
            backend_url=doc["backend_url"],
            default_timeout_seconds=doc["default_timeout_seconds"],
            admin_emails=list(doc.get("admin_emails", [])),
            api_key_hash=doc["api_key_hash"],
            max_concurrency=doc.get("max_concurrency", 16),
            created_at=doc["created_at"],
            disabled=bool(doc.get("disabled", False)),
            updated_at=doc.get("updated_at"),
            webhook_url=doc.get("webhook_url"),
            webhook_secret=doc.get("webhook_secret"),
            webhook_secret_previous=doc.get("webhook_secret_previous"),
            webhook_previous_until=doc.get("webhook_previous_until"),
        )


@dataclass(frozen=True, slots=True)
class User:
    app_id: str
    user_id: str
    email: str
    language: str


@dataclass(frozen=True, slots=True)
class NewJob:
    job_id: str
    app_id: str
    user_id: str
    job_type: str
    payload: str
    timeout_seconds: int | None
    trace_id: str
    idempotency_key: str | None = None

    @classmethod
    def of_request(cls, event: JobRequested) -> NewJob:
        """A job an app produced straight to Kafka, as its ``job.requested`` describes it."""
        return cls(
            job_id=event.job_id,
            app_id=event.app_id,
            user_id=event.user_id,
            job_type=event.job_type,
            payload=event.payload,
            timeout_seconds=event.timeout_seconds,
            trace_id=event.trace_id,
        )

    def document(self, now: datetime, announce_due_at: datetime) -> Document:
        """The job document as inserted: queued, attempt 1, owing its ``job.requested``."""
        doc: Document = {
            "_id": self.job_id,
            "app_id": self.app_id,
            "user_id": self.user_id,
            "job_type": self.job_type,
            "payload": self.payload,
            "timeout_seconds": self.timeout_seconds,
            "trace_id": self.trace_id,
            "status": JobStatus.QUEUED.value,
            "attempt": 1,
            "attempts": {},
            "created_at": now,
            "updated_at": now,
            "announce_due_at": announce_due_at,
        }
        if self.idempotency_key is not None:
            doc["idempotency_key"] = self.idempotency_key
        return doc


@dataclass(frozen=True, slots=True)
class JobCursor:
    """Where a listing of jobs stopped: the last job listed (newest first)."""

    created_at: datetime
    job_id: str


@dataclass(frozen=True, slots=True)
class JobSelection:
    """Which jobs a listing shows; every field narrows it, None means any.
    ``created_from`` is inclusive, ``created_before`` exclusive."""

    app_id: str | None = None
    status: JobStatus | None = None
    job_type: str | None = None
    failure_kind: str | None = None
    created_from: datetime | None = None
    created_before: datetime | None = None

    def covers(self, created_at: datetime) -> bool:
        return (self.created_from is None or created_at >= self.created_from) and (
            self.created_before is None or created_at < self.created_before
        )

    def filter(self, *, before: datetime | None = None) -> Document:
        """The store filter; ``before`` narrows the time range further (exclusive)."""
        query: Document = {}
        for name, value in (
            ("app_id", self.app_id),
            ("status", self.status.value if self.status else None),
            ("job_type", self.job_type),
            ("last_failure.kind", self.failure_kind),
        ):
            if value is not None:
                query[name] = value
        created: Document = {}
        if self.created_from is not None:
            created["$gte"] = self.created_from
        upper = [d for d in (self.created_before, before) if d is not None]
        if upper:
            created["$lt"] = min(upper)
        if created:
            query["created_at"] = created
        return query


# A job has one admin alert per recipient and outcome (at most ~50 contacts): a bound that a
# listing never reaches, so that a broken writer cannot make a job's view unbounded.
NOTIFICATIONS_SHOWN = 500


@dataclass(frozen=True, slots=True)
class Notification:
    """A mail of the ``notifications`` collection, as its claim protocol left it."""

    key: str
    recipient: str
    kind: str
    state: str
    claimed_at: datetime | None
    sent_at: datetime | None
    failed_at: datetime | None
    reason: str | None

    @classmethod
    def from_document(cls, doc: Document) -> Notification:
        return cls(
            key=str(doc["_id"]),
            recipient=str(doc.get("recipient", "")),
            kind=str(doc.get("kind", "")),
            state=str(doc.get("state", "")),
            claimed_at=doc.get("claimed_at"),
            sent_at=doc.get("sent_at"),
            failed_at=doc.get("failed_at"),
            reason=doc.get("reason"),
        )


def connect(settings: CommonSettings) -> AsyncMongoClient[Document]:
    # Aware datetimes everywhere: naive ones from the driver would not compare with ours.
    return AsyncMongoClient(settings.mongodb_uri, tz_aware=True, tzinfo=UTC)


class JobStore:
    def __init__(self, database: AsyncDatabase[Document], *, retention_days: int = 0) -> None:
        self.db = database
        self.retention_days = retention_days
        self.jobs: AsyncCollection[Document] = database["jobs"]
        self.apps: AsyncCollection[Document] = database["apps"]
        self.users: AsyncCollection[Document] = database["users"]
        self.notifications: AsyncCollection[Document] = database["notifications"]
        # The answers of redrive requests sent with an Idempotency-Key (one per caller and key).
        self.redrive_requests: AsyncCollection[Document] = database[indexes.REDRIVE_REQUESTS]
        self._app_cache: TtlCache[str, App] = TtlCache(APP_CACHE_TTL_SECONDS)
        self._user_cache: TtlCache[tuple[str, str], User] = TtlCache(USER_CACHE_TTL_SECONDS)
        # Group commit (see jobplane.batching): concurrent job inserts become one
        # insert_many, concurrent guarded writes of one shape one update_many.
        self._job_inserts: Coalescer[Document, None] = Coalescer(self._insert_jobs)
        self._guarded_writes: Coalescer[GuardedWrite, Document | None] = Coalescer(
            self._write_guarded, max_batch=GUARDED_WRITE_BATCH
        )

    @classmethod
    def from_settings(
        cls, client: AsyncMongoClient[Document], settings: CommonSettings
    ) -> JobStore:
        return cls(client[settings.mongodb_database], retention_days=settings.job_retention_days)

    async def prepare(self) -> None:
        """Create the indexes of every query (jobplane.indexes), drop those retired, and apply
        the retention of finished jobs. Idempotent: every service calls it at start-up."""
        for index in indexes.INDEXES:
            await self.db[index.collection].create_index(list(index.keys), **index.options())
        for index in indexes.RETIRED_INDEXES:
            collection = self.db[index.collection]
            if index.name in await collection.index_information():
                await collection.drop_index(index.name)
        await self._apply_retention()

    async def _apply_retention(self) -> None:
        """Finished jobs expire `retention_days` after `finished_at` (a TTL index), or never
        (no such index) when it is 0. A changed setting changes the index in place."""
        wanted = indexes.retention_index(self.retention_days)
        existing = (await self.jobs.index_information()).get(indexes.RETENTION_INDEX)
        if wanted is None:
            if existing is not None:
                await self.jobs.drop_index(indexes.RETENTION_INDEX)
        elif existing is None:
            await self.jobs.create_index(list(wanted.keys), **wanted.options())
        elif existing.get("expireAfterSeconds") != wanted.expire_after_seconds:
            await self.db.command(
                "collMod",
                indexes.JOBS,
                index={
                    "name": indexes.RETENTION_INDEX,
                    "expireAfterSeconds": wanted.expire_after_seconds,
                },
            )

    # -- apps and users ---------------------------------------------------------------

    async def create_app(
        self,
        *,
        app_id: str,
        backend_url: str,
        default_timeout_seconds: int,
        admin_emails: list[str],
        api_key_hash: str,
        max_concurrency: int,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> App:
        doc: Document = {
            "_id": app_id,
            "backend_url": backend_url,
            "default_timeout_seconds": default_timeout_seconds,
            "admin_emails": admin_emails,
            "api_key_hash": api_key_hash,
            "max_concurrency": max_concurrency,
            "created_at": utcnow(),
        }
        if webhook_url is not None:
            doc["webhook_url"] = webhook_url
            doc["webhook_secret"] = webhook_secret
        try:
            await self.apps.insert_one(doc)
        except DuplicateKeyError as exc:
            raise AlreadyExistsError(f"app {app_id!r} is registered already") from exc
        return App.from_document(doc)

    async def get_app(self, app_id: str) -> App | None:
        doc = await self.apps.find_one({"_id": app_id})
        return App.from_document(doc) if doc else None

    async def update_app(
        self, app_id: str, changes: Document, *, unset: tuple[str, ...] = ()
    ) -> App | None:
        """Set ``changes`` (fields of the app document) on the app and remove the fields
        ``unset``; None if there is no such app. This process sees the change at once;
        others within APP_CACHE_TTL_SECONDS."""
        update: Document = {"$set": {**changes, "updated_at": utcnow()}}
        if unset:
            update["$unset"] = dict.fromkeys(unset, "")
        doc = await self.apps.find_one_and_update(
            {"_id": app_id}, update, return_document=ReturnDocument.AFTER
        )
        self._app_cache.invalidate(app_id)
        return App.from_document(doc) if doc else None

    async def list_apps(self, *, after: str | None, limit: int) -> list[App]:
        """Apps in the order of their ids, from the one after ``after``."""
        cursor = self.apps.find({"_id": {"$gt": after or ""}}, sort=[("_id", 1)], limit=limit)
        return [App.from_document(doc) async for doc in cursor]

    async def list_users(self, app_id: str, *, after: str | None, limit: int) -> list[User]:
        """An app's users in the order of their ids, from the one after ``after``."""
        cursor = self.users.find(
            {"app_id": app_id, "user_id": {"$gt": after or ""}},
            sort=[("app_id", 1), ("user_id", 1)],
            limit=limit,
        )
        return [
            User(
                app_id=app_id, user_id=doc["user_id"], email=doc["email"], language=doc["language"]
            )
            async for doc in cursor
        ]

    async def cached_app(self, app_id: str) -> App | None:
        """The app, possibly as it was up to APP_CACHE_TTL_SECONDS ago."""
        return await self._app_cache.get(app_id, lambda: self.get_app(app_id))

    async def cached_user(self, app_id: str, user_id: str) -> User | None:
        """The user, possibly as it was up to USER_CACHE_TTL_SECONDS ago."""
        return await self._user_cache.get((app_id, user_id), lambda: self.get_user(app_id, user_id))

    async def upsert_user(self, user: User) -> bool:
        """Register or update a user of an app; True when the user is new."""
        result = await self.users.update_one(
            {"_id": _user_key(user.app_id, user.user_id)},
            {
                "$set": {"email": user.email, "language": user.language, "updated_at": utcnow()},
                "$setOnInsert": {"app_id": user.app_id, "user_id": user.user_id},
            },
            upsert=True,
        )
        self._user_cache.invalidate((user.app_id, user.user_id))
        return result.upserted_id is not None

    async def get_user(self, app_id: str, user_id: str) -> User | None:
        doc = await self.users.find_one({"_id": _user_key(app_id, user_id)})
        if doc is None:
            return None
        return User(app_id=app_id, user_id=user_id, email=doc["email"], language=doc["language"])

    # -- job creation -----------------------------------------------------------------

    async def create_job(
        self, new: NewJob, *, announce_grace: timedelta = DEFAULT_ANNOUNCE_GRACE
    ) -> tuple[Job, bool]:
        """Insert the job, owing its ``job.requested`` (one command); returns it and whether
        this call created it. A job id that exists already (a replayed request from the
        Kafka path), or an Idempotency-Key the app used before, returns the earlier job."""
        now = utcnow()
        doc = new.document(now, now + announce_grace)
        try:
            await self._job_inserts.submit(doc)
        except DuplicateKeyError:
            if new.idempotency_key is None:
                earlier = await self.jobs.find_one({"_id": new.job_id})
            else:
                earlier = await self.jobs.find_one(
                    {"app_id": new.app_id, "idempotency_key": new.idempotency_key}
                )
            if earlier is None:  # pragma: no cover - jobs are never deleted
                raise
            return Job.from_document(earlier), False
        return Job.from_document(doc), True

    async def _insert_jobs(self, docs: Sequence[Document]) -> list[Exception | None]:
        """One command for concurrent inserts; a document's own write error (a duplicate id
        or Idempotency-Key) is its outcome, every other document is stored."""
        if len(docs) == 1:
            await self.jobs.insert_one(docs[0])
            return [None]
        try:
            await self.jobs.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if exc.details.get("writeConcernErrors"):
                raise
            outcomes: list[Exception | None] = [None] * len(docs)
            for error in exc.details.get("writeErrors", []):
                kind = DuplicateKeyError if error.get("code") == 11000 else WriteError
                outcomes[error["index"]] = kind(error.get("errmsg", ""), error.get("code"), error)
            return outcomes
        return [None] * len(docs)

    async def get_job(self, job_id: str) -> Job | None:
        doc = await self.jobs.find_one({"_id": job_id})
        return Job.from_document(doc) if doc else None

    async def get_job_of_app(self, app_id: str, job_id: str) -> Job | None:
        """A job only if it belongs to the app: one app never sees another app's jobs."""
        doc = await self.jobs.find_one({"_id": job_id, "app_id": app_id})
        return Job.from_document(doc) if doc else None

    async def list_jobs(
        self, selection: JobSelection, *, after: JobCursor | None, limit: int
    ) -> list[Job]:
        """Jobs matching ``selection``, newest first (``created_at``, then ``_id``,
        descending), from the one after ``after``. Without their payloads and results: a
        listing never shows them, and they may be large.

        Two range queries rather than one ``$or`` (which some servers answer by a scan): the
        rest of ``after``'s millisecond, then everything older."""
        found: list[Job] = []
        if after is not None and selection.covers(after.created_at):
            found += await self._find_listed(
                {
                    **selection.filter(),
                    "created_at": after.created_at,
                    "_id": {"$lt": after.job_id},
                },
                limit,
            )
        if len(found) < limit:
            older = selection.filter(before=after.created_at if after else None)
            found += await self._find_listed(older, limit - len(found))
        return found

    async def _find_listed(self, query: Document, limit: int) -> list[Job]:
        cursor = self.jobs.find(
            query,
            projection={"payload": False, "result": False},
            sort=[("created_at", -1), ("_id", -1)],
            limit=limit,
        )
        return [Job.from_document({**doc, "payload": ""}) async for doc in cursor]

    async def count_jobs(self, status: JobStatus, app_id: str | None = None) -> int:
        """How many jobs (of the app) have ``status``: counted through an index."""
        query: Document = {"status": status.value}
        if app_id is not None:
            query = {"app_id": app_id, **query}
        return await self.jobs.count_documents(query)

    # -- guarded state changes ----------------------------------------------------------

    async def claim_attempt(
        self,
        job_id: str,
        attempt: int,
        *,
        callback_token_hash: str,
        deadline_at: datetime,
        app_id: str | None = None,
        dispatched_at: datetime | None = None,
    ) -> bool:
        """queued / retry_scheduled → dispatched, for exactly the attempt that is due (and, when
        ``app_id`` is given, only a job of that app). Clears the owed ``job.requested``. True
        when the attempt is ours (no document is read back: the caller has the event).
        ``dispatched_at``: when the backend is called, if later than now (a retry claimed
        just ahead of its due time)."""
        now = utcnow()
        return await self._wrote(
            _transition(
                job_id,
                attempt,
                (JobStatus.QUEUED, JobStatus.RETRY_SCHEDULED),
                JobStatus.DISPATCHED,
                _claim_changes(
                    attempt, max(now, dispatched_at or now), callback_token_hash, deadline_at
                ),
                unset=("next_attempt_at", "announce_due_at", "held_at"),
                guard={"app_id": app_id} if app_id is not None else None,
                now=now,
                wants_document=False,
            )
        )

    async def reclaim_attempt(
        self,
        job_id: str,
        attempt: int,
        *,
        app_id: str,
        callback_token_hash: str,
        deadline_at: datetime,
        claimed_before: datetime,
    ) -> bool:
        """Take over a claim whose dispatcher went away before the backend accepted: the
        attempt is still ``dispatched``, neither accepted nor reported, and was claimed before
        ``claimed_before`` (by then a live dispatcher has had its answer). A new token. True
        when the attempt is ours now."""
        now = utcnow()
        return await self._wrote(
            _transition(
                job_id,
                attempt,
                (JobStatus.DISPATCHED,),
                JobStatus.DISPATCHED,
                _claim_changes(attempt, now, callback_token_hash, deadline_at),
                guard={
                    "app_id": app_id,
                    f"attempts.{attempt}.accepted_at": {"$exists": False},
                    f"attempts.{attempt}.report": {"$exists": False},
                    f"attempts.{attempt}.dispatched_at": {"$lt": claimed_before},
                },
                now=now,
                wants_document=False,
            )
        )

    async def mark_running(
        self, job_id: str, attempt: int, callback_token_hash: str | None = None
    ) -> bool:
        """dispatched → running: the backend accepted the attempt (the claim with
        ``callback_token_hash``, when given: a claim taken over is no longer ours). True
        when it was still ours to mark."""
        now = utcnow()
        return await self._wrote(
            _transition(
                job_id,
                attempt,
                (JobStatus.DISPATCHED,),
                JobStatus.RUNNING,
                {f"attempts.{attempt}.accepted_at": now},
                # A reported attempt (a timeout, or a callback faster than us) stays as it is.
                guard=_first_report_guard(attempt, callback_token_hash),
                now=now,
                wants_document=False,
            )
        )

    async def complete(
        self,
        job_id: str,
        attempt: int,
        result: str,
        *,
        callback_token_hash: str | None = None,
        announce_grace: timedelta = DEFAULT_ANNOUNCE_GRACE,
    ) -> Job | None:
        """dispatched / running → succeeded, if no outcome of the attempt was reported yet
        (and, for a callback, its token is the attempt's); owes ``job.completed``."""
        now = utcnow()
        return await self._write_job(
            _transition(
                job_id,
                attempt,
                OPEN_STATUSES,
                JobStatus.SUCCEEDED,
                {
                    "result": result,
                    "finished_at": now,
                    **_owes(now + announce_grace),
                    f"attempts.{attempt}.ended_at": now,
                    f"attempts.{attempt}.report": Report("succeeded", now).to_document(),
                },
                unset=("deadline_at",),
                now=now,
                guard=_first_report_guard(attempt, callback_token_hash),
            )
        )

    async def report_failure(
        self,
        job_id: str,
        attempt: int,
        failure: Failure,
        *,
        callback_token_hash: str | None = None,
        announce_grace: timedelta = DEFAULT_ANNOUNCE_GRACE,
    ) -> Job | None:
        """The open ``attempt`` failed, as first reported: stores the report and owes
        ``job.failed``. The status stays: the retry router's transition decides what follows.
        The attempt's deadline goes (its outcome is known)."""
        now = utcnow()
        guard: Document = {
            "_id": job_id,
            "attempt": attempt,
            "status": {"$in": [s.value for s in OPEN_STATUSES]},
            **_first_report_guard(attempt, callback_token_hash),
        }
        changes = {
            f"attempts.{attempt}.report": Report("failed", now, failure).to_document(),
            **_owes(now + announce_grace),
            "updated_at": now,
        }
        return await self._write_job(GuardedWrite(job_id, guard, changes, ("deadline_at",)))

    async def schedule_retry(
        self,
        job_id: str,
        attempt: int,
        failure: Failure,
        due_at: datetime,
        *,
        announce_grace: timedelta = DEFAULT_ANNOUNCE_GRACE,
        run_start_attempt: int | None = None,
    ) -> Job | None:
        """The attempt failed and another is due at ``due_at``: → retry_scheduled, attempt+1.

        One guarded write. Guarded also by the run the caller counted the retries from
        (``run_start_attempt``; None: a job never redriven), so that a decision taken with
        the wrong allowance matches nothing. It takes over the failure report's outbox
        entry: the job now owes the next ``job.requested``, announced by the relay if still
        owed at ``due_at`` + ``announce_grace`` (the dispatcher's claim clears it)."""
        now = utcnow()
        return await self._write_job(
            _transition(
                job_id,
                attempt,
                FAILABLE_STATUSES,
                JobStatus.RETRY_SCHEDULED,
                {
                    "attempt": attempt + 1,
                    "next_attempt_at": due_at,
                    **_owes(due_at + announce_grace),
                    **_attempt_failed(attempt, failure, now),
                },
                unset=("deadline_at",),
                now=now,
                guard=_run_guard(run_start_attempt),
            )
        )

    async def mark_dead(
        self,
        job_id: str,
        attempt: int,
        failure: Failure,
        *,
        announce_grace: timedelta = DEFAULT_ANNOUNCE_GRACE,
        run_start_attempt: int | None = None,
    ) -> Job | None:
        """The attempt failed and no other will follow: → dead. One guarded write, which
        makes the job owe ``job.dead`` (announced by the relay after ``announce_grace``
        unless the notifier's claim clears it first). ``run_start_attempt`` as for
        ``schedule_retry``."""
        now = utcnow()
        return await self._write_job(
            _transition(
                job_id,
                attempt,
                FAILABLE_STATUSES,
                JobStatus.DEAD,
                {
                    "finished_at": now,
                    **_owes(now + announce_grace),
                    **_attempt_failed(attempt, failure, now),
                },
                unset=("deadline_at",),
                now=now,
                guard=_run_guard(run_start_attempt),
            )
        )

    # -- operators: redrive, cancel, holding a disabled app's jobs -----------------------

    async def redrive(
        self,
        job: Job,
        *,
        by: str,
        announce_grace: timedelta = DEFAULT_ANNOUNCE_GRACE,
    ) -> Job | None:
        """dead → queued, as a new run: one guarded write on the dead job as read (``job``).

        Attempt numbers keep growing (the new run's first attempt is the one after the
        attempt the job died at), so every event of the earlier run is stale to the guards;
        the retry allowance counts from ``run_start_attempt``. The earlier attempts stay;
        a redrive entry records who, when, the failure and the earlier run's user mails,
        which are cleared (with the app's webhook deliveries) so that the new run's outcome is
        mailed and posted once again. Owes the new run's ``job.requested``. None when the job
        is no longer dead at that attempt (it was redriven already, or moved on)."""
        now = utcnow()
        entry = Redrive(
            at=now,
            by=by,
            from_attempt=job.attempt,
            failure=job.last_failure,
            mail_states=job.mail_states,
        )
        doc = await self.jobs.find_one_and_update(
            {"_id": job.job_id, "attempt": job.attempt, "status": JobStatus.DEAD.value},
            {
                "$set": {
                    "status": JobStatus.QUEUED.value,
                    "attempt": job.attempt + 1,
                    "run_start_attempt": job.attempt + 1,
                    **_owes(now + announce_grace),
                    "updated_at": now,
                },
                "$push": {"redrives": entry.to_document()},
                "$unset": {
                    "mail": "",
                    "webhook": "",
                    "finished_at": "",
                    "notified_user_at": "",
                    "notified_admins_at": "",
                    "next_attempt_at": "",
                    "deadline_at": "",
                },
            },
            return_document=ReturnDocument.AFTER,
        )
        return Job.from_document(doc) if doc else None

    async def cancel(self, job_id: str, *, by: str, app_id: str | None = None) -> Job | None:
        """Any unfinished status → cancelled (final), for the app's job when ``app_id`` is
        given: one guarded write. The job owes nothing any more and has no deadline, so no
        service acts on it again: the dispatcher's claim, the retry router's transitions and
        the deadline sweep all require other statuses. None: finished already (or none)."""
        now = utcnow()
        guard: Document = {
            "_id": job_id,
            "status": {"$in": [s.value for s in CANCELLABLE_STATUSES]},
        }
        if app_id is not None:
            guard["app_id"] = app_id
        changes = {
            "status": JobStatus.CANCELLED.value,
            "cancelled": {"at": now, "by": by},
            "finished_at": now,
            "updated_at": now,
        }
        unset = ("announce_due_at", "deadline_at", "next_attempt_at", "held_at")
        return await self._write_job(GuardedWrite(job_id, guard, changes, unset))

    async def record_report_after_cancel(
        self, job_id: str, attempt: int, report: Report, *, callback_token_hash: str
    ) -> Job | None:
        """A cancelled job's attempt reports its outcome late: the report is kept (the first
        wins, under the attempt's token) and changes nothing else: no result, no event."""
        guard = {
            "_id": job_id,
            "attempt": attempt,
            "status": JobStatus.CANCELLED.value,
            **_first_report_guard(attempt, callback_token_hash),
        }
        changes = {f"attempts.{attempt}.report": report.to_document()}
        return await self._write_job(GuardedWrite(job_id, guard, changes))

    async def hold(
        self, job_id: str, attempt: int, *, app_id: str, recheck_at: datetime
    ) -> Job | None:
        """The job's app is disabled: its due attempt is not dispatched but held (it stays
        queued / retry_scheduled). One guarded write that marks it held and keeps its
        ``job.requested`` owed until ``recheck_at``, so that it is requested again then (and
        at once when the app is enabled again: ``release_held``)."""
        now = utcnow()
        guard = {
            "_id": job_id,
            "attempt": attempt,
            "app_id": app_id,
            "status": {"$in": [JobStatus.QUEUED.value, JobStatus.RETRY_SCHEDULED.value]},
        }
        changes = {"held_at": now, **_owes(recheck_at), "updated_at": now}
        return await self._write_job(GuardedWrite(job_id, guard, changes))

    async def release_held(self, app_id: str, *, due_at: datetime) -> int:
        """The app is enabled again: its held jobs owe their ``job.requested`` at ``due_at``
        (the relay publishes it then). Each job's update is its own guarded write; returns
        how many were released."""
        result = await self.jobs.update_many(
            {
                "app_id": app_id,
                "status": {"$in": [JobStatus.QUEUED.value, JobStatus.RETRY_SCHEDULED.value]},
                "held_at": {"$exists": True},
            },
            {"$set": _owes(due_at), "$unset": {"held_at": ""}},
        )
        return result.modified_count

    async def redrive_answer(self, key: str) -> Document | None:
        """The answer stored for the redrive request ``key`` (caller and Idempotency-Key)."""
        doc = await self.redrive_requests.find_one({"_id": key})
        return dict(doc["answer"]) if doc else None

    async def keep_redrive_answer(self, key: str, answer: Document) -> Document:
        """Store the first answer of ``key``; returns the answer stored (ours or an earlier
        one: two requests with one key racing)."""
        try:
            await self.redrive_requests.insert_one(
                {"_id": key, "answer": answer, "created_at": utcnow()}
            )
        except DuplicateKeyError:
            earlier = await self.redrive_answer(key)
            if earlier is not None:
                return earlier
        return answer

    async def _wrote(self, write: GuardedWrite) -> bool:
        """One guarded write (batched with its concurrent kin) that wants no document back:
        True when its guard matched."""
        return await self._guarded_writes.submit(write) is not None

    async def _write_job(self, write: GuardedWrite) -> Job | None:
        """One guarded write of a job (batched with its concurrent kin): the job as written,
        or None when its guard matched nothing."""
        doc = await self._guarded_writes.submit(write)
        return Job.from_document(doc) if doc else None

    async def _write_guarded(
        self, writes: Sequence[GuardedWrite]
    ) -> list[Document | BaseException | None]:
        """The Coalescer's batch of guarded writes: per group of one shape, one update_many
        whose filter is the ``$or`` of each document's own guard (a write alone: one
        find_one_and_update, or update_one if no document is wanted, as without batching).
        Each write's answer is its document as
        written (``_id`` alone when it wants no more), or None when its guard matched
        nothing; a group whose command failed answers that error to its writes alone."""
        answers: list[Document | BaseException | None] = [None] * len(writes)
        for group in _write_groups(writes):
            try:
                if len(group) == 1:
                    written = [await self._write_one(writes[group[0]])]
                else:
                    written = await self._write_group([writes[i] for i in group])
            except Exception as exc:  # that group's callers retry, as after a single write
                for i in group:
                    answers[i] = exc
                continue
            for i, doc in zip(group, written, strict=True):
                answers[i] = doc
        return answers

    async def _write_one(self, write: GuardedWrite) -> Document | None:
        if write.wants_document:
            return await self.jobs.find_one_and_update(
                write.query, write.update(), return_document=ReturnDocument.AFTER
            )
        result = await self.jobs.update_one(write.query, write.update())
        return {"_id": write.job_id} if result.modified_count == 1 else None

    async def _write_group(self, group: Sequence[GuardedWrite]) -> list[Document | None]:
        """Writes of one shape on distinct documents, as one update_many. Each written
        document gets the batch's ``write_id``, which tells them apart from those whose
        guard matched nothing, should the count fall short."""
        write_id = uuid.uuid4().hex
        ids = [write.job_id for write in group]
        # `$and: [{_id $in}, {$or}]`: with `{_id $in, $or}` secantusd-rs scans the collection
        # (see jobplane.indexes, "batched guarded writes").
        guards = {"$and": [{"_id": {"$in": ids}}, {"$or": [write.query for write in group]}]}
        result = await self.jobs.update_many(guards, _batch_pipeline(group, ids, write_id))
        wants_documents = any(write.wants_document for write in group)
        if result.modified_count == len(group) and not wants_documents:
            return [{"_id": job_id} for job_id in ids]
        written = {
            doc["_id"]: doc
            async for doc in self.jobs.find(
                {"_id": {"$in": ids}, WRITE_ID: write_id},
                projection=None if wants_documents else {"_id": 1},
            )
        }
        return [written.get(job_id) for job_id in ids]

    # -- the outbox relay ----------------------------------------------------------------

    async def due_announcements(self, now: datetime, limit: int) -> list[Job]:
        """Jobs whose owed event is overdue (``announce_due_at < now``), oldest first."""
        cursor = self.jobs.find(
            {"announce_due_at": {"$lt": now}}, sort=[("announce_due_at", 1)], limit=limit
        )
        due: list[Job] = []
        async for doc in cursor:
            try:
                due.append(Job.from_document(doc))
            except (KeyError, TypeError, ValueError) as exc:
                # No event can be built from it: drop the debt so that it does not hold the
                # head of every batch for ever.
                log.error(
                    "unreadable job owes an event; dropped",
                    extra={"fields": {"job_id": str(doc.get("_id")), "error": repr(exc)}},
                )
                await self.jobs.update_one({"_id": doc["_id"]}, {"$unset": {"announce_due_at": ""}})
        return due

    async def count_due_announcements(self, now: datetime) -> int:
        """How many jobs owe an overdue event (the outbox backlog; the same index)."""
        return await self.jobs.count_documents({"announce_due_at": {"$lt": now}})

    async def postpone_announcement(self, job: Job, next_due_at: datetime) -> bool:
        """Take ``job``'s overdue announcement (push it to ``next_due_at``): False when
        another relay took it or its consumer has acted since ``job`` was read."""
        result = await self.jobs.update_one(
            {"_id": job.job_id, "announce_due_at": job.announce_due_at},
            {"$set": {"announce_due_at": next_due_at}, "$inc": {"announce_relays": 1}},
        )
        return result.modified_count == 1

    async def drop_announcement(self, job: Job) -> None:
        """``job`` owes nothing after all (its state has no event to announce)."""
        await self.jobs.update_one(
            {"_id": job.job_id, "announce_due_at": job.announce_due_at},
            {"$unset": {"announce_due_at": ""}},
        )

    # -- deadlines ---------------------------------------------------------------------

    async def overdue_attempts(self, now: datetime, limit: int = 100) -> list[Job]:
        """Open attempts past their deadline. A reported attempt has no ``deadline_at`` any
        more, so only attempts whose outcome is still unknown are found."""
        cursor = self.jobs.find(
            {"status": {"$in": [s.value for s in OPEN_STATUSES]}, "deadline_at": {"$lt": now}},
            limit=limit,
        )
        return [Job.from_document(doc) async for doc in cursor]

    # -- notifications -----------------------------------------------------------------
    #
    # One e-mail per outcome and recipient. The user's mail about an outcome is recorded on
    # the job (``mail.<outcome>``); every other mail (administrators' alerts, alerts about
    # dead letters) in ``notifications`` under ``<job>:<outcome>:<recipient>``. Both follow
    # one protocol: claim (one guarded write: nothing recorded yet, or a claim older than the
    # claim timeout, whose sender is presumed dead), send, then mark sent under the claim.

    async def claim_user_mail(
        self,
        job_id: str,
        outcome: str,
        *,
        claim_id: str,
        message_id: str,
        stale_before: datetime,
        run: RunState | None = None,
    ) -> MailClaim:
        """Claim the user's mail about ``outcome``; clears the owed event of the outcome.
        With ``run`` (as ``run_of`` read it), only while the job is still in that run: a
        redrive between the read and the claim makes the claim DONE (nothing to mail)."""
        prefix = f"mail.{outcome}"
        now = utcnow()
        current_run: Document = {"_id": job_id}
        if run is not None:
            current_run.update(_run_guard(run.run_start_attempt))
        claim = GuardedWrite(
            job_id,
            _claim_guard(current_run, _claimable(prefix, stale_before)),
            {prefix: _claim(claim_id, message_id, now), "updated_at": now},
            ("announce_due_at",),
            wants_document=False,
        )
        if await self._wrote(claim):
            return MailClaim.CLAIMED
        current = await self.jobs.find_one(
            {"_id": job_id}, projection={prefix: 1, "run_start_attempt": 1}
        )
        if current is None:
            return MailClaim.NO_RECORD
        if run is not None and current.get("run_start_attempt") != run.run_start_attempt:
            return MailClaim.DONE  # redriven since: the new run has mails of its own
        return _claim_state(current.get("mail", {}).get(outcome))

    async def run_of(self, job_id: str) -> RunState | None:
        """Which run of the job is the current one (it changes when the job is redriven);
        None: no such job."""
        doc = await self.jobs.find_one(
            {"_id": job_id}, projection={"run_start_attempt": 1, "redrives": 1}
        )
        if doc is None:
            return None
        start = doc.get("run_start_attempt")
        return RunState(
            run_start_attempt=int(start) if start is not None else None,
            redrives=len(doc.get("redrives") or ()),
        )

    async def settle_user_mail(
        self,
        job_id: str,
        outcome: str,
        state: MailState,
        *,
        claim_id: str | None = None,
        reason: str | None = None,
    ) -> bool:
        """Record the end of the user's mail: ``sent`` (also ``notified_user_at``) or ``failed``
        under our claim; ``skipped`` (no address to send to) when nothing was claimed yet,
        which also clears the owed event. False when the claim is no longer ours."""
        prefix = f"mail.{outcome}"
        changes = _settle_changes(prefix, state, reason, utcnow())
        if claim_id is None:
            guard: Document = {"_id": job_id, prefix: {"$exists": False}}
            unset: tuple[str, ...] = ("announce_due_at",)
        else:
            guard, unset = {"_id": job_id, f"{prefix}.claim_id": claim_id}, ()
        write = GuardedWrite(job_id, guard, changes, unset, wants_document=False)
        return await self._wrote(write)

    async def release_user_mail(self, job_id: str, outcome: str, *, claim_id: str) -> None:
        """Give our claim up (nothing reached the SMTP server): the next try claims at once."""
        prefix = f"mail.{outcome}"
        await self.jobs.update_one(
            {"_id": job_id, f"{prefix}.claim_id": claim_id, f"{prefix}.state": "claimed"},
            {"$unset": {prefix: ""}},
        )

    async def claim_notification(
        self,
        key: str,
        *,
        job_id: str,
        recipient: str,
        kind: str,
        claim_id: str,
        message_id: str,
        stale_before: datetime,
    ) -> MailClaim:
        """Claim the mail ``key`` of the ``notifications`` collection (created on first claim)."""
        now = utcnow()
        try:
            await self.notifications.update_one(
                _claim_guard({"_id": key}, _claimable("state", stale_before, whole=True)),
                {
                    "$set": _claim(claim_id, message_id, now),
                    "$setOnInsert": {"job_id": job_id, "recipient": recipient, "kind": kind},
                },
                upsert=True,
            )
            return MailClaim.CLAIMED
        except DuplicateKeyError:
            # It exists and is not claimable: sent, failed, or claimed by a live sender.
            current = await self.notifications.find_one({"_id": key})
            return _claim_state(current) if current is not None else MailClaim.BUSY

    async def settle_notification(
        self, key: str, state: MailState, *, claim_id: str, reason: str | None = None
    ) -> bool:
        """``sent`` or ``failed`` under our claim; False when the claim is no longer ours."""
        now = utcnow()
        changes: Document = {"state": state.value, f"{state.value}_at": now}
        if reason is not None:
            changes["reason"] = reason
        result = await self.notifications.update_one(
            {"_id": key, "claim_id": claim_id}, {"$set": changes}
        )
        return result.modified_count == 1

    async def notifications_of(self, job_id: str) -> list[Notification]:
        """The mails of the ``notifications`` collection about a job (admin alerts)."""
        cursor = self.notifications.find({"job_id": job_id}, limit=NOTIFICATIONS_SHOWN)
        return [Notification.from_document(doc) async for doc in cursor]

    async def release_notification(self, key: str, *, claim_id: str) -> None:
        await self.notifications.delete_one(
            {"_id": key, "claim_id": claim_id, "state": MailState.CLAIMED.value}
        )

    # -- outcome webhooks ----------------------------------------------------------------
    #
    # The app's webhook about an outcome is recorded on the job (``webhook.<outcome>``) with
    # the e-mails' protocol: claim (one guarded write), POST, settle under the claim. A
    # failed POST is not retried in place (that would hold the partition's other events):
    # the record becomes ``retrying`` with ``next_attempt_at``, and the job owes its outcome
    # event again at that time (``announce_due_at``), so the outbox relay re-publishes it and
    # the notifier claims the delivery anew. The user's mail is long settled by then: its
    # claim matches nothing and sends nothing.

    async def claim_webhook(
        self, job_id: str, outcome: str, *, claim_id: str, stale_before: datetime
    ) -> tuple[MailClaim, int]:
        """Claim the delivery of the app's webhook about ``outcome``: never tried, a claim
        gone stale, or a retry that is due. Counts the attempt (returned with the claim:
        this try's number); clears the owed event."""
        prefix = f"webhook.{outcome}"
        now = utcnow()
        doc = await self.jobs.find_one_and_update(
            _claim_guard({"_id": job_id}, _webhook_claimable(prefix, stale_before, now)),
            {
                "$set": {
                    f"{prefix}.state": WebhookState.CLAIMED.value,
                    f"{prefix}.claim_id": claim_id,
                    f"{prefix}.claimed_at": now,
                    "updated_at": now,
                },
                "$inc": {f"{prefix}.attempts": 1},
                "$unset": {"announce_due_at": ""},
            },
            projection={prefix: 1},
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            return MailClaim.CLAIMED, int(doc["webhook"][outcome]["attempts"])
        current = await self.jobs.find_one({"_id": job_id}, projection={prefix: 1})
        if current is None:
            return MailClaim.NO_RECORD, 0
        record = current.get("webhook", {}).get(outcome)
        attempts = int(record.get("attempts", 0)) if record else 0
        if record is not None and record.get("state") == WebhookState.RETRYING.value:
            # Not due yet: the relay brings the event back when it is.
            return MailClaim.DONE, attempts
        return _claim_state(record), attempts

    async def defer_webhook(
        self, job_id: str, outcome: str, *, until: datetime, reason: str, stale_before: datetime
    ) -> bool:
        """Put a delivery off to ``until`` without trying it (its endpoint is failing right
        now): ``retrying``, the attempts not counted, the outcome owed again then. Only a
        delivery nobody is at (see ``_webhook_claimable``); False otherwise."""
        prefix = f"webhook.{outcome}"
        now = utcnow()
        result = await self.jobs.update_one(
            _claim_guard({"_id": job_id}, _webhook_claimable(prefix, stale_before, now)),
            {
                "$set": {
                    f"{prefix}.state": WebhookState.RETRYING.value,
                    f"{prefix}.last_error": reason,
                    f"{prefix}.next_attempt_at": until,
                    **_owes(until),
                    "updated_at": now,
                }
            },
        )
        return result.modified_count == 1

    async def settle_webhook(
        self,
        job_id: str,
        outcome: str,
        *,
        claim_id: str,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> bool:
        """Record the end of a claimed delivery: ``sent`` (no ``error``), ``retrying`` at
        ``retry_at`` (the job owes its outcome event again then), or ``failed`` for good.
        False when the claim is no longer ours."""
        prefix = f"webhook.{outcome}"
        now = utcnow()
        changes: Document = {"updated_at": now}
        if error is None:
            changes |= {f"{prefix}.state": WebhookState.SENT.value, f"{prefix}.sent_at": now}
        elif retry_at is not None:
            changes |= {
                f"{prefix}.state": WebhookState.RETRYING.value,
                f"{prefix}.last_error": error,
                f"{prefix}.next_attempt_at": retry_at,
                **_owes(retry_at),
            }
        else:
            changes |= {
                f"{prefix}.state": WebhookState.FAILED.value,
                f"{prefix}.last_error": error,
                f"{prefix}.failed_at": now,
            }
        result = await self.jobs.update_one(
            {"_id": job_id, f"{prefix}.claim_id": claim_id}, {"$set": changes}
        )
        return result.modified_count == 1

    async def mark_admins_notified(self, job_id: str) -> None:
        now = utcnow()
        await self.jobs.update_one(
            {"_id": job_id, "notified_admins_at": None},
            {"$set": {"notified_admins_at": now, "updated_at": now}},
        )


@dataclass(frozen=True, slots=True)
class GuardedWrite:
    """One job's guarded change: ``query`` matches the job (by ``_id``) only while its guard
    holds; the change sets ``changes`` (dotted paths allowed) and removes ``unset``."""

    job_id: str
    query: Document
    changes: Document
    unset: tuple[str, ...] = ()
    # False: the caller only asks whether it wrote (the answer is then ``{"_id": ...}``).
    wants_document: bool = True

    @property
    def shape(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The fields it writes: writes of one shape can share one command."""
        return tuple(self.changes), self.unset

    def update(self) -> Document:
        update: Document = {"$set": self.changes}
        if self.unset:
            update["$unset"] = dict.fromkeys(self.unset, "")
        return update


def _transition(
    job_id: str,
    attempt: int,
    from_statuses: tuple[JobStatus, ...],
    to_status: JobStatus,
    changes: Document,
    *,
    now: datetime,
    unset: tuple[str, ...] = (),
    guard: Document | None = None,
    wants_document: bool = True,
) -> GuardedWrite:
    """The guarded write of a status change of ``attempt``, from one of ``from_statuses``."""
    query: Document = {
        "_id": job_id,
        "attempt": attempt,
        "status": {"$in": [s.value for s in from_statuses]},
        **(guard or {}),
    }
    changes = {"status": to_status.value, "updated_at": now, **changes}
    return GuardedWrite(job_id, query, changes, unset, wants_document=wants_document)


def _attempt_failed(attempt: int, failure: Failure, now: datetime) -> Document:
    """What a failed attempt's end records, whatever follows it (a retry or death): its
    failure, on the attempt and as the job's last."""
    failure_document = failure_to_document(failure)
    return {
        "last_failure": failure_document,
        f"attempts.{attempt}.ended_at": now,
        f"attempts.{attempt}.failure": failure_document,
    }


def _write_groups(writes: Sequence[GuardedWrite]) -> list[list[int]]:
    """Indexes of ``writes`` grouped by shape, in arrival order, a document at most once per
    group: two writes of one job in one command would both see their guard match."""
    groups: list[tuple[tuple[tuple[str, ...], tuple[str, ...]], set[str], list[int]]] = []
    for i, write in enumerate(writes):
        for shape, ids, members in groups:
            if shape == write.shape and write.job_id not in ids:
                ids.add(write.job_id)
                members.append(i)
                break
        else:
            groups.append((write.shape, {write.job_id}, [i]))
    return [members for _, _, members in groups]


def _batch_pipeline(group: Sequence[GuardedWrite], ids: list[str], write_id: str) -> list[Document]:
    """The update pipeline of a group: a value all writes share is set as it is, the others
    each document's own, picked by the document's place in ``ids``. Every value is a
    ``$literal``, so a result or message that starts with ``$`` is never read as a path."""
    at = {"$indexOfArray": [{"$literal": ids}, "$_id"]}
    fields: Document = {WRITE_ID: {"$literal": write_id}}
    for key in group[0].changes:
        values = [write.changes[key] for write in group]
        if all(value == values[0] for value in values[1:]):
            fields[key] = {"$literal": values[0]}
        else:
            fields[key] = {"$arrayElemAt": [{"$literal": values}, at]}
    stages: list[Document] = [{"$set": fields}]
    if group[0].unset:
        stages.append({"$unset": list(group[0].unset)})
    return stages


def _settle_changes(prefix: str, state: MailState, reason: str | None, now: datetime) -> Document:
    changes: Document = {f"{prefix}.state": state.value, f"{prefix}.{state.value}_at": now}
    if reason is not None:
        changes[f"{prefix}.reason"] = reason
    if state is MailState.SENT:
        changes["notified_user_at"] = now
    return {**changes, "updated_at": now}


@dataclass(frozen=True, slots=True)
class RunState:
    run_start_attempt: int | None  # None: the job's first run (never redriven)
    redrives: int

    def covers(self, attempt: int) -> bool:
        """Whether ``attempt`` belongs to this run (not to a run before a redrive)."""
        return self.run_start_attempt is None or attempt >= self.run_start_attempt


class MailState(StrEnum):
    CLAIMED = "claimed"  # a sender is at work (or died: the claim goes stale)
    SENT = "sent"
    FAILED = "failed"  # refused for good (bad address, header or content): never retried
    SKIPPED = "skipped"  # nobody to send it to (the user is not registered)


class WebhookState(StrEnum):
    CLAIMED = "claimed"  # a notifier is POSTing it (or died: the claim goes stale)
    SENT = "sent"  # the app's endpoint answered 2xx
    RETRYING = "retrying"  # the last POST failed; tried again at ``next_attempt_at``
    FAILED = "failed"  # every attempt failed: given up


class MailClaim(Enum):
    CLAIMED = "claimed"  # ours: send, then settle
    DONE = "done"  # sent, failed or skipped already: nothing to do
    BUSY = "busy"  # claimed by another sender less than the claim timeout ago
    NO_RECORD = "no_record"  # no job document to record it on


def _claim(claim_id: str, message_id: str, now: datetime) -> Document:
    return {
        "state": MailState.CLAIMED.value,
        "claim_id": claim_id,
        "claimed_at": now,
        "message_id": message_id,
    }


def _claimable(field: str, stale_before: datetime, *, whole: bool = False) -> list[Document]:
    """Nothing recorded yet, or a claim gone stale. ``field`` is the record (on a job) or,
    with ``whole``, the record's state field (a record that is a document of its own)."""
    state, claimed_at = (
        (field, "claimed_at") if whole else (f"{field}.state", f"{field}.claimed_at")
    )
    return [
        {state: {"$exists": False}},
        {state: MailState.CLAIMED.value, claimed_at: {"$lt": stale_before}},
    ]


def _webhook_claimable(prefix: str, stale_before: datetime, now: datetime) -> list[Document]:
    """A delivery nobody is at: never tried, a claim gone stale, or a retry that is due."""
    return [
        *_claimable(prefix, stale_before),
        {
            f"{prefix}.state": WebhookState.RETRYING.value,
            f"{prefix}.next_attempt_at": {"$lte": now},
        },
    ]


def _owes(due_at: datetime) -> Document:
    """A new debt: the job owes an event from ``due_at``. The relay's backoff starts over
    (it doubles with ``announce_relays``, the re-publications of one debt, not of the job's
    whole life)."""
    return {"announce_due_at": due_at, "announce_relays": 0}


def _claim_guard(document: Document, claimable: list[Document]) -> Document:
    # `$and: [{_id}, {$or}]`, not `{_id, $or}`: secantusd-rs answers the latter by a scan of
    # the whole collection (see jobplane.indexes, "user mail claim").
    return {"$and": [document, {"$or": claimable}]}


def _claim_state(record: Document | None) -> MailClaim:
    if record is None:
        return MailClaim.BUSY  # raced with a claim that is not visible yet: try again later
    if record.get("state") == MailState.CLAIMED.value:
        return MailClaim.BUSY
    return MailClaim.DONE


def _first_report_guard(attempt: int, callback_token_hash: str | None) -> Document:
    """The first report of an attempt wins; a callback's must carry the attempt's token."""
    guard: Document = {f"attempts.{attempt}.report": {"$exists": False}}
    if callback_token_hash is not None:
        guard[f"attempts.{attempt}.callback_token_hash"] = callback_token_hash
    return guard


def _run_guard(run_start_attempt: int | None) -> Document:
    """The run a retry decision counted from: a job never redriven has no run start."""
    if run_start_attempt is None:
        return {"run_start_attempt": {"$exists": False}}
    return {"run_start_attempt": run_start_attempt}


def _user_key(app_id: str, user_id: str) -> str:
    return f"{app_id}:{user_id}"


def _claim_changes(
    attempt: int, dispatched_at: datetime, callback_token_hash: str, deadline_at: datetime
) -> Document:
    return {
        "deadline_at": deadline_at,
        f"attempts.{attempt}.dispatched_at": dispatched_at,
        f"attempts.{attempt}.deadline_at": deadline_at,
        # Kept per attempt: a late callback of an old attempt must still be told apart from
        # a forged one.
        f"attempts.{attempt}.callback_token_hash": callback_token_hash,
    }
