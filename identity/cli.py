"""`vmesh identity ...`: run the mesh's certificate authority and manage join tokens."""

import argparse
import json
import logging
import socket
import time
from datetime import timedelta
from pathlib import Path

from vm_mesh import defaults, paths
from vm_mesh.cli import add_command
from vm_mesh.errors import UserError

# Days of validity left below which `vmesh identity status` fails.
ISSUER_MIN_DAYS = 30
ANCHOR_MIN_DAYS = 180


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `vmesh identity` and its subcommands."""
    parser = add_command(commands, "identity", "Run the mesh's certificate authority.")
    sub = parser.add_subparsers(dest="identity_command", metavar="SUBCOMMAND", required=True)

    init = add_command(sub, "init", "Create the trust anchor (10 years) and issuer (1 year).")
    init.add_argument("--trust-domain", default=defaults.TRUST_DOMAIN)
    init.add_argument(
        "--anchor-passphrase-file",
        type=Path,
        help="encrypt the anchor key with the passphrase in this file",
    )
    init.set_defaults(handler=_init)

    serve = add_command(sub, "serve", "Run the identity service (HTTPS, CSR signing).")
    serve.add_argument(
        "--listen",
        default=f"0.0.0.0:{defaults.IDENTITY_PORT}",
        help="address:port to listen on (default %(default)s)",
    )
    serve.add_argument("--leaf-ttl", default="24h", help="lifetime of issued leaves")
    serve.add_argument(
        "--san",
        action="append",
        default=[],
        help="extra DNS name or IP for the service's certificate (repeatable)",
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        default=defaults.IDENTITY_MAX_CONNECTIONS,
        help="connections open at once; beyond it no more are accepted until one closes "
             "(default %(default)s)",
    )
    serve.set_defaults(handler=_serve)

    token = add_command(sub, "token", "Create, list and revoke one-time join tokens.")
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = add_command(token_sub, "create", "Create a one-time token for a host to join.")
    create.add_argument("--host", required=True, help="the only host that may use it")
    create.add_argument("--services", required=True, help="comma-separated services it may join as")
    create.add_argument("--ttl", default="1h", help="how long the token stays valid")
    create.set_defaults(handler=_token_create)
    listing = add_command(token_sub, "list", "List tokens and their state.")
    listing.add_argument("--json", action="store_true", help="one JSON object per token")
    listing.set_defaults(handler=_token_list)
    revoke = add_command(token_sub, "revoke", "Revoke a token so it can no longer be used.")
    revoke.add_argument("token_id")
    revoke.set_defaults(handler=_token_revoke)

    revoke_host = add_command(sub, "revoke-host", "Refuse every further certificate for a host.")
    revoke_host.add_argument("host")
    revoke_host.set_defaults(handler=_revoke_host)

    operator = add_command(sub, "operator", "Issue an operator certificate for the console.")
    operator.add_argument("name")
    operator.add_argument("--out", type=Path, help="directory (default: the operator state dir)")
    operator.add_argument("--ttl", default="24h", help="lifetime of the certificate")
    operator.set_defaults(handler=_operator)

    rotate = add_command(sub, "rotate", "Add a new anchor and issuer; the old stay trusted.")
    rotate.add_argument("--anchor-passphrase-file", type=Path)
    rotate.set_defaults(handler=_rotate)

    retire = add_command(sub, "retire", "Remove an old generation's anchor from the bundle.")
    retire.add_argument("generation", type=int)
    retire.set_defaults(handler=_retire)

    status = add_command(sub, "status", "Show anchors, issuers, leaves and expiries.")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)


def _ca_dir() -> Path:
    return paths.state_dir("identity")


def _seconds(text: str, what: str) -> float:
    from vm_mesh.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UserError(f"{what}: {exc}") from None


def _passphrase(path: Path | None) -> bytes | None:
    if path is None:
        return None
    secret = path.read_bytes().strip()
    if not secret:
        raise UserError(f"passphrase file {path} is empty")
    return secret


def _init(args: argparse.Namespace) -> int:
    from identity import castate

    try:
        castate.init(_ca_dir(), args.trust_domain, _passphrase(args.anchor_passphrase_file))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    print(f"created trust anchor and issuer for {args.trust_domain} in {_ca_dir()}")
    print(f"trust bundle: {_ca_dir() / 'bundle.pem'}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from identity import castate
    from identity.authority import Authority
    from identity.errors import Rejection
    from identity.ratelimit import RateLimiter
    from identity.service import IdentityServer
    from identity.store import Store
    from vm_mesh import logs

    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--listen {args.listen!r}: expected address:port")
    logs.configure()
    ca = castate.load(_ca_dir())
    authority = Authority(
        ca, Store(ca.database), timedelta(seconds=_seconds(args.leaf_ttl, "--leaf-ttl"))
    )
    try:
        authority.check_issuer(time.time())
    except Rejection as exc:
        raise UserError(exc.detail) from None
    names = sorted(
        {socket.gethostname(), "localhost", "127.0.0.1", *args.san}
        | ({host} if host not in ("0.0.0.0", "::") else set())
    )
    if args.max_connections < 1:
        raise UserError(f"--max-connections {args.max_connections}: must be at least 1")
    server = IdentityServer((host.strip("[]"), int(port)), authority, names, RateLimiter(),
                            max_connections=args.max_connections)
    logging.getLogger("vmesh.identity").info(
        "identity service listening",
        extra={"listen": f"{host}:{server.server_address[1]}", "trust_domain": ca.trust_domain},
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def _store():
    from identity import castate
    from identity.store import Store

    ca = castate.load(_ca_dir())
    return ca, Store(ca.database)


def _token_create(args: argparse.Namespace) -> int:
    from identity import castate, spiffe
    from identity.tokens import TokenRecord, anchor_pin, hash_secret, new_token

    ca, store = _store()
    services = tuple(s.strip() for s in args.services.split(",") if s.strip())
    try:
        for service in services:
            spiffe.check_name(service, "service name")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if not services:
        raise UserError("--services needs at least one service name")
    ttl = _seconds(args.ttl, "--ttl")
    token = new_token(anchor_pin(castate.served_anchor(ca)))
    now = time.time()
    store.add_token(
        TokenRecord(
            token.token_id,
            hash_secret(token.secret),
            args.host,
            services,
            created_at=now,
            expires_at=now + ttl,
        )
    )
    print(token)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    _, store = _store()
    now = time.time()
    rows = [
        {
            "id": t.token_id,
            "host": t.host,
            "services": list(t.services),
            "state": t.state(now),
            "expires_in_s": round(t.expires_at - now),
        }
        for t in store.tokens()
    ]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{'ID':<14}{'HOST':<20}{'SERVICES':<24}{'STATE':<9}EXPIRES_IN")
    for row in rows:
        print(
            f"{row['id']:<14}{row['host']:<20}{','.join(row['services']):<24}"
            f"{row['state']:<9}{_human(row['expires_in_s'])}"
        )
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    _, store = _store()
    if not store.revoke_token(args.token_id):
        raise UserError(f"no token {args.token_id} (see `vmesh identity token list`)")
    print(f"revoked token {args.token_id}")
    return 0


def _revoke_host(args: argparse.Namespace) -> int:
    _, store = _store()
    store.revoke_host(args.host, time.time())
    print(f"host {args.host} revoked: its certificates will not be renewed")
    return 0


def _operator(args: argparse.Namespace) -> int:
    from identity import castate, pki, spiffe
    from identity.client import LeafFiles

    ca = castate.load(_ca_dir())
    try:
        identity = spiffe.make(ca.trust_domain, "operator", args.name)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    key = pki.generate_key()
    leaf = pki.issue_leaf(
        ca.active,
        key.public_key(),
        spiffe_id=str(identity),
        common_name=args.name,
        trust_domain=ca.trust_domain,
        lifetime=timedelta(seconds=_seconds(args.ttl, "--ttl")),
    )
    out = args.out or paths.state_dir("operator")
    LeafFiles(out).save(pki.key_pem(key), pki.cert_pem(leaf, ca.active.cert).decode(),
                        pki.cert_pem(*ca.bundle).decode())
    expires = f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M}Z"
    print(f"operator certificate for {identity} in {out} (expires {expires})")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from identity import castate

    number = castate.rotate(_ca_dir(), _passphrase(args.anchor_passphrase_file))
    print(f"generation {number} is active; older anchors stay in the bundle until retired")
    return 0


def _retire(args: argparse.Namespace) -> int:
    from identity import castate

    castate.retire(_ca_dir(), args.generation)
    print(f"generation {args.generation} retired from the trust bundle")
    return 0


def _status(args: argparse.Namespace) -> int:
    from identity import castate
    from identity.issuer_checks import check_issuer_constraints
    from identity.store import Store
    from vm_mesh.findings import Status

    ca = castate.load(_ca_dir())
    warnings = [finding for finding in check_issuer_constraints(ca.trust_domain, ca.issuing,
                                                                ca.generations)
                if finding.status is Status.WARN]
    now = time.time()
    leaves = [c for c in Store(ca.database).all_issued() if c.not_after > now]
    rows, problems = [], []
    for gen in ca.generations:
        for role, cert, minimum in (
            ("anchor", gen.anchor, ANCHOR_MIN_DAYS),
            ("issuer", gen.issuer, ISSUER_MIN_DAYS),
        ):
            days_left = (cert.not_valid_after_utc.timestamp() - now) / 86400
            row = {
                "generation": gen.number,
                "role": role,
                "retired": gen.retired,
                "active": gen.issuer == ca.active.cert,
                "serial": format(cert.serial_number, "x"),
                "not_after": cert.not_valid_after_utc.isoformat(),
                "days_left": round(days_left, 1),
            }
            if role == "issuer":
                row["valid_leaves"] = sum(
                    1 for c in leaves if c.issuer_serial == format(cert.serial_number, "x")
                )
            rows.append(row)
            if gen.issuer == ca.active.cert and days_left < minimum:
                problems.append(
                    f"{role} of generation {gen.number} has {days_left:.0f} days left "
                    f"(< {minimum}): run `vmesh identity rotate`"
                )
    if args.json:
        print(
            json.dumps(
                {
                    "trust_domain": ca.trust_domain,
                    "certificates": rows,
                    "valid_leaves": len(leaves),
                    "problems": problems,
                    "warnings": [{"reason": w.reason, "target": w.target,
                                  "message": w.message, "hint": w.hint} for w in warnings],
                }
            )
        )
    else:
        print(f"trust domain {ca.trust_domain}: {len(leaves)} valid leaves")
        print(f"{'GEN':<5}{'ROLE':<8}{'NOT_AFTER':<27}{'DAYS_LEFT':<11}{'LEAVES':<8}STATE")
        for row in rows:
            print(
                f"{row['generation']:<5}{row['role']:<8}{row['not_after']:<27}{row['days_left']:<11}"
                f"{row.get('valid_leaves', ''):<8}{'retired' if row['retired'] else 'trusted'}"
            )
        for problem in problems:
            print(f"PROBLEM: {problem}")
        for warning in warnings:
            print(warning.line())
    return 1 if problems else 0


def _human(seconds: float) -> str:
    if seconds <= 0:
        return "-"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
