"""Group commit: concurrent store writes of one kind become one command.

Why: the store runs with ``--sync-on-commit`` (a kill -9 must lose no acknowledged write), so
every command costs a commit and an fsync, applied one at a time. One command that writes N
documents costs about one commit: on this project's store, ``insert_many(ordered=False)`` of 32
job documents stores 10-15x more documents per second than 32 ``insert_one``s, and an
``update_many`` of 32 guarded documents 2.5-5x more than 32 ``update_one``s
(``python -m bench.batching_floor``). A per-document ``bulk_write`` of ``UpdateOne``s does not
pay: the store commits each one.

How: a :class:`Coalescer` stands behind a per-document store method. A call that arrives while
fewer than ``max_in_flight`` commands of its kind are under way goes out at once, alone (so an
idle platform waits for nothing and sends the same single-document command as before). Calls
that arrive while commands are under way wait, and go out together, up to ``max_batch`` of them,
as soon as one of those commands is answered: the batch grows with the load and adds no timer.
``run_batch`` receives the items in arrival order and answers one outcome per item, a value or
the exception of that item alone (a duplicate key fails only its caller); an exception raised
by ``run_batch`` itself (the store unreachable) goes to every caller of the batch, who retries
as without batching. Each caller awaits its own future: callers' semantics do not change.

What it must keep (the project's design): each document still changes by its own guard (an
``update_many`` filter is an ``$or`` of each document's guard), so a batch is, per document,
the one guarded write of that state change; a command that failed as a whole may have applied
some documents, exactly as a single command that timed out may have been applied, which
at-least-once and idempotent handlers already cover.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
class _Call(Generic[T, R]):
    item: T
    future: asyncio.Future[R]


def _retrieve(future: asyncio.Future[Any]) -> None:
    # A caller that gave up never reads its outcome: read it here, so nothing is logged as lost.
    if not future.cancelled():
        future.exception()


class Coalescer(Generic[T, R]):
    """Gathers concurrent :meth:`submit` calls into batches for ``run_batch``."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        max_batch: int = 64,
        max_in_flight: int = 1,
    ) -> None:
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")
        self._run_batch = run_batch
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._waiting: list[_Call[T, R]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()  # referenced until done
        self.batches = 0  # commands sent, for tests and the curious

    async def submit(self, item: T) -> R:
        """The outcome of ``item``: its own value, or its own (or its batch's) exception."""
        call: _Call[T, R] = _Call(item, asyncio.get_running_loop().create_future())
        call.future.add_done_callback(_retrieve)
        self._waiting.append(call)
        self._start_batches()
        # shield: a caller that gives up does not cancel its neighbours' command
        return await asyncio.shield(call.future)

    def _start_batches(self) -> None:
        while self._waiting and self._in_flight < self.max_in_flight:
            batch = self._waiting[: self.max_batch]
            del self._waiting[: self.max_batch]
            self._in_flight += 1
            task = asyncio.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[_Call[T, R]]) -> None:
        self.batches += 1
        try:
            outcomes = await self._run_batch([call.item for call in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{len(outcomes)} outcomes for a batch of {len(batch)}")
        except BaseException as exc:  # every caller of the batch gets it, then it goes on
            for call in batch:
                if call.future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):  # the loop is shutting down
                    call.future.cancel()
                else:
                    call.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for call, outcome in zip(batch, outcomes, strict=True):
                if call.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    call.future.set_exception(outcome)
                else:
                    call.future.set_result(outcome)
        finally:
            self._in_flight -= 1
            self._start_batches()
