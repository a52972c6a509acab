#!/bin/sh
# mmdebstrap --setup-hook: runs on the host before any package is unpacked; $1 is the new root.
# Board values come from the environment set by `cargo xtask image`:
#   SPIN_INITRAMFS_MODULES  space-separated modules the initramfs gets (MODULES=list: only these
#                           and their dependencies), so the initrd stays small and builds fast.
set -eu
root="$1"
mkdir -p "$root/etc/initramfs-tools/conf.d" "$root/usr/share/initramfs-tools/modules.d"
printf '# Only the modules listed in modules.d (written by cargo xtask image)\nMODULES=list\n' \
    > "$root/etc/initramfs-tools/conf.d/spin.conf"
# Not /etc/initramfs-tools/modules: that is a conffile of initramfs-tools.
: > "$root/usr/share/initramfs-tools/modules.d/spin.conf"
for m in ${SPIN_INITRAMFS_MODULES:-}; do
    printf '%s\n' "$m" >> "$root/usr/share/initramfs-tools/modules.d/spin.conf"
done
