"""`tocsin subscriptions …`, `tocsin deliveries …` and `tocsin worker`: who hears level
changes, what was sent to them, and the process that sends it.

The CLI acts as the local operator: it may see and remove every subscription and replay any
delivery. A webhook's signing secret is printed once, when it is added, and never again.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Engine

from tocsin import settings
from tocsin.cli import context as ctx
from tocsin.domain.errors import InvalidInput
from tocsin.domain.notify import Channel, DeliveryStatus, Subscription, SubscriptionStatus
from tocsin.domain.times import iso
from tocsin.notify.worker import Tuning, run_forever
from tocsin.service import deliveries, subscriptions
from tocsin.store.database import check_current, check_writable, connect
from tocsin.web.websub import StoreFeeds

subscriptions_app = typer.Typer(
    help="Subscriptions: webhooks and e-mail addresses that hear the level changes of areas.",
    no_args_is_help=True)
deliveries_app = typer.Typer(
    help="The delivery queue: list, show, replay, watch an event settle, stats.",
    no_args_is_help=True)

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
SUBSCRIBABLE = (Channel.WEBHOOK, Channel.EMAIL, Channel.PUSH)
SETTLED = (DeliveryStatus.DELIVERED, DeliveryStatus.DEAD, DeliveryStatus.DROPPED)
UNSETTLED = (DeliveryStatus.PENDING, DeliveryStatus.LEASED)
WATCH_POLL = 0.2
"""Seconds between looks at an event's deliveries in `tocsin deliveries watch`."""
EMPTY = "—"


# --- subscriptions ---------------------------------------------------------------------------


@subscriptions_app.command("add")
def add(
    webhook: Annotated[str | None, typer.Option(
        "--webhook", metavar="URL", help="POST signed JSON to this http(s) URL.")] = None,
    email: Annotated[str | None, typer.Option(
        "--email", metavar="ADDRESS", help="Mail this address (after it confirms).")] = None,
    area: Annotated[list[str] | None, typer.Option(
        "--area", help="Area code; repeat. Changes in areas inside it are heard too.")] = None,
    scheme: Annotated[list[str] | None, typer.Option(
        "--scheme", help="Only this scheme; repeat. Default: every scheme.")] = None,
    language: Annotated[str, typer.Option(
        "--language", help="Language of names and messages: kk, ru or en.")] = "en",
    json_out: Json = False,
) -> None:
    """Subscribe a webhook (secret printed once) or an e-mail address (pending until confirmed).

    Exactly one of --webhook and --email; at least one --area."""
    with ctx.refusals():
        if (webhook is None) == (email is None):
            raise InvalidInput("give exactly one of --webhook URL and --email ADDRESS",
                               "one subscription has one target; add another for the next")
        channel, target = ((Channel.WEBHOOK, webhook) if webhook is not None
                           else (Channel.EMAIL, email or ""))
        config = ctx.current_settings()
        sub, secret = subscriptions.add(
            ctx.engine(), channel=channel, target=target, areas=area or [],
            schemes=scheme or [], owner=ctx.actor(), language=language, now=ctx.now(),
            allow_private=config.allow_private_targets, actor=ctx.actor())
    if json_out:
        ctx.emit_json({**sub.as_json(), **({"secret": secret} if secret else {})})
        return
    ctx.console.print(_subscriptions_table([sub], f"subscription {sub.id}"))
    if secret:
        ctx.console.print(f"signing secret: {secret}")
        ctx.console.print("[bold]This secret is shown only now and will not be shown again: "
                          "store it safely.[/] Verify each delivery's webhook-signature "
                          "header with it (Standard Webhooks).")
    elif sub.status is SubscriptionStatus.PENDING:
        ctx.console.print(f"A confirmation message is queued for {sub.target}; the "
                          "subscription stays pending until the link in it is followed.")
        if not config.smtp_url:
            ctx.console.print("E-mail is off here: set TOCSIN_SMTP_URL, and a worker sends "
                              "the message.")


