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
    # ---- images (cargo xtask image, issue 5): root file systems and disks without mounts ----
    mmdebstrap arch-test fdisk dosfstools mtools xz-utils libarchive13 libarchive-tools
    # ---- end images ----
)

# ---- images (issue 5): from bookworm-backports: e2fsprogs >= 1.47.1 (mkfs.ext4 -d TAR) and
# qemu-user-static for arm64 root file systems (qemu-utils here is already the backports one).
backports=(e2fsprogs qemu-user-static)
if ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    cat > /etc/apt/sources.list.d/bookworm-backports.sources <<'SOURCES'
# Added by scripts/setup-host.sh (spin): e2fsprogs >= 1.47.1 and QEMU 10.
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    apt-get update -q
fi
if ! dpkg --compare-versions "$(dpkg-query -W -f='${Version}' e2fsprogs 2>/dev/null)" ge 1.47.1 \
    || ! dpkg-query -W -f='${Status}' qemu-user-static 2>/dev/null | grep -q "install ok installed"; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -t bookworm-backports "${backports[@]}"
fi
# ---- end images ----

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup-host.sh: installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
