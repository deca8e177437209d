"""The loaded policy: immutable, indexed by destination service, every part with its source."""

import hashlib
import json
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar, cast

from vm_mesh.policy.model import Authorization, Document, HTTPRoute, Mirror, ServicePolicy
from vm_mesh.schema import dump

D = TypeVar("D", bound=Document)


@dataclass(frozen=True, slots=True)
class Source:
    """Where a document came from: file (or KV key), 1-based document index, first line."""

    file: str
    document: int
    line: int

    def __str__(self) -> str:
        return f"{self.file}#{self.document}"


@dataclass(frozen=True, slots=True)
class Sourced(Generic[D]):
    """A policy document together with its source."""

    doc: D
    source: Source


def _of_kind(documents: list[Sourced[Document]], kind: type[D]) -> list[Sourced[D]]:
    # isinstance narrows each `d.doc`, not `d`: the cast states what the filter established
    return cast("list[Sourced[D]]", [d for d in documents if isinstance(d.doc, kind)])


def _by_service(items: list[Sourced[Any]]) -> MappingProxyType[str, tuple[Sourced[Any], ...]]:
    grouped: dict[str, list[Sourced[Any]]] = {}
    for item in items:
        grouped.setdefault(item.doc.service or "", []).append(item)
    return MappingProxyType({k: tuple(v) for k, v in grouped.items()})


@dataclass(frozen=True)
class PolicySet:
    """Every effective policy document, in load order (files sorted, documents in file order)."""

    files: tuple[str, ...] = ()
    documents: tuple[Sourced[Document], ...] = ()
    _routes: MappingProxyType[str, tuple[Sourced[HTTPRoute], ...]] = field(
        default_factory=lambda: MappingProxyType({}), repr=False
    )
    _policies: MappingProxyType[str, Sourced[ServicePolicy]] = field(
        default_factory=lambda: MappingProxyType({}), repr=False
    )
    _mirrors: MappingProxyType[str, tuple[Sourced[Mirror], ...]] = field(
        default_factory=lambda: MappingProxyType({}), repr=False
    )
    _authorizations: MappingProxyType[str, tuple[Sourced[Authorization], ...]] = field(
        default_factory=lambda: MappingProxyType({}), repr=False
    )

    @classmethod
    def build(cls, files: tuple[str, ...], documents: list[Sourced[Document]]) -> "PolicySet":
        """Index validated documents (the loader has already rejected duplicates)."""
        return cls(
            files=files,
            documents=tuple(documents),
            _routes=_by_service(_of_kind(documents, HTTPRoute)),
            _policies=MappingProxyType(
                {d.doc.service: d for d in _of_kind(documents, ServicePolicy)}
            ),
            _mirrors=_by_service(_of_kind(documents, Mirror)),
            _authorizations=_by_service(_of_kind(documents, Authorization)),
        )

    def routes_for(self, service: str) -> tuple[Sourced[HTTPRoute], ...]:
        return self._routes.get(service, ())

    def service_policy(self, service: str) -> Sourced[ServicePolicy] | None:
        return self._policies.get(service)

    def mirrors_for(self, service: str) -> tuple[Sourced[Mirror], ...]:
        return self._mirrors.get(service, ())

    def authorizations_for(self, service: str) -> tuple[Sourced[Authorization], ...]:
        """The service's own Authorization documents (mesh-wide ones: `mesh_authorizations`)."""
        return self._authorizations.get(service, ()) if service else ()

    def mesh_authorizations(self) -> tuple[Sourced[Authorization], ...]:
        return self._authorizations.get("", ())

    def services(self) -> list[str]:
        """Every destination service some document names."""
        return sorted({s for d in self.documents if (s := d.doc.service)})

    def describe(self) -> list[dict[str, Any]]:
        """The `/v1/config` view: each document, its source and its effective settings."""
        return [
            {
                "kind": item.doc.kind,
                "service": item.doc.service,
                "name": item.doc.name,
                "source": {
                    "file": item.source.file,
                    "document": item.source.document,
                    "line": item.source.line,
                },
                "spec": dump(item.doc),
            }
            for item in self.documents
        ]

    def digest(self) -> str:
        """A short fingerprint of the effective policy (logged on reload)."""
        text = json.dumps(self.describe(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def __len__(self) -> int:
        return len(self.documents)
