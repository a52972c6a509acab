//! `cargo xtask bench image` (root, Debian): the image builder's figures the README quotes.
//!
//! - cold: the `x86_64` image from nothing, in a fresh target directory
//!   (`target/bench/image-target/`): the Debian root file system from the mirror, spind's release
//!   build with all its dependencies, assembly and every output;
//! - rebuild after a spind change: the same directory again with a different `SPIND_BUILD_ID`
//!   (a line of `spind -v`, so the binary really changes): spind recompiles and links, and
//!   overlay, disk and outputs rebuild from the caches behind it;
//! - sizes of the outputs and of spind.
//!
//! The fresh target directory is removed at the end (it holds a few GiB).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use imagebuild::{Built, StageTime};
use runner::progress::secs;

pub fn run(dir: &Path) -> Result<String> {
    let target = dir.join("image-target");
    let _ = std::fs::remove_dir_all(&target);
    let saved: Vec<_> = ["CARGO_TARGET_DIR", "SPIND_BUILD_ID"].iter().map(|v| (*v, std::env::var_os(v))).collect();
    std::env::set_var("CARGO_TARGET_DIR", &target);
    let result = (|| {
        eprintln!("bench image: cold build of x86_64 in {}", target.display());
        std::env::set_var("SPIND_BUILD_ID", "bench-cold");
        let cold = crate::image::build("x86_64", imagebuild::Options::default(), false, false)?;
        eprintln!("bench image: rebuild after a spind change");
        std::env::set_var("SPIND_BUILD_ID", "bench-rebuild");
        let rebuild = crate::image::build("x86_64", imagebuild::Options::default(), false, false)?;
        check_rebuild(&rebuild)?;
        Ok::<_, anyhow::Error>(report(&cold, &rebuild))
    })();
    for (var, value) in saved {
        match value {
            Some(v) => std::env::set_var(var, v),
            None => std::env::remove_var(var),
        }
    }
    let _ = std::fs::remove_dir_all(&target);
    result
}

fn stage<'a>(b: &'a Built, name: &str) -> Option<&'a StageTime> {
    b.stages.iter().find(|s| s.name.starts_with(name))
}

/// The rebuild must have recompiled spind and reused the root file system; otherwise its time
/// measures something else.
fn check_rebuild(b: &Built) -> Result<()> {
    match (stage(b, "rootfs"), stage(b, "overlay")) {
        (Some(r), Some(o)) if r.cached && !o.cached => Ok(()),
        _ => bail!(
            "bench image: the rebuild should reuse the root file system and rebuild the overlay \
             with the new spind; stages were {:?}",
            b.stages
        ),
    }
}

fn stages_line(b: &Built) -> String {
    b.stages
        .iter()
        .filter(|s| s.time >= Duration::from_millis(50))
        .map(|s| {
            let n = s.name.split(' ').next().unwrap_or(&s.name);
            format!("{n} {}{}", secs(s.time), if s.cached { " (cached)" } else { "" })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn size(b: &Built, suffix: &str) -> String {
    b.artifacts
        .iter()
        .find(|a| a.path.to_string_lossy().ends_with(suffix))
        .map(|a| format!("{:.1} MB", runner::host::file_size(&a.path) as f64 / 1e6))
        .unwrap_or_else(|| "-".into())
}

fn report(cold: &Built, rebuild: &Built) -> String {
    format!(
        "| measure (x86_64 image) | value | target |\n|---|---|---|\n\
         | cold build: fresh target directory, root file system from the mirror, spind with its dependencies | {} ({}; spind and rootfs side by side) | < 10 min |\n\
         | rebuild after a spind change | {} ({}) | < 60 s |\n\
         | `.img.xz` / `.qcow2` / `.ova` / raw | {} / {} / {} / {} | `.img.xz` < 150 MB |\n",
        secs(cold.total),
        stages_line(cold),
        secs(rebuild.total),
        stages_line(rebuild),
        size(rebuild, ".img.xz"),
        size(rebuild, ".qcow2"),
        size(rebuild, ".ova"),
        size(rebuild, ".img"),
    )
}
