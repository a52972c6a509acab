#!/bin/sh
# mmdebstrap --customize-hook: runs on the host after all packages are installed; $1 is the root.
# Only what must run inside the new system lives here (enabling Debian's own units, removing
# state that must be unique per device); the router's files are laid over the root file system
# later, by the overlay stage, so changing them does not rebuild this stage.
set -eu
root="$1"

# Debian's units the router needs (ours are enabled by the overlay's symlinks).
chroot "$root" systemctl enable systemd-networkd.service systemd-resolved.service \
    systemd-timesyncd.service systemd-time-wait-sync.service nftables.service dnsmasq.service \
    ssh.service
# Nothing waits for "network online": the WAN may have no DHCP server behind it.
chroot "$root" systemctl disable systemd-networkd-wait-online.service 2>/dev/null || true

# Unique per device: created by the first boot (spin-firstboot.service), never shipped.
rm -f "$root"/etc/ssh/ssh_host_*
printf 'uninitialized\n' > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root/var/lib/systemd/random-seed"
# Root stays locked ('*') until the first boot sets a random password.
chroot "$root" usermod -p '*' root

# Logs and caches of the build itself.
rm -rf "$root"/var/log/apt/* "$root"/var/log/dpkg.log "$root"/var/log/alternatives.log \
    "$root"/var/log/bootstrap.log "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old \
    "$root"/var/cache/ldconfig/aux-cache
