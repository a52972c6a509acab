//! The web server's routes against the real binary: the built-in UI, SPIN's paths and not-found
//! rules, a static directory with SPIN's `.gz` fallback, path traversal, caching, gzip, the
//! capture endpoints' argument checks and the MQTT WebSocket on the web port.

use std::io::Read;
use std::time::Duration;

use rumqttc::QoS;
use testbed::http::{self, get, raw, req};

use crate::common::passive;

/// A static directory like SPIN's `static/`, plus a secret next to it that must never be served.
fn static_tree() -> (tempfile::TempDir, std::path::PathBuf) {
    let top = tempfile::tempdir().unwrap();
    let root = top.path().join("static");
    std::fs::create_dir_all(root.join("spin_graph/js")).unwrap();
    std::fs::create_dir_all(root.join("spin_graph/css")).unwrap();
    std::fs::write(top.path().join("secret.txt"), "TOP-SECRET").unwrap();
    std::fs::write(root.join("spin_graph/index.html"), "<html>graph index</html>").unwrap();
    std::fs::write(root.join("spin_graph/graph.html"), "<html>the graph</html>").unwrap();
    std::fs::write(root.join("spin_graph/css/spin.css"), "body { color: red; }").unwrap();
    let paho = "/* paho */ var Paho = {};\n".repeat(100);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, paho.as_bytes()).unwrap();
    std::fs::write(root.join("spin_graph/js/paho-mqtt.js.gz"), gz.finish().unwrap()).unwrap();
    std::os::unix::fs::symlink(top.path().join("secret.txt"), root.join("spin_graph/link.txt")).unwrap();
    (top, root)
}

fn gunzip(b: &[u8]) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(b).read_to_string(&mut s).unwrap();
    s
}

#[test]
fn spin_paths_and_static_files_answer_as_in_spin_and_traversal_is_refused() {
    let (top, root) = static_tree();
    let s = passive(&[&format!("spinweb_static_dir = {}", root.display())]);
    let port = s.http_port;

    // `/` is the built-in UI, not cached blindly, with an ETag that gives 304.
    let r = get(port, "/");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"), "{}", r.head);
    assert_eq!(r.header("cache-control").as_deref(), Some("no-cache"));
    let etag = r.header("etag").expect("ETag");
    assert!(r.text().contains("<html") || r.text().contains("<!DOCTYPE"), "{}", r.text());
    let r304 = req(port, "GET", "/", &[&format!("If-None-Match: {etag}")]);
    assert_eq!(r304.status, 304);
    assert!(r304.body.is_empty());
    assert_eq!(get(port, "/index.html").header("etag").as_deref(), Some(etag.as_str()));

    // HEAD works for static files; other methods are 400.
    let h = req(port, "HEAD", "/", &[]);
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty());
    assert_eq!(req(port, "DELETE", "/", &[]).status, 400);
    assert_eq!(req(port, "PUT", "/spin_graph/graph.html", &[]).status, 400);

    // SPIN's JSON-RPC path and not-found rules.
    for p in ["/spin_api/jsonrpc", "/spin_api/jsonrpc/"] {
        let r = get(port, p);
        assert_eq!(r.status, 405, "{p}");
        assert_eq!(r.header("allow").as_deref(), Some("POST"));
    }
    let r = get(port, "/spin_graph/nope");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location").as_deref(), Some("./"));
    assert_eq!(get(port, "/nope.html").status, 302);
    assert_eq!(get(port, "/nope/").status, 404);
    let rpc = s.call("list_iplist", serde_json::json!({"list": "block"}));
    assert!(rpc.is_array(), "{rpc}");

    // The static directory: index of a directory, content types, `.gz` fallback.
    let r = get(port, "/spin_graph/");
    assert_eq!((r.status, r.text().as_str()), (200, "<html>graph index</html>"));
    assert_eq!(get(port, "/spin_graph/graph.html").text(), "<html>the graph</html>");
    assert_eq!(get(port, "/spin_graph/graph").text(), "<html>the graph</html>", ".html fallback");
    let css = get(port, "/spin_graph/css/spin.css");
    assert_eq!(css.header("content-type").as_deref(), Some("text/css; charset=utf-8"));
    let js = req(port, "GET", "/spin_graph/js/paho-mqtt.js", &["Accept-Encoding: gzip, deflate, br"]);
    assert_eq!(js.status, 200);
    assert_eq!(js.header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(js.header("content-type").as_deref(), Some("text/javascript; charset=utf-8"));
    assert!(js.header("vary").unwrap().contains("Accept-Encoding"));
    assert!(gunzip(&js.body).starts_with("/* paho */"));
    let js_plain = get(port, "/spin_graph/js/paho-mqtt.js");
    assert_eq!(js_plain.header("content-encoding"), None);
    assert!(js_plain.text().starts_with("/* paho */"), "decompressed for clients without gzip");
    let disk_etag = js.header("etag").unwrap();
    let again = req(
        port,
        "GET",
        "/spin_graph/js/paho-mqtt.js",
        &["Accept-Encoding: gzip", &format!("If-None-Match: {disk_etag}")],
    );
    assert_eq!(again.status, 304);

    // Traversal: nothing outside the root, whatever the spelling.
    let secret_paths = [
        "/../secret.txt",
        "/spin_graph/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/spin_graph/%2e%2e/%2e%2e/secret.txt",
        "/spin_graph/..%2f..%2fsecret.txt",
        "/spin_graph%2f..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/spin_graph\\..\\..\\secret.txt",
        "/spin_graph/%00/../secret.txt",
        "/%252e%252e/secret.txt",
        "/%c0%ae%c0%ae/secret.txt",
        "/spin_graph/link.txt",
        "//secret.txt",
        &format!("/{}", top.path().join("secret.txt").display()),
        &format!("/..{}", top.path().join("secret.txt").display()),
        "/.%2e/secret.txt",
    ];
    for p in secret_paths {
        let r = get(port, p);
        assert!(matches!(r.status, 302 | 400 | 403 | 404), "{p}: {}", r.status);
        assert!(!r.text().contains("TOP-SECRET"), "{p} served the secret");
    }
    // Absolute-form and garbage request targets do not reach the disk either.
    for target in ["http://127.0.0.1/../secret.txt", "secret.txt", "*"] {
        let r = get(port, target);
        assert!(!r.text().contains("TOP-SECRET"), "{target}");
        assert!(r.status >= 300, "{target}: {}", r.status);
    }
    let r = raw(port, b"GET /../../../../etc/passwd HTTP/1.0\r\n\r\n");
    assert!(!r.text().contains("root:"), "{}", r.text());
}

