"""SCIM 2.0 service provider for Microsoft Entra ID provisioning.

The package is a house of rooms; each room's docstring says what it owns and
what it may import, and ``tests/unit/test_layering.py`` holds the code to it
(``docs/architecture.md`` walks a request through them):

* ``scim.web`` — the HTTP face: routes, authentication, errors on the wire.
* ``scim.service`` — RFC 7644 operations, membership, consistency.
* ``scim.model`` — resources, declared schemas, Entra's quirks, limits, errors.
* ``scim.storage`` — the repository port and Azure Table Storage and Queue.
* ``scim.feed`` — the change-feed relay: outbox → queue → audit trail.
* ``scim.admin`` — the ``scim`` command line.
* ``scim.runtime`` puts the rooms together for a host; ``scim.config`` and
  ``scim.logs`` are shared by all; ``scim.__main__`` is the command-line host.

A request goes host (``function_app.py``) → ``scim.runtime`` →
``scim.web.api`` → ``scim.service`` → ``scim.storage.repository`` →
``scim.storage.tables``. Nothing in ``scim`` imports ``azure.functions``, and
only the command-line host reads ``os.environ`` (hosts build
:class:`scim.config.Settings` and pass it in). It may import nothing: this
module holds only the version.
"""

__version__ = "0.1.0"
