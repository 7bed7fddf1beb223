"""A small read-only model of Bicep files, built from tree-sitter-bicep's syntax tree.

Why not pycep-parser: it turns an identifier and a string literal into the same Python string
(``name: name`` and ``name: 'name'`` both give ``"name"``), parses ``a > 0 ? x : y`` as
``a > (0 ? x : y)``, and keeps only the last of several nested child resources (azure-notes §4.3).
A property check must tell ``allowSharedKeyAccess: false`` from a parameter called ``false``-ish,
and a literal ``'scim'`` from a variable, so values here keep their kind:

========================  =====================================================
Bicep                     Python
========================  =====================================================
``'text'``                ``str`` (escapes decoded)
``'a${b}c'``              :class:`Interpolated` (raw text between the quotes)
``true`` / ``12`` / ``null``  ``bool`` / ``int`` / ``None``
``name``, ``a.b.c``       :class:`Ref` (a plain chain of identifiers)
``f(x, y)``               :class:`Call`
``{ k: v }`` / ``[ v ]``  ``dict`` / ``list``
anything else             :class:`Expr` (node type and source text)
========================  =====================================================

:class:`Infra` loads every ``.bicep`` file under a directory and :meth:`Infra.resolve` follows a value
through variables, module parameters, module outputs and resource names, across files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tree_sitter
import tree_sitter_bicep

LANGUAGE = tree_sitter.Language(tree_sitter_bicep.language())

_ESCAPES = {"'": "'", "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "$": "$"}
_ESCAPE = re.compile(r"\\(u\{[0-9A-Fa-f]+\}|.)")


@dataclass(frozen=True)
class Ref:
    """A reference: ``name`` or a plain member chain such as ``identity.properties.principalId``."""

    path: str

    @property
    def parts(self) -> list[str]:
        return self.path.split(".")


@dataclass(frozen=True)
class Interpolated:
    """A string with ``${…}`` interpolations, kept as written between the quotes."""

    raw: str


@dataclass(frozen=True)
class Call:
    """A function call: ``subscriptionResourceId('…', roleId)``."""

    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Expr:
    """Any other expression (ternary, binary, subscript, …): its node type and source text."""

    kind: str
    text: str


@dataclass
class Declaration:
    """One top-level ``param``, ``var``, ``resource``, ``module`` or ``output``.

    ``type`` is the parameter/output type, the resource type with its API version, or the module path;
    ``value`` is the default, the value, or the resource/module body; ``condition`` is the ``if (…)``.
    """

    kind: str
    name: str
    type: str
    value: Any
    decorators: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    condition: Any = None
    line: int = 0

    @property
    def body(self) -> dict[str, Any]:
        assert isinstance(self.value, dict), f"{self.kind} {self.name} has no object body"
        return self.value

    @property
    def resource_type(self) -> str:
        """``Microsoft.Web/sites`` for ``Microsoft.Web/sites@2024-04-01``."""
        return self.type.split("@", 1)[0]


def parse_tree(source: bytes) -> tree_sitter.Tree:
    """The tree-sitter syntax tree of a Bicep source."""
    return tree_sitter.Parser(LANGUAGE).parse(source)


def syntax_errors(source: bytes) -> list[str]:
    """Every ERROR or MISSING node, as ``line:column: what`` (1-based)."""
    problems: list[str] = []
    stack = [parse_tree(source).root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            line, column = node.start_point
            what = f"missing {node.type}" if node.is_missing else "syntax error"
            snippet = source[node.start_byte : node.end_byte].decode(errors="replace")[:60]
            problems.append(f"{line + 1}:{column + 1}: {what} near {snippet!r}")
        stack.extend(node.children)
    return sorted(problems, key=lambda p: tuple(int(n) for n in p.split(":")[:2]))


class BicepFile:
    """The top-level declarations of one Bicep file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.source = path.read_bytes()
        self.target_scope = "resourceGroup"
        self.params: dict[str, Declaration] = {}
        self.variables: dict[str, Declaration] = {}
        self.resources: dict[str, Declaration] = {}
        self.modules: dict[str, Declaration] = {}
        self.outputs: dict[str, Declaration] = {}
        self._read(parse_tree(self.source).root_node)

    def _text(self, node: tree_sitter.Node) -> str:
        return self.source[node.start_byte : node.end_byte].decode()

    def _read(self, root: tree_sitter.Node) -> None:
        tables = {
            "parameter_declaration": ("param", self.params),
            "variable_declaration": ("var", self.variables),
            "resource_declaration": ("resource", self.resources),
            "module_declaration": ("module", self.modules),
            "output_declaration": ("output", self.outputs),
        }
        decorators: dict[str, tuple[Any, ...]] = {}
        for node in root.named_children:
            if node.type == "decorators":
                for decorator in node.named_children:
                    call = self.value(decorator.named_children[0])
                    if isinstance(call, Call):
                        decorators[call.name] = call.args
                continue
            if node.type == "target_scope_assignment":
                self.target_scope = str(self.value(node.named_children[-1]))
            elif node.type in tables:
                kind, table = tables[node.type]
                declaration = self._declaration(kind, node)
                declaration.decorators = decorators
                table[declaration.name] = declaration
            decorators = {}

    def _declaration(self, kind: str, node: tree_sitter.Node) -> Declaration:
        children = [c for c in node.named_children if c.type != "comment"]
        name = self._text(children[0])
        if kind == "var" and len(children) == 2:  # var name = value (no type)
            children.insert(1, children[0])
            type_: Any = ""
        else:
            type_ = self.value(children[1]) if children[1].type == "string" else self._text(children[1])
        value: Any = None
        condition: Any = None
        if len(children) > 2:
            last = children[-1]
            if last.type == "if_statement":
                parts = [c for c in last.named_children if c.type != "comment"]
                condition = self.value(parts[0])
                last = parts[-1]
            value = self.value(last)
        line = node.start_point[0] + 1
        return Declaration(kind, name, str(type_), value, condition=condition, line=line)

    def value(self, node: tree_sitter.Node) -> Any:  # noqa: C901 - one branch per node type
        """The Python value of an expression node (see the module docstring)."""
        kind = node.type
        if kind == "string":
            return self._string(node)
        if kind == "boolean":
            return self._text(node) == "true"
        if kind == "number":
            return int(self._text(node))
        if kind == "null":
            return None
        if kind in ("identifier", "compatible_identifier"):
            return Ref(self._text(node))
        if kind == "member_expression":
            text = self._text(node)
            plain = all(
                c.type in ("identifier", "property_identifier", "member_expression")
                for c in node.named_children
            )
            return Ref(text) if plain and re.fullmatch(r"[A-Za-z_][\w.]*", text) else Expr(kind, text)
        if kind == "object":
            result: dict[Any, Any] = {}
            for prop in node.named_children:
                if prop.type != "object_property":
                    continue
                key_node, value_node = [c for c in prop.named_children if c.type != "comment"][:2]
                key = self.value(key_node)
                result[key.path if isinstance(key, Ref) else key] = self.value(value_node)
            return result
        if kind == "array":
            return [self.value(c) for c in node.named_children if c.type != "comment"]
        if kind == "call_expression":
            function = node.child_by_field_name("function")
            arguments = node.child_by_field_name("arguments")
            args = [self.value(c) for c in arguments.named_children] if arguments else []
            return Call(self._text(function) if function else "", tuple(args))
        if kind == "parenthesized_expression" and node.named_child_count == 1:
            return self.value(node.named_children[0])
        return Expr(kind, self._text(node))

    def _string(self, node: tree_sitter.Node) -> str | Interpolated:
        text = self._text(node)
        if text.startswith("'''"):
            return text[3:-3]  # multi-line strings are verbatim: no escapes, no interpolation
        raw = text[1:-1]
        if any(c.type == "interpolation" for c in node.named_children):
            return Interpolated(raw)

        def unescape(match: re.Match[str]) -> str:
            code = match.group(1)
            return chr(int(code[2:-1], 16)) if code.startswith("u{") else _ESCAPES.get(code, code)

        return _ESCAPE.sub(unescape, raw)


