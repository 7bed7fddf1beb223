# The SCIM endpoint on the Azure Functions runtime, for running on-premises next to the
# Microsoft Entra provisioning agent: see docs/deploy-on-premises.md and deploy/on-premises/.
#
# Base image: the official Functions image for Python 3.13, built on Debian 12 (bookworm), like
# 3.12; 4-python3.11 is still Debian 11 (bullseye), out of security support. From Python 3.13
# the Python execution engine is the PyPI package azure-functions-runtime, loaded by a proxy
# worker that ships with the host; requirements.txt pins it (1.3.0), with azure-functions 2.x
# (the library line for Python >= 3.13: 1.x stops at 3.12), and locks every package by version
# and hash ("runtime versioning", Microsoft Learn: Python 3.13+ changes in Azure Functions).
# Not verified here (no image could be pulled): that the image's proxy worker loads the pinned
# engine rather than one the base image may bundle; check `pip show azure-functions-runtime`
# and the host's start-up log in a built container.
#
# The image is pinned by tag only: its digest could not be read where this file was written (the
# registry was unreachable). Pin it by digest on a machine that can pull, so that a rebuild
# cannot silently change the host, and move the pin deliberately with each monthly base image:
#   docker pull mcr.microsoft.com/azure-functions/python:4-python3.13
#   docker image inspect --format '{{index .RepoDigests 0}}' mcr.microsoft.com/azure-functions/python:4-python3.13
#   FROM mcr.microsoft.com/azure-functions/python:4-python3.13@sha256:<digest>
# (tests/unit/test_container.py accepts the tag with or without the digest.)
FROM mcr.microsoft.com/azure-functions/python:4-python3.13

LABEL org.opencontainers.image.title="scim-entra-functions" \
      org.opencontainers.image.description="SCIM 2.0 endpoint for Microsoft Entra ID provisioning (Azure Functions, Table Storage)" \
      org.opencontainers.image.licenses="MIT"

# The host runs as the unprivileged user "scim" (below), which cannot bind port 80, so it listens
# on 8080 (ASPNETCORE_URLS; the base image's default is http://+:80) in plain HTTP; TLS is
# terminated by the reverse proxy in front of it (deploy/on-premises/Caddyfile).
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
    ASPNETCORE_URLS=http://+:8080 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# The name holds "Secret", the value is only where keys are kept (DL3064 is a false positive).
# hadolint ignore=DL3064
ENV AzureWebJobsSecretStorageType=files

# Dependencies first, so that a code change does not reinstall them.
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m pip install --no-cache-dir --require-hashes -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Run as a fixed unprivileged user, not root (there is no documented non-root convention for the
# Functions images: Azure/azure-functions-docker#424 and #1210 are open). The code stays owned by
# root, read-only to the host. Writable for "scim": the host's file secret store
# (AzureWebJobsSecretStorageType=files writes host keys to /azure-functions-host/Secrets) and
# the host's log and data folders under HOME=/home.
RUN groupadd --system --gid 10001 scim \
    && useradd --system --uid 10001 --gid scim --home-dir /home --no-create-home \
       --shell /usr/sbin/nologin scim \
    && mkdir -p /azure-functions-host/Secrets /home/LogFiles /home/data \
    && chown scim:scim /azure-functions-host/Secrets /home/LogFiles /home/data

# Only what the Functions host runs: the triggers, the host configuration and the SCIM core.
# The schema-extensions file (SCIM_SCHEMA_FILE) is configuration, not code: it is mounted at run
# time (deploy/on-premises/compose.yaml, /schema), so one image serves every schema.
COPY host.json function_app.py /home/site/wwwroot/
COPY scim/ /home/site/wwwroot/scim/

USER 10001:10001

EXPOSE 8080

# GET /scim/health is anonymous and never touches storage: it tells that the host and the
# Python worker serve requests. urllib, because curl is not guaranteed in the base image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request; r = urllib.request.urlopen('http://localhost:8080/scim/health', timeout=4); sys.exit(0 if r.status == 200 else 1)"]
