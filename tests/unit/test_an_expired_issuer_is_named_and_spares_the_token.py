"""A CA whose issuer has expired refuses to issue with a reason that says what to do (rotate),
and a join token sent to it meanwhile stays unused."""

import time
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from identity import castate, pki
from identity.authority import Authority
from identity.errors import Rejection
from identity.store import Store
from identity.tokens import TokenRecord, anchor_pin, hash_secret, new_token


def test_a_join_after_the_issuer_expired_is_refused_and_keeps_its_token(tmp_path: Path) -> None:
    castate.init(tmp_path, "vmesh.local", now=pki.utcnow() - timedelta(days=400))
    ca = castate.load(tmp_path)  # the issuer (1 year) expired 35 days ago, the anchor holds
    store = Store(ca.database)
    token = new_token(anchor_pin(ca.bundle[0]))
    now = time.time()
    store.add_token(TokenRecord(token.token_id, hash_secret(token.secret), "h1", ("api",),
                                created_at=now, expires_at=now + 3600))
    key = pki.generate_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier("spiffe://vmesh.local/svc/api")]), critical=True)
        .sign(key, hashes.SHA256())
    )
    body = {"token": str(token), "host": "h1",
            "csr": csr.public_bytes(serialization.Encoding.PEM).decode()}

    try:
        Authority(ca, store).join(body, now=now)
    except Rejection as rejection:
        refused = rejection
    else:
        raise AssertionError("a leaf was issued by an expired issuer")

    assert (refused.reason, refused.status) == ("ca.issuer_expired", 503)
    assert "vmesh identity rotate" in refused.detail
    record = store.token(token.token_id)
    assert record is not None and record.state(now) == "valid"