@subscriptions_app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Include disabled subscriptions.")] = False,
    channel: Annotated[str | None, typer.Option(
        "--channel", help=f"Only this channel: {', '.join(SUBSCRIBABLE)}.")] = None,
    json_out: Json = False,
) -> None:
    """Every subscription (not disabled ones, unless --all); never the secrets."""
    with ctx.refusals():
        found = subscriptions.list_subscriptions(
            ctx.engine(), channel=_channel(channel) if channel is not None else None,
            include_disabled=all_)
    if json_out:
        ctx.emit_json([sub.as_json() for sub in found])
        return
    ctx.console.print(_subscriptions_table(found, _count(len(found), "subscription")))


@subscriptions_app.command("remove")
def remove(sub_id: Annotated[str, typer.Argument(metavar="ID", help="Subscription id.")],
           json_out: Json = False) -> None:
    """Disable a subscription; what it still had queued is dropped."""
    with ctx.refusals():
        sub = subscriptions.remove(ctx.engine(), sub_id, now=ctx.now(), actor=ctx.actor())
    if json_out:
        ctx.emit_json(sub.as_json())
        return
    ctx.console.print(f"removed subscription {sub.id} ({sub.channel.value} {sub.target}); "
                      "its queued deliveries are dropped")


def _channel(value: str) -> Channel:
    if value not in {c.value for c in SUBSCRIBABLE}:
        raise InvalidInput(f"channel {value!r} is not known",
                           f"choose one of {', '.join(SUBSCRIBABLE)}")
    return Channel(value)


