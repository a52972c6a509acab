//! End-to-end tests that boot the router images in QEMU live here (see README).
