#!/usr/bin/env bash
# Installs the host tools the tests and image builds need, on Debian 12 (run as root).
# Idempotent: a package already installed costs nothing. `.ci/run` calls it on a fresh machine.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "setup-host.sh: run as root (it installs Debian packages with apt-get)" >&2
    exit 1
fi

packages=(
    # namespace topologies and real traffic for spind's integration tests
    iproute2 nftables conntrack dnsmasq-base dnsutils curl tcpdump
    # real MQTT clients for manual checks and tests
    mosquitto-clients
    # a real external broker for the pubsub_run_mosquitto = 0 tests
    mosquitto
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup-host.sh: installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
