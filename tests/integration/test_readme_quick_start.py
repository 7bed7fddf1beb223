"""The README's quick start, as a newcomer runs it: a fresh clone, ``make run``, then every "Next steps" command.

The clone is of the committed tree (``git clone`` of this repository), so ``make run`` installs its
own ``.venv/`` and ``node_modules/`` exactly as on a new machine (about a minute, from the package
caches). Commands are taken from the README's code blocks, not copied here: if the README shows a
command that does not work as written, this test fails. The only substitution is the port, since
7071 may be taken where the tests run.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README_PORT = "127.0.0.1:7071"
START_TIMEOUT_S = 600


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _section(markdown: str, heading: str) -> str:
    """The text under ``## heading`` up to the next level-2 heading."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", markdown, re.MULTILINE | re.DOTALL)
    assert match, f"the README has no '## {heading}' section"
    return match.group(1)


def readme_commands(markdown: str, heading: str) -> list[str]:
    """Shell commands of the section's code blocks: ``sh`` lines, and ``console`` lines after ``$ ``."""
    commands: list[str] = []
    for language, body in re.findall(
        r"^```(\w+)\n(.*?)^```", _section(markdown, heading), re.MULTILINE | re.DOTALL
    ):
        joined = body.replace("\\\n", " ")
        for line in joined.splitlines():
            if language == "sh" and line.strip() and not line.lstrip().startswith("#"):
                commands.append(line.split("  #")[0].strip())
            elif language == "console" and line.startswith("$ "):
                commands.append(line[2:].strip())
    return commands


def test_readme_commands_are_found() -> None:
    """The parser finds the quick start's two commands and the next steps' (so the test below cannot pass empty)."""
    markdown = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_commands(markdown, "Quick start")[:2] == ["make run", "make test"]
    steps = readme_commands(markdown, "Next steps")
    assert any(c.startswith("curl ") for c in steps) and any("token check" in c for c in steps), steps


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("newcomer") / "scim"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True, timeout=120)  # noqa: S603,S607
    return target


def test_a_newcomer_runs_the_quick_start_and_every_next_step_as_written(clone: Path) -> None:
    markdown = (clone / "README.md").read_text(encoding="utf-8")
    assert readme_commands(markdown, "Quick start")[0] == "make run"
    port = _free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SCIM_", "VIRTUAL_ENV"))}
    environ["PORT"] = str(port)
    log = (clone / "make-run.log").open("w")
    process = subprocess.Popen(
        ["make", "run"],  # noqa: S607 - the README's command
        cwd=clone,
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        banner = _wait_for_banner(clone / "make-run.log", process)
        tenant_url = re.search(r"Tenant URL\s+(\S+)", banner)
        assert tenant_url and tenant_url.group(1) == f"http://127.0.0.1:{port}/scim/v2", banner
        assert (clone / ".scim-dev-token").exists()
        for command in readme_commands(markdown, "Next steps"):
            command = command.replace(README_PORT, f"127.0.0.1:{port}")
            result = subprocess.run(  # noqa: S602 - the README's own command, run as a reader would
                command,
                shell=True,
                cwd=clone,
                env=environ,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 0, (command, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr, (command, result.stderr)
            if "token check" in command:
                assert "Entra's Test Connection would pass." in result.stdout + result.stderr, result
            if command.startswith("curl "):  # curl exits 0 on a 4xx/5xx too: look at the body
                body = result.stdout.replace(" ", "")
                assert body.startswith("{") and '"status":"' not in body, (command, result.stdout)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _wait_for_banner(log_path: Path, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        text = log_path.read_text(encoding="utf-8", errors="replace")
        if "Tenant URL" in text and "Ctrl-C stops it" in text:
            return text
        if process.poll() is not None:
            raise AssertionError(f"make run exited with {process.returncode}:\n{text[-3000:]}")
        time.sleep(1)
    raise AssertionError(f"no banner within {START_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")
