"""Checks on names and options, shared by the API, the CLI and the worker.

Each check raises ``InvalidInput`` naming the field before anything is written.
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timedelta

from conveyor.errors import InvalidInput

MAX_NAME_BYTES = 128
PRIORITY_MIN, PRIORITY_MAX = -100, 100
MAX_RETRIES = 1000
MAX_SECONDS = 10 * 366 * 86_400  # ten years: the longest delay, timeout or backoff
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def name(field: str, value: object) -> str:
    """A queue name, task name or job id: 1-128 UTF-8 bytes, no control characters."""
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidInput(field, "must not be empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput(field, "must be valid Unicode (it holds a lone surrogate)") from None
    if size > MAX_NAME_BYTES:
        raise InvalidInput(field, f"must be at most {MAX_NAME_BYTES} bytes")
    if _CONTROL.search(value):
        raise InvalidInput(field, "must not contain control characters")
    return value


def priority(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput("priority", "must be an integer")
    if not PRIORITY_MIN <= value <= PRIORITY_MAX:
        raise InvalidInput("priority", f"must be between {PRIORITY_MIN} and {PRIORITY_MAX}")
    return value


def retries(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput("retries", "must be an integer")
    if not 0 <= value <= MAX_RETRIES:
        raise InvalidInput("retries", f"must be between 0 and {MAX_RETRIES}")
    return value


def seconds(field: str, value: object, *, allow_zero: bool = True) -> float:
    """A duration in seconds (number or ``timedelta``), finite and not negative."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidInput(field, "must be a number of seconds")
    if not math.isfinite(value):
        raise InvalidInput(field, "must be a finite number of seconds")
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidInput(
            field,
            "must be a positive number of seconds" if not allow_zero else "must not be negative",
        )
    if value > MAX_SECONDS:
        raise InvalidInput(field, f"must be at most {MAX_SECONDS} seconds (ten years)")
    return float(value)


def flag(field: str, value: object) -> bool:
    """``True`` or ``False`` itself (not 1, not "yes")."""
    if not isinstance(value, bool):
        raise InvalidInput(field, "must be true or false")
    return value


def moment(field: str, value: object) -> int:
    """A timezone-aware datetime at most ten years ahead, in epoch ms."""
    if not isinstance(value, datetime):
        raise InvalidInput(field, "must be a datetime")
    if value.tzinfo is None:
        raise InvalidInput(field, "must be timezone-aware (naive datetimes are ambiguous)")
    at = int(value.timestamp() * 1000)
    if at > (time.time() + MAX_SECONDS) * 1000:
        raise InvalidInput(field, "must be at most ten years ahead, as a delay")
    return at


def percent(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(field, "must be a number")
    if not 0 <= value <= 100:
        raise InvalidInput(field, "must be between 0 and 100")
    return float(value)


MAX_COUNT = 2**62  # any count a store keeps fits a 64-bit integer


def count(field: str, value: object, *, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidInput(field, f"must be an integer >= {minimum}")
    if value > MAX_COUNT:
        raise InvalidInput(field, f"must be at most {MAX_COUNT}")
    return value