class Infra:
    """Every ``.bicep`` file under a directory, keyed by its path relative to that directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = {p.relative_to(root).as_posix(): BicepFile(p) for p in sorted(root.rglob("*.bicep"))}

    def __getitem__(self, name: str) -> BicepFile:
        return self.files[name]

    def module_target(self, file: str, module: Declaration) -> str:
        """The key of the file a ``module`` declaration in ``file`` points at."""
        target = (self.root / file).parent / module.type
        return target.resolve().relative_to(self.root.resolve()).as_posix()

    def callers(self, file: str) -> list[tuple[str, Declaration]]:
        """Every ``(file, module declaration)`` that deploys ``file``."""
        return [
            (name, module)
            for name, bicep in self.files.items()
            for module in bicep.modules.values()
            if self.module_target(name, module) == file
        ]

    def resources(self, resource_type: str) -> list[tuple[str, Declaration]]:
        """Every ``(file, resource)`` of a type (without API version), in every file."""
        return [
            (name, resource)
            for name, bicep in self.files.items()
            for resource in bicep.resources.values()
            if resource.resource_type.lower() == resource_type.lower()
        ]

    def resolve(self, file: str, value: Any, depth: int = 0) -> tuple[str, Any]:
        """Follow a :class:`Ref` to what it stands for, as ``(file, value)``.

        Variables resolve to their value; a module's parameter to what its (single) caller passes;
        ``module.outputs.x`` to that output's expression in the module's file; ``resource.name`` to the
        resource's ``name``. Anything else (a top-level parameter, ``resource.id``, ``resource.properties.…``)
        is returned as is, with the file it belongs to.
        """
        if not isinstance(value, Ref) or depth > 20:
            return file, value
        bicep = self.files[file]
        head, *rest = value.parts
        if not rest and head in bicep.variables:
            return self.resolve(file, bicep.variables[head].value, depth + 1)
        if not rest and head in bicep.params:
            callers = self.callers(file)
            if len(callers) == 1:
                caller, module = callers[0]
                passed = module.body.get("params", {})
                if head in passed:
                    return self.resolve(caller, passed[head], depth + 1)
            return file, value
        if head in bicep.modules and len(rest) == 2 and rest[0] == "outputs":
            target = self.module_target(file, bicep.modules[head])
            output = self.files[target].outputs.get(rest[1])
            if output is not None:
                return self.resolve(target, output.value, depth + 1)
        if head in bicep.resources and rest == ["name"]:
            return self.resolve(file, bicep.resources[head].body.get("name"), depth + 1)
        return file, value

    def literal(self, file: str, value: Any) -> Any:
        """The resolved value only (see :meth:`resolve`)."""
        return self.resolve(file, value)[1]
