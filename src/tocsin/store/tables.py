"""Tables, identical on SQLite and PostgreSQL. Every stored time is UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        # SQLite keeps SQLAlchemy's text layout (sortable), parsed here by the C-fast
        # fromisoformat instead of SQLAlchemy's regular expression.
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(26))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware UTC time")
        utc = value.astimezone(UTC)
        return utc.strftime(SQLITE_TIME) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


state = Table(
    "state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("audit_seq", BigInteger, nullable=False),
    Column("audit_hash", String(64), nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
    Column("public_changed_at", UTCDateTime, nullable=True),
)
"""`changed_at` moves with every audited change; `public_changed_at` only with changes the
public sees (declarations, schemes, areas), so their documents keep their bytes otherwise."""

schemes = Table(
    "schemes",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("document", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

areas = Table(
    "areas",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("parent", String(64), ForeignKey("areas.code"), nullable=True, index=True),
    Column("kind", String(16), nullable=False),
    Column("names", JSON, nullable=False),
    Column("geocodes", JSON, nullable=False),
    Column("timezone", String(64), nullable=True),
    Column("geometry", JSON, nullable=True),
    Column("position", Integer, nullable=False),
    Column("grid_row", Integer, nullable=True),
    Column("grid_col", Integer, nullable=True),
)

declarations = Table(
    "declarations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("scheme", String(64), ForeignKey("schemes.key"), nullable=False),
    Column("level", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("effective_at", UTCDateTime, nullable=True),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("texts", JSON, nullable=False),
    Column("sender", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("published_at", UTCDateTime, nullable=True),
    Column("published_by", Text, nullable=True),
    Column("revision", Integer, nullable=False, server_default="1"),
    Column("submitted_at", UTCDateTime, nullable=True),
    Column("break_glass", Text, nullable=True),
    Column("rejected_at", UTCDateTime, nullable=True),
    Column("rejected_by", Text, nullable=True),
    Column("rejected_reason", Text, nullable=True),
    Column("cap_sender", Text, nullable=True),
    Column("ends_at", UTCDateTime, nullable=True),
    # When a published declaration stops holding (NULL: never), kept by records.settle_ends.
    Index("ix_declarations_scheme_status", "scheme", "status"),
    Index("ix_declarations_status_ends_at", "status", "ends_at"),
    Index("ix_declarations_status_effective_at", "status", "effective_at"),
)

declaration_areas = Table(
    "declaration_areas",
    metadata,
    Column("declaration_id", String(40), ForeignKey("declarations.id"), primary_key=True),
    Column("area_code", String(64), ForeignKey("areas.code"), primary_key=True, index=True),
    Column("position", Integer, nullable=False),
    Column("ends_at", UTCDateTime, nullable=True),
    # The declaration's `ends_at` again, so that an area's closed history is one index range.
    Index("ix_declaration_areas_area_code_ends_at", "area_code", "ends_at"),
)

declaration_replaces = Table(
    "declaration_replaces",
    metadata,
    Column("declaration_id", String(40), ForeignKey("declarations.id"), primary_key=True),
    Column("replaces_id", String(40), ForeignKey("declarations.id"), primary_key=True, index=True),
    Column("position", Integer, nullable=False),
)

cancellations = Table(
    "cancellations",
    metadata,
    Column("declaration_id", String(40), ForeignKey("declarations.id"), primary_key=True),
    Column("at", UTCDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", Text, nullable=False),
)

cancel_requests = Table(
    "cancel_requests",
    metadata,
    Column("declaration_id", String(40), ForeignKey("declarations.id"), primary_key=True),
    Column("at", UTCDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", Text, nullable=False),
)

cap_documents = Table(
    "cap_documents",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("declaration_id", String(40), ForeignKey("declarations.id"), nullable=False,
           index=True),
    Column("document", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
"""The CAP messages tocsin published (`ID` and `ID-cancel`), made and signed once, at
publication, so their bytes, identifier and sent time never change."""

cap_messages = Table(
    "cap_messages",
    metadata,
    Column("sender", Text, primary_key=True),
    Column("identifier", Text, primary_key=True),
    Column("sent", UTCDateTime, nullable=False),
    Column("msg_type", String(16), nullable=False),
    Column("declaration_id", String(40), ForeignKey("declarations.id"), nullable=True,
           index=True),
    Column("received_at", UTCDateTime, nullable=False),
    Column("source", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("signature", Text, nullable=False),
    Column("document", Text, nullable=False),
)
"""CAP messages imported from other authorities: each (sender, identifier) once."""

websub_subscriptions = Table(
    "websub_subscriptions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("topic", Text, nullable=False),
    Column("callback", Text, nullable=False),
    Column("secret", Text, nullable=True),
    Column("state", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    Column("last_delivery_at", UTCDateTime, nullable=True),
    Column("last_status", Text, nullable=True),
    Column("last_etag", Text, nullable=True),
    Index("ix_websub_subscriptions_topic_callback", "topic", "callback", unique=True),
)

users = Table(
    "users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("roles", JSON, nullable=False),
    Column("jurisdiction", JSON, nullable=False),
    Column("break_glass", Boolean, nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("failed_logins", Integer, nullable=False),
    Column("locked_until", UTCDateTime, nullable=True),
    Column("email", Text, nullable=True),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user_name", String(64), ForeignKey("users.name"), nullable=False, index=True),
    Column("label", Text, nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("last_used_at", UTCDateTime, nullable=True),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_name", String(64), ForeignKey("users.name"), nullable=False, index=True),
    Column("csrf", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

password_resets = Table(
    "password_resets",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_name", String(64), ForeignKey("users.name"), nullable=False, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", Text, nullable=False),
    Column("details", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("topic", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("audit_seq", BigInteger, nullable=False),
    Column("fanned_out_at", UTCDateTime, nullable=True),
    Column("fanned_out_to", String(40), nullable=True),
    # While a large fan-out is under way: the last subscription id done so far.
    Index("ix_outbox_pending", "fanned_out_at", "id"),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("channel", String(16), nullable=False),
    Column("target", Text, nullable=False),
    # The webhook URL, e-mail address or push endpoint.
    Column("secret", Text, nullable=False),
    # Webhooks: the whsec_ signing secret; e-mail: the key of its signed links.
    Column("details", JSON, nullable=False),
    # Push: the browser's keys (p256dh, auth).
    Column("language", String(8), nullable=False),
    Column("status", String(16), nullable=False),
    Column("owner", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("confirmed_at", UTCDateTime, nullable=True),
    Column("disabled_at", UTCDateTime, nullable=True),
    Column("disabled_reason", Text, nullable=True),
    Column("confirm_sent_at", UTCDateTime, nullable=True),
    # E-mail: when a confirmation was last queued (one per address an hour).
    Index("ix_subscriptions_channel_target", "channel", "target"),
)

subscription_areas = Table(
    "subscription_areas",
    metadata,
    Column("subscription_id", String(40), ForeignKey("subscriptions.id"), primary_key=True),
    Column("area_code", String(64), primary_key=True, index=True),
)

subscription_schemes = Table(
    "subscription_schemes",
    metadata,
    Column("subscription_id", String(40), ForeignKey("subscriptions.id"), primary_key=True),
    Column("scheme", String(64), primary_key=True),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("event_id", BigInteger, ForeignKey("outbox.id"), nullable=False),
    Column("subscription_id", String(40), nullable=True, index=True),
    # None for a reminder to an issuer (its target is the issuer's e-mail address).
    Column("channel", String(16), nullable=False),
    Column("target", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("first_attempt_at", UTCDateTime, nullable=True),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("leased_by", Text, nullable=True),
    Column("delivered_at", UTCDateTime, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_detail", Text, nullable=True),
    Index("ix_deliveries_due", "status", "next_attempt_at"),
    Index("ix_deliveries_event_subscription", "event_id", "subscription_id", "target",
          unique=True),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("delivery_id", BigInteger, ForeignKey("deliveries.id"), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("worker", Text, nullable=False),
    Column("delivered", Boolean, nullable=False),
    Column("status", Integer, nullable=True),
    Column("detail", Text, nullable=False),
    Column("duration_ms", Integer, nullable=False),
)

announced_levels = Table(
    "announced_levels",
    metadata,
    Column("scheme", String(64), primary_key=True),
    Column("area_code", String(64), primary_key=True),
    Column("level", String(64), nullable=True),
)
"""The effective levels last announced in the outbox; a change is announced once."""

reminders = Table(
    "reminders",
    metadata,
    Column("declaration_id", String(40), ForeignKey("declarations.id"), primary_key=True),
    Column("expires_at", UTCDateTime, primary_key=True),
    Column("sent_at", UTCDateTime, nullable=False),
)

schedule = Table(
    "schedule",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("next_check", UTCDateTime, nullable=True),
    # When a level next starts or ends, or a reminder is next due; None: nothing ahead.
    Column("baselined", Boolean, nullable=False),
    # False on a database upgraded with levels in force: the first check records them
    # without announcing them as changes.
)
