"""The relay: committed changes from the outbox to the queue, then to the audit trail.

Every write leaves its change record in an outbox row, in the transaction of
the change (``scim.model.changes``, ``scim.storage.tables``). The relay, run by a Functions
timer trigger (``function_app.py``) and by ``scim feed relay``:

1. reads one page of outbox rows per resource type (a resource's in version order);
2. publishes each change's event to the queue, then moves the rows to the audit
   trail (``settle_changes``: delete the outbox row and write the audit row, in one
   transaction for up to 50 changes) — a crash between the two republishes the
   events on the next run: **at least once**, never lost, and never an event of a
   change that did not commit;
3. keeps each resource's events **in order**: when a publish fails, that
   resource's later changes wait for the next run;
4. prunes audit records older than the retention (at most hourly).

Different resources are relayed concurrently. The event id is stable across
republishing, so consumers deduplicate on it; ``data.sequence`` orders a
resource's events and shows gaps (``docs/change-feed.md``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from scim.logs import printable
from scim.model.changes import Change
from scim.model.errors import ScimError
from scim.storage.repository import PendingChange, Repository

__all__ = ["KINDS", "Publisher", "Relay", "RelayReport", "message_of", "source_of"]

log = logging.getLogger(__name__)

KINDS = ("User", "Group")
MAX_MESSAGE_BYTES = 48 * 1024
"""Largest event text a queue message carries (64 KiB once Base64-encoded)."""
_CONCURRENCY = 16
_PRUNE_EVERY_S = 3600.0


class Publisher(Protocol):
    """Where events go (``scim.storage.queue.QueuePublisher``; a list in tests)."""

    async def send(self, message: str) -> None:
        """Publish one message; raise ``ServiceUnavailableError`` when it cannot."""
        ...


def source_of(tenant: str) -> str:
    """The CloudEvents ``source`` of a tenant's events."""
    return f"urn:scim:tenant:{tenant}"


def message_of(change: Change, source: str) -> str:
    """The event's JSON text, without the resource when it would exceed a queue message."""
    text = json.dumps(change.event(source), ensure_ascii=False, separators=(",", ":"))
    if len(text.encode("utf-8")) > MAX_MESSAGE_BYTES:
        text = json.dumps(
            change.event(source, include_resource=False), ensure_ascii=False, separators=(",", ":")
        )
    return text


@dataclass
class RelayReport:
    """What one relay run did."""

    published: int = 0
    recorded: int = 0
    waiting: int = 0
    pruned: int = 0

    def __bool__(self) -> bool:
        return bool(self.recorded or self.pruned)


class Relay:
    """Moves outbox rows to the queue and the audit trail (see the module docstring)."""

    def __init__(
        self,
        repository: Repository,
        publisher: Publisher | None,
        *,
        source: str,
        retention_days: int = 365,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._repository = repository
        self._publisher = publisher
        self._source = source
        self._retention = timedelta(days=retention_days) if retention_days else None
        self._clock = clock
        self._pruned_at: float | None = None

    async def run_once(self, *, limit: int = 1000) -> RelayReport:
        """Relay one page of pending changes per resource type; prune when due.

        Events are sent concurrently across resources and in order within each;
        then every sent change moves to the audit trail, 50 per transaction.
        """
        report = RelayReport()
        gate = asyncio.Semaphore(_CONCURRENCY)
        for kind in KINDS:
            by_resource: dict[str, list[PendingChange]] = {}
            for pending in await self._repository.pending_changes(kind, limit):
                by_resource.setdefault(pending.change.resource_id, []).append(pending)
            runs = await asyncio.gather(
                *(self._publish(kind, run, report, gate) for run in by_resource.values())
            )
            report.recorded += await self._repository.settle_changes(kind, [p for run in runs for p in run])
        await self._prune_if_due(report)
        return report

    async def drain(self, *, rounds: int = 100) -> RelayReport:
        """Run until the outbox is empty (or a publish keeps failing); the totals."""
        total = RelayReport()
        for _ in range(rounds):
            report = await self.run_once()
            total.published += report.published
            total.recorded += report.recorded
            total.pruned += report.pruned
            total.waiting = report.waiting
            if not report.recorded:
                break
        return total

    async def _publish(
        self, kind: str, run: list[PendingChange], report: RelayReport, gate: asyncio.Semaphore
    ) -> list[PendingChange]:
        """Send one resource's events in order; stop at the first failure (order over progress)."""
        sent: list[PendingChange] = []
        async with gate:
            for position, pending in enumerate(sorted(run, key=lambda p: p.change.sequence)):
                if self._publisher is not None:
                    try:
                        await self._publisher.send(message_of(pending.change, self._source))
                    except ScimError as error:
                        waiting = len(run) - position
                        change = pending.change
                        log.warning(
                            "Relay: %s %s v%d not published (%s); %d change(s) of it wait for the next run",
                            kind, change.resource_id, change.sequence, printable(error.detail), waiting,
                        )  # fmt: skip
                        report.waiting += waiting
                        break
                    report.published += 1
                sent.append(pending)
        return sent

    async def _prune_if_due(self, report: RelayReport) -> None:
        now = time.monotonic()
        if self._retention is None or (
            self._pruned_at is not None and now - self._pruned_at < _PRUNE_EVERY_S
        ):
            return
        self._pruned_at = now
        report.pruned += await self.prune()

    async def prune(self) -> int:
        """Delete audit records older than the retention; how many (0 when kept forever)."""
        if self._retention is None:
            return 0
        before = (self._clock() - self._retention).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        pruned = 0
        for kind in KINDS:
            pruned += await self._repository.prune_audit(kind, before)
        if pruned:
            log.info("Pruned %d audit record(s) older than %s", pruned, before)
        return pruned
