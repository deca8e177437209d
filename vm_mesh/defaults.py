"""Names, ports and lifetimes shared by every part of vmesh (see DESIGN.md)."""

from datetime import timedelta

TRUST_DOMAIN = "vmesh.local"

OUTBOUND_PORT = 4140
INBOUND_PORT = 4143
ADMIN_PORT = 4191
GATEWAY_PORT = 4180  # a mesh gateway: other sites' mTLS connections, routed by SNI
IDENTITY_PORT = 8443
# The identity service's cap on open connections (`vmesh identity serve --max-connections`).
IDENTITY_MAX_CONNECTIONS = 256

LEAF_LIFETIME = timedelta(hours=24)
ISSUER_LIFETIME = timedelta(days=365)
ANCHOR_LIFETIME = timedelta(days=3650)
RENEW_AT_FRACTION = 0.7
# Certificates are valid from slightly in the past so peers with a skewed clock accept them.
CLOCK_SKEW_BACKDATE = timedelta(minutes=5)

# a service's state directory: trust bundle, key, and leaf + issuer, written together in this
# order, the leaf last (vm_mesh.files.write_together)
LEAF_FILES = ("bundle.pem", "key.pem", "cert.pem")

MDNS_SERVICE_TYPE = "_vmesh._tcp.local."
CLIENT_ID_HEADER = "vmesh-client-id"
ERROR_HEADER = "vmesh-error"
