//! Bad input at start-up: a clear error naming the problem, exit code 1, nothing started.

use std::time::Duration;

use testbed::runner::cmd;
use testbed::spind::SpindBuilder;

use crate::common::{self, fixture, spind};

fn exit_and_log(b: SpindBuilder) -> (i32, String) {
    let mut s = b.spawn();
    let code = s.wait_exit(Duration::from_secs(20));
    (code, s.log_text())
}

#[test]
fn config_line_without_equals_sign_names_the_line() {
    let (code, log) = exit_and_log(spind().config_line("node_cache_retain_time 60").arg("-P"));
    assert_eq!(code, 1, "{log}");
    // The harness writes 6 lines of its own before ours.
    assert!(log.contains("spind.conf:7"), "{log}");
    assert!(log.contains("node_cache_retain_time 60"), "{log}");
}

#[test]
fn unknown_config_key_is_a_warning_not_an_error() {
    let mut s =
        spind().config_line("iptable_place_dns = 1").arg("-P").arg("-e").arg("/tmp/spind-test-unused.sock").start();
    let log = s.log_text();
    assert!(log.contains("iptable_place_dns"), "warning names the key: {log}");
    assert!(s.child.try_wait().unwrap().is_none(), "still running");
    s.terminate();
}

#[test]
fn unusable_state_directory_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let (code, log) = exit_and_log(
        spind().state_dir(&file.join("state")).arg("--replay").arg(fixture("basic.pcap").to_str().unwrap()),
    );
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("not-a-dir/state"), "{log}");
    assert!(log.contains("--state-dir"), "says how to fix it: {log}");
}

#[test]
fn a_truncated_capture_is_refused_naming_file_and_offset() {
    let path = fixture("truncated.pcap");
    let (code, log) = exit_and_log(spind().arg("--replay").arg(path.to_str().unwrap()));
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("truncated.pcap"), "{log}");
    // The fifth record, cut short, starts at byte 368 (fixtures/README.md).
    assert!(log.contains("offset 368"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_garbage_capture_is_refused_naming_the_file() {
    let (code, log) = exit_and_log(spind().arg("--replay").arg(fixture("garbage.pcap").to_str().unwrap()));
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("garbage.pcap") && log.contains("offset 24"), "{log}");
    let dir = tempfile::tempdir().unwrap();
    let not_pcap = dir.path().join("notes.txt");
    std::fs::write(&not_pcap, "these are not packets\n").unwrap();
    let (code, log) = exit_and_log(spind().arg("--replay").arg(not_pcap.to_str().unwrap()));
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("notes.txt"), "{log}");
}

#[test]
fn a_bad_command_line_fails_and_dash_capital_c_prints_the_defaults() {
    let sh = testbed::netns::shell();
    let spind = common::SPIND;
    let out = cmd!(sh, "{spind} --no-such-flag").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-flag"));

    let out = cmd!(sh, "{spind} -c /nonexistent/spind.conf").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/spind.conf"));

    // -C prints SPIN's defaults (without a config file) in SPIN's order, then ours.
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.conf");
    std::fs::write(&empty, "").unwrap();
    let out = cmd!(sh, "{spind} -c {empty} -C").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "log_usesyslog = 1");
    assert_eq!(lines[4], "pubsub_host = 127.0.0.1");
    assert!(lines.contains(&"pubsub_run_pid_file = /tmp/mosquitto.pid"));
    assert!(lines.contains(&"spinweb_port = 13026"));
    assert!(lines.contains(&"state_dir = /etc/spin"));
    // Command line beats file.
    let out = cmd!(sh, "{spind} -c {empty} -p 2000 -C").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pubsub_port = 2000\n") && text.contains("pubsub_websocket_port = 2001\n"), "{text}");
}
