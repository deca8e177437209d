"""`python -m identity.renew URL DIRECTORY`: renew the leaf in DIRECTORY once, from the identity
service at URL.

What a proxy's renewal loop (identity.renewer) runs when a renewal is due: the new key, the CSR
and `cryptography` live in this short process, never in the long-running proxy. On success it
prints the new leaf as one JSON object (`identity`, `serial`, `not_after`) and exits 0; on a
failure to renew it prints the reason as one line to stderr and exits 1.
"""

import asyncio
import json
import ssl
import sys
from pathlib import Path

import httpx

from identity import pki
from identity.client import IdentityRefused, renew
from vm_mesh.errors import UserError


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m identity.renew URL DIRECTORY", file=sys.stderr)
        return 2
    url, directory = argv
    try:
        leaf = asyncio.run(renew(url, Path(directory)))
    except (httpx.HTTPError, IdentityRefused, OSError, ssl.SSLError, UserError,
            ValueError) as exc:
        print(f"{type(exc).__name__}: {exc}".replace("\n", " "), file=sys.stderr)
        return 1
    print(json.dumps({
        "identity": str(pki.identity_of(leaf)),
        "serial": pki.new_serial_hex(leaf),
        "not_after": leaf.not_valid_after_utc.isoformat(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
