"""The ``gcl`` (global concurrency limits) and ``concurrency-limit`` (tag limits) commands."""

from __future__ import annotations

import argparse
from typing import Any

from millstream._tables import render_table, when
from millstream.cli.output import EXIT_OK, UsageError, as_json
from millstream.client.orchestration import get_client
from millstream.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from millstream.client.schemas.concurrency import ConcurrencyLimit, GlobalConcurrencyLimitResponse

__all__ = [
    "cmd_gcl_create",
    "cmd_gcl_delete",
    "cmd_gcl_inspect",
    "cmd_gcl_ls",
    "cmd_gcl_update",
    "cmd_tag_limit_create",
    "cmd_tag_limit_delete",
    "cmd_tag_limit_inspect",
    "cmd_tag_limit_ls",
    "cmd_tag_limit_reset",
]

# Every limit at once: `ls` has no paging of its own.
_ALL = 1 << 31


def _gcl_fields(gcl: GlobalConcurrencyLimitResponse) -> dict[str, Any]:
    return {
        "id": str(gcl.id),
        "name": gcl.name,
        "limit": gcl.limit,
        "active": gcl.active,
        "active_slots": gcl.active_slots,
        "slot_decay_per_second": gcl.slot_decay_per_second,
        "created": gcl.created,
        "updated": gcl.updated,
    }


def _checked(**values: float | None) -> None:
    for name, value in values.items():
        if value is not None and value < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {value:g}")


def _show_list(
    args: argparse.Namespace, items: list[dict[str, Any]], headers: list[str], rows: list[list[str]]
) -> int:
    """What ``ls`` prints: ``items`` as JSON with ``--json``, else the table of ``rows``."""
    print(as_json(items) if args.json else render_table(headers, rows))
    return EXIT_OK


def _show_one(args: argparse.Namespace, fields: dict[str, Any], times: tuple[str, ...] = ()) -> int:
    """What ``inspect`` prints: ``fields`` as JSON with ``--json``, else a ``key: value`` line
    each (the ``times`` keys as local times)."""
    if args.json:
        print(as_json(fields))
        return EXIT_OK
    for key, value in fields.items():
        print(f"{key}: {when(value) if key in times and value else value}")
    return EXIT_OK


def cmd_gcl_create(args: argparse.Namespace) -> int:
    """``gcl create NAME --limit N``: a new global limit."""
    _checked(limit=args.limit, slot_decay_per_second=args.slot_decay_per_second)
    create = GlobalConcurrencyLimitCreate(
        name=args.name,
        limit=args.limit,
        active=not args.disable,
        slot_decay_per_second=args.slot_decay_per_second or 0.0,
    )
    with get_client(sync_client=True) as client:
        limit_id = client.create_global_concurrency_limit(create)
    print(f"Created global concurrency limit with name {args.name!r} and ID '{limit_id}'.")
    return EXIT_OK


def cmd_gcl_ls(args: argparse.Namespace) -> int:
    """``gcl ls``: every global limit (tag limits too, as ``tag:<tag>``)."""
    with get_client(sync_client=True) as client:
        limits = client.read_global_concurrency_limits(limit=_ALL)
    rows = [
        [
            g.name,
            str(g.limit),
            str(g.active_slots),
            f"{g.slot_decay_per_second:g}",
            "yes" if g.active else "no",
            when(g.updated) if g.updated else "",
        ]
        for g in limits
    ]
    headers = ["NAME", "LIMIT", "ACTIVE SLOTS", "DECAY/S", "ACTIVE", "UPDATED"]
    return _show_list(args, [_gcl_fields(g) for g in limits], headers, rows)


def cmd_gcl_inspect(args: argparse.Namespace) -> int:
    """``gcl inspect NAME``: one global limit."""
    with get_client(sync_client=True) as client:
        gcl = client.read_global_concurrency_limit_by_name(args.name)
    return _show_one(args, _gcl_fields(gcl), times=("created", "updated"))


def cmd_gcl_update(args: argparse.Namespace) -> int:
    """``gcl update NAME``: change its limit, active slots, decay, or enable/disable it."""
    _checked(
        limit=args.limit,
        active_slots=args.active_slots,
        slot_decay_per_second=args.slot_decay_per_second,
    )
    active = True if args.enable else False if args.disable else None
    update = GlobalConcurrencyLimitUpdate(
        limit=args.limit,
        active=active,
        active_slots=args.active_slots,
        slot_decay_per_second=args.slot_decay_per_second,
    )
    if all(
        v is None
        for v in (update.limit, update.active, update.active_slots, update.slot_decay_per_second)
    ):
        raise UsageError(
            "Nothing to update: give --limit, --active-slots, --slot-decay-per-second, "
            "--enable or --disable"
        )
    with get_client(sync_client=True) as client:
        client.update_global_concurrency_limit(args.name, update)
    print(f"Updated global concurrency limit with name {args.name!r}.")
    return EXIT_OK


def cmd_gcl_delete(args: argparse.Namespace) -> int:
    """``gcl delete NAME``: remove a global limit."""
    with get_client(sync_client=True) as client:
        client.delete_global_concurrency_limit_by_name(args.name)
    print(f"Deleted global concurrency limit with name {args.name!r}.")
    return EXIT_OK


def _tag_fields(limit: ConcurrencyLimit) -> dict[str, Any]:
    return {
        "id": str(limit.id),
        "tag": limit.tag,
        "concurrency_limit": limit.concurrency_limit,
        "active_slots": [str(i) for i in limit.active_slots],
        "created": limit.created,
        "updated": limit.updated,
    }


def cmd_tag_limit_create(args: argparse.Namespace) -> int:
    """``concurrency-limit create TAG LIMIT``: limit the task runs tagged TAG."""
    _checked(concurrency_limit=args.concurrency_limit)
    with get_client(sync_client=True) as client:
        limit_id = client.create_concurrency_limit(args.tag, args.concurrency_limit)
    print(
        f"Created concurrency limit with properties: tag - {args.tag!r}, "
        f"concurrency_limit - {args.concurrency_limit} (ID '{limit_id}')"
    )
    return EXIT_OK


def cmd_tag_limit_ls(args: argparse.Namespace) -> int:
    """``concurrency-limit ls``: every tag limit."""
    with get_client(sync_client=True) as client:
        limits = client.read_concurrency_limits(limit=_ALL, offset=0)
    rows = [[t.tag, str(t.concurrency_limit), str(len(t.active_slots))] for t in limits]
    return _show_list(
        args, [_tag_fields(t) for t in limits], ["TAG", "LIMIT", "ACTIVE SLOTS"], rows
    )


def cmd_tag_limit_inspect(args: argparse.Namespace) -> int:
    """``concurrency-limit inspect TAG``: a tag limit and the task runs holding its slots."""
    with get_client(sync_client=True) as client:
        limit = client.read_concurrency_limit_by_tag(args.tag)
    return _show_one(args, _tag_fields(limit))


def cmd_tag_limit_reset(args: argparse.Namespace) -> int:
    """``concurrency-limit reset TAG``: free every slot of a tag limit."""
    with get_client(sync_client=True) as client:
        client.reset_concurrency_limit_by_tag(args.tag)
    print(f"Reset concurrency limit set on the tag: {args.tag}")
    return EXIT_OK


def cmd_tag_limit_delete(args: argparse.Namespace) -> int:
    """``concurrency-limit delete TAG``: remove a tag limit."""
    with get_client(sync_client=True) as client:
        client.delete_concurrency_limit_by_tag(args.tag)
    print(f"Deleted concurrency limit set on the tag: {args.tag}")
    return EXIT_OK
