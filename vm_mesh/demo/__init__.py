"""`vmesh demo`: a whole mesh on one machine, over mDNS on loopback."""
