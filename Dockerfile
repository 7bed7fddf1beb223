# The SCIM endpoint on the Azure Functions runtime, for running on-premises next to the
# Microsoft Entra provisioning agent: see docs/deploy-on-premises.md and deploy/on-premises/.
#
# Base image: the official Functions image for Python 3.12. The 3.12 and 3.13 images are built
# on Debian 12 (bookworm); 4-python3.11 is still Debian 11 (bullseye), out of security support.
# requirements.txt pins azure-functions>=1.26,<2: 1.26 supports Python 3.10-3.12, and every 2.x
# needs 3.13. The image is pinned by tag. To pin it by digest as well, pull it once, read the
# digest and append it:
#   docker pull mcr.microsoft.com/azure-functions/python:4-python3.12
#   docker image inspect --format '{{index .RepoDigests 0}}' mcr.microsoft.com/azure-functions/python:4-python3.12
#   FROM mcr.microsoft.com/azure-functions/python:4-python3.12@sha256:<digest>
FROM mcr.microsoft.com/azure-functions/python:4-python3.12

LABEL org.opencontainers.image.title="scim-entra-functions" \
      org.opencontainers.image.description="SCIM 2.0 endpoint for Microsoft Entra ID provisioning (Azure Functions, Table Storage)" \
      org.opencontainers.image.licenses="MIT"

# The base image sets ASPNETCORE_URLS=http://+:80: the host serves plain HTTP on port 80, and
# TLS is terminated by the reverse proxy in front of it (deploy/on-premises/Caddyfile).
#
# Host keys: the SCIM routes are anonymous (the bearer token is checked in code), so the
# Functions keys only guard the host's own /admin API. They are kept in files inside the
# container (no storage account, no blob container for secrets); they are regenerated on every
# new container, and nothing uses them. /admin must never be published: the proxy forwards
# /scim/* only, and this container publishes no port.
#
# No secret is baked in: the Secret Token, the storage connection string and the identity
# settings come from the environment at run time (deploy/on-premises/.env).
ENV AzureWebJobsScriptRoot=/home/site/wwwroot \
    AzureFunctionsJobHost__Logging__Console__IsEnabled=true \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# The name holds "Secret", the value is only where keys are kept (DL3064 is a false positive).
# hadolint ignore=DL3064
ENV AzureWebJobsSecretStorageType=files

# Dependencies first, so that a code change does not reinstall them.
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Only what the Functions host runs: the triggers, the host configuration and the SCIM core.
# The schema-extensions file (SCIM_SCHEMA_FILE) is configuration, not code: it is mounted at run
# time (deploy/on-premises/compose.yaml, /schema), so one image serves every schema.
COPY host.json function_app.py /home/site/wwwroot/
COPY scim/ /home/site/wwwroot/scim/

EXPOSE 80

# GET /scim/health is anonymous and never touches storage: it tells that the host and the
# Python worker serve requests. urllib, because curl is not guaranteed in the base image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request; r = urllib.request.urlopen('http://localhost/scim/health', timeout=4); sys.exit(0 if r.status == 200 else 1)"]
