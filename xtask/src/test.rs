//! `cargo xtask test [LAYER...]`: every test layer, in order, with a summary. The gates (fmt,
//! clippy) come first and stop the run when they fail; then the host set-up (`cargo xtask
//! setup`: as root on Debian it installs what is missing); then the tests. A layer whose
//! prerequisites are missing is reported as skipped with the reason; under CI (`CI=true`) that
//! is a failure, so CI never passes by skipping.

use anyhow::{anyhow, bail, Result};
use imagebuild::board::{OpenWrtArch, OpenWrtBoard};
use imagebuild::{Builder, Detail};
use runner::cmd;
use runner::host::{self, in_ci, is_root};

struct Layer {
    /// What `cargo xtask test NAME` selects it by.
    name: &'static str,
    what: &'static str,
    /// Why the layer cannot run here, if it cannot.
    missing: fn() -> Option<String>,
    run: fn() -> Result<()>,
    /// A failure stops the run (the gates: nothing else is worth running until they pass).
    fail_fast: bool,
}

fn layers() -> Vec<Layer> {
    vec![
        Layer {
            name: "gates",
            what: "gates: cargo fmt --check, cargo clippy --workspace --all-targets --all-features -D warnings",
            missing: || None,
            run: gates,
            fail_fast: true,
        },
        Layer {
            name: "setup",
            what: "host set-up (cargo xtask setup): Debian packages, Rust targets, MIPS nightly, zig",
            missing: || {
                (!(is_root() && host::is_debian()))
                    .then(|| format!("not root on Debian, so nothing is installed; {}", setup_hint()))
            },
            run: crate::setup::setup,
            fail_fast: false,
        },
        Layer {
            name: "unit",
            what: "unit + integration (cargo test --workspace; the real spind binary, real brokers)",
            missing: || None,
            run: unit,
            fail_fast: false,
        },
        Layer {
            name: "fuzz",
            what: "fuzz: every fuzz target of spind's parsers for 15 s (cargo xtask fuzz), no crash",
            missing: crate::fuzz::missing,
            run: || crate::fuzz::run(&["--time".into(), "15".into()]),
            fail_fast: false,
        },
        // ---- image layer (issue 5): the Debian images built end to end, inspected, reassembled ----
        // (the qemu layer boots these same images: its builds come from the cache)
        Layer {
            name: "image",
            what: "image: x86_64 and rpi3 built end to end, inspected, disk assembly reproducible",
            missing: image_missing,
            run: || image_layer("x86_64").and_then(|_| image_layer("rpi3")),
            fail_fast: false,
        },
        Layer {
            name: "openwrt",
            what: "openwrt: spind cross-built for GL.iNet boards, run under qemu-user, .ipk checked",
            missing: openwrt_missing,
            run: openwrt_packages,
            fail_fast: false,
        },
        // ---- qemu layer (issue 6): the images booted in QEMU, driven from LAN and WAN namespaces ----
        Layer {
            name: "qemu",
            what: "qemu: x86_64 and rpi3 images booted in QEMU, end to end (cargo xtask qemu-test)",
            missing: crate::qemu::missing,
            run: || crate::qemu::run(&[]),
            fail_fast: false,
        },
    ]
}

/// What someone without root (or not on Debian) runs to get the host tools.
fn setup_hint() -> String {
    match crate::setup::check() {
        Ok(()) => "every Debian package is there".into(),
        Err(e) => format!("{e:#}"),
    }
}

/// fmt and clippy over the whole workspace; each failure names the command that fixes it.
fn gates() -> Result<()> {
    // A fresh machine's rustup may have neither: the gates come before the set-up.
    imagebuild::toolchain::ensure_components(&["rustfmt", "clippy"])?;
    let sh = crate::shell()?;
    let cargo = imagebuild::cargo();
    if cmd!(sh, "{cargo} fmt --all --check").run().is_err() {
        bail!("cargo fmt --check: the code above is not formatted; fix it with `cargo fmt --all`");
    }
    if cmd!(sh, "{cargo} clippy --workspace --all-targets --all-features --locked -- -D warnings").run().is_err() {
        bail!(
            "cargo clippy: fix the warnings above (`cargo clippy --workspace --all-targets --all-features -- -D warnings`; \
             many have `cargo clippy --fix --workspace --all-targets --all-features --allow-dirty`)"
        );
    }
    Ok(())
}

fn unit() -> Result<()> {
    let sh = crate::shell()?;
    let cargo = imagebuild::cargo();
    // All features: the optional TLS support is tested too.
    let mut c = cmd!(sh, "{cargo} test --workspace --locked --no-fail-fast --all-features");
    // Tests that build network namespaces need root. Outside CI a developer without root
    // still gets the rest, and each such test prints that it was skipped.
    if !is_root() {
        if in_ci() {
            bail!("CI must run as root: the namespace tests need it");
        }
        eprintln!("xtask: not root: namespace tests (router, capture, kernel) will say SKIPPED");
        c = c.env("SPIND_SKIP_ROOT_TESTS", "1");
    }
    Ok(c.run()?)
}

