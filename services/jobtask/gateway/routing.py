"""The route table, read from the `google.api.http` annotations of the services' descriptors.

Nothing here names a path or an RPC: a newly annotated method appears as a route at start-up.
Matching follows http.proto's path templates (`*`, `**`, `{field}`, `{field=segments}`, `:verb`);
where several templates match, literal segments win over variables, so
`/arvados/v1/jobs/queue` reaches QueueJobs rather than GetJob with uuid "queue".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from urllib.parse import unquote

from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

__all__ = [
    "Binding",
    "Match",
    "PathTemplate",
    "RouteTable",
    "bindings_of",
    "load_services",
]

_VERB_PATTERNS = ("get", "put", "post", "delete", "patch")


@dataclass(frozen=True)
class Segment:
    """One path segment: a literal, `*` (one segment) or `**` (the rest, possibly empty)."""

    literal: str | None = None  # None for wildcards
    wildcard: str = ""  # "*" or "**" when literal is None
    variable: str | None = None  # the field path this segment (or run) is bound to


@dataclass(frozen=True)
class PathTemplate:
    """A parsed http.proto path template."""

    text: str
    segments: tuple[Segment, ...]
    verb: str | None = None

    @classmethod
    def parse(cls, text: str) -> PathTemplate:
        if not text.startswith("/"):
            raise ValueError(f"path template {text!r} must start with '/'")
        body, verb = text[1:], None
        # A verb is a ':' after the last '/' and outside braces.
        last = body.rsplit("/", 1)[-1]
        if ":" in last and "}" not in last.split(":", 1)[1]:
            body, verb = body.rsplit(":", 1)
        segments: list[Segment] = []
        for token in _split_outside_braces(body):
            if token.startswith("{") and token.endswith("}"):
                name, _, sub = token[1:-1].partition("=")
                for part in (sub or "*").split("/"):
                    segments.append(_segment(part, variable=name))
            else:
                segments.append(_segment(token, variable=None))
        return cls(text=text, segments=tuple(segments), verb=verb)

    @property
    def variables(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for seg in self.segments:
            if seg.variable is not None:
                seen.setdefault(seg.variable, None)
        return tuple(seen)

    @property
    def specificity(self) -> tuple[int, ...]:
        """Sort key: literals first, then `*`, then `**`, segment by segment."""
        rank = {"": 0, "*": 1, "**": 2}
        return tuple(0 if s.literal is not None else rank[s.wildcard] for s in self.segments)

    def match(self, path: str) -> dict[str, str] | None:
        """The path variables (percent-decoded) if `path` matches, else None."""
        if not path.startswith("/"):
            return None
        body = path[1:]
        if self.verb is not None:
            if not body.endswith(":" + self.verb):
                return None
            body = body[: -len(self.verb) - 1]
        parts = body.split("/") if body else []
        captured: dict[str, list[str]] = {}
        i = 0
        for n, seg in enumerate(self.segments):
            if seg.wildcard == "**":
                rest = len(self.segments) - n - 1
                take = parts[i : len(parts) - rest]
                i += len(take)
                if seg.variable:
                    # Multi-segment captures keep '/' (and http.proto keeps %2F encoded).
                    captured.setdefault(seg.variable, []).extend(take)
                continue
            if i >= len(parts):
                return None
            part = parts[i]
            if seg.literal is not None and part != seg.literal:
                return None
            if seg.literal is None and part == "":
                return None
            if seg.variable:
                captured.setdefault(seg.variable, []).append(part)
            i += 1
        if i != len(parts):
            return None
        return {name: "/".join(unquote(p) for p in ps) for name, ps in captured.items()}


def _split_outside_braces(body: str) -> list[str]:
    tokens, depth, current = [], 0, ""
    for ch in body:
        if ch == "/" and depth == 0:
            tokens.append(current)
            current = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        current += ch
    tokens.append(current)
    return tokens


def _segment(text: str, *, variable: str | None) -> Segment:
    if text in ("*", "**"):
        return Segment(wildcard=text, variable=variable)
    if variable is not None and not re.fullmatch(r"[^{}*]+", text):
        raise ValueError(f"bad segment {text!r} in variable {variable!r}")
    return Segment(literal=text, variable=variable)


@dataclass(frozen=True)
class Binding:
    """One HTTP binding of one RPC."""

    http_method: str  # upper case
    template: PathTemplate
    body: str  # "" (no body), "*" or a top-level field name
    response_body: str
    method: MethodDescriptor
    primary: bool  # False for additional_bindings

    @property
    def service(self) -> ServiceDescriptor:
        return self.method.containing_service

    @property
    def grpc_path(self) -> str:
        return f"/{self.service.full_name}/{self.method.name}"

    @property
    def server_streaming(self) -> bool:
        return bool(self.method.server_streaming)

    @property
    def served(self) -> bool:
        """HTTP/1.1 request-response cannot carry a client stream."""
        return not self.method.client_streaming

    @property
    def resource(self) -> str:
        """The collection the path names: `jobs` in `/arvados/v1/jobs/{uuid}/cancel`."""
        literals = [s.literal for s in self.template.segments if s.literal is not None]
        return literals[2] if len(literals) > 2 else literals[-1]


def _rule_bindings(
    rule: http_pb2.HttpRule, method: MethodDescriptor, primary: bool
) -> list[Binding]:
    pattern = rule.WhichOneof("pattern")
    out: list[Binding] = []
    if pattern in _VERB_PATTERNS:
        verb, path = pattern.upper(), getattr(rule, pattern)
    elif pattern == "custom":
        verb, path = rule.custom.kind.upper(), rule.custom.path
    else:
        verb = path = ""
    if path:
        out.append(
            Binding(
                http_method=verb,
                template=PathTemplate.parse(path),
                body=rule.body,
                response_body=rule.response_body,
                method=method,
                primary=primary,
            )
        )
    for extra in rule.additional_bindings:
        out.extend(_rule_bindings(extra, method, primary=False))
    return out


def bindings_of(service: ServiceDescriptor) -> list[Binding]:
    """Every HTTP binding that `service` declares, in declaration order."""
    out: list[Binding] = []
    for method in service.methods:
        options = method.GetOptions()
        if options.HasExtension(annotations_pb2.http):
            out.extend(_rule_bindings(options.Extensions[annotations_pb2.http], method, True))
    return out


def load_services(modules: Iterable[ModuleType]) -> list[ServiceDescriptor]:
    """The services defined in the given generated `*_pb2` modules."""
    return [svc for mod in modules for svc in mod.DESCRIPTOR.services_by_name.values()]


@dataclass(frozen=True)
class Match:
    binding: Binding | None
    variables: dict[str, str] = field(default_factory=dict)
    # Methods the path accepts, for 405 answers when `binding` is None.
    allowed: tuple[str, ...] = ()
    # The matched binding's template, else the most specific one the path matches under
    # any method; None when no template matches (a bounded label for metrics and logs).
    template: str | None = None


class RouteTable:
    """All bindings of all services, matched most specific first."""

    def __init__(self, services: Sequence[ServiceDescriptor]) -> None:
        bindings = [b for svc in services for b in bindings_of(svc)]
        self.bindings: tuple[Binding, ...] = tuple(
            sorted(bindings, key=lambda b: b.template.specificity)
        )

    def match(self, http_method: str, path: str) -> Match:
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]  # Rails routes ignore one trailing slash
        allowed: list[str] = []
        first: str | None = None
        for binding in self.bindings:
            variables = binding.template.match(path)
            if variables is None:
                continue
            if binding.http_method == http_method:
                return Match(binding, variables, template=binding.template.text)
            first = first or binding.template.text
            if binding.http_method not in allowed:
                allowed.append(binding.http_method)
        return Match(None, allowed=tuple(allowed), template=first)

    def methods(self, service: ServiceDescriptor) -> list[MethodDescriptor]:
        seen: dict[str, MethodDescriptor] = {}
        for b in self.bindings:
            if b.service is service:
                seen.setdefault(b.method.name, b.method)
        return list(seen.values())
