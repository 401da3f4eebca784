"""Schedules: when an interval, cron (croniter) or rrule (python-dateutil) schedule is due."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from millstream._engine.exceptions import ConfigurationError


class Schedule(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One schedule of a deployment: exactly one of interval (seconds), cron or rrule."""

    interval: float | None = None
    anchor_date: dt.datetime | None = None
    cron: str | None = None
    rrule: str | None = None
    timezone: str | None = None
    active: bool = True

    def __post_init__(self) -> None:
        given = [k for k in ("interval", "cron", "rrule") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigurationError(
                f"A schedule needs exactly one of interval, cron or rrule, got {given or 'none'}"
            )
        if self.interval is not None and self.interval <= 0:
            raise ConfigurationError(f"interval must be positive, got {self.interval!r}")
        if self.cron is not None:
            croniter = _croniter()
            if not croniter.is_valid(self.cron):
                raise ConfigurationError(f"cron expression {self.cron!r} is not valid")
        if self.rrule is not None:
            _rrule(self.rrule, dt.datetime.now(dt.UTC))

    def occurrences(self, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
        """Times in (start, end] when this schedule fires, oldest first (at most 1000)."""
        if start >= end:
            return []
        times: list[dt.datetime] = []
        if self.interval is not None:
            anchor = self.anchor_date or dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
            step = dt.timedelta(seconds=self.interval)
            count = int((start - anchor) / step) + 1 if start > anchor else 0
            when = anchor + count * step
            while when <= end and len(times) < 1000:
                if when > start:
                    times.append(when)
                when += step
        elif self.cron is not None:
            it = _croniter()(self.cron, start.astimezone(_zone(self.timezone)))
            while len(times) < 1000:
                when = it.get_next(dt.datetime).astimezone(dt.UTC)
                if when > end:
                    break
                times.append(when)
        else:
            rule = _rrule(self.rrule or "", start)
            found = rule.between(start, end, inc=True)[:1001]
            times = [t.astimezone(dt.UTC) for t in found if t > start][:1000]
        return times


def _zone(name: str | None) -> Any:
    if name is None:
        return dt.UTC
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError:
        raise ConfigurationError(
            "cron schedules need the 'serve' extra: pip install 'millstream[serve]'"
        ) from None
    return croniter


def _rrule(text: str, start: dt.datetime) -> Any:
    try:
        from dateutil import rrule
    except ImportError:
        raise ConfigurationError(
            "rrule schedules need the 'serve' extra: pip install 'millstream[serve]'"
        ) from None
    try:
        return rrule.rrulestr(text, dtstart=start)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"rrule {text!r} is not valid: {exc}") from None


def make_schedules(
    interval: Any = None, cron: Any = None, rrule: Any = None, schedules: Any = None
) -> list[Schedule]:
    """Schedules from ``to_deployment``/``serve`` arguments (each may be one value or a list)."""
    result: list[Schedule] = []
    for value in _listed(interval):
        seconds = value.total_seconds() if isinstance(value, dt.timedelta) else float(value)
        result.append(Schedule(interval=seconds))
    result += [Schedule(cron=str(v)) for v in _listed(cron)]
    result += [Schedule(rrule=str(v)) for v in _listed(rrule)]
    for value in _listed(schedules):
        if isinstance(value, Schedule):
            result.append(value)
        elif isinstance(value, dict):
            result.append(msgspec.convert(value, Schedule))
        else:
            raise ConfigurationError(f"schedules entries must be Schedule or dict, got {value!r}")
    return result


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]
