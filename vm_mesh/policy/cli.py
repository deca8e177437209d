"""`vmesh policy ...`: check traffic policy files before shipping them."""

import argparse
from collections import Counter
from pathlib import Path

from vm_mesh.cli import add_command
from vm_mesh.errors import UserError
from vm_mesh.schema import dump


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `vmesh policy` and its subcommands."""
    parser = add_command(commands, "policy", "Check traffic policy files (routes, authz, ...).")
    sub = parser.add_subparsers(dest="policy_command", metavar="SUBCOMMAND", required=True)
    check = add_command(
        sub, "check", "Validate policy files; print every error as file:line: reason."
    )
    check.add_argument(
        "files",
        nargs="*",
        type=Path,
        help="policy files or directories (default: every *.yaml in the policy directory)",
    )
    check.set_defaults(handler=_check)
    explain = add_command(
        sub,
        "explain",
        "Show which route, backends, timeouts, retries, failover and authorization one request "
        "gets.",
    )
    explain.add_argument("service", help="destination service")
    explain.add_argument("target", nargs="?", default="/", help="request target, e.g. /v2/x?q=1")
    explain.add_argument("-X", "--method", default="GET", help="request method (default GET)")
    explain.add_argument(
        "-H", "--header", action="append", default=[], metavar="NAME:VALUE", help="request header"
    )
    explain.add_argument(
        "--from", dest="peer", metavar="SPIFFE_ID", help="caller identity (default: none)"
    )
    explain.add_argument("--trust-domain", default=None, help="mesh trust domain")
    explain.add_argument("--json", action="store_true", help="print JSON")
    explain.add_argument(
        "--policy-dir", type=Path, default=None, help="policy directory (default: the host's)"
    )
    explain.set_defaults(handler=_explain)


def _check(args: argparse.Namespace) -> int:
    from vm_mesh import paths
    from vm_mesh.policy.files import PolicyInvalid, policy_files
    from vm_mesh.policy.loader import load_files

    files: list[Path] = []
    for given in args.files:
        files.extend(policy_files(given) if given.is_dir() else [given])
    if not args.files:  # the host's policy: a missing directory is no policy, as for the proxy
        files = policy_files(paths.policy_dir())
    try:
        policy = load_files(files)
    except PolicyInvalid as exc:
        for error in exc.errors:
            print(error)
        count = len(exc.errors)
        raise UserError(f"policy check failed: {count} error{'s' * (count != 1)}") from None
    kinds = Counter(item.doc.kind for item in policy.documents)
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "no documents"
    services = ", ".join(policy.services()) or "none"
    count = len(files)
    print(f"policy OK: {count} file{'s' * (count != 1)}, {summary}; services: {services}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    import json

    from proxy.authz import AuthzRequest
    from proxy.normalize import BadPath, normalize_target
    from proxy.route import RequestFacts
    from proxy.traffic import TrafficPolicy
    from vm_mesh import defaults
    from vm_mesh.durations import format_duration
    from vm_mesh.policy.files import PolicyInvalid
    from vm_mesh.policy.loader import load_dir

    try:
        policy = load_dir(args.policy_dir)
    except PolicyInvalid as exc:
        raise UserError(
            f"the policy does not load ({len(exc.errors)} errors); run `vmesh policy check`"
        ) from None
    try:
        target = normalize_target(args.target)
    except BadPath as exc:
        raise UserError(f"a proxy rejects this target: {exc.reason}") from None
    headers = []
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep:
            raise UserError(f"header {header!r} must look like NAME:VALUE")
        headers.append((name.strip(), value.strip()))
    traffic = TrafficPolicy(policy, args.trust_domain or defaults.TRUST_DOMAIN)
    service = traffic.service(args.service)
    facts = RequestFacts.build(args.method, target.path, target.query, headers)
    plan = service.plan(facts)
    decision = traffic.authorizer(args.service).decide(
        AuthzRequest(args.peer, args.method, target.path, plan.target.route_name)
    )
    timeouts = plan.target.timeouts
    source = plan.target.source
    result = {
        "service": args.service,
        "path": target.path,
        "route": plan.target.route,
        "source": f"{source.file}:{source.line}" if source else None,
        "backends": {b.service: b.weight for b in plan.split.backends},
        "timeout": {
            "request": format_duration(timeouts.request) if timeouts.request else None,
            "per_try": format_duration(timeouts.per_try) if timeouts.per_try else None,
        },
        "retry": dump(plan.target.retry) if plan.target.retry else None,
        "mirrors": {m.to: m.percent for m in service.mirrors.targets},
        "failover": list(service.failover),
        "authorization": {
            "decision": decision.verdict, "rule": decision.rule, "reason": decision.reason
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for key, value in result.items():
        print(f"{key + ':':<15}{_plain(value)}")
    return 0


def _plain(value: object) -> str:
    """A compact one-line rendering of an `explain` value."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        return " ".join(f"{k}={_plain(v)}" for k, v in value.items() if v is not None) or "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return str(value)
