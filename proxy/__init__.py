"""vmesh data plane: the sidecar proxy (listeners, HTTP/1.1 and TCP forwarding, admin API)."""
