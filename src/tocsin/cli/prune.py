"""`tocsin prune`: delete old delivery attempts, deliveries and outbox events now, as every
notification worker does once an hour (tocsin.service.retention says what is never deleted)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from tocsin import settings
from tocsin.cli import context as ctx
from tocsin.service import retention


def prune(
    keep_delivery_attempts: Annotated[str | None, typer.Option(
        "--keep-delivery-attempts", metavar="DAYS",
        help=f"Instead of {settings.KEEP_DELIVERY_ATTEMPTS.name}: days of attempts to keep, "
        "or 'never'.")] = None,
    keep_deliveries: Annotated[str | None, typer.Option(
        "--keep-deliveries", metavar="DAYS",
        help=f"Instead of {settings.KEEP_DELIVERIES.name}: days of settled deliveries to "
        "keep, or 'never'.")] = None,
    keep_events: Annotated[str | None, typer.Option(
        "--keep-events", metavar="DAYS",
        help=f"Instead of {settings.KEEP_EVENTS.name}: days of outbox events to keep, or "
        "'never'.")] = None,
    batch: Annotated[int, typer.Option(
        "--batch", min=1, max=10_000, help="Rows per transaction.")] = retention.BATCH,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Count what would be deleted; delete nothing.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Delete delivery attempts, settled deliveries and outbox events older than their
    retention (TOCSIN_KEEP_*); print how many rows of each table.

    Never deletes what a queued or replayable delivery needs, nor the newest event, nor the
    audit log. Workers do this once an hour by themselves."""
    with ctx.refusals():
        keep = ctx.current_settings().retention
        keep = settings.Retention(
            _days("--keep-delivery-attempts", keep_delivery_attempts, keep.delivery_attempts,
                  settings.KEEP_DELIVERY_ATTEMPTS),
            _days("--keep-deliveries", keep_deliveries, keep.deliveries,
                  settings.KEEP_DELIVERIES),
            _days("--keep-events", keep_events, keep.events, settings.KEEP_EVENTS))
        pruned = retention.prune(ctx.engine(), now=ctx.now(), keep=keep, batch=batch,
                                 dry_run=dry_run)
    if json_out:
        ctx.emit_json({**pruned.as_json(), "dry_run": dry_run})
        return
    verb = "would delete" if dry_run else "deleted"
    for table, count in pruned.as_json().items():
        ctx.console.print(f"{table}: {verb} {count} {'row' if count == 1 else 'rows'}")


def _days(flag: str, given: str | None, configured: timedelta | None,
          setting: settings.Setting) -> timedelta | None:
    """The flag's retention when given, else the configured one."""
    if given is None:
        return configured
    return settings.keep_days(flag, given, setting.default())
