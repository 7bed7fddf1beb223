"""SCIM 2.0 service provider for Microsoft Entra ID provisioning.

Layering (enforced by ``tests/unit/test_layering.py``):

* ``scim`` never imports ``azure.functions``; only ``function_app.py`` and the
  dev server do.
* Only ``scim.tables`` imports ``azure.data.tables`` / ``azure.core``, and it is
  the only place that translates their errors.
* Nothing in ``scim`` reads ``os.environ``: hosts build
  :class:`scim.config.Settings` and pass it in.

Request path: host adapter → ``scim.api`` (auth, HTTP semantics, errors) →
``scim.service`` (RFC 7644 operations, Entra tolerance via ``scim.entra``) →
``scim.repository`` protocol → ``scim.tables`` (Azure Table Storage).
"""

__version__ = "0.1.0"
