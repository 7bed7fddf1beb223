"""Administration from the terminal: Secret Tokens, and Entra provisioning over Microsoft Graph.

This package is a client, not part of the SCIM service: it never imports the
service core, the storage module or Azure Functions. ``scim.admin.cli`` is
the command line (``python -m scim token …`` and ``python -m scim entra …``);
``graph`` speaks Microsoft Graph v1.0 REST, ``login`` obtains its tokens with
msal, ``provisioning`` holds the synchronization operations, ``tokens`` the
Secret Token helpers and ``meanings`` the plain-language reading of errors.
"""