#[test]
fn builtin_text_is_gzipped_when_accepted() {
    let s = passive(&[]);
    let plain = get(s.http_port, "/");
    let gz = req(s.http_port, "GET", "/", &["Accept-Encoding: gzip"]);
    assert_eq!(gz.status, 200);
    if plain.body.len() >= 256 {
        assert_eq!(gz.header("content-encoding").as_deref(), Some("gzip"));
        assert_eq!(gunzip(&gz.body).as_bytes(), plain.body.as_slice());
        assert_ne!(gz.header("etag"), plain.header("etag"), "representations have their own ETags");
    }
    assert!(gz.header("vary").unwrap().contains("Accept-Encoding"));
    // q=0 refuses gzip.
    let no = req(s.http_port, "GET", "/", &["Accept-Encoding: gzip;q=0"]);
    assert_eq!(no.header("content-encoding"), None);
    assert_eq!(no.body, plain.body);
}

#[test]
fn capture_endpoints_refuse_a_missing_or_bad_device() {
    let s = passive(&[]);
    let port = s.http_port;
    for bad in [
        "",
        "?device=",
        "?device=zz:zz:zz:zz:zz:zz",
        "?device=00:11:22:33:44",
        "?device=00:11:22:33:44:55:66",
        "?device=001122334455",
        "?device=00:11:22:33:44:55;reboot",
        "?device=$(reboot)",
        "?device=00-11-22-33-44-55",
        "?device=%2e%2e",
    ] {
        for ep in ["tcpdump_start", "tcpdump_stop", "tcpdump_status", "capture"] {
            let r = get(port, &format!("/spin_api/{ep}{bad}"));
            assert_eq!(r.status, 400, "{ep}{bad}");
        }
    }
    let st = get(port, "/spin_api/tcpdump_status?device=02:00:00:00:00:09");
    assert_eq!(st.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&st.body).unwrap();
    assert_eq!(v["running"], false);
    assert_eq!(v["bytes"], -1);
    assert_eq!(get(port, "/spin_api/tcpdump_stop?device=02:00:00:00:00:09").status, 200);
    let page = get(port, "/spin_api/capture?device=02:00:00:00:00:0A");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("tcpdump_start?device=02:00:00:00:00:0a"));
    // Not root here (or root): either a stream or a clear error, never a hang or a crash.
    if !testbed::is_root() {
        let r = get(port, "/spin_api/tcpdump_start?device=02:00:00:00:00:09");
        assert_eq!(r.status, 503);
        assert!(r.text().contains("root"), "{}", r.text());
    }
}

#[test]
fn mqtt_over_websocket_works_on_the_web_port() {
    let s = passive(&[]);
    // A real MQTT client over ws://127.0.0.1:<web port>/mqtt, fed by a TCP client.
    let sub = testbed::mqtt::Subscriber::connect(s.http_port, true, "test/web/#");
    let publisher = testbed::mqtt::Subscriber::connect(s.mqtt_port, false, "unused/#");
    publisher.client.publish("test/web/x", QoS::AtMostOnce, false, b"hello over the web port".to_vec()).unwrap();
    let got = sub.collect_until("the message over the proxied WebSocket", Duration::from_secs(20), |m| !m.is_empty());
    assert_eq!(got[0].payload, b"hello over the web port");
    // And the other way: a publish over the proxied WebSocket reaches a TCP subscriber.
    let tcp_sub = testbed::mqtt::Subscriber::connect(s.mqtt_port, false, "test/back/#");
    sub.client.publish("test/back/y", QoS::AtMostOnce, false, b"back".to_vec()).unwrap();
    let got =
        tcp_sub.collect_until("the message from the WebSocket client", Duration::from_secs(20), |m| !m.is_empty());
    assert_eq!(got[0].payload, b"back");

    // A raw handshake gets the broker's own 101; a plain GET /mqtt is refused.
    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.http_port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    std::io::Write::write_all(&mut c, http::ws_upgrade(&[]).as_bytes()).unwrap();
    let head = http::read_head(&mut c);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    assert_eq!(http::mqtt_connect_over_ws(&mut c), [0x20, 2, 0, 0]);
    assert_eq!(get(s.http_port, "/mqtt").status, 400);
}
