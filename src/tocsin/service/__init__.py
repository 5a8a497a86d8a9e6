"""Commands and queries: each command is one transaction holding the state change, its
audit entries and its outbox events."""
