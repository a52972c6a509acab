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
    iproute2 iputils-ping nftables conntrack dnsmasq-base dnsutils curl tcpdump
    # the web UI's tests run in a real browser; TLS tests make a certificate with openssl
    chromium chromium-driver openssl
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

# --- OpenWrt boards (GL.iNet: cargo xtask image --board glinet-*) -------------------------------
# qemu-user runs the cross-built spind (aarch64, mips) in tests; zstd/xz unpack an ImageBuilder
# tarball; python3-venv holds the pinned zig + cargo-zigbuild (target/tools/) for the MIPS build;
# make runs the ImageBuilder. (xtask also installs these itself when it runs as root.)
openwrt_packages=(zstd xz-utils python3-venv make)
openwrt_missing=()
for p in "${openwrt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || openwrt_missing+=("$p")
done
if [ ${#openwrt_missing[@]} -gt 0 ]; then
    echo "setup-host.sh: installing ${openwrt_missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${openwrt_missing[@]}"
fi
if ! dpkg-query -W -f='${Status}' qemu-user-static 2>/dev/null | grep -q "install ok installed"; then
    # QEMU 10 from bookworm-backports when it is configured (the bookworm 7.2 packages conflict
    # with a backports qemu-utils).
    if apt-cache policy qemu-user-static | grep -q -- -backports; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -t bookworm-backports qemu-user-static
    else
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-user-static
    fi
fi

# ---- QEMU tests (cargo xtask qemu-test, issue 6) -------------------------------------------------
# QEMU 10 system emulators from bookworm-backports (the backports source is added above; the
# bookworm 7.2 packages conflict with the backports qemu-utils), busybox for the LAN client's
# DHCP client (udhcpc), a C cross compiler for the rpi3 image's spind (ring, under TLS), and
# OVMF (bookworm's ovmf) to boot the x86_64 image under UEFI.
qemu_backports=(qemu-system-x86 qemu-system-arm)
qemu_packages=(busybox python3 gcc-aarch64-linux-gnu ovmf)
qemu_missing=()
for p in "${qemu_backports[@]}" "${qemu_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || qemu_missing+=("$p")
done
if [ ${#qemu_missing[@]} -gt 0 ]; then
    echo "setup-host.sh: installing ${qemu_missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -t bookworm-backports "${qemu_backports[@]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${qemu_packages[@]}"
fi
# ---- end QEMU tests ----
