"""The layering rules of scim/__init__.py, checked on the import graph of every module under scim/.

Every ``.py`` file below ``scim/`` is parsed (subpackages such as
``scim.admin`` included, so a new module cannot slip past), and every import
form is resolved to the absolute module it names: ``import scim.x``,
``from scim import x``, ``from scim.x import y``, relative imports
(``from . import x``, ``from .x import y``) and ``importlib.import_module``
/ ``__import__`` with a literal name. Imports under ``if TYPE_CHECKING:`` are
kept apart: they never run.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCIM = ROOT / "scim"

HOSTS = {"scim.__main__"}
"""Modules that are hosts, like function_app.py: they may read the environment."""

PURE = [
    "scim.errors",
    "scim.entra",
    "scim.resources",
    "scim.service",
    "scim.auth",
    "scim.config",
    "scim.discovery",
    "scim.api",
]
"""The request path: nothing they import, directly or through other scim modules, does I/O itself."""

IO_MODULES = ("scim.tables", "scim.runtime", "scim.queue", "scim.admin")
IO_LIBRARIES = (
    "aiohttp",
    "socket",
    "subprocess",
    "requests",
    "msal",
    "urllib.request",
    "http.client",
    "azure",
)

STORAGE_OWNERS = {
    "scim.tables": "azure.data.tables",
    "scim.transactions": "azure.data.tables",
    "scim.queue": "azure.storage.queue",
}
STORAGE_SDKS = ("azure.data.tables", "azure.storage", "azure.core")


@dataclass
class Module:
    name: str
    path: Path
    imports: set[str] = field(default_factory=set)
    """Every module (or module attribute) it imports at run time, as absolute dotted names."""
    typing_only: set[str] = field(default_factory=set)
    """What it imports only for the type checker (``if TYPE_CHECKING:``)."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The module ``from <module> import ...`` names, relative imports resolved against ``importer``."""
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _names(node: ast.AST, importer: str, is_package: bool) -> set[str]:
    """The absolute names one statement or call imports (``from a import b`` imports ``a`` and ``a.b``)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if isinstance(node, ast.ImportFrom):
        module = _absolute(node, importer, is_package)
        return {module} | {f"{module}.{alias.name}" for alias in node.names if alias.name != "*"}
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        function = node.func
        called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
        if called in {"import_module", "__import__"} and isinstance(node.args[0].value, str):
            return {node.args[0].value}
    return set()


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def parse(path: Path, name: str | None = None) -> Module:
    """The module's imports, split into run-time and type-checking ones (``name``: its dotted name)."""
    module = Module(name or module_name(path), path)
    is_package = path.name == "__init__.py"
    typing_nodes: set[int] = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if _is_type_checking(node):
            typing_nodes.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    for node in ast.walk(tree):
        found = _names(node, module.name, is_package)
        (module.typing_only if id(node) in typing_nodes else module.imports).update(found)
    return module


@functools.cache
def graph() -> dict[str, Module]:
    modules = [parse(path) for path in sorted(SCIM.rglob("*.py"))]
    return {module.name: module for module in modules}


