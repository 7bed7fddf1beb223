"""The change feed: committed changes from the outbox to the queue as CloudEvents, then to the audit trail.

It owns the relay (``relay``) that the timer trigger and ``scim feed relay`` run: it reads the
outbox rows each write left in its own transaction, publishes one event per change, at least once
and in order per resource, through any publisher (``scim.storage.queue`` in production), settles
the published rows into the audit trail and prunes old audit records (``docs/change-feed.md``).
It reads and writes rows only through the port ``scim.storage.repository``. It may import
``scim.model``, ``scim.storage.repository`` and ``scim.logs``.
"""
