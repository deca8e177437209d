"""Reading policy files: YAML documents in, a PolicySet or every error (file:line: reason) out.

Each document is composed into a node tree first, so that a problem's
location (`rules.0.matches.0.path`) can be mapped back to the line that holds
the offending value. Every document of every file is checked; the caller gets
all errors at once, never just the first.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from vm_mesh.policy.files import PolicyError, PolicyInvalid, policy_files
from vm_mesh.policy.model import DOCUMENT_KINDS, Authorization, Document, HTTPRoute, Mirror
from vm_mesh.policy.policyset import PolicySet, Source, Sourced
from vm_mesh.schema import Invalid, load


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: `on`, `off`, `yes`, `no` stay strings (`retry: {on:}`)."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass(slots=True)
class _Parsed:
    doc: Document
    source: Source
    node: Node


def load_dir(directory: Path | None = None) -> PolicySet:
    """Load every `*.yaml` of the policy directory; raises PolicyInvalid with all errors."""
    return load_files(policy_files(directory))


def load_files(files: Iterable[Path], extra: Iterable[tuple[str, str]] = ()) -> PolicySet:
    """Load files (then `extra` named texts, e.g. Consul keys); PolicyInvalid lists all errors."""
    texts = []
    errors: list[PolicyError] = []
    for path in files:
        try:
            texts.append((str(path), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(PolicyError(str(path), 0, f"cannot read: {exc}", "policy.unreadable"))
    texts.extend(extra)
    try:
        policy = load_texts(texts)
    except PolicyInvalid as exc:
        errors.extend(exc.errors)
    if errors:
        raise PolicyInvalid(errors)
    return policy


def load_texts(texts: Iterable[tuple[str, str]]) -> PolicySet:
    """Load (name, YAML text) pairs, e.g. files or Consul KV entries, into one PolicySet."""
    parsed: list[_Parsed] = []
    errors: list[PolicyError] = []
    names = []
    for name, text in texts:
        names.append(name)
        parsed.extend(_parse_text(name, text, errors))
    errors.extend(_decides_nothing(parsed))
    errors.extend(_cross_check(parsed))
    if errors:
        raise PolicyInvalid(errors)
    return PolicySet.build(tuple(names), [Sourced(p.doc, p.source) for p in parsed])


def _parse_text(name: str, text: str, errors: list[PolicyError]) -> list[_Parsed]:
    parsed: list[_Parsed] = []
    try:
        loader = _Yaml12Loader(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, say a control one
        line = text.count("\n", 0, exc.position) + 1
        errors.append(PolicyError(name, line, f"invalid YAML: {exc.reason} "
                                  f"(character #x{exc.character:02x})", "policy.yaml_syntax"))
        return parsed
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            index += 1
            _check_duplicate_keys(name, node, errors)
            data = loader.construct_document(node)
            if data is None:
                continue
            doc = _validate(name, index, node, data, errors)
            if doc is not None:
                parsed.append(_Parsed(doc, Source(name, index, _line(node)), node))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        problem = exc.problem or exc.context or "malformed document"
        errors.append(PolicyError(name, line, f"invalid YAML: {problem}", "policy.yaml_syntax"))
    finally:
        loader.dispose()
    return parsed


def _validate(
    name: str, index: int, node: Node, data: Any, errors: list[PolicyError]
) -> Document | None:
    if not isinstance(data, dict):
        reason = "a policy document must be a mapping"
        errors.append(PolicyError(name, _line(node), reason, "policy.not_mapping"))
        return None
    kind = data.get("kind")
    if not isinstance(kind, str) or (model := DOCUMENT_KINDS.get(kind)) is None:
        expected = ", ".join(DOCUMENT_KINDS)
        where = _node_at(node, ("kind",)) if "kind" in data else node
        errors.append(
            PolicyError(
                name,
                _line(where),
                f"document {index}: unknown kind {kind!r} (expected one of {expected})",
                "policy.unknown_kind",
            )
        )
        return None
    try:
        return load(model, data)
    except Invalid as exc:
        label = _label(kind, data, index)
        found = []
        for problem in exc.problems:
            target = _node_at(node, problem.loc, key=problem.kind == "extra_forbidden")
            found.append(
                PolicyError(name, _line(target), f"{label}: {problem}", f"policy.{problem.kind}")
            )
        errors.extend(sorted(found, key=lambda e: e.line))
        return None


def _label(kind: str, data: dict[str, Any], index: int) -> str:
    for key in ("name", "service"):
        if isinstance(data.get(key), str):
            return f"{kind} {data[key]}"
    return f"{kind} (document {index})"


def _node_at(node: Node, loc: tuple[Any, ...], key: bool = False) -> Node:
    """The node at a field location (the key node itself when `key`), or the deepest parent."""
    for i, part in enumerate(loc):
        if isinstance(node, MappingNode):
            pair = next(((k, v) for k, v in node.value if _key(k) == str(part)), None)
            if pair is None:
                return node
            node = pair[0] if key and i == len(loc) - 1 else pair[1]
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return node
    return node


def _key(node: Node) -> str | None:
    return node.value if isinstance(node, ScalarNode) else None


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _check_duplicate_keys(name: str, node: Node, errors: list[PolicyError]) -> None:
    if isinstance(node, MappingNode):
        seen: dict[str, int] = {}
        for key_node, value in node.value:
            key = _key(key_node)
            if key is not None and key in seen:
                errors.append(
                    PolicyError(
                        name,
                        _line(key_node),
                        f"duplicate key {key!r} (first at line {seen[key]})",
                        "policy.duplicate_key",
                    )
                )
            elif key is not None:
                seen[key] = _line(key_node)
            _check_duplicate_keys(name, value, errors)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            _check_duplicate_keys(name, item, errors)


def _decides_nothing(parsed: list[_Parsed]) -> list[PolicyError]:
    """Authorization documents with neither rules nor a default: loaded, they would change no
    decision while their author believes the service protected."""
    errors = []
    for item in parsed:
        doc = item.doc
        if isinstance(doc, Authorization) and not doc.rules and doc.default is None:
            label = doc.name or doc.service or f"(document {item.source.document})"
            errors.append(PolicyError(
                item.source.file,
                _line(_node_at(item.node, ("rules",))),
                f"Authorization {label}: decides nothing: it has no rules and no default; "
                "give it rules, or a default (deny, allow-mesh, allow-all)",
                "policy.empty_authorization",
            ))
    return errors


def _cross_check(parsed: list[_Parsed]) -> list[PolicyError]:
    """Rules that span documents: unique names, one ServicePolicy per service, known routes."""
    errors = []
    first: dict[tuple[str, ...], Source] = {}
    routes: dict[str, set[str]] = {}
    for item in parsed:
        doc = item.doc
        identity: tuple[str, ...] | None
        if isinstance(doc, HTTPRoute):
            routes.setdefault(doc.service, set()).add(doc.name)
            identity = (doc.kind, doc.service, doc.name)
        elif isinstance(doc, Mirror):
            identity = (doc.kind, doc.service, doc.to)
        elif doc.kind == "ServicePolicy":
            identity = (doc.kind, doc.service)
        else:
            identity = (doc.kind, doc.service or "", doc.name) if doc.name else None
        if identity is None:
            continue
        if identity in first:
            earlier = first[identity]
            errors.append(
                PolicyError(
                    item.source.file,
                    item.source.line,
                    f"{' '.join(identity)}: already defined at {earlier.file}:{earlier.line}",
                    "policy.duplicate",
                )
            )
        else:
            first[identity] = item.source
    for item in parsed:
        if isinstance(item.doc, Authorization) and item.doc.service:
            known = routes.get(item.doc.service, set())
            for i, rule in enumerate(item.doc.rules):
                for j, route in enumerate(rule.routes or ()):
                    if route not in known:
                        node = _node_at(item.node, ("rules", i, "routes", j))
                        errors.append(
                            PolicyError(
                                item.source.file,
                                _line(node),
                                f"Authorization {item.doc.name or item.doc.service}: "
                                f"rules[{i}].routes[{j}]: no HTTPRoute {route!r} "
                                f"for service {item.doc.service}",
                                "policy.unknown_route",
                            )
                        )
    return errors