def within(name: str, prefixes: tuple[str, ...] | str) -> bool:
    """Whether ``name`` is one of the modules ``prefixes`` or inside one of them."""
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def reachable(modules: dict[str, Module], start: str) -> set[str]:
    """The scim modules ``start`` loads at run time, itself included (importing ``a.b`` loads ``a``)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in modules:
            continue
        seen.add(name)
        for imported in modules[name].imports:
            parts = imported.split(".")
            todo.extend(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return seen


def test_every_module_under_scim_is_in_the_graph():
    modules = graph()
    files = {module_name(path) for path in SCIM.rglob("*.py")}
    assert set(modules) == files
    assert {"scim", "scim.tables", "scim.admin", "scim.admin.cli"} <= set(modules)


def test_every_import_form_is_resolved(tmp_path):
    package = tmp_path / "scim" / "sub"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from . import a\nfrom .b import c\n")
    source = package / "m.py"
    source.write_text(
        "import scim.w\nfrom scim import x\nfrom scim.y import z\nfrom .. import tables\n"
        "from .q import r\nimport importlib\nimportlib.import_module('scim.dyn')\n"
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from scim import hidden\n"
    )
    parsed = parse(source, "scim.sub.m")
    assert {"scim.w", "scim.x", "scim.y", "scim.tables", "scim.sub.q", "scim.dyn"} <= parsed.imports
    assert "scim.hidden" in parsed.typing_only and "scim.hidden" not in parsed.imports
    assert {"scim.sub.a", "scim.sub.b"} <= parse(package / "__init__.py", "scim.sub").imports


def test_nothing_under_scim_imports_azure_functions():
    for module in graph().values():
        found = {n for n in module.imports | module.typing_only if within(n, "azure.functions")}
        assert not found, (module.name, found)


def test_only_the_storage_modules_import_the_storage_sdks():
    for module in graph().values():
        sdk = {n for n in module.imports | module.typing_only if within(n, STORAGE_SDKS)}
        owned = STORAGE_OWNERS.get(module.name)
        if owned is None:
            assert not sdk, (module.name, sdk)
            continue
        assert any(within(n, owned) for n in sdk), module.name
        others = tuple(o for o in set(STORAGE_OWNERS.values()) if o != owned)
        assert not any(within(n, others) for n in sdk), (module.name, sdk)


def _reads_environment(tree: ast.AST) -> list[str]:
    """``os.environ`` / ``os.getenv`` (under any alias of ``os``), or ``from os import environ``."""
    os_aliases = {"os", "posix", "nt"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            os_aliases |= {a.asname for a in node.names if a.asname and a.name in {"os", "posix", "nt"}}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in {"environ", "environb", "getenv", "getenvb"}:
            if isinstance(node.value, ast.Name) and node.value.id in os_aliases:
                found.append(f"{node.value.id}.{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module in {"os", "posix", "nt"}:
            found += [a.name for a in node.names if a.name in {"environ", "environb", "getenv", "getenvb"}]
    return found


def test_nothing_but_the_hosts_reads_the_environment():
    for module in graph().values():
        if module.name in HOSTS:
            continue  # the command line is a host, like function_app.py
        assert not _reads_environment(ast.parse(module.path.read_text())), module.name


def test_the_request_path_reaches_nothing_that_does_io():
    modules = graph()
    for name in PURE:
        assert name in modules, name
        for loaded in reachable(modules, name):
            assert not within(loaded, IO_MODULES), (name, "loads", loaded)
            libraries = {n for n in modules[loaded].imports if within(n, IO_LIBRARIES)}
            assert not libraries, (name, "loads", loaded, libraries)


def host_graph() -> dict[str, Module]:
    """The local Functions host's modules (``functions_host/``)."""
    return {
        module.name: module
        for module in (parse(path) for path in sorted((ROOT / "functions_host").rglob("*.py")))
    }


def test_the_local_host_knows_nothing_of_the_app():
    """functions_host serves any v2 app folder: it imports neither scim nor function_app."""
    modules = host_graph()
    assert {"functions_host.server", "functions_host.worker", "functions_host.routing"} <= set(modules)
    for module in modules.values():
        found = {
            n for n in module.imports | module.typing_only if within(n, ("scim", "function_app", "tools"))
        }
        assert not found, (module.name, found)


def test_only_the_worker_module_drives_the_python_runtime():
    """azure_functions_runtime is reached through functions_host.worker alone; never from scim."""
    everything = {**graph(), **host_graph()}
    for module in everything.values():
        found = {n for n in module.imports | module.typing_only if within(n, "azure_functions_runtime")}
        if module.name == "functions_host.worker":
            assert found, "functions_host.worker must drive azure_functions_runtime"
        else:
            assert not found, (module.name, found)
        assert module.name.startswith("functions_host") or not any(
            within(n, "functions_host") for n in module.imports | module.typing_only
        ), module.name
