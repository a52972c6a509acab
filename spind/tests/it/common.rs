//! What the areas share that is this crate's own: the `spind` binary under test, the recorded
//! fixtures (`spind/tests/fixtures`, which xtask and the docs refer to) and a passive spind for
//! the HTTP tests. Everything else comes from the `testbed` crate.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use testbed::spind::{Spind, SpindBuilder};

/// The binary under test, built by cargo for this test run.
pub const SPIND: &str = env!("CARGO_BIN_EXE_spind");

/// A launcher for the binary under test.
pub fn spind() -> SpindBuilder {
    SpindBuilder::new(SPIND)
}

/// A recorded capture in `spind/tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A passive spind (no kernel access needed) with extra config lines. `testbed::free_port` can
/// hand out the same port twice (it is free again once probed), so a start that fails with a
/// busy address is tried again with new ports.
pub fn passive(lines: &[&str]) -> Spind {
    for _ in 0..5 {
        let mut b = spind().arg("-P").arg("-e").arg(format!(
            "/tmp/spind-web-{}-{}.sock",
            std::process::id(),
            testbed::free_port()
        ));
        for l in lines {
            b = b.config_line(l);
        }
        let mut s = b.spawn();
        let port = s.http_port;
        let up = testbed::wait_for("spind's web port or its exit", Duration::from_secs(20), || {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(true);
            }
            s.child.try_wait().unwrap().map(|_| false)
        });
        if up {
            return s;
        }
        if !s.log_text().contains("Address already in use") {
            panic!("spind did not start:\n{}", s.log_text());
        }
    }
    panic!("spind did not start: ports kept colliding");
}
