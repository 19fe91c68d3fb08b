"""FHIR date, dateTime and instant values as [lo, hi] ranges of UTC instants (millisecond grain).

A partial date is the range it covers ("2024-03" is the whole of March), so every search prefix
becomes a comparison of ranges. Values without a time zone are read as UTC.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

MIN_INSTANT = datetime(1, 1, 1, tzinfo=timezone.utc)
MAX_INSTANT = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc)
ONE_MS = timedelta(milliseconds=1)

_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


class DateFormatError(ValueError):
    pass


def _add_months(dt: datetime, months: int) -> datetime:
    month = dt.month - 1 + months
    return dt.replace(year=dt.year + month // 12, month=month % 12 + 1)


def date_range(value: str) -> tuple[datetime, datetime]:
    """The [lo, hi] instants covered by a FHIR date/dateTime/instant string."""
    match = _DATE_RE.match(value.strip()) if isinstance(value, str) else None
    if not match:
        raise DateFormatError(f"'{value}' is not a FHIR date, dateTime or instant")
    g = match.groupdict()
    try:
        tz = timezone.utc
        if g["tz"] and g["tz"] != "Z":
            sign = 1 if g["tz"][0] == "+" else -1
            hours, minutes = int(g["tz"][1:3]), int(g["tz"][4:6])
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        year = int(g["y"])
        if g["m"] is None:
            lo = datetime(year, 1, 1, tzinfo=tz)
            return lo.astimezone(timezone.utc), (_add_months(lo, 12) - ONE_MS).astimezone(timezone.utc)
        month = int(g["m"])
        if g["d"] is None:
            lo = datetime(year, month, 1, tzinfo=tz)
            return lo.astimezone(timezone.utc), (_add_months(lo, 1) - ONE_MS).astimezone(timezone.utc)
        day = int(g["d"])
        if g["H"] is None:
            lo = datetime(year, month, day, tzinfo=tz)
            return lo.astimezone(timezone.utc), (lo + timedelta(days=1) - ONE_MS).astimezone(timezone.utc)
        hour, minute = int(g["H"]), int(g["M"])
        if g["S"] is None:
            lo = datetime(year, month, day, hour, minute, tzinfo=tz)
            return lo.astimezone(timezone.utc), (lo + timedelta(minutes=1) - ONE_MS).astimezone(timezone.utc)
        second = int(g["S"])
        if g["f"] is None:
            lo = datetime(year, month, day, hour, minute, second, tzinfo=tz)
            return lo.astimezone(timezone.utc), (lo + timedelta(seconds=1) - ONE_MS).astimezone(timezone.utc)
        millis = int((g["f"] + "00")[:3])
        lo = datetime(year, month, day, hour, minute, second, millis * 1000, tzinfo=tz)
        return lo.astimezone(timezone.utc), lo.astimezone(timezone.utc)
    except ValueError as exc:
        raise DateFormatError(f"'{value}' is not a valid date: {exc}") from None
