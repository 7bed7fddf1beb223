"""Plain meanings of the error codes in Entra's provisioning logs, for this endpoint.

The codes are the ``errorInformation.errorCode`` values of Graph's
``provisioningObjectSummary`` (and of a job's quarantine). Each meaning says
what happened and where to look, in terms of this endpoint; an unknown code
falls back to the log entry's own ``reason``. Sources: Microsoft Learn,
*Known issues and resolutions with SCIM 2.0 protocol compliance*, *Application
provisioning in quarantine status*, *Troubleshoot provisioning*, and
../shared/reference/entra-scim-behavior.md.
"""

from __future__ import annotations

MEANINGS: dict[str, str] = {
    "SystemForCrossDomainIdentityManagementBadResponse": (
        "the endpoint answered with an error or a body Entra could not read; the entry's details carry its "
        "SCIM error `detail` — find the request in the endpoint's log by time"
    ),
    "SystemForCrossDomainIdentityManagementServiceIncompatible": (
        "the endpoint's answer did not have the shape Entra expects (for example a missing `id` or a string "
        "where a list belongs)"
    ),
    "SystemForCrossDomainIdentityManagementServiceIncompatibleFiltering": (
        "the endpoint refused or mis-answered the userName/displayName filter Entra matches with; it must "
        "answer 200 and a ListResponse, empty when nothing matches"
    ),
    "SystemForCrossDomainIdentityManagementUnauthorized": (
        "the endpoint answered 401/403: the Secret Token in Entra is not one the endpoint accepts — run "
        "`python -m scim token check`, then `entra connect` with the right token"
    ),
    "SystemForCrossDomainIdentityManagementCredentialValidationUnavailable": (
        "Entra could not complete Test Connection: the endpoint was unreachable, timed out or refused the "
        "token — check the Tenant URL, TLS and the token with `python -m scim token check`"
    ),
    "EncounteredQuarantineException": (
        "the job is in quarantine because the endpoint kept failing (credentials or SCIM compliance); fix "
        "the cause, then `entra start` (a restart clears quarantine)"
    ),
    "EntryJoiningPropertyValueIsMissing": (
        "the user has no value for the matching attribute (userPrincipalName by default, or mailNickname "
        "for externalId) in Entra, so Entra cannot look it up in the endpoint"
    ),
    "DuplicateTargetEntries": (
        "more than one resource in the endpoint matched the user; userName is unique in this endpoint, so "
        "look for a custom matching attribute (externalId, emails) that is not"
    ),
    "DuplicateSourceEntries": (
        "more than one Entra user has the same value of the matching attribute; fix the data in Entra"
    ),
    "RedundantExport": "nothing to change: the endpoint already held the values (not a failure)",
}

#: Status values of ``provisioningStatusInfo.status`` (Graph ``provisioningResult``).
STATUSES = ("success", "warning", "failure", "skipped")


def meaning(code: str | None, reason: str | None = None) -> str:
    """What ``code`` means for this endpoint; the log's ``reason`` when the code is unknown."""
    if code and code in MEANINGS:
        return MEANINGS[code]
    return (reason or "").strip().splitlines()[0] if reason and reason.strip() else ""