def _subscriptions_table(subs: Sequence[Subscription], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("id", "channel", "target", "areas", "schemes", "status", "created"):
        table.add_column(column)
    for sub in subs:
        table.add_row(sub.id, sub.channel.value, sub.target, ", ".join(sub.areas),
                      ", ".join(sub.schemes) or "all", sub.status.value, iso(sub.created_at))
    return table


# --- deliveries ------------------------------------------------------------------------------


@deliveries_app.command("list")
def list_deliveries(
    status: Annotated[str | None, typer.Option(
        "--status", help=f"Only this state: {', '.join(DeliveryStatus)}.")] = None,
    subscription: Annotated[str | None, typer.Option(
        "--subscription", metavar="ID", help="Only this subscription's.")] = None,
    event: Annotated[int | None, typer.Option(
        "--event", min=1, metavar="N", help="Only this outbox event's.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest deliveries to show.")
                     ] = 50,
    json_out: Json = False,
) -> None:
    """Deliveries, newest first, with their state, attempts and last answer."""
    with ctx.refusals():
        found = deliveries.listing(ctx.engine(), status=_status(status) if status else None,
                                   subscription=subscription, event=event, limit=limit)
    if json_out:
        ctx.emit_json(found)
        return
    table = Table(title=_count(len(found), "delivery", "deliveries"), title_justify="left")
    for column in ("id", "event", "topic", "channel", "target", "status", "attempts",
                   "last answer", "next attempt"):
        table.add_column(column)
    for d in found:
        table.add_row(str(d["id"]), str(d["event"]), d["topic"], d["channel"], d["target"],
                      d["status"], str(d["attempts"]), _short(d["last_detail"]),
                      _when(d["next_attempt_at"]))
    ctx.console.print(table)


@deliveries_app.command("show")
def show(delivery_id: Annotated[int, typer.Argument(metavar="ID", help="Delivery id.")],
         json_out: Json = False) -> None:
    """One delivery with every attempt: when, by which worker, the answer, how long it took."""
    with ctx.refusals():
        d = deliveries.show(ctx.engine(), delivery_id)
    if json_out:
        ctx.emit_json(d)
        return
    ctx.console.print(f"delivery {d['id']}: event {d['event']} ({d['topic']}) by "
                      f"{d['channel']} to {d['target']}")
    ctx.console.print(f"subscription {d['subscription'] or EMPTY}, idempotency key {d['key']}")
    state = f"{d['status']} after {_count(d['attempts'], 'attempt')}"
    if d["delivered_at"]:
        state += f", delivered at {_when(d['delivered_at'])}"
    if d["next_attempt_at"]:
        state += f", next attempt at {_when(d['next_attempt_at'])}"
    ctx.console.print(state)
    table = Table(title=_count(len(d["attempt_log"]), "attempt"), title_justify="left")
    for column in ("#", "time", "worker", "status code", "detail", "duration"):
        table.add_column(column)
    for number, a in enumerate(d["attempt_log"], start=1):
        table.add_row(str(number), _when(a["at"]), a["worker"],
                      str(a["status"]) if a["status"] is not None else EMPTY,
                      a["detail"] or EMPTY, f"{a['duration_ms']} ms")
    ctx.console.print(table)


@deliveries_app.command("replay")
def replay(
    ids: Annotated[list[int] | None, typer.Argument(metavar="ID…", help="Delivery ids.")] = None,
    dead: Annotated[bool, typer.Option("--dead", help="Every dead delivery.")] = False,
    json_out: Json = False,
) -> None:
    """Queue dead deliveries (or any settled ones named) again: three more days of attempts.

    Refuses deliveries still queued or in flight."""
    with ctx.refusals():
        if ids and dead:
            raise InvalidInput("give delivery ids or --dead, not both",
                               "replay the ids, or every dead delivery")
        queued = deliveries.replay(ctx.engine(), now=ctx.now(), actor=ctx.actor(),
                                   ids=ids or (), status=DeliveryStatus.DEAD if dead else None)
    if json_out:
        ctx.emit_json({"replayed": queued})
        return
    ctx.console.print(f"queued {_count(queued, 'delivery', 'deliveries')} again"
                      + ("; a worker sends them" if queued else ""))


@deliveries_app.command("watch")
def watch(event: Annotated[int | None, typer.Option(
        "--event", min=1, metavar="N", help="The outbox event; default the newest with "
        "deliveries.")] = None) -> None:
    """Watch an event's deliveries settle, until none remain or Ctrl-C.

    Delivered, dead and dropped ones are done; pending and leased ones remain."""
    with ctx.refusals():
        engine = ctx.engine()
        check_current(engine)
        chosen = event if event is not None else deliveries.last_event(engine)
        if chosen is not None:
            deliveries.fanned_out(engine, chosen)  # refuses an event that does not exist
    if chosen is None:
        ctx.console.print("no event has deliveries yet: nothing to watch")
        return
    started = time.monotonic()
    counts = deliveries.counts(engine, event=chosen)
    interrupted = False
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=ctx.console) as progress:
            task = progress.add_task(f"event {chosen}", total=None)
            while True:
                progress.update(task, total=sum(counts.values()) or None,
                                completed=_settled(counts),
                                description=f"event {chosen}: {_tally(counts)}")
                if not _waiting(engine, chosen, counts):
                    break
                time.sleep(WATCH_POLL)
                counts = deliveries.counts(engine, event=chosen)
    except KeyboardInterrupt:
        interrupted = True
    took = time.monotonic() - started
    total = sum(counts.values())
    verb = "stopped watching after" if interrupted else "settled in"
    ctx.console.print(f"event {chosen}: {_count(total, 'delivery', 'deliveries')}, "
                      f"{_tally(counts)}; {verb} {took:.1f} s")


