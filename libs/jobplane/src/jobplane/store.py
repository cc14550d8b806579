"""The job store: jobs, apps, users and sent notifications in MongoDB.

Every change of a job's state is one atomic find-and-modify guarded by the state it starts
from (the attempt number and the statuses it may leave). A replayed or late event therefore
matches nothing and changes nothing: the caller sees ``None`` and knows. The code is plain
MongoDB 7/8 code; the local store (secantusd-rs) applies it the same way, which the store
conformance suite (tests/store/) checks. Every query is listed, with its index, in
jobplane.indexes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from jobplane import indexes
from jobplane.cache import TtlCache
from jobplane.config import CommonSettings
from jobplane.events import Failure
from jobplane.jobs import FAILABLE_STATUSES, OPEN_STATUSES, Job, JobStatus, failure_to_document

Document = dict[str, Any]

# The longest a change of an app or a user stays unseen by a service that read it before
# (see jobplane.cache): a new backend URL or e-mail address is used within these seconds.
APP_CACHE_TTL_SECONDS = 10.0
USER_CACHE_TTL_SECONDS = 5.0
# How long an owed event may stay unpublished before the relay publishes it (the
# announce_due_at outbox); the services pass their own setting.
DEFAULT_ANNOUNCE_GRACE = timedelta(seconds=30)


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
        self.idempotency_keys: AsyncCollection[Document] = database["idempotency_keys"]
        self.notifications: AsyncCollection[Document] = database["notifications"]
        self._app_cache: TtlCache[str, App] = TtlCache(APP_CACHE_TTL_SECONDS)
        self._user_cache: TtlCache[tuple[str, str], User] = TtlCache(USER_CACHE_TTL_SECONDS)

    @classmethod
    def from_settings(
        cls, client: AsyncMongoClient[Document], settings: CommonSettings
    ) -> JobStore:
        return cls(client[settings.mongodb_database], retention_days=settings.job_retention_days)

    async def prepare(self) -> None:
        """Create the indexes of every query (jobplane.indexes) and apply the retention of
        finished jobs. Idempotent: every service calls it at start-up."""
        for index in indexes.INDEXES:
            await self.db[index.collection].create_index(list(index.keys), **index.options())
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
        try:
            await self.apps.insert_one(doc)
        except DuplicateKeyError as exc:
            raise AlreadyExistsError(f"app {app_id!r} is registered already") from exc
        return App.from_document(doc)

    async def get_app(self, app_id: str) -> App | None:
        doc = await self.apps.find_one({"_id": app_id})
        return App.from_document(doc) if doc else None

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

    async def reserve_idempotency_key(self, app_id: str, key: str, job_id: str) -> str:
        """The job id this key stands for: ``job_id`` if the key is new, else the earlier one."""
        doc_id = f"{app_id}:{key}"
        try:
            await self.idempotency_keys.insert_one(
                {"_id": doc_id, "job_id": job_id, "created_at": utcnow()}
            )
            return job_id
        except DuplicateKeyError:
            existing = await self.idempotency_keys.find_one({"_id": doc_id})
            if existing is None:  # pragma: no cover - keys are never deleted
                raise
            return str(existing["job_id"])

    async def create_job(self, new: NewJob) -> tuple[Job, bool]:
        """Insert the job unless it exists; returns it and whether this call created it."""
        now = utcnow()
        created = True
        try:
            await self.jobs.insert_one(
                {
                    "_id": new.job_id,
                    "app_id": new.app_id,
                    "user_id": new.user_id,
                    "job_type": new.job_type,
                    "payload": new.payload,
                    "timeout_seconds": new.timeout_seconds,
                    "trace_id": new.trace_id,
                    "status": JobStatus.QUEUED.value,
                    "attempt": 1,
                    "attempts": {},
                    "created_at": now,
                    "updated_at": now,
                }
            )
        except DuplicateKeyError:
            created = False
        job = await self.get_job(new.job_id)
        assert job is not None  # just written, and jobs are never deleted
        return job, created

    async def get_job(self, job_id: str) -> Job | None:
        doc = await self.jobs.find_one({"_id": job_id})
        return Job.from_document(doc) if doc else None

    async def get_job_of_app(self, app_id: str, job_id: str) -> Job | None:
        """A job only if it belongs to the app: one app never sees another app's jobs."""
        doc = await self.jobs.find_one({"_id": job_id, "app_id": app_id})
        return Job.from_document(doc) if doc else None

    # -- guarded state changes ----------------------------------------------------------

    async def claim_attempt(
        self, job_id: str, attempt: int, *, callback_token_hash: str, deadline_at: datetime
    ) -> Job | None:
        """queued / retry_scheduled → dispatched, for exactly the attempt that is due."""
        now = utcnow()
        return await self._transition(
            job_id,
            attempt,
            (JobStatus.QUEUED, JobStatus.RETRY_SCHEDULED),
            JobStatus.DISPATCHED,
            {
                "deadline_at": deadline_at,
                f"attempts.{attempt}.dispatched_at": now,
                f"attempts.{attempt}.deadline_at": deadline_at,
                # Kept per attempt: a late callback of an old attempt must still be told
                # apart from a forged one.
                f"attempts.{attempt}.callback_token_hash": callback_token_hash,
            },
            unset=("next_attempt_at", "timeout_reported_at"),
            now=now,
        )

    async def mark_running(self, job_id: str, attempt: int) -> Job | None:
        """dispatched → running: the backend accepted the attempt."""
        now = utcnow()
        return await self._transition(
            job_id,
            attempt,
            (JobStatus.DISPATCHED,),
            JobStatus.RUNNING,
            {f"attempts.{attempt}.accepted_at": now},
            now=now,
        )

    async def complete(self, job_id: str, attempt: int, result: str) -> Job | None:
        """dispatched / running → succeeded."""
        now = utcnow()
        return await self._transition(
            job_id,
            attempt,
            OPEN_STATUSES,
            JobStatus.SUCCEEDED,
            {"result": result, "finished_at": now, f"attempts.{attempt}.ended_at": now},
            now=now,
        )

    async def schedule_retry(
        self,
        job_id: str,
        attempt: int,
        failure: Failure,
        due_at: datetime,
        *,
        announce_grace: timedelta = DEFAULT_ANNOUNCE_GRACE,
    ) -> Job | None:
        """The attempt failed and another is due at ``due_at``: → retry_scheduled, attempt+1.

        One guarded write. It takes over the failure report's outbox entry: the job now owes
        the next ``job.requested``, announced by the relay if still owed at ``due_at`` +
        ``announce_grace`` (the dispatcher's claim clears it)."""
        now = utcnow()
        return await self._transition(
            job_id,
            attempt,
            FAILABLE_STATUSES,
            JobStatus.RETRY_SCHEDULED,
            {
                "attempt": attempt + 1,
                "next_attempt_at": due_at,
                "last_failure": failure_to_document(failure),
                "announce_due_at": due_at + announce_grace,
                f"attempts.{attempt}.ended_at": now,
                f"attempts.{attempt}.failure": failure_to_document(failure),
            },
            unset=("deadline_at",),
            now=now,
        )

    async def mark_dead(
        self,
        job_id: str,
        attempt: int,
        failure: Failure,
        *,
        announce_grace: timedelta = DEFAULT_ANNOUNCE_GRACE,
    ) -> Job | None:
        """The attempt failed and no other will follow: → dead. One guarded write, which
        makes the job owe ``job.dead`` (announced by the relay after ``announce_grace``
        unless the notifier's claim clears it first)."""
        now = utcnow()
        return await self._transition(
            job_id,
            attempt,
            FAILABLE_STATUSES,
            JobStatus.DEAD,
            {
                "finished_at": now,
                "last_failure": failure_to_document(failure),
                "announce_due_at": now + announce_grace,
                f"attempts.{attempt}.ended_at": now,
                f"attempts.{attempt}.failure": failure_to_document(failure),
            },
            unset=("deadline_at",),
            now=now,
        )

    async def _transition(
        self,
        job_id: str,
        attempt: int,
        from_statuses: tuple[JobStatus, ...],
        to_status: JobStatus,
        changes: Document,
        *,
        now: datetime,
        unset: tuple[str, ...] = (),
    ) -> Job | None:
        update: Document = {"$set": {"status": to_status.value, "updated_at": now, **changes}}
        if unset:
            update["$unset"] = dict.fromkeys(unset, "")
        guard: Document = {
            "_id": job_id,
            "attempt": attempt,
            "status": {"$in": [s.value for s in from_statuses]},
        }
        doc = await self.jobs.find_one_and_update(
            guard, update, return_document=ReturnDocument.AFTER
        )
        return Job.from_document(doc) if doc else None

    # -- deadlines ---------------------------------------------------------------------

    async def overdue_attempts(self, now: datetime, limit: int = 100) -> list[Job]:
        """Open attempts past their deadline whose timeout has not been reported yet."""
        cursor = self.jobs.find(
            {
                "status": {"$in": [s.value for s in OPEN_STATUSES]},
                "deadline_at": {"$lt": now},
                "timeout_reported_at": None,
            },
            limit=limit,
        )
        return [Job.from_document(doc) async for doc in cursor]

    async def mark_timeout_reported(self, job_id: str, attempt: int) -> None:
        await self.jobs.update_one(
            {"_id": job_id, "attempt": attempt}, {"$set": {"timeout_reported_at": utcnow()}}
        )

    # -- notifications -----------------------------------------------------------------

    async def notification_sent(self, key: str) -> bool:
        return await self.notifications.find_one({"_id": key}, projection={"_id": 1}) is not None

    async def record_notification(
        self, *, key: str, job_id: str, recipient: str, kind: str, message_id: str
    ) -> None:
        # A duplicate means an earlier delivery of the same event recorded it already.
        with contextlib.suppress(DuplicateKeyError):
            await self.notifications.insert_one(
                {
                    "_id": key,
                    "job_id": job_id,
                    "recipient": recipient,
                    "kind": kind,
                    "message_id": message_id,
                    "sent_at": utcnow(),
                }
            )

    async def mark_notified(self, job_id: str, *, user: bool, admins: bool) -> None:
        now = utcnow()
        changes: Document = {}
        if user:
            changes["notified_user_at"] = now
        if admins:
            changes["notified_admins_at"] = now
        if changes:
            await self.jobs.update_one({"_id": job_id}, {"$set": changes})


def _user_key(app_id: str, user_id: str) -> str:
    return f"{app_id}:{user_id}"
