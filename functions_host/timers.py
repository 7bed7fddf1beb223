"""Timer triggers on their NCRONTAB schedule, as the host's timer extension runs them.

Rules (Microsoft Learn: *Timer trigger for Azure Functions*; azure-notes §6.2):

- the schedule is NCRONTAB with six fields, ``{second} {minute} {hour} {day} {month}
  {day-of-week}``; each field takes ``*``, a value, a range ``a-b`` (a reversed range is
  swapped), a step ``*/n`` or ``a-b/n``, and comma-separated lists of those; day-of-week is 0–6
  from Sunday, and 7 is refused (NCrontab's ``CrontabFieldImpl``);
  names (``Mon``, ``Jan``) and five-field expressions are not implemented here and are refused;
- times are UTC (``WEBSITE_TIME_ZONE`` is not applied here);
- ``runOnStartup`` runs the function once when the host starts;
- one invocation at a time: the next occurrence is computed after the previous run ends, so a
  run longer than the period skips occurrences rather than overlapping (the host's singleton
  lock; without ``AzureWebJobsStorage`` it is an in-memory lock, enough for one instance);
- the function receives ``{"Schedule": {...}, "ScheduleStatus": null, "IsPastDue": false}``,
  which ``TimerRequestConverter`` decodes into ``func.TimerRequest``;
- a failing run is logged and the schedule goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from functions_host.worker import Datum, InvocationFailedError

if TYPE_CHECKING:
    from functions_host.worker import FunctionMetadata, Worker

__all__ = ["Schedule", "run_timer"]

logger = logging.getLogger("functions_host")

_FIELDS = (
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 6),
)
_SEARCH_LIMIT = timedelta(days=366 * 5)


def _field_values(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        spec, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if spec == "*":
                start, end = low, high
            elif "-" in spec:
                first, last = spec.split("-", 1)
                start, end = sorted((int(first), int(last)))  # NCrontab swaps a reversed range
            else:
                start = int(spec)
                end = high if step_text else start
        except ValueError:
            raise ValueError(f"NCRONTAB {name} field {text!r}: not a number, range or step") from None
        if step < 1 or not (low <= start <= end <= high):
            raise ValueError(f"NCRONTAB {name} field {text!r}: outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    """A parsed six-field NCRONTAB expression."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        """Parse ``expression``.

        Raises:
            ValueError: not six fields, or a field out of range or not implemented here.
        """
        fields = expression.split()
        if len(fields) != len(_FIELDS):
            raise ValueError(
                f"NCRONTAB {expression!r}: six fields expected (second minute hour day month day-of-week)"
            )
        parsed = [_field_values(text, *spec) for text, spec in zip(fields, _FIELDS, strict=True)]
        seconds, minutes, hours, days, months, weekdays = parsed
        return cls(expression, seconds, minutes, hours, days, months, weekdays)

    def _day_matches(self, moment: datetime) -> bool:
        weekday = (moment.weekday() + 1) % 7  # Python: Monday 0; NCRONTAB: Sunday 0
        return moment.day in self.days and moment.month in self.months and weekday in self.weekdays

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after ``moment``.

        Raises:
            ValueError: no occurrence within five years (e.g. 31 February).
        """
        candidate = moment.replace(microsecond=0) + timedelta(seconds=1)
        limit = moment + _SEARCH_LIMIT
        while candidate <= limit:
            if not self._day_matches(candidate):
                candidate = (candidate + timedelta(days=1)).replace(hour=0, minute=0, second=0)
            elif candidate.hour not in self.hours:
                candidate = (candidate + timedelta(hours=1)).replace(minute=0, second=0)
            elif candidate.minute not in self.minutes:
                candidate = (candidate + timedelta(minutes=1)).replace(second=0)
            else:
                later = [second for second in self.seconds if second >= candidate.second]
                if later:
                    return candidate.replace(second=min(later))
                candidate = (candidate + timedelta(minutes=1)).replace(second=0)
        raise ValueError(f"NCRONTAB {self.expression!r} has no occurrence within five years")


def _timer_datum(past_due: bool) -> Datum:
    info = {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": None, "IsPastDue": past_due}
    return Datum(json.dumps(info), "json")


async def run_timer(
    worker: Worker, function: FunctionMetadata, schedule: Schedule, run_on_startup: bool
) -> None:
    """Invoke ``function`` on ``schedule`` until cancelled (a task on the worker's loop)."""
    argument = str(function.trigger.get("name", "timer"))
    if run_on_startup:
        await _fire(worker, function, argument, past_due=False)
    while True:
        now = datetime.now(UTC)
        due = schedule.next_after(now)
        await asyncio.sleep((due - now).total_seconds())
        late = datetime.now(UTC) - due > timedelta(seconds=1)
        await _fire(worker, function, argument, past_due=late)


async def _fire(worker: Worker, function: FunctionMetadata, argument: str, *, past_due: bool) -> None:
    try:
        await worker.invoke_async(function, [(argument, _timer_datum(past_due))], {})
    except InvocationFailedError as error:
        logger.error("timer function failed: %s", error)
