#!/usr/bin/env bash
# Installs the host tools the tests and image builds need, on Debian 12 (run as root): the same
# as `cargo xtask setup`, whose package list (xtask/runner/src/host.rs) is the only one. Kept for
# muscle memory; `cargo xtask test` (and so .ci/run) runs the set-up itself.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo xtask setup "$@"
