//! Alerts from the real spind replaying a capture (no root): the capture's device is new, so
//! `new_device` goes to the webhook (a local HTTP server, refusing the first try) and to
//! `list_alerts`; replayed again on the same state, the device is not new again.

use std::net::TcpListener;
use std::time::Duration;

use serde_json::{json, Value};
use testbed::http::answer_one;
use testbed::netns::CLIENT_MAC;

use crate::common::{fixture, spind};

fn new_device_alerts(s: &testbed::spind::Spind) -> Vec<Value> {
    let all = s.call("list_alerts", json!({"since": 0}));
    all.as_array().unwrap().iter().filter(|a| a["kind"] == "new_device" && a["device"] == CLIENT_MAC).cloned().collect()
}

#[test]
fn a_new_device_reaches_the_webhook_once_and_not_again_after_a_restart() {
    let state = tempfile::tempdir().unwrap();
    let hook = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("alert_webhook_url = http://127.0.0.1:{}/hook", hook.local_addr().unwrap().port());
    let replay = || {
        spind()
            .arg("--replay")
            .arg(fixture("basic.pcap").to_str().unwrap())
            .arg("--replay-speed")
            .arg("0")
            .state_dir(state.path())
            .config_line(&url)
    };
    let mut s = replay().start();
    // Alerts come in the order they were raised; the device's is among them.
    let (first, _) = answer_one(&hook, "503 Service Unavailable");
    assert_eq!(first, "POST /hook HTTP/1.1\r\n");
    let mut bodies = Vec::new();
    while !bodies.iter().any(|b: &Value| b["kind"] == "new_device" && b["device"] == CLIENT_MAC) {
        let (_, body) = answer_one(&hook, "200 OK");
        bodies.push(serde_json::from_str(&body).unwrap());
    }
    testbed::wait_for("the replay to finish", Duration::from_secs(60), || {
        s.log_text().contains("replay finished").then_some(())
    });
    assert_eq!(new_device_alerts(&s).len(), 1);
    s.terminate();

    let s = replay().start();
    testbed::wait_for("the replay to finish", Duration::from_secs(60), || {
        s.log_text().contains("replay finished").then_some(())
    });
    let again = new_device_alerts(&s);
    assert_eq!(again.len(), 1, "the device was announced again after a restart: {again:?}");
}
