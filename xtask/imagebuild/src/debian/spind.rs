//! Stage spind: `cargo build --release -p spind --target T`, copied to the board's directory.
//! Cargo does the caching; the binary's hash is what later stages key on.

use std::fs;

use anyhow::{Context, Result};
use runner::cmd;
use runner::host::{human, sha256_file};

use super::Ctx;
use crate::stage::Stage;
use crate::toolchain;

pub fn build(ctx: &Ctx) -> Result<Stage> {
    let target = ctx.board.rust_target.as_str();
    let native = toolchain::ensure_rust_target(target)?;
    let sh = crate::paths::shell()?;
    let cargo = crate::paths::cargo();
    // For the host's own target, build without --target: the same artifacts as
    // `cargo build --release` (shared with the benchmarks, no second full build).
    let target_args: &[&str] = if native { &[] } else { &["--target", target] };
    let mut c = cmd!(sh, "{cargo} build --release --locked -p spind {target_args...}");
    if target.ends_with("-musl") {
        // Static musl binaries link with the linker rustup ships: no cross C toolchain needed.
        c = c.env_default(&format!("CARGO_TARGET_{}_LINKER", target.to_uppercase().replace('-', "_")), "rust-lld");
    }
    if let Some((cc, _)) = toolchain::cross_cc(target) {
        // C in the dependency tree (cc-rs) is compiled with the cross gcc (host tools check).
        c = c.env_default(&format!("CC_{}", target.replace('-', "_")), cc);
    }
    c.run_logged(&format!("cargo build spind ({target})"), &ctx.logs.join("spind.log"))?;
    let built = if native {
        crate::paths::target_dir().join("release/spind")
    } else {
        crate::paths::target_dir().join(target).join("release/spind")
    };
    let dest = ctx.dir.join("spind");
    fs::copy(&built, &dest).with_context(|| format!("cannot copy {}", built.display()))?;
    let key = sha256_file(&dest)?;
    eprintln!("  spind for {target}: {} (sha256 {})", human(runner::host::file_size(&dest)), &key[..16]);
    Ok(Stage { path: dest, key, cached: false })
}
