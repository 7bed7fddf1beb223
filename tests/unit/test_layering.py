"""The layering rule of scim/__init__.py, checked on the import statements."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCIM = ROOT / "scim"


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def modules() -> list[Path]:
    return sorted(SCIM.glob("*.py"))


def test_core_never_imports_azure_functions():
    for module in modules():
        assert not any(n == "azure.functions" or n.startswith("azure.functions.") for n in imports(module)), (
            module
        )


def test_only_the_storage_modules_import_the_storage_sdks():
    owners = {
        "tables.py": "azure.data.tables",
        "transactions.py": "azure.data.tables",
        "queue.py": "azure.storage.queue",
    }
    for module in modules():
        names = imports(module)
        sdk = {
            n
            for n in names
            if n.startswith(("azure.data.tables", "azure.storage", "azure.core", "azure.functions"))
        }
        if module.name in owners:
            assert any(n.startswith(owners[module.name]) for n in sdk), module
            other = {o for o in owners.values() if o != owners[module.name]}
            assert not any(n.startswith(tuple(other)) for n in sdk), module
        else:
            assert not sdk, module


def test_core_never_reads_the_environment():
    for module in modules():
        if module.name == "__main__.py":
            continue  # the command line is a host, like function_app.py
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Attribute):
                assert node.attr not in {"environ", "getenv"}, module
            if isinstance(node, ast.ImportFrom) and node.module == "os":
                assert not {a.name for a in node.names} & {"environ", "getenv"}, module


def test_pure_modules_import_nothing_that_does_io():
    pure = [
        "errors.py",
        "entra.py",
        "resources.py",
        "service.py",
        "auth.py",
        "config.py",
        "discovery.py",
        "api.py",
    ]
    for name in pure:
        found = imports(SCIM / name)
        assert not {"scim.tables", "scim.runtime", "aiohttp", "socket", "subprocess"} & found, name
