"""HTTP route templates as the Functions host matches them (ASP.NET-style, case-insensitive literals).

Supported: literal segments, `{name}`, `{name?}` (trailing), `{*rest}` (catch-all, last), and
constraints `{id:int}`, `long`, `bool`, `alpha`, `guid`, `double`/`float`/`decimal`, `datetime`,
`min(n)`, `max(n)`, `length(n)`, `minlength(n)`, `maxlength(n)`, chained as `{id:int:min(1)}`.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from core.errors import ConfigurationError

_PARAM = re.compile(r"^\{(?P<star>\*)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<constraints>(:[^:{}?]+)*)(?P<opt>\?)?\}$")
_ARG = re.compile(r"^(?P<kind>[a-z]+)(\((?P<arg>[^)]*)\))?$")


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


_SIMPLE: dict[str, Callable[[str], bool]] = {
    "int": lambda v: re.fullmatch(r"-?\d{1,10}", v) is not None and -2**31 <= int(v) < 2**31,
    "long": lambda v: re.fullmatch(r"-?\d{1,19}", v) is not None and -2**63 <= int(v) < 2**63,
    "bool": lambda v: v.lower() in ("true", "false"),
    "alpha": lambda v: re.fullmatch(r"[A-Za-z]+", v) is not None,
    "guid": _is_guid,
    "double": _is_float, "float": _is_float, "decimal": _is_float,
    "datetime": _is_datetime,
}
_WITH_ARG: dict[str, Callable[[str, int], bool]] = {
    "min": lambda v, n: _SIMPLE["long"](v) and int(v) >= n,
    "max": lambda v, n: _SIMPLE["long"](v) and int(v) <= n,
    "length": lambda v, n: len(v) == n,
    "minlength": lambda v, n: len(v) >= n,
    "maxlength": lambda v, n: len(v) <= n,
}


@dataclass(frozen=True)
class Segment:
    literal: str | None = None
    name: str | None = None
    checks: tuple[Callable[[str], bool], ...] = ()
    optional: bool = False
    catch_all: bool = False

    def accepts(self, value: str) -> bool:
        if self.literal is not None:
            return value.lower() == self.literal.lower()
        return all(check(value) for check in self.checks)

    @property
    def rank(self) -> int:
        """Precedence: literals beat constrained parameters, which beat plain ones, then catch-alls."""
        if self.literal is not None:
            return 0
        return 3 if self.catch_all else (1 if self.checks else 2)


@dataclass(frozen=True)
class Route:
    template: str
    segments: tuple[Segment, ...]

    @classmethod
    def parse(cls, template: str) -> "Route":
        parts = [p for p in template.strip("/").split("/")] if template.strip("/") else []
        segments = tuple(_segment(part, template) for part in parts)
        for i, seg in enumerate(segments):
            last = i == len(segments) - 1
            if seg.catch_all and not last:
                raise ConfigurationError(f"route {template!r}: a catch-all parameter must be the last segment")
            if seg.optional and not all(s.optional or s.catch_all for s in segments[i:]):
                raise ConfigurationError(f"route {template!r}: optional parameters must come last")
        return cls(template, segments)

    @property
    def precedence(self) -> tuple[int, ...]:
        return tuple(s.rank for s in self.segments)

    def match(self, parts: list[str]) -> dict[str, str] | None:
        """Route parameters if the URL path segments fit this template, else None."""
        params: dict[str, str] = {}
        for i, seg in enumerate(self.segments):
            if seg.catch_all:
                rest = "/".join(parts[i:])
                if rest and not seg.accepts(rest):
                    return None
                if rest:
                    params[seg.name or ""] = rest
                return params
            if i >= len(parts):
                return params if seg.optional else None
            if not parts[i] or not seg.accepts(parts[i]):
                return None
            if seg.name is not None:
                params[seg.name] = parts[i]
        return params if len(parts) == len(self.segments) else None


def _segment(part: str, template: str) -> Segment:
    if "{" not in part and "}" not in part:
        if not part:
            raise ConfigurationError(f"route {template!r} has an empty segment")
        return Segment(literal=part)
    m = _PARAM.match(part)
    if m is None:
        raise ConfigurationError(f"route {template!r}: segment {part!r} is not a literal or a single {{parameter}}")
    checks = tuple(_constraint(c, template) for c in m["constraints"].split(":")[1:])
    return Segment(name=m["name"], checks=checks, optional=bool(m["opt"]), catch_all=bool(m["star"]))


def _constraint(text: str, template: str) -> Callable[[str], bool]:
    m = _ARG.match(text)
    if m and m["kind"] in _SIMPLE and m["arg"] is None:
        return _SIMPLE[m["kind"]]
    if m and m["kind"] in _WITH_ARG and m["arg"] is not None and re.fullmatch(r"-?\d+", m["arg"]):
        check, n = _WITH_ARG[m["kind"]], int(m["arg"])
        return lambda value: check(value, n)
    raise ConfigurationError(f"route {template!r}: unsupported constraint {text!r} "
                             f"(supported: {', '.join([*_SIMPLE, *(k + '(n)' for k in _WITH_ARG)])})")
