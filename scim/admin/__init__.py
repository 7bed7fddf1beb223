"""Administration from the terminal: the commands behind ``scim`` (``python -m scim``).

It owns the command line (``cli``): Secret Tokens (``tokens``), named directories
(``directories``), the audit trail and the feed's relay and replay (``changelog``), export and
import of the whole table (``backup``), and Entra provisioning through Microsoft Graph v1.0
(``graph`` speaks REST, ``login`` obtains tokens with msal, ``provisioning`` holds the
synchronization steps, ``meanings`` and ``advice`` read errors in plain language). It opens the
storage as the endpoint does and never serves HTTP. It may import ``scim.model``, ``scim.service``,
``scim.storage``, ``scim.feed``, ``scim.config`` and ``scim.logs``.
"""
