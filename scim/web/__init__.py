"""The HTTP face: a transport-neutral request and response in, SCIM over HTTP out (RFC 7644 §3).

It owns the API (``api``: routes, authentication first, then body size and per-directory load,
content negotiation, ETags and preconditions, ``attributes``, and the one mapping of
``scim.model.errors`` to status, ``scimType`` and body), the bearer-token and Entra JWT checks
(``auth``), the JSON Web Key Set fetcher those JWTs are verified with (``jwks``, the only module
here that does network I/O) and ``/Bulk`` (``bulk``; RFC 7644 §3.7). It knows nothing of Azure
Functions: ``function_app.py`` translates its ``Request`` and ``Response``. It may import
``scim.service``, ``scim.model``, ``scim.storage.repository``, ``scim.config`` and ``scim.logs``.
"""