@deliveries_app.command("stats")
def stats(json_out: Json = False) -> None:
    """How many deliveries are in each state, and events not yet fanned out."""
    with ctx.refusals():
        engine = ctx.engine()
        check_current(engine)
        counts = deliveries.counts(engine)
        unfanned = deliveries.unfanned(engine)
        last = deliveries.last_event(engine)
    if json_out:
        ctx.emit_json({"deliveries": counts, "unfanned_events": unfanned, "last_event": last})
        return
    table = Table(title=_count(sum(counts.values()), "delivery", "deliveries"),
                  title_justify="left")
    table.add_column("status")
    table.add_column("deliveries", justify="right")
    for status, number in counts.items():
        table.add_row(status, str(number))
    ctx.console.print(table)
    ctx.console.print(f"events not yet fanned out: {unfanned}; newest event with deliveries: "
                      f"{last if last is not None else EMPTY}")


def _status(value: str) -> DeliveryStatus:
    if value not in {s.value for s in DeliveryStatus}:
        raise InvalidInput(f"delivery status {value!r} is not known",
                           f"choose one of {', '.join(DeliveryStatus)}")
    return DeliveryStatus(value)


def _settled(counts: Mapping[str, int]) -> int:
    return sum(counts.get(s.value, 0) for s in SETTLED)


def _waiting(engine: Engine, event: int, counts: Mapping[str, int]) -> bool:
    """Deliveries remain, or the event has not been (fully) fanned out into them yet."""
    if any(counts.get(s.value, 0) for s in UNSETTLED):
        return True
    return not deliveries.fanned_out(engine, event)


def _tally(counts: Mapping[str, int]) -> str:
    remaining = sum(counts.get(s.value, 0) for s in UNSETTLED)
    return ", ".join([*(f"{counts.get(s.value, 0)} {s.value}" for s in SETTLED),
                      f"{remaining} remaining"])


# --- worker ----------------------------------------------------------------------------------


def worker(
    batch: Annotated[int, typer.Option("--batch", min=1, help="Deliveries claimed at once.")
                     ] = Tuning.batch,
    concurrency: Annotated[int, typer.Option(
        "--concurrency", min=1, help="Attempts in flight at once.")] = Tuning.concurrency,
    per_endpoint: Annotated[int, typer.Option(
        "--per-endpoint", min=1, help="Attempts in flight at once to one endpoint (scheme, "
        "host and port).")] = Tuning.per_endpoint,
) -> None:
    """Send notifications until Ctrl-C or SIGTERM (tocsin serve runs one unless --no-worker).

    Runs the term schedule, fans events out into deliveries and makes them. Run as many as you
    like against one PostgreSQL database."""
    with ctx.refusals():
        engine = ctx.engine()
        check_current(engine)
        check_writable(engine, "the worker writes")
        config = ctx.current_settings()
    url = engine.url.render_as_string(hide_password=True)
    ctx.console.print(f"tocsin worker is delivering notifications from {url} "
                      "(Ctrl-C to stop)")
    with contextlib.suppress(KeyboardInterrupt):  # before the worker's own handler is set
        run_forever(engine, config, Tuning(batch=batch, concurrency=concurrency,
                                           per_endpoint=per_endpoint),
                    feeds=StoreFeeds(engine, config))
    ctx.console.print("tocsin worker stopped")


def serve_worker(url: str, parent: int | None) -> None:
    """The notification worker beside `tocsin serve`, in a process of its own: settings from
    the environment (which the server set), its own engine on `url`; runs until SIGTERM or
    SIGINT, or until `parent` is gone."""
    engine = connect(url)
    try:
        config = settings.read()
        run_forever(engine, config, feeds=StoreFeeds(engine, config), parent=parent)
    finally:
        engine.dispose()


# --- shared ----------------------------------------------------------------------------------


def _when(value: str | None) -> str:
    return iso(datetime.fromisoformat(value)) if value else EMPTY


def _short(text: str | None, width: int = 40) -> str:
    """A long answer cut for a table column; `deliveries show` gives it whole."""
    if not text:
        return EMPTY
    return text if len(text) <= width else text[:width - 1] + "…"


def _count(number: int, noun: str, plural: str | None = None) -> str:
    return f"{number} {noun if number == 1 else plural or noun + 's'}"
