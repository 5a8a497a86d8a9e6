"""Delivering notifications: the outbox worker and its channels (webhook, e-mail, push)."""
