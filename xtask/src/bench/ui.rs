//! `cargo xtask bench ui`: the web UI's frame times in Debian's chromium (headless, through
//! chromedriver), against the release spind replaying `spind/tests/fixtures/basic.pcap`, under
//! the UI's built-in load (`?bench=500x2000`: 500 nodes, 2,000 edges, every flow updated every
//! second), while the layout moves and once it has settled. The figures and their bounds are
//! `testbed::bench`'s (`ui_frame_stats`, `ui_frame_bounds_missed`); a missed bound fails the step.
//! Writes `target/bench/ui-bench.json` and appends its table to `target/bench/report.md`.

use std::path::Path;

use testbed::bench::{ui_frame_bounds_missed, ui_frame_stats};
use testbed::browser::{spind_ui_origin, Browser, CHROMEDRIVER, CHROMIUM};
use testbed::spind::SpindBuilder;

pub fn run(bin: &Path, dir: &Path) -> Result<String, String> {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(tool).exists() {
            return Err(format!("bench ui needs {tool}: apt-get install chromium chromium-driver"));
        }
    }
    let fixture = imagebuild::root().join("spind/tests/fixtures/basic.pcap");
    eprintln!("xtask: ui bench: spind replaying {}, chromium on ?bench=500x2000", fixture.display());
    let spind =
        SpindBuilder::new(bin).arg("--replay").arg(fixture.to_string_lossy()).arg("--replay-speed").arg("0").start();
    let browser = Browser::start(1280, 800);
    let stats = ui_frame_stats(&browser, &spind_ui_origin(spind.http_port));
    let json = serde_json::to_vec_pretty(&stats.report()).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("ui-bench.json"), json).map_err(|e| e.to_string())?;

    let (m, s) = (&stats.moving, &stats.settled);
    let f = |v: &serde_json::Value, k: &str| match v[k].as_f64() {
        Some(x) if k == "frames" => format!("{x:.0}"),
        Some(x) => format!("{x:.1}"),
        None => "?".to_string(),
    };
    let report = format!(
        "Web UI in Debian's chromium (headless, 1280×800), `?bench=500x2000`: 500 nodes and 2,000 edges, every \
         flow updated every second; 10 s while the layout moves, 10 s once it settled:\n\n\
         | measure | moving / settled | target |\n|---|---|---|\n\
         | frames drawn in 10 s | {} / {} | ≥ 50 each |\n\
         | JS work per frame, 95th percentile | {} / {} ms | < 50 ms |\n\
         | one second of traffic (2,000 flows) handled, slowest | {} / {} ms | < 50 ms |\n\
         | interval between frames, 95th percentile | {} / {} ms | < 50 ms once settled |\n",
        f(m, "frames"),
        f(s, "frames"),
        f(m, "workP95"),
        f(s, "workP95"),
        f(m, "handleMax"),
        f(s, "handleMax"),
        f(m, "intervalP95"),
        f(s, "intervalP95"),
    );
    let path = dir.join("report.md");
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(&report);
    std::fs::write(&path, &text).map_err(|e| e.to_string())?;
    println!("{report}\n(appended to {})", path.display());
    let missed = ui_frame_bounds_missed(&stats);
    if missed.is_empty() {
        Ok(report)
    } else {
        Err(format!("the UI missed its frame-time bounds: {}", missed.join("; ")))
    }
}
