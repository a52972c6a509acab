//! JSON-RPC over the unix socket, HTTP and MQTT, against the real binary.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rumqttc::QoS;
use testbed::http::{http_request, rpc_unix};
use testbed::mqtt::Subscriber;
use testbed::spind::Spind;

use crate::common::spind;

fn passive() -> Spind {
    let s = spind().arg("-P").arg("-e").arg(format!("/tmp/spind-rpc-{}.sock", testbed::free_port())).start();
    let sock = s.rpc_socket();
    testbed::wait_for("the RPC socket", Duration::from_secs(10), || sock.exists().then_some(()));
    s
}

#[test]
fn the_unix_socket_answers_requests_written_in_pieces_and_refuses_oversize_ones() {
    let s = passive();
    let mode = std::fs::metadata(s.rpc_socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "the RPC socket is not world-writable");

    let r = rpc_unix(&s.rpc_socket(), br#"{"jsonrpc":"2.0","id":7,"method":"nope"}"#);
    assert_eq!(r, r#"{"jsonrpc":"2.0","id":7,"error":{"code":-1,"message":"No such function registered"}}"#);

    // A request written in pieces, with pauses, while the client keeps its side open.
    let mut c = UnixStream::connect(s.rpc_socket()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for piece in [r#"{"jsonrpc":"2.0","#, r#""id":8,"method":"list_ip"#, r#"list","params":{"list":"block"}}"#] {
        c.write_all(piece.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut c, &mut answer).unwrap();
    assert_eq!(answer, "{\"jsonrpc\":\"2.0\",\"id\":8,\"result\":[]}\n");

    // Over 64 KiB: an error, not a hang.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":9,"method":"set_device_name","params":{{"node":1,"name":"{}"}}}}"#,
        "x".repeat(70_000)
    );
    let r = rpc_unix(&s.rpc_socket(), big.as_bytes());
    assert!(r.contains("\"error\"") && r.contains("too large"), "{r}");

    // Malformed JSON gets SPIN's code 1.
    let r = rpc_unix(&s.rpc_socket(), b"{\"jsonrpc\":");
    assert_eq!(r, r#"{"jsonrpc":"2.0","error":{"code":1,"message":"Wrong JSON-RPC version, expected 2.0"}}"#);
}

#[test]
fn http_post_answers_json_rpc_get_is_refused_and_node_add_ip_returns_the_id() {
    let s = passive();
    let (status, body) = http_request(
        s.http_port,
        "POST",
        "/spin_api/jsonrpc",
        br#"{"jsonrpc":"2.0","id":1,"method":"node_add_ip","params":{"node":0,"ipaddr":"192.0.2.1"}}"#,
    );
    assert_eq!((status, body.as_str()), (200, r#"{"jsonrpc":"2.0","id":1,"result":1}"#));
    let (status, _) = http_request(s.http_port, "GET", "/spin_api/jsonrpc", b"");
    assert_eq!(status, 405);
    let node = s.call("get_device_data", serde_json::json!({"node": 1}));
    assert_eq!(node["ips"], serde_json::json!(["192.0.2.1"]));
}

#[test]
fn mqtt_requests_are_answered_on_the_answer_topic_over_tcp_and_websocket() {
    let s = passive();
    for ws in [false, true] {
        let port = if ws { s.ws_port } else { s.mqtt_port };
        let sub = Subscriber::connect(port, ws, "SPIN/jsonrpc/a");
        sub.client
            .publish("SPIN/jsonrpc/q", QoS::AtMostOnce, false, r#"{"jsonrpc":"2.0","id":42,"method":"get_flow_block"}"#)
            .unwrap();
        let got = sub.collect_until("the RPC answer", Duration::from_secs(10), |m| !m.is_empty());
        assert_eq!(String::from_utf8_lossy(&got[0].payload), r#"{"jsonrpc":"2.0","id":42,"result":[]}"#);
    }
}
