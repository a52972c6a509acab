//! `cargo xtask test`: every test layer that exists, in order, with a summary. A layer whose
//! prerequisites are missing is reported as skipped with the reason; under CI (`CI=true`) that
//! is a failure, so CI never passes by skipping.

use crate::util::{self, cargo};

struct Layer {
    name: &'static str,
    /// Why the layer cannot run here, if it cannot.
    missing: fn() -> Option<String>,
    run: fn() -> Result<(), String>,
}

fn layers() -> Vec<Layer> {
    vec![Layer {
        name: "unit + integration (cargo test --workspace; the real spind binary, real brokers)",
        missing: || None,
        run: || {
            let mut cmd = cargo();
            // All features: the optional TLS support is tested too.
            cmd.args(["test", "--workspace", "--locked", "--no-fail-fast", "--all-features"]);
            // Tests that build network namespaces need root. Outside CI a developer without root
            // still gets the rest, and each such test prints that it was skipped.
            if !util::is_root() {
                if util::in_ci() {
                    return Err("CI must run as root: the namespace tests need it".into());
                }
                eprintln!("xtask: not root: namespace tests (router, capture, kernel) will say SKIPPED");
                cmd.env("SPIND_SKIP_ROOT_TESTS", "1");
            }
            util::run(&mut cmd)
        },
    },
    // ---- image layer (issue 5): the Debian images built end to end, inspected, reassembled ----
    // (the qemu layer boots these same images: its builds come from the cache)
    Layer {
        name: "image: x86_64 and rpi3 built end to end, inspected, disk assembly reproducible",
        missing: crate::image::test_layer_missing,
        run: || crate::image::test_layer("x86_64").and_then(|_| crate::image::test_layer("rpi3")),
    },
    Layer {
        name: "openwrt: spind cross-built for GL.iNet boards, run under qemu-user, .ipk checked",
        missing: openwrt_missing,
        run: openwrt_packages,
    },
    // ---- qemu layer (issue 6): the images booted in QEMU, driven from LAN and WAN namespaces ----
    Layer {
        name: "qemu: x86_64 and rpi3 images booted in QEMU, end to end (cargo xtask qemu-test)",
        missing: crate::qemu::missing,
        run: || crate::qemu::run(&[]),
    }]
}

/// The OpenWrt layer needs qemu-user (xtask installs it as root) and rustup.
fn openwrt_missing() -> Option<String> {
    let have = |p: &str| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {p} >/dev/null")])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !have("rustup") {
        return Some("no rustup (cross targets and the MIPS nightly come from it)".into());
    }
    let have_qemu = have("qemu-aarch64-static") && have("qemu-mips-static");
    if !util::is_root() && !have_qemu {
        return Some("no qemu-user-static (as root xtask installs it)".into());
    }
    None
}

/// Builds spind, the package and the overlay for every GL.iNet board without an ImageBuilder
/// (offline), checks the binary under qemu-user (`spind -v`, `spind -c CONF -C`) and the
/// package's structure, and the aarch64 size target.
fn openwrt_packages() -> Result<(), String> {
    use crate::image::openwrt::{self, Arch, ImageOptions, OpenwrtBoard};
    let mut summary = Vec::new();
    for name in ["glinet-mt3000", "glinet-mt6000", "glinet-ar150"] {
        let board = OpenwrtBoard::load(name)?;
        let out = util::root().join("target/test/openwrt").join(name);
        let opts = ImageOptions { offline: true, out_dir: Some(out.clone()), ..Default::default() };
        let report = openwrt::build_report(&board, &opts)?;
        let ipk = report
            .artifacts
            .iter()
            .find(|a| a.path.extension().is_some_and(|e| e == "ipk"))
            .ok_or("no .ipk built")?;
        openwrt::verify_ipk(&board, &ipk.path, &out.join("inspect"))?;
        if report.missing.is_none() {
            return Err(format!("{name}: --offline without --imagebuilder must report the missing ImageBuilder"));
        }
        if board.arch == Arch::Aarch64 && report.spind_size >= 3 << 20 {
            return Err(format!("{name}: stripped spind is {} bytes, target < 3 MiB", report.spind_size));
        }
        let build_secs: f64 = report.timings.iter().filter(|(s, _)| s.starts_with("spind")).map(|(_, t)| t).sum();
        summary.push(format!(
            "  {name:<14} {:<28} stripped spind {:>9} bytes, build {build_secs:.1} s",
            board.rust_target, report.spind_size
        ));
    }
    eprintln!("xtask: OpenWrt packages:\n{}", summary.join("\n"));
    Ok(())
}

pub fn run(args: &[String]) -> Result<(), String> {
    if let Some(a) = args.first() {
        return Err(format!("xtask test takes no arguments (got {a:?})"));
    }
    let mut report = Vec::new();
    let mut failed = false;
    for layer in layers() {
        let outcome = match (layer.missing)() {
            Some(why) if util::in_ci() => {
                failed = true;
                format!("FAILED (cannot run under CI: {why})")
            }
            Some(why) => format!("skipped: {why}"),
            None => match (layer.run)() {
                Ok(()) => "passed".to_string(),
                Err(e) => {
                    failed = true;
                    format!("FAILED: {e}")
                }
            },
        };
        report.push(format!("  {:<80} {outcome}", layer.name));
    }
    eprintln!("\nxtask test summary:\n{}", report.join("\n"));
    if failed {
        Err("some test layers failed".into())
    } else {
        Ok(())
    }
}
