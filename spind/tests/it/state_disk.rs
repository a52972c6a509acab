//! The state directory on a real file system that fills up (root: a small tmpfs mounted for
//! the test): a change spind cannot write is answered with a JSON-RPC error and is not made,
//! so what the RPCs report is what a restart finds.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use testbed::root_or_skip;
use testbed::runner::cmd;
use testbed::spind::Spind;

use crate::common::spind;

/// A tmpfs of `size` mounted on a fresh directory; unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let (sh, opts, path) = (testbed::netns::shell(), format!("size={size},mode=0700"), dir.path());
        let ok = cmd!(sh, "mount -t tmpfs -o {opts} spind-test-state {path}").succeeds().unwrap();
        assert!(ok, "mount -t tmpfs on {}", dir.path().display());
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a filler file until the file system refuses more.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).and_then(|()| f.sync_all()).is_ok() {}
        assert!(std::fs::write(self.path().join("probe"), b"x").is_err(), "the file system is not full");
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = testbed::netns::sh_lenient(&["umount", &self.dir.path().to_string_lossy()]);
    }
}

fn passive_on(state: &Path) -> Spind {
    spind()
        .state_dir(state)
        .arg("-P")
        .arg("-e")
        .arg(format!("/tmp/spind-disk-{}-{}.sock", std::process::id(), testbed::free_port()))
        .start()
}

fn error_code(reply: &Value) -> Option<i64> {
    reply["error"]["code"].as_i64()
}

#[test]
fn a_full_state_disk_makes_changes_fail_and_a_restart_finds_what_the_rpcs_said() {
    if !root_or_skip("a_full_state_disk_makes_changes_fail_and_a_restart_finds_what_the_rpcs_said") {
        return;
    }
    let disk = SmallDisk::mount("256k");
    let state = disk.path().join("state");
    let mut s = passive_on(&state);
    // Two nodes (a new node is nobody's decision yet: nothing to save, so it works when full).
    let a = s.call("node_add_ip", json!({"node": 0, "ipaddr": "192.0.2.1"}));
    let b = s.call("node_add_ip", json!({"node": 0, "ipaddr": "192.0.2.2"}));
    s.call("add_iplist_ip", json!({"list": "allow", "ip": "192.0.2.200"}));

    let filler = disk.fill();
    for (method, params) in [
        ("add_iplist_ip", json!({"list": "block", "ip": "198.51.100.1"})),
        ("remove_iplist_ip", json!({"list": "allow", "ip": "192.0.2.200"})),
        ("add_iplist_node", json!({"list": "block", "node": a})),
        ("set_device_name", json!({"node": a, "name": "printer"})),
        ("set_flow_block", json!({"node1": a, "node2": b, "block": 1})),
    ] {
        let reply = s.rpc(method, params.clone());
        assert_eq!(error_code(&reply), Some(-3), "{method} {params} on a full disk: {reply}");
        assert!(reply["error"]["message"].as_str().unwrap().contains("nothing was changed"), "{reply}");
    }
    // Memory is what is on disk.
    assert_eq!(s.call("list_iplist", json!({"list": "block"})), json!([]));
    assert_eq!(s.call("list_iplist", json!({"list": "allow"})), json!(["192.0.2.200"]));
    let node = s.call("get_device_data", json!({"node": a}));
    assert!(node["is_blocked"].is_null() && node["name"].is_null(), "{node}");
    assert_eq!(s.call("get_flow_block", json!({})), json!([]));

    // With room again, changes work and are kept.
    std::fs::remove_file(filler).unwrap();
    s.call("add_iplist_ip", json!({"list": "block", "ip": "198.51.100.2"}));
    s.terminate();
    let s = passive_on(&state);
    assert_eq!(s.call("list_iplist", json!({"list": "block"})), json!(["198.51.100.2"]));
    assert_eq!(s.call("list_iplist", json!({"list": "allow"})), json!(["192.0.2.200"]));
    let log = s.log_text();
    assert!(!log.contains("panicked"), "{log}");
}
