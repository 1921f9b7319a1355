"""The time of a scheduled EventBridge event, checked before a job computes days around it,
and the answer to an event that is refused.

A scheduled event is an EventBridge event (`version`, `id`, `detail-type` "Scheduled Event",
`source`, `account`, `time`, `region`, `resources`, `detail`:
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-events-structure.html), `time`
being when the schedule fired. The jobs cover whole days ending on that day and step a day
past them; a date at the very edge of what a date can hold (`0001-01-01`, `9999-12-31`)
leaves no room for that. Rule: `time` must fall in [1970-01-01T00:00:00Z, 9999-01-01T00:00:00Z)
(a naive time is read as UTC); the window of `days` before it must fit too. Any other event is
refused with a logged error naming the field and what is allowed, never a traceback.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import ValidationError

from avsev.serving.errors import ErrorBody, ErrorDetail, details_from_validation
from avsev.serving.observability import logger

EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
UNTIL = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
ALLOWED_TIME = (
    f"an ISO date-time from {EARLIEST:%Y-%m-%dT%H:%M:%SZ} up to (not including) "
    f"{UNTIL:%Y-%m-%dT%H:%M:%SZ}"
)


class EventRejected(ValueError):
    """An event a function does not act on, with each bad field and what is allowed."""

    def __init__(self, message: str, details: list[ErrorDetail]) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def answer(self) -> dict[str, Any]:
        """What the function returns (and logs): the API's error shape, status 400."""
        body = ErrorBody(
            status=400, code="invalid_event", message=self.message, details=self.details
        )
        return {"status": "rejected", "error": body.model_dump(exclude_none=True)}


def scheduled_time(event: Any, *, days: int = 1) -> dt.datetime:
    """The event's `time` (UTC) when it is a scheduled run's; raises `EventRejected`."""
    try:
        parsed = EventBridgeModel.model_validate(event)
    except ValidationError as e:
        raise EventRejected(
            "not an EventBridge event", details_from_validation(e.errors())
        ) from None
    at = parsed.time if parsed.time.tzinfo else parsed.time.replace(tzinfo=dt.UTC)
    at = at.astimezone(dt.UTC)
    problem = None
    if not EARLIEST <= at < UNTIL:
        problem = f"{at:%Y-%m-%dT%H:%M:%SZ} is outside the times a scheduled run covers"
    elif at - EARLIEST.replace(year=1) < dt.timedelta(days=days):
        problem = f"a window of {days} days before {at:%Y-%m-%d} starts before year 1"
    if problem:
        raise EventRejected(
            "the scheduled time cannot be run",
            [ErrorDetail(field="time", problem=problem, allowed=ALLOWED_TIME)],
        )
    return at


def rejected(error: EventRejected, event: Any) -> dict[str, Any]:
    """Log a refused event (no traceback: the event, not the function, is at fault) and
    return the answer."""
    answer = error.answer()
    logger.error("event rejected", extra={"rejection": answer["error"], "event": str(event)[:500]})
    return answer
