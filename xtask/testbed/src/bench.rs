//! Measurements and their bounds, for `cargo xtask bench`. Tests never assert a timing bound (a
//! test that fails on a busy machine breaks CI); they may take the same measurement and keep the
//! functional checks, and the bench compares the figures with the bounds here.

use std::time::Duration;

use serde_json::{json, Value};

use crate::browser::Browser;

/// Frame statistics of the UI's built-in load (`?bench=500x2000`: 500 nodes and 2,000 edges, every
/// flow updated every second), as `window.spinBench.stats()` reports them, over 10 s each.
#[derive(Clone, Debug)]
pub struct UiFrameStats {
    /// While the layout of the 500 new nodes still moves (a redraw every frame).
    pub moving: Value,
    /// Once the layout settled; every second all 2,000 flows get traffic (restyled and redrawn).
    pub settled: Value,
}

impl UiFrameStats {
    /// Both phases in one JSON report (`target/test-artifacts/ui-bench.json`).
    pub fn report(&self) -> Value {
        json!({"moving": self.moving, "settled": self.settled, "note": "ms; work = simulation + canvas commands per frame (JS), interval = time between animation frames (includes rasterisation), handle = one traffic message with 2,000 flows"})
    }
}

/// Loads `{origin}/?bench=500x2000` in `b` and measures both phases (about 25 s, plus the time
/// the layout takes to settle, up to 90 s).
pub fn ui_frame_stats(b: &Browser, origin: &str) -> UiFrameStats {
    b.goto(&format!("{origin}/?bench=500x2000"));
    b.wait_js(
        "the benchmark to start",
        Duration::from_secs(30),
        "window.spinBench && window.spinBench.handleMs.length > 0",
    );
    let measure = |what: &str| -> Value {
        b.js("window.spinState.resetFrameStats(); window.spinBench.handleMs.length = 0;", json!([]));
        std::thread::sleep(Duration::from_secs(10));
        let st = b.js("return window.spinBench.stats();", json!([]));
        eprintln!("bench 500x2000, {what}, 10 s: {st}");
        st
    };
    std::thread::sleep(Duration::from_secs(2));
    let moving = measure("layout moving");
    b.wait_js("the layout to settle", Duration::from_secs(90), "window.spinState.settled()");
    let settled = measure("layout settled");
    UiFrameStats { moving, settled }
}

/// The UI's frame-time targets: in both phases at least 50 frames in 10 s, the 95th percentile of
/// the work per frame under 50 ms and one second of traffic (2,000 flows) handled in under 50 ms;
/// once settled, the 95th percentile of the interval between frames under 50 ms. Returns every
/// bound that was missed.
pub fn ui_frame_bounds_missed(st: &UiFrameStats) -> Vec<String> {
    let mut missed = Vec::new();
    for (phase, s) in [("moving", &st.moving), ("settled", &st.settled)] {
        let frames = s["frames"].as_u64().unwrap_or(0);
        if frames < 50 {
            missed.push(format!("{phase}: {frames} frames in 10 s, want >= 50"));
        }
        let p95 = s["workP95"].as_f64().unwrap_or(f64::INFINITY);
        if p95 >= 50.0 {
            missed.push(format!("{phase}: 95th percentile frame work {p95:.1} ms, want < 50 ms"));
        }
        let handle = s["handleMax"].as_f64().unwrap_or(f64::INFINITY);
        if handle >= 50.0 {
            missed.push(format!("{phase}: handling one second of traffic took {handle:.1} ms, want < 50 ms"));
        }
    }
    let p95 = st.settled["intervalP95"].as_f64().unwrap_or(f64::INFINITY);
    if p95 >= 50.0 {
        missed.push(format!("settled: 95th percentile frame interval {p95:.1} ms, want < 50 ms with live updates"));
    }
    missed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(frames: u64, work: f64, handle: f64, interval: f64) -> Value {
        json!({"frames": frames, "workP95": work, "handleMax": handle, "intervalP95": interval})
    }

    #[test]
    fn frame_bounds_name_each_miss_and_pass_a_fast_ui() {
        let fast = UiFrameStats { moving: phase(600, 8.0, 20.0, 17.0), settled: phase(600, 5.0, 20.0, 17.0) };
        assert!(ui_frame_bounds_missed(&fast).is_empty());
        let slow = UiFrameStats { moving: phase(40, 8.0, 20.0, 17.0), settled: phase(600, 5.0, 60.0, 70.0) };
        let missed = ui_frame_bounds_missed(&slow);
        assert_eq!(missed.len(), 3, "{missed:?}");
        assert!(missed[0].starts_with("moving: 40 frames"), "{missed:?}");
        assert!(missed[1].contains("60.0 ms"), "{missed:?}");
        assert!(missed[2].contains("frame interval 70.0 ms"), "{missed:?}");
    }
}
