r"""The host's route table: templates, constraints and the order routes are tried in.

Rules, each from the Functions host's published source (azure-notes §6.2) unless marked:

- a route is ``<routePrefix>/<route>``; a trigger without ``route`` uses its function name;
- routes are tried in **function-name order, case-insensitive ordinal** (the host sorts function
  metadata with ``StringComparer.OrdinalIgnoreCase`` before it builds the route table), and the
  first route whose template **and** method constraint match wins: a literal segment does *not*
  beat a parameter (``WebScriptHostHttpRoutesManager``, ``WebJobsRouter``);
- templates match case-insensitively with ASP.NET's syntax: literal segments (``.search``
  included), ``{p}``, ``{p?}``, ``{p=default}``, ``{*p}`` and the constraints ``int``, ``long``,
  ``guid``, ``alpha`` and ``regex(...)``; any other syntax is refused at start-up, here only
  because it is not implemented [our limit, not the host's];
- a method constraint exists only when ``methods`` is set, and it matches exactly the listed
  methods: no HEAD-for-GET, no OPTIONS (a request for those gets the host's empty 404);
- one trailing slash is ignored (ASP.NET routing);
- at start-up, a function whose route begins with ``admin`` or ``runtime`` (the host's own API),
  whose route and methods overlap those of a function before it, or whose name does not match
  ``^[a-z][a-z0-9_\-]{0,127}$`` (case-insensitive) is put "in error": logged, not routed, while
  the other functions are served (``ScriptHost.ValidateFunction``, ``GetFunctionDescriptors``,
  ``FunctionMetadataManager``).

Routing sees the path as Kestrel decodes it: percent escapes decoded except ``%2F``, which stays
``%2F`` inside its segment (:func:`routing_path`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

__all__ = ["HostStartupError", "Route", "RouteTable", "routing_path"]


class HostStartupError(ValueError):
    """The host refuses to start with these functions (it would serve 503 and log the reason)."""


_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_INTEGER = re.compile(r"[+-]?[0-9]+")
_GUID_D = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# Guid.TryParse accepts the N, D, B and P formats (the X format is not implemented here).
_GUID = re.compile(rf"[0-9a-f]{{32}}|{_GUID_D}|\{{{_GUID_D}\}}|\({_GUID_D}\)", re.IGNORECASE)
_ALPHA = re.compile(r"[a-z]+", re.IGNORECASE | re.ASCII)
_CONSTRAINT = re.compile(r"(?P<name>[A-Za-z]+)(?:\((?P<arg>.*)\))?", re.DOTALL)
_IMPLEMENTED = "int, long, guid, alpha, regex(...)"


@dataclass(frozen=True)
class _Parameter:
    name: str
    group: str
    checks: tuple[Callable[[str], bool], ...]
    default: str | None


def _integer_check(bounds: tuple[int, int]) -> Callable[[str], bool]:
    low, high = bounds
    return lambda value: _INTEGER.fullmatch(value) is not None and low <= int(value) <= high


def _constraint_check(spec: str, template: str) -> Callable[[str], bool]:
    """Return the predicate for one route constraint such as ``int`` or ``regex(^a+$)``."""
    match = _CONSTRAINT.fullmatch(spec)
    name = match["name"].lower() if match else ""
    arg = match["arg"] if match else None
    if name in ("int", "long") and arg is None:
        return _integer_check(_INT32 if name == "int" else _INT64)
    if name == "guid" and arg is None:
        return lambda value: _GUID.fullmatch(value) is not None
    if name == "alpha" and arg is None:
        return lambda value: _ALPHA.fullmatch(value) is not None
    if name == "regex" and arg:
        try:
            # ASP.NET's RegexRouteConstraint is unanchored and case-insensitive.
            pattern = re.compile(arg, re.IGNORECASE)
        except re.error as exc:
            raise HostStartupError(f"route {template!r}: bad regex constraint {arg!r}: {exc}") from None
        return lambda value: pattern.search(value) is not None
    raise HostStartupError(
        f"route {template!r}: constraint {spec!r} is not implemented here (implemented: {_IMPLEMENTED})"
    )


def _split_parameter(text: str) -> tuple[list[str], str | None]:
    """Split ``name:c1:c2(arg)=default`` at top-level ``:`` and ``=``.

    As in ASP.NET, a constraint argument runs to the first ``)`` followed by ``:``, ``=`` or the
    end, so a regex may contain ``:``, ``=`` and parentheses.
    """
    parts: list[str] = []
    current = ""
    index = 0
    while index < len(text):
        char = text[index]
        if char == "(":
            end = index
            while True:
                end = text.find(")", end + 1)
                if end == -1:
                    raise HostStartupError(f"unbalanced parenthesis in {text!r}")
                if end + 1 == len(text) or text[end + 1] in ":=":
                    break
            current += text[index : end + 1]
            index = end + 1
            continue
        if char == "=":
            parts.append(current)
            return parts, text[index + 1 :]
        if char == ":":
            parts.append(current)
            current = ""
        else:
            current += char
        index += 1
    parts.append(current)
    return parts, None


def _compile_template(template: str) -> tuple[re.Pattern[str], tuple[_Parameter, ...]]:
    """Compile a route template to an anchored, case-insensitive regex and its parameters.

    Raises:
        HostStartupError: the template uses syntax or a constraint this host does not implement.
    """
    segments = template.split("/") if template else []
    pattern = "^"
    parameters: list[_Parameter] = []
    seen: set[str] = set()
    for position, segment in enumerate(segments):
        if not segment:
            raise HostStartupError(f"route {template!r}: empty segment")
        if "{" not in segment and "}" not in segment:
            pattern += "/" + re.escape(segment)
            continue
        if not (segment.startswith("{") and segment.endswith("}")) or segment.startswith("{{"):
            raise HostStartupError(f"route {template!r}: complex segment {segment!r} is not implemented here")
        inner = segment[1:-1].replace("{{", "{").replace("}}", "}")
        catch_all = inner.startswith("*")
        inner = inner.lstrip("*")
        optional = inner.endswith("?")
        inner = inner.removesuffix("?")
        parts, default = _split_parameter(inner)
        name = parts[0]
        if not name or any(char in name for char in "{}/?*=:()"):
            raise HostStartupError(f"route {template!r}: bad parameter name in {segment!r}")
        if name.casefold() in seen:
            raise HostStartupError(f"route {template!r}: parameter {name!r} appears twice")
        seen.add(name.casefold())
        checks = tuple(_constraint_check(spec, template) for spec in parts[1:])
        group = f"p{len(parameters)}"
        parameters.append(_Parameter(name, group, checks, default))
        if catch_all:
            if position != len(segments) - 1:
                raise HostStartupError(f"route {template!r}: a catch-all must be the last segment")
            pattern += f"(?:/(?P<{group}>.*))?"
        elif optional or default is not None:
            pattern += f"(?:/(?P<{group}>[^/]+))?"
        else:
            pattern += f"/(?P<{group}>[^/]+)"
    # One trailing slash is ignored (ASP.NET routing; azure-notes §6.2).
    return re.compile(pattern + "/?$", re.IGNORECASE), tuple(parameters)


_FUNCTION_NAME = re.compile(r"[a-z][a-z0-9_\-]{0,127}", re.IGNORECASE)
_RESERVED_PREFIXES = ("admin", "runtime")
_ALL_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT"})


def routing_path(raw_path: str) -> str:
    """The path as Kestrel hands it to routing: percent escapes decoded, except ``%2F``.

    Kestrel never decodes an encoded ``/`` in a path (it would change the segments), so
    ``/Users/a%2Fb`` routes with the single segment ``a%2Fb`` and the function receives
    ``id = "a%2Fb"`` (azure-notes §6.2).
    """
    pieces = re.split(r"(%2[Ff])", raw_path)
    return "".join(piece if piece.lower() == "%2f" else unquote(piece, errors="replace") for piece in pieces)


@dataclass(frozen=True)
class Route:
    """One HTTP trigger in the route table.

    Attributes:
        function_name: The function's name, which decides the order routes are tried in.
        template: The full template matched against the path, ``<routePrefix>/<route>``.
        methods: Upper-case methods the trigger accepts, or ``None`` for every method.
        argument_name: The trigger binding's name (the function's parameter).
        function: What the route invokes (the worker's function metadata).
    """

    function_name: str
    template: str
    methods: frozenset[str] | None
    argument_name: str
    function: Any = field(repr=False, compare=False)
    _pattern: re.Pattern[str] = field(repr=False, compare=False)
    _parameters: tuple[_Parameter, ...] = field(repr=False, compare=False)

    def allows(self, method: str) -> bool:
        """Tell whether the trigger's method constraint admits ``method`` (exactly; no HEAD for GET)."""
        return self.methods is None or method.upper() in self.methods

    def match_path(self, path: str) -> dict[str, str] | None:
        """Return the route parameters if ``path`` matches the template and its constraints.

        Optional parameters that are absent are left out, unless they declare a default.
        """
        match = self._pattern.match(path)
        if match is None:
            return None
        values: dict[str, str] = {}
        for parameter in self._parameters:
            value = match[parameter.group] or parameter.default
            if value is None:
                continue
            if not all(check(value) for check in parameter.checks):
                return None
            values[parameter.name] = value
        return values


def _join_template(prefix: str, route: str) -> str:
    return "/".join(part for part in (prefix.strip("/"), route.strip("/")) if part)


def _conflict(first: Route, second: Route) -> bool:
    """Same template (ignoring case) and at least one method in common (``HttpRoutesConflict``)."""
    if first.template.lower() != second.template.lower():
        return False
    return bool((first.methods or _ALL_METHODS) & (second.methods or _ALL_METHODS))


def _methods(trigger: Mapping[str, Any]) -> frozenset[str] | None:
    methods = trigger.get("methods")
    if not methods:
        return None
    return frozenset(str(method).upper() for method in methods)


class RouteTable:
    """The HTTP triggers of an indexed app, in the order the host tries them.

    Args:
        functions: ``(name, trigger binding, function)`` for every HTTP-triggered function; the
            trigger binding is the JSON object the runtime reported (``route``, ``methods``).
        route_prefix: host.json ``extensions.http.routePrefix``.

    Attributes:
        routes: The routes, in the order they are tried.
        errors: ``{function name: reason}`` for the functions the host puts "in error" and does not
            route — an invalid name, a reserved route, a route and methods that conflict with an
            earlier function's. As in the host (``ScriptHost.GetFunctionDescriptors`` logs the
            validation error and goes on), the other functions are served.

    Raises:
        HostStartupError: a template uses syntax this host does not implement (our limit).
    """

    def __init__(self, functions: Iterable[tuple[str, Mapping[str, Any], Any]], route_prefix: str) -> None:
        self.errors: dict[str, str] = {}
        candidates: list[Route] = []
        for name, trigger, function in functions:
            route = str(trigger.get("route") or name)
            if not _FUNCTION_NAME.fullmatch(name):
                self.errors[name] = f"the function name {name!r} is invalid (^[a-z][a-z0-9_\\-]{{0,127}}$)"
                continue
            if route.strip("/").lower().startswith(_RESERVED_PREFIXES):
                self.errors[name] = (
                    f"the route {route!r} conflicts with the host's built-in routes (admin, runtime)"
                )
                continue
            template = _join_template(route_prefix, route)
            pattern, parameters = _compile_template(template)
            methods = _methods(trigger)
            candidates.append(
                Route(name, template, methods, str(trigger.get("name", "req")), function, pattern, parameters)
            )
        # StringComparer.OrdinalIgnoreCase: compare the upper-cased names ordinally.
        ordered = sorted(candidates, key=lambda route: route.function_name.upper())
        self.routes: tuple[Route, ...] = tuple(self._without_conflicts(ordered))

    def _without_conflicts(self, ordered: list[Route]) -> Iterator[Route]:
        """Each route unless its template and methods overlap those of any route kept before it."""
        kept: list[Route] = []
        for route in ordered:
            clash = next((other for other in kept if _conflict(other, route)), None)
            if clash is not None:
                overlap = sorted((clash.methods or _ALL_METHODS) & (route.methods or _ALL_METHODS))
                self.errors[route.function_name] = (
                    f"the route {route.template!r} with methods {overlap} is already used by function "
                    f"{clash.function_name!r}"
                )
                continue
            kept.append(route)
            yield route

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The first route, in function-name order, whose template and method constraint match."""
        for route in self.routes:
            params = route.match_path(path)
            if params is not None and route.allows(method):
                return route, params
        return None