/// Why the image layer cannot run here (mmdebstrap needs root to build a root file system).
pub fn image_missing() -> Option<String> {
    if !is_root() {
        return Some("building images needs root (mmdebstrap --mode=root)".into());
    }
    if !host::is_debian() {
        return Some("building images needs a Debian host (apt, mmdebstrap)".into());
    }
    None
}

/// Builds a board's image (cached stages are reused), inspects it, and assembles the disk a
/// second time to compare.
fn image_layer(name: &str) -> Result<()> {
    crate::image::build(name, imagebuild::Options::default(), false, true).map(|_| ())
}

/// The OpenWrt layer needs qemu-user (installed as root) and rustup.
fn openwrt_missing() -> Option<String> {
    if !host::have("rustup") {
        return Some("no rustup (cross targets and the MIPS nightly come from it)".into());
    }
    let have_qemu = host::have("qemu-aarch64-static") && host::have("qemu-mips-static");
    if !is_root() && !have_qemu {
        return Some("no qemu-user-static (as root xtask installs it)".into());
    }
    None
}

/// Builds spind, the package and the overlay for every GL.iNet board without an ImageBuilder
/// (offline), checks the binary under qemu-user (`spind -v`, `spind -c CONF -C`) and the
/// package's structure, and the aarch64 size target.
fn openwrt_packages() -> Result<()> {
    let mut summary = Vec::new();
    for name in ["glinet-mt3000", "glinet-mt6000", "glinet-ar150"] {
        let board = OpenWrtBoard::load(name)?;
        let out = imagebuild::target_dir().join("test/openwrt").join(name);
        let opts = imagebuild::Options { offline: true, out_dir: Some(out.clone()), ..Default::default() };
        let builder = imagebuild::openwrt::OpenWrtBuilder::new(board.clone(), opts);
        let built = builder.build()?;
        builder.report(&built);
        let Detail::OpenWrt { ipk, spind_size, missing } = &built.detail else {
            bail!("{name}: not built as an OpenWrt board");
        };
        if ipk.extension().is_none_or(|e| e != "ipk") || !ipk.is_file() {
            return Err(anyhow!("{name}: no .ipk built"));
        }
        imagebuild::openwrt::package::verify_ipk(&board, ipk, &out.join("inspect"))?;
        builder.check(&built)?;
        if missing.is_none() {
            bail!("{name}: --offline without --imagebuilder must report the missing ImageBuilder");
        }
        if board.arch == OpenWrtArch::Aarch64 && *spind_size >= 3 << 20 {
            bail!("{name}: stripped spind is {spind_size} bytes, target < 3 MiB");
        }
        let build_secs = imagebuild::openwrt::stage_time(&built, "spind").as_secs_f64();
        summary.push(format!(
            "  {name:<14} {:<28} stripped spind {spind_size:>9} bytes, build {build_secs:.1} s",
            board.rust_target
        ));
    }
    eprintln!("xtask: OpenWrt packages:\n{}", summary.join("\n"));
    Ok(())
}

pub fn run(args: &[String]) -> Result<()> {
    let all = layers();
    for a in args {
        if !all.iter().any(|l| l.name == a) {
            let names: Vec<&str> = all.iter().map(|l| l.name).collect();
            bail!("xtask test: no layer {a:?} (layers: {}; none: all of them)", names.join(", "));
        }
    }
    let mut report = Vec::new();
    let mut failed = false;
    for layer in all.into_iter().filter(|l| args.is_empty() || args.iter().any(|a| a == l.name)) {
        eprintln!("\nxtask test: layer {}", layer.what);
        let (outcome, stop) = match (layer.missing)() {
            Some(why) if in_ci() => {
                failed = true;
                (format!("FAILED (cannot run under CI: {why})"), layer.fail_fast)
            }
            Some(why) => (format!("skipped: {why}"), false),
            None => match (layer.run)() {
                Ok(()) => ("passed".to_string(), false),
                Err(e) => {
                    failed = true;
                    (format!("FAILED: {e:#}"), layer.fail_fast)
                }
            },
        };
        report.push(format!("  {:<80} {outcome}", layer.what));
        if stop {
            report.push("  (stopped: the gates must pass first)".into());
            break;
        }
    }
    eprintln!("\nxtask test summary:\n{}", report.join("\n"));
    if failed {
        bail!("some test layers failed")
    }
    Ok(())
}
