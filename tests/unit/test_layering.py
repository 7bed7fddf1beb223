"""The layering rules of scim/ (each room's docstring), checked on the import graph of every module.

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
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCIM = ROOT / "scim"
PRODUCT = [ROOT / "function_app.py", *sorted((ROOT / "tools").rglob("*.py"))]
"""The product's modules outside ``scim/`` (the local host ``functions_host/`` has rules of its own)."""

HOSTS = {"scim.__main__"}
"""Modules that are hosts, like function_app.py: they may read the environment."""

PURE = [
    "scim.model",
    "scim.service",
    "scim.config",
    "scim.logs",
    "scim.web.api",
    "scim.web.auth",
    "scim.web.bulk",
]
"""The request path (each module in these rooms): nothing they load, directly or through other scim modules, does I/O."""

IO_MODULES = (
    "scim.storage.tables",
    "scim.storage.transactions",
    "scim.storage.queue",
    "scim.web.jwks",
    "scim.runtime",
    "scim.admin",
)
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
    "scim.storage.tables": "azure.data.tables",
    "scim.storage.transactions": "azure.data.tables",
    "scim.storage.queue": "azure.storage.queue",
}
STORAGE_SDKS = ("azure.data.tables", "azure.storage", "azure.core")
STORAGE_PRIVATE = ("scim.storage.pushdown", "scim.storage.transactions")
"""Storage's own modules: how it queries and commits is nobody else's business."""

MAY_IMPORT = re.compile(r"It may import (.*?)\.(?=\s|$)", re.S)
"""The sentence of a room's docstring that states its rule: "It may import ``scim.x`` and ``scim.y``."."""


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
    assert {"scim", "scim.storage.tables", "scim.service.operations", "scim.admin.cli"} <= set(modules)


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


def test_function_app_is_the_only_product_module_that_imports_azure_functions():
    """Among scim/, function_app.py and tools/, only the trigger table knows Azure Functions."""
    product = {**graph(), **{f"<{path.relative_to(ROOT)}>": parse(path) for path in PRODUCT}}
    importers = {
        name
        for name, module in product.items()
        if any(within(n, "azure.functions") for n in module.imports | module.typing_only)
    }
    assert importers == {"<function_app.py>"}


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
    pure = [name for name in modules if within(name, tuple(PURE))]
    assert {"scim.service.operations", "scim.web.api", "scim.model.resources"} <= set(pure)
    for name in pure:
        for loaded in reachable(modules, name):
            assert not within(loaded, IO_MODULES), (name, "loads", loaded)
            libraries = {n for n in modules[loaded].imports if within(n, IO_LIBRARIES)}
            assert not libraries, (name, "loads", loaded, libraries)


# -- the rooms (issue 18): each package's docstring states what it may import ------------------


def room_of(name: str) -> str:
    """The room a module lives in: its package under scim/ (``scim.storage``), or itself when top-level."""
    return ".".join(name.split(".")[:2])


def stated_imports(docstring: str | None) -> set[str] | None:
    """The rooms and modules a docstring's "It may import ..." sentence allows (None: it has none)."""
    found = MAY_IMPORT.search(" ".join((docstring or "").split()))
    if found is None:
        return None
    sentence = found.group(1)
    return set() if sentence.startswith("nothing") else set(re.findall(r"``(scim[\w.]*)``", sentence))


def room_rules(modules: dict[str, Module]) -> dict[str, set[str]]:
    """Each room and what its docstring allows it to import."""
    rules: dict[str, set[str]] = {}
    for room in sorted({room_of(name) for name in modules}):
        allowed = stated_imports(ast.get_docstring(ast.parse(modules[room].path.read_text())))
        assert allowed is not None, f"{room}: the docstring must say what it may import (It may import ...)"
        rules[room] = allowed
    return rules


def resolve(name: str, modules: dict[str, Module]) -> str:
    """The scim module an imported name lives in (``scim.model.errors.ScimError`` → ``scim.model.errors``)."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def violations(modules: dict[str, Module]) -> list[tuple[str, str]]:
    """Every (importer, imported) pair of modules in different rooms that the importer's rule forbids."""
    rules = room_rules(modules)
    found = set()
    for name, module in modules.items():
        room = room_of(name)
        for target in {resolve(imported, modules) for imported in module.imports | module.typing_only}:
            if not within(target, "scim") or target == "scim" or room_of(target) == room:
                continue  # another library, the version in scim/__init__, or the module's own room
            if not within(target, tuple(rules[room])):
                found.add((name, target))
    return sorted(found)


def test_every_room_states_what_it_may_import_and_names_only_rooms_that_exist():
    modules = graph()
    rules = room_rules(modules)
    assert {"scim.model", "scim.service", "scim.storage", "scim.feed", "scim.web", "scim.admin"} <= set(rules)
    for room, allowed in rules.items():
        for name in allowed:
            assert name in modules, (room, "names", name)


def test_every_import_between_rooms_is_one_the_importers_docstring_allows():
    assert violations(graph()) == []


def test_the_rooms_form_no_cycle():
    rules = room_rules(graph())
    edges = {room: {room_of(name) for name in allowed} - {room} for room, allowed in rules.items()}
    done: set[str] = set()

    def visit(room: str, path: tuple[str, ...]) -> None:
        assert room not in path, " -> ".join((*path, room))
        if room not in done:
            for following in sorted(edges[room]):
                visit(following, (*path, room))
            done.add(room)

    for room in sorted(edges):
        visit(room, ())


def test_a_forbidden_import_is_caught(tmp_path):
    """The check fails on a service module that reaches past the port into push-down."""
    modules = dict(graph())
    path = tmp_path / "rogue.py"
    path.write_text(
        modules["scim.service.users"].path.read_text() + "\nfrom scim.storage.pushdown import pushdown\n"
    )
    modules["scim.service.users"] = parse(path, "scim.service.users")
    assert violations(modules) == [("scim.service.users", "scim.storage.pushdown")]


def test_storage_keeps_push_down_and_transactions_to_itself():
    for name, module in graph().items():
        if room_of(name) != "scim.storage":
            found = {n for n in module.imports | module.typing_only if within(n, STORAGE_PRIVATE)}
            assert not found, (name, found)


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
