"""Path patterns to handlers, with 404 for unknown paths and 405 for wrong methods."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .errors import ApiError, not_found

ID = None  # a pattern slot that matches one non-empty path segment


@dataclass(frozen=True)
class Route:
    pattern: tuple
    methods: dict[str, Callable]
    upload: bool = False

    def match(self, segments: list[str]) -> list[str] | None:
        if len(segments) != len(self.pattern):
            return None
        params = []
        for expected, actual in zip(self.pattern, segments):
            if expected is ID:
                if not actual:
                    return None
                params.append(actual)
            elif expected.lower() != actual.lower():
                return None
        return params


def find(routes: list[Route], segments: list[str]) -> tuple[Route, list[str]] | None:
    for route in routes:
        params = route.match(segments)
        if params is not None:
            return route, params
    return None


def resolve(routes: list[Route], method: str, segments: list[str]) -> tuple[Callable, list[str]]:
    found = find(routes, segments)
    if found is None:
        raise not_found("no such path")
    route, params = found
    handler = route.methods.get(method)
    if handler is None:
        allowed = ", ".join(sorted(route.methods))
        raise ApiError(405, "MethodNotAllowed", f"method {method} not allowed here; use {allowed}",
                       [("Allow", allowed)])
    return handler, params
