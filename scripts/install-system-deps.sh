#!/usr/bin/env bash
# Installs the Debian packages that vmesh's tests and demo drive for real.
# Idempotent: installs only what is missing, and says what it installs.
# Package services are not started by the install (policy-rc.d): the tests
# start their own haproxy, prometheus, sshd and avahi-daemon on their own terms.
set -euo pipefail

packages=(
    avahi-daemon     # mDNS responder that avahi-browse talks to
    avahi-utils      # avahi-browse: a real mDNS peer for the discovery tests
    curl             # a real HTTP client in the data-plane tests
    dbus             # avahi-daemon needs a system bus
    gcc              # compiles the proxy's request path (setup.py, mypyc)
    haproxy          # the peer the benchmarks compare with
    iproute2         # ip netns for the multi-host tests
    openssh-server   # real SSH hosts for the Ansible tests
    openssl          # independent verification of our certificates
    prometheus       # a real scraper of /metrics
    python3-dev      # Python's headers, for that compile (Debian's python3)
    socat            # raw bytes for bad-input tests
    strace           # proves the identity files are fsynced with their directory
    systemd          # systemd-analyze verify for rendered units
    tcpdump          # packet stamps for bench/compare.py --hops
    testssl.sh       # independent TLS configuration check
    tmux             # a real terminal for the console tests
    wrk              # load generator for bench/
)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "system packages: all ${#packages[@]} present"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "system packages missing: ${missing[*]}" >&2
    echo "run as root (or: sudo bash $0) to install them" >&2
    exit 1
fi

echo "system packages: installing ${missing[*]}"
policy=/usr/sbin/policy-rc.d
placed_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    placed_policy=1
fi
trap '[ "$placed_policy" -eq 1 ] && rm -f "$policy"' EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "system packages: installed ${#missing[@]}"
