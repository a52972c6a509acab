//! The web UI in a real browser (Debian's chromium, headless, driven through chromedriver),
//! against the real spind replaying `basic.pcap` (the page finds the broker at `/mqtt` on the
//! web port, without query parameters): the graph shows the device and the named
//! services, clicking a node opens its details, Block reaches spind's block list, a rename
//! survives a reload, a flow can be blocked from its edge; and 500 nodes with 2,000 edges under
//! live updates (the frame-time bounds are `cargo xtask bench`'s, never asserted here).
//!
//! Needs `apt-get install chromium chromium-driver`; `SPIND_SKIP_BROWSER_TESTS=1` skips (loudly).

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use testbed::browser::{self, artifacts_dir, browser_available, spind_ui_origin, Browser};
use testbed::spind::Spind;
use testbed::wait_for;

use crate::common::{fixture, spind};

const CLIENT_MAC: &str = "02:00:00:00:00:64";

/// One browser at a time: the machine is small (and the frame times reported should not be skewed).
static ONE_BROWSER: Mutex<()> = Mutex::new(());

fn replayed_spind() -> Spind {
    replayed(&fixture("basic.pcap"))
}

/// spind after replaying `capture` at full speed, its device and flows known.
fn replayed(capture: &std::path::Path) -> Spind {
    replayed_with(capture, &[])
}

/// [`replayed`], with more of spind's arguments (an extsrc socket).
fn replayed_with(capture: &std::path::Path, args: &[&str]) -> Spind {
    let mut b = spind().arg("--replay").arg(capture.to_str().unwrap()).arg("--replay-speed").arg("0");
    for a in args {
        b = b.arg(*a);
    }
    let s = b.start();
    wait_for("the replay to finish", Duration::from_secs(60), || {
        s.log_text().contains("replay finished").then_some(())
    });
    // The device and its flows to both named services are known to spind.
    wait_for("spind's device flows", Duration::from_secs(20), || {
        let flows = s.call("list_device_flows", json!({"device": CLIENT_MAC}));
        (flows.as_array().map_or(0, |a| a.len()) >= 2).then_some(())
    });
    s
}

/// The UI's view of the nodes (`window.spinState.nodes()`).
fn ui_nodes(b: &Browser) -> Vec<Value> {
    b.js("return window.spinState ? window.spinState.nodes() : [];", json!([])).as_array().cloned().unwrap_or_default()
}

fn node_by_label(b: &Browser, label: &str) -> Value {
    ui_nodes(b)
        .into_iter()
        .find(|n| n["label"] == label)
        .unwrap_or_else(|| panic!("no node labelled {label:?} in the UI: {:?}", ui_nodes(b)))
}

/// Waits until the layout stopped moving, then clicks the node with this label where it is drawn.
fn click_node(b: &Browser, label: &str) -> i64 {
    b.wait_js("the layout to settle", Duration::from_secs(30), "window.spinState.settled()");
    let n = node_by_label(b, label);
    let (x, y) = (n["x"].as_f64().unwrap(), n["y"].as_f64().unwrap());
    b.click_at(x, y);
    n["id"].as_i64().unwrap()
}

/// Opens `label`'s panel and presses Block there; waits until the graph draws the node blocked
/// (`drawn`: a further condition on the node `n`, e.g. its colour). The node's id.
fn block_from_panel(b: &Browser, label: &str, drawn: &str) -> i64 {
    let id = click_node(b, label);
    b.wait_js(
        "the node's details",
        Duration::from_secs(10),
        &format!("document.querySelector('#panel-title').textContent === '{label}'"),
    );
    b.click("#panel button[data-action=block]");
    b.wait_js(
        "the node drawn as blocked",
        Duration::from_secs(10),
        &format!("window.spinState.nodes().some(n => n.id === {id} && n.blocked && {drawn})"),
    );
    id
}

#[test]
fn ui_shows_the_replayed_graph_and_acts_through_spind() {
    if !browser_available("ui_shows_the_replayed_graph_and_acts_through_spind") {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let s = replayed_spind();
    // The broker's WebSocket listener is on a port of its own (not SPIN's 1884), and the page
    // is opened without ?mqtt_port=: it finds the broker at /mqtt on the web port.
    assert_ne!(s.ws_port, 1884);
    let origin = spind_ui_origin(s.http_port);
    let url = format!("{origin}/");
    let b = Browser::start(1280, 800);
    b.goto(&url);

    // Connected over MQTT/WebSocket, and the device and both named services are in the graph.
    b.wait_js(
        "the UI to connect to spind's broker through /mqtt on the web port",
        Duration::from_secs(30),
        "window.spinState && window.spinState.connection() === 'connected'",
    );
    let want = [CLIENT_MAC, "www.example.test", "cdn.example.test"];
    let expr = format!(
        "(() => {{ const l = window.spinState.nodes().filter(n => n.shown).map(n => n.label); return {}.every(x => l.includes(x)); }})()",
        json!(want)
    );
    b.wait_js("the device and the named services in the graph", Duration::from_secs(30), &expr);
    let device = node_by_label(&b, CLIENT_MAC);
    assert_eq!(device["kind"], "device");
    assert_eq!(node_by_label(&b, "www.example.test")["kind"], "service");
    let edges = b.js("return window.spinState.edges();", json!([]));
    let services: Vec<String> = edges
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["services"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s.as_str().map(String::from))
        .collect();
    assert!(services.iter().any(|s| s == "http"), "edges are labelled with their service: {edges}");

    b.wait_js("the layout to settle", Duration::from_secs(30), "window.spinState.settled()");
    let shot = artifacts_dir().join("ui-graph.png");
    b.screenshot(&shot);
    eprintln!("screenshot: {}", shot.display());

    // A real click on the device opens its details.
    let dev_id = click_node(&b, CLIENT_MAC);
    b.wait_js("the device's details", Duration::from_secs(10), &format!("!document.querySelector('#panel').hidden && document.querySelector('#panel-body').textContent.includes('{CLIENT_MAC}')"));
    assert_eq!(b.js("return window.spinState.selected();", json!([])), json!({"type": "node", "id": dev_id}));
    b.wait_js(
        "the device's recent flows",
        Duration::from_secs(10),
        "document.querySelectorAll('#panel .flows tr').length >= 3",
    );
    let flows_text = b.text("#panel .flows");
    assert!(
        flows_text.contains("www.example.test") && flows_text.contains("http"),
        "flows show remote names and services: {flows_text}"
    );

    // Block a service from its panel: drawn blocked, and in spind's block list with all its addresses.
    let www = block_from_panel(&b, "www.example.test", "n.fill === '#dc2626'");
    let ips = s.call("get_device_data", json!({"node": www}))["ips"].clone();
    let block = s.call("list_iplist", json!({"list": "block"}));
    for ip in ips.as_array().unwrap() {
        assert!(block.as_array().unwrap().contains(ip), "block list {block} has {ip}");
    }
    assert!(ips.as_array().unwrap().contains(&json!("198.51.100.10")));
    b.wait_js(
        "the Unblock button",
        Duration::from_secs(10),
        "document.querySelector('#panel button[data-action=block]').textContent === 'Unblock'",
    );

    // The block list dialog shows the addresses; removing one goes to spind.
    b.click("#show-block");
    b.wait_js("the block list dialog", Duration::from_secs(10), "document.querySelector('#lists').open && document.querySelector('#lists-body').textContent.includes('198.51.100.10')");
    b.click("#lists-body button[aria-label='Remove 198.51.100.10 from the block list']");
    wait_for("198.51.100.10 to leave the block list", Duration::from_secs(10), || {
        let l = s.call("list_iplist", json!({"list": "block"}));
        (!l.as_array().unwrap().contains(&json!("198.51.100.10"))).then_some(())
    });
    b.click("#lists-close");

    // Block a flow from its edge (device -> cdn service), clicked at the edge's middle.
    let cdn = node_by_label(&b, "cdn.example.test")["id"].as_i64().unwrap();
    b.wait_js("the layout to settle", Duration::from_secs(30), "window.spinState.settled()");
    let mid = b.js(
        "const a = window.spinState.screenPos(arguments[0]), b = window.spinState.screenPos(arguments[1]);\
         const dx = b.x - a.x, dy = b.y - a.y, d = Math.hypot(dx, dy);\
         const t = 0.5 + (a.r - b.r) / 2 / d;\
         return {x: a.x + dx * t, y: a.y + dy * t};",
        json!([dev_id, cdn]),
    );
    b.click_at(mid["x"].as_f64().unwrap(), mid["y"].as_f64().unwrap());
    b.wait_js(
        "the flow's details",
        Duration::from_secs(10),
        &format!(
            "JSON.stringify(window.spinState.selected()) === JSON.stringify({{type: 'edge', key: '{dev_id}>{cdn}'}})"
        ),
    );
    b.click("#panel button[data-action=flow-block]");
    wait_for("the flow block in spind", Duration::from_secs(10), || {
        let fb = s.call("get_flow_block", json!({}));
        let (lo, hi) = (dev_id.min(cdn), dev_id.max(cdn));
        fb.as_array().unwrap().contains(&json!({"node1": lo, "node2": hi})).then_some(())
    });
    b.wait_js(
        "the Unblock-flow button",
        Duration::from_secs(10),
        "document.querySelector('#panel button[data-action=flow-block]').textContent === 'Unblock this flow'",
    );

    // Rename the device; the name is spind's and survives a reload.
    click_node(&b, CLIENT_MAC);
    b.wait_js("the device's details", Duration::from_secs(10), &format!("document.querySelector('#panel-title').textContent === '{CLIENT_MAC}' && document.querySelector('#rename-input') !== null"));
    b.type_into("#rename-input", "living-room tv");
    b.click("#panel form.rename button[type=submit]");
    wait_for("the name in spind", Duration::from_secs(10), || {
        (s.call("get_device_data", json!({"node": dev_id}))["name"] == "living-room tv").then_some(())
    });
    b.wait_js(
        "the new label",
        Duration::from_secs(10),
        "window.spinState.nodes().some(n => n.label === 'living-room tv')",
    );
    // Mark this page, so the wait below can only be satisfied by the reloaded one.
    b.js("window.beforeReload = true;", json!([]));
    b.refresh();
    b.wait_js(
        "the renamed device after a reload",
        Duration::from_secs(30),
        "!window.beforeReload && window.spinState && window.spinState.nodes().some(n => n.label === 'living-room tv' && n.shown)",
    );

    // The protocol's admin and list messages, injected through the UI's message handler.
    let h = |msg: Value| {
        b.js("window.spinState.handle(arguments[0]);", json!([msg]));
    };
    h(
        json!({"command": "nodeInfo", "result": {"id": 9001, "mac": "02:00:00:00:99:01", "lastseen": 1, "ips": ["192.168.8.201"], "domains": []}}),
    );
    h(
        json!({"command": "nodeInfo", "result": {"id": 9002, "lastseen": 1, "ips": ["203.0.113.2"], "domains": ["merge-me.test."]}}),
    );
    h(
        json!({"command": "nodeInfo", "result": {"id": 9003, "lastseen": 1, "ips": ["203.0.113.3"], "domains": ["target.test.", "alias.target.test."]}}),
    );
    h(json!({"command": "nodeInfo", "result": {"id": 9004, "lastseen": 1, "ips": ["224.0.0.251"], "domains": []}}));
    h(json!({"command": "traffic", "argument": "", "result": {"flows": [
        {"from": 9001, "to": 9002, "protocol": 6, "from_port": 40000, "to_port": 443, "size": 5000, "count": 5},
        {"from": 9001, "to": 9003, "protocol": 17, "from_port": 40001, "to_port": 53, "size": 100, "count": 1},
        {"from": 9001, "to": 9004, "protocol": 17, "from_port": 5353, "to_port": 5353, "size": 300, "count": 2}],
        "timestamp": 0, "total_size": 5400, "total_count": 8}}));
    let node = |id: i64| -> Value {
        b.js("return window.spinState.nodes().find(n => n.id === arguments[0]) || null;", json!([id]))
    };
    let edge = |key: &str| -> Value {
        b.js("return window.spinState.edges().find(e => e.key === arguments[0]) || null;", json!([key]))
    };
    assert_eq!(node(9002)["label"], "merge-me.test");
    assert_eq!(node(9003)["label"], "target.test");
    assert_eq!(node(9004)["label"], "Multicast 224.0.0.251");
    assert_eq!(node(9004)["kind"], "multicast");
    assert_eq!(edge("9001>9002")["services"], json!(["https"]));
    assert_eq!(edge("9001>9004")["services"], json!(["mdns"]));
    h(json!({"command": "nodeMerged", "result": {"id": 9002, "merged-to": 9003}}));
    assert_eq!(node(9002), Value::Null, "a merged node leaves");
    assert_eq!(edge("9001>9002"), Value::Null);
    let merged = edge("9001>9003");
    assert_eq!(merged["bytes"], 5100, "flows are redirected to the surviving node: {merged}");
    assert_eq!(merged["services"], json!(["dns", "https"]));
    h(json!({"command": "nodeDeleted", "result": {"id": 9003}}));
    assert_eq!(node(9003), Value::Null, "a deleted node leaves");
    assert_eq!(edge("9001>9003"), Value::Null);
    h(json!({"command": "ignore", "result": ["192.168.8.201"]}));
    assert_eq!(node(9001)["shown"], false, "ignored nodes are hidden: {}", node(9001));
    assert_eq!(node(9001)["ignored"], true);
    h(json!({"command": "ignore", "result": []}));
    assert_eq!(node(9001)["shown"], true);
    h(json!({"command": "serverRestart"}));
    assert_eq!(node(9001), Value::Null, "a daemon restart clears the view");
    b.wait_js("the view to reload from spind after serverRestart", Duration::from_secs(20), "window.spinState.nodes().some(n => n.label === 'living-room tv' && n.shown) && window.spinState.nodes().some(n => n.label === 'cdn.example.test')");

    // Phone-sized screen: the panel is a bottom sheet.
    b.set_window(390, 800);
    b.wait_js("the layout to settle", Duration::from_secs(30), "window.spinState.settled()");
    click_node(&b, "living-room tv");
    b.wait_js("the bottom sheet", Duration::from_secs(10), "(() => { const r = document.querySelector('#panel').getBoundingClientRect(); return !document.querySelector('#panel').hidden && r.width >= window.innerWidth - 1 && Math.abs(r.bottom - window.innerHeight) < 2; })()");
    b.screenshot(&artifacts_dir().join("ui-phone.png"));

    let errors = b.console_log();
    assert!(!errors.contains("Uncaught"), "no script errors: {errors}");
}

/// 500 nodes and 2,000 edges, all updating every second (`?bench=500x2000`): the UI shows them
/// all and keeps drawing, both while the layout moves and once it has settled. The frame times
/// are measured and kept (`target/test-artifacts/ui-bench.json`), but their bounds belong to
/// `cargo xtask bench` (`testbed::bench::ui_frame_bounds_missed`): a test with a timing bound
/// fails on a busy machine.
#[test]
fn ui_draws_500_nodes_and_2000_edges_updating_every_second() {
    if !browser_available("ui_draws_500_nodes_and_2000_edges_updating_every_second") {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let s = spind().arg("--replay").arg(fixture("basic.pcap").to_str().unwrap()).arg("--replay-speed").arg("0").start();
    let origin = spind_ui_origin(s.http_port);
    let b = Browser::start(1280, 800);
    let stats = testbed::bench::ui_frame_stats(&b, &origin);
    std::fs::write(artifacts_dir().join("ui-bench.json"), serde_json::to_vec_pretty(&stats.report()).unwrap()).unwrap();
    b.screenshot(&artifacts_dir().join("ui-bench.png"));
    for st in [&stats.moving, &stats.settled] {
        assert_eq!(st["shownNodes"], 500, "{st}");
        assert_eq!(st["shownEdges"], 2000, "{st}");
        assert!(st["frames"].as_u64().unwrap() > 0, "the page kept drawing: {st}");
        assert!(st["ticks"].as_u64().unwrap() > 0, "the traffic kept coming: {st}");
    }
    let missed = testbed::bench::ui_frame_bounds_missed(&stats);
    if !missed.is_empty() {
        // Reported, not asserted: `cargo xtask bench` holds the UI to these.
        eprintln!("frame-time targets missed on this run (see cargo xtask bench): {missed:?}");
    }
    let errors = b.console_log();
    assert!(!errors.contains("Uncaught"), "no script errors under load: {errors}");
    assert_labels_apart(&b);
}

/// The node labels of the last frame: some are drawn, and no two overlap.
fn assert_labels_apart(b: &Browser) {
    let labels = b.js("return window.spinState.labels();", json!([]));
    let l = labels.as_array().unwrap();
    assert!(!l.is_empty(), "labels are drawn");
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap();
    for (i, a) in l.iter().enumerate() {
        for c in &l[i + 1..] {
            let apart = f(a, "x1") <= f(c, "x0")
                || f(c, "x1") <= f(a, "x0")
                || f(a, "y1") <= f(c, "y0")
                || f(c, "y1") <= f(a, "y0");
            assert!(apart, "labels overlap: {a} and {c}");
        }
    }
}

/// A broker that says "not authorized" makes the UI ask for credentials, and it reconnects with them.
#[test]
fn ui_asks_for_credentials_when_the_broker_refuses() {
    if !browser_available("ui_asks_for_credentials_when_the_broker_refuses") {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let s = spind().arg("--replay").arg(fixture("basic.pcap").to_str().unwrap()).arg("--replay-speed").arg("0").start();
    let broker = browser::FakeBroker::start("alice", "s3cret");
    let origin = spind_ui_origin(s.http_port);
    let b = Browser::start(1280, 800);
    b.goto(&format!("{origin}/?mqtt_port={}", broker.port));
    let first = broker.connects.recv_timeout(Duration::from_secs(20)).expect("the UI connects to the broker");
    assert_eq!(first, (None, None), "first attempt is anonymous");
    b.wait_js(
        "the login form",
        Duration::from_secs(10),
        "document.querySelector('#login').open && window.spinState.connection() === 'unauthorized'",
    );
    assert_eq!(b.text("#conn"), "Login needed");
    b.type_into("#login-user", "alice");
    b.type_into("#login-pass", "s3cret");
    b.click("#login button[type=submit]");
    let second = broker.connects.recv_timeout(Duration::from_secs(20)).expect("the UI reconnects with credentials");
    assert_eq!(second, (Some("alice".into()), Some("s3cret".into())));
    b.wait_js(
        "the connection with credentials",
        Duration::from_secs(10),
        "window.spinState.connection() === 'connected' && !document.querySelector('#login').open",
    );
    assert_eq!(b.text("#conn"), "Live");
}

/// The household's first visit in chromium: a router with a password file but no admin yet
/// serves the setup page; the first-run password sets the admin password and logs in; the
/// graph appears, a service is blocked, and logging out leads back to the login page.
#[test]
fn ui_first_run_setup_login_graph_block_logout() {
    if !browser_available("ui_first_run_setup_login_graph_block_logout") {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let first_run = dir.path().join("first-run-password");
    std::fs::write(&first_run, "tulip-river-7\n").unwrap();
    let pw = dir.path().join("passwd");
    let s = spind()
        .arg("--replay")
        .arg(fixture("basic.pcap").to_str().unwrap())
        .arg("--replay-speed")
        .arg("0")
        .config_line(&format!("spinweb_password_file = {}", pw.display()))
        .config_line(&format!("spinweb_first_run_password_file = {}", first_run.display()))
        .start();
    wait_for("the replay to finish", Duration::from_secs(60), || {
        s.log_text().contains("replay finished").then_some(())
    });
    let sock = s.rpc_socket();
    let block_list = || -> Value {
        let a = testbed::http::rpc_unix(
            &sock,
            br#"{"jsonrpc":"2.0","id":1,"method":"list_iplist","params":{"list":"block"}}"#,
        );
        serde_json::from_str::<Value>(&a).unwrap()["result"].clone()
    };
    let origin = format!("http://127.0.0.1:{}", s.http_port);
    let b = Browser::start(1280, 800);
    b.goto(&format!("{origin}/"));
    b.wait_js(
        "the setup page",
        Duration::from_secs(20),
        "location.pathname === '/setup' && !!document.querySelector('#first_run')",
    );
    b.type_into("#first_run", "tulip-river-7");
    b.type_into("#password", "my own pass");
    b.type_into("#password2", "my own pass");
    b.click("#setup");
    b.wait_js(
        "the UI, connected through /mqtt with the session",
        Duration::from_secs(30),
        "location.pathname === '/' && window.spinState && window.spinState.connection() === 'connected'",
    );
    assert!(std::fs::read_to_string(&pw).unwrap().starts_with("admin:$6$"));
    let expr = format!(
        "window.spinState.nodes().filter(n => n.shown).map(n => n.label).includes('{CLIENT_MAC}') && \
         window.spinState.nodes().some(n => n.shown && n.label === 'www.example.test')"
    );
    b.wait_js("the graph", Duration::from_secs(30), &expr);
    block_from_panel(&b, "www.example.test", "true");
    wait_for("the block in spind's list", Duration::from_secs(10), || {
        block_list().as_array().is_some_and(|l| l.contains(&json!("198.51.100.10"))).then_some(())
    });
    b.click("#logout");
    b.wait_js(
        "the login page",
        Duration::from_secs(10),
        "location.pathname === '/login' && !!document.querySelector('#password')",
    );
    b.goto(&format!("{origin}/"));
    b.wait_js("the login page again: the session is gone", Duration::from_secs(10), "location.pathname === '/login'");
    // Logging in with the new password brings the UI back.
    b.type_into("#password", "my own pass");
    b.click("#login");
    b.wait_js(
        "the UI after login",
        Duration::from_secs(30),
        "location.pathname === '/' && window.spinState && window.spinState.connection() === 'connected'",
    );
}

/// On a LAN address the broker wants the admin too: the UI logs in to it with its session's MQTT
/// password (`/spin_api/mqtt_login`), through `/mqtt` on the web port. Chromium and spind run in
/// one network namespace, so the router's address is not loopback.
#[test]
fn ui_on_the_lan_logs_in_to_the_broker_with_its_session() {
    if !testbed::gate::root_or_skip("ui_on_the_lan_logs_in_to_the_broker_with_its_session")
        || !browser_available("ui_on_the_lan_logs_in_to_the_broker_with_its_session")
    {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    const ADDR: &str = "10.78.2.1";
    let ns = crate::common::lan_namespace("uilan", ADDR);
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("passwd");
    crate::common::set_admin_password(&pw, "lan pass 12");
    let s = crate::common::lan_spind(&ns, ADDR, &pw)
        .arg("--replay")
        .arg(fixture("basic.pcap").to_str().unwrap())
        .arg("--replay-speed")
        .arg("0")
        .spawn();
    let origin = format!("http://{ADDR}:{}", s.http_port);
    let log = s.log.clone();
    ns.run(move || {
        wait_for("spind's web port in the namespace", Duration::from_secs(30), || {
            std::net::TcpStream::connect((ADDR, s.http_port)).ok()
        });
        // Chromium and chromedriver are started from this thread, so they live in the namespace.
        let b = Browser::start(1280, 800);
        b.goto(&format!("{origin}/"));
        b.wait_js("the login page", Duration::from_secs(20), "location.pathname === '/login'");
        b.type_into("#password", "lan pass 12");
        b.click("#login");
        b.wait_js(
            "the UI, logged in to the LAN broker with the session's MQTT password",
            Duration::from_secs(30),
            "location.pathname === '/' && window.spinState && window.spinState.connection() === 'connected'",
        );
        let expr = format!("window.spinState.nodes().some(n => n.shown && n.label === '{CLIENT_MAC}')");
        b.wait_js("the graph from the LAN broker", Duration::from_secs(30), &expr);
    });
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(!text.contains("MQTT: refused"), "the UI was refused by the broker: {text}");
}

/// The WiFi dialog of a router with an access point (`wifi_settings_file`): it shows the network
/// (hostapd not running on this host: no radio), refuses a short passphrase with WPA's rule and
/// leaves the settings untouched, and saves a new name and passphrase (0600) saying that every
/// device must reconnect. The restart of the real hostapd is the rpi3 QEMU test's.
#[test]
fn ui_wifi_dialog_shows_the_network_and_changes_it() {
    use std::os::unix::fs::PermissionsExt;
    if !browser_available("ui_wifi_dialog_shows_the_network_and_changes_it") {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("wifi.conf");
    let before = "ssid=SPIN-AB12\npassphrase=first passphrase\ncountry=NL\n";
    std::fs::write(&settings, before).unwrap();
    let s = spind()
        .arg("--replay")
        .arg(fixture("basic.pcap").to_str().unwrap())
        .arg("--replay-speed")
        .arg("0")
        .config_line(&format!("wifi_settings_file = {}", settings.display()))
        .config_line(&format!("wifi_control_dir = {}", dir.path().join("hostapd").display()))
        .start();
    let b = Browser::start(1280, 800);
    b.goto(&format!("{}/", spind_ui_origin(s.http_port)));
    b.wait_js(
        "the WiFi button",
        Duration::from_secs(30),
        "window.spinState && window.spinState.bootstrapped() && !document.querySelector('#show-wifi').hidden",
    );
    b.click("#show-wifi");
    b.wait_js(
        "the WiFi dialog with the network",
        Duration::from_secs(10),
        "document.querySelector('#wifi').open && document.querySelector('#wifi-ssid').value === 'SPIN-AB12'",
    );
    assert!(b.text("#wifi-state").contains("not running"), "{}", b.text("#wifi-state"));
    assert_eq!(b.text("#wifi-clients"), "No device is connected.");
    assert_eq!(b.js("return document.querySelector('#wifi-pass').value;", json!([])), "", "the passphrase is not sent");

    b.type_into("#wifi-pass", "1234567");
    b.click("#wifi-save");
    b.wait_js(
        "the passphrase refused",
        Duration::from_secs(10),
        "document.querySelector('#wifi-message').textContent.includes('8 to 63')",
    );
    assert!(b.text("#wifi-message").starts_with("Not saved: Invalid 'passphrase'"), "{}", b.text("#wifi-message"));
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), before, "nothing changed");

    b.type_into("#wifi-ssid", "Our Home");
    b.type_into("#wifi-pass", "correct horse 42");
    b.click("#wifi-pass-show");
    assert_eq!(b.js("return document.querySelector('#wifi-pass').type;", json!([])), "text");
    b.click("#wifi-save");
    b.wait_js(
        "the settings saved",
        Duration::from_secs(10),
        "document.querySelector('#wifi-message').textContent.includes('must reconnect')",
    );
    b.screenshot(&artifacts_dir().join("ui-wifi.png"));
    let saved = std::fs::read_to_string(&settings).unwrap();
    assert!(saved.contains("\nssid=Our Home\npassphrase=correct horse 42\ncountry=NL\n"), "{saved}");
    assert_eq!(std::fs::metadata(&settings).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(s.call("get_wifi", json!({}))["ssid"], "Our Home");
    let errors = b.console_log();
    assert!(!errors.contains("Uncaught"), "no script errors: {errors}");
}

/// The bedtime editor in a device's panel: a preset sets the device's schedule (listed by
/// `list_device_schedules`), a bad schedule typed by hand is refused with spind's message and
/// changes nothing, and Remove takes the bedtime away.
#[test]
fn ui_bedtime_editor_sets_a_preset_refuses_a_bad_schedule_and_removes_it() {
    if !browser_available("ui_bedtime_editor_sets_a_preset_refuses_a_bad_schedule_and_removes_it") {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let s = replayed_spind();
    let b = Browser::start(1280, 800);
    b.goto(&format!("{}/", spind_ui_origin(s.http_port)));
    b.wait_js("the UI", Duration::from_secs(30), "window.spinState && window.spinState.bootstrapped()");
    click_node(&b, CLIENT_MAC);
    b.wait_js(
        "the device's bedtime section",
        Duration::from_secs(10),
        "(() => { const c = document.querySelector('#panel .bedtime [data-field=bedtime-current]'); \
         return c && c.textContent.startsWith('No bedtime'); })()",
    );
    let school = "Mo-Th,Su 21:00-07:00";
    b.click(&format!("#panel .bedtime button[data-preset=\"{school}\"]"));
    b.wait_js(
        "the preset set",
        Duration::from_secs(10),
        &format!(
            "document.querySelector('#panel .bedtime [data-field=bedtime-current]').textContent.includes('{school}')"
        ),
    );
    assert_eq!(s.call("list_device_schedules", json!({})), json!([{"device": CLIENT_MAC, "schedule": school}]));

    b.type_into("#bedtime-input", "Mo 25:00-26:00");
    b.click("#panel .bedtime button[data-action=bedtime-save]");
    b.wait_js(
        "the bad schedule refused",
        Duration::from_secs(10),
        "document.querySelector('#panel .bedtime [data-field=bedtime-message]').textContent.includes(\"Invalid 'schedule'\")",
    );
    assert_eq!(
        s.call("list_device_schedules", json!({})),
        json!([{"device": CLIENT_MAC, "schedule": school}]),
        "nothing changed"
    );
    b.screenshot(&artifacts_dir().join("ui-bedtime.png"));

    b.click("#panel .bedtime button[data-action=bedtime-remove]");
    b.wait_js(
        "the bedtime removed",
        Duration::from_secs(10),
        "document.querySelector('#panel .bedtime [data-field=bedtime-current]').textContent.startsWith('No bedtime')",
    );
    assert_eq!(s.call("list_device_schedules", json!({})), json!([]));
    let errors = b.console_log();
    assert!(!errors.contains("Uncaught"), "no script errors: {errors}");
}

/// Ends a process the test started (an HTTP server) when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The household controls (controls.js) against the replayed spind with a blocklist: in the
/// device's panel a service switched off reaches spind (`list_services`), "1 hour" pauses the
/// device (`list_paused_devices`) and the panel then says until when, with Unpause; the Lists
/// dialog shows the configured blocklist with spind's counts and the network-wide switches, and
/// adds a list from a URL (a bad one refused with spind's error), downloads it and removes it.
#[test]
fn ui_device_panel_switches_a_service_off_pauses_and_the_lists_dialog_shows_counts() {
    if !browser_available("ui_device_panel_switches_a_service_off_pauses_and_the_lists_dialog_shows_counts") {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("ads.hosts");
    std::fs::write(&list, "# ads\n0.0.0.0 ads.example\n||track.example^\nmore.example\nnot a name at all\n").unwrap();
    let s = spind()
        .arg("--replay")
        .arg(fixture("basic.pcap").to_str().unwrap())
        .arg("--replay-speed")
        .arg("0")
        .config_line(&format!("blocklist_files = {}", list.display()))
        .start();
    wait_for("the replay to finish", Duration::from_secs(60), || {
        s.log_text().contains("replay finished").then_some(())
    });
    let b = Browser::start(1280, 800);
    b.goto(&format!("{}/", spind_ui_origin(s.http_port)));
    b.wait_js(
        "the device in the graph",
        Duration::from_secs(30),
        &format!("window.spinState && window.spinState.bootstrapped() && window.spinState.nodes().some(n => n.label === '{CLIENT_MAC}' && n.shown)"),
    );

    // The device's panel: a switch per service; TikTok switched off reaches spind.
    click_node(&b, CLIENT_MAC);
    b.wait_js(
        "the device's service switches",
        Duration::from_secs(15),
        "document.querySelector('#panel .controls input[data-service=tiktok]') !== null",
    );
    let listed = s.call("list_services", json!({"device": CLIENT_MAC}));
    let switches = b.js("return document.querySelectorAll('#panel .controls input[role=switch]').length;", json!([]));
    assert_eq!(switches.as_u64(), Some(listed.as_array().unwrap().len() as u64), "one switch per service: {listed}");
    assert_eq!(b.js("return document.querySelector('#panel input[data-service=tiktok]').checked;", json!([])), true);
    b.click("#panel input[data-service=tiktok]");
    let blocked_for =
        |v: &Value, id: &str| v.as_array().unwrap().iter().find(|s| s["id"] == id).unwrap()["blocked"].clone();
    wait_for("TikTok blocked for the device in spind", Duration::from_secs(15), || {
        let l = s.call("list_services", json!({"device": CLIENT_MAC}));
        (blocked_for(&l, "tiktok") == true).then_some(())
    });
    let all = s.call("list_services", json!({}));
    assert_eq!(blocked_for(&all, "tiktok"), false, "for this device only");
    b.wait_js(
        "the switch drawn off after spind's answer",
        Duration::from_secs(10),
        "(() => { const i = document.querySelector('#panel input[data-service=tiktok]'); return i && !i.checked && !i.disabled; })()",
    );

    // "1 hour": the device is paused, and the panel says until when.
    b.click("#panel button[data-pause='1h']");
    wait_for("the device paused in spind", Duration::from_secs(15), || {
        let p = s.call("list_paused_devices", json!({}));
        p.as_array().unwrap().iter().any(|d| d["device"] == CLIENT_MAC).then_some(())
    });
    b.wait_js(
        "the pause's end and Unpause in the panel",
        Duration::from_secs(10),
        "document.querySelector('#panel [data-field=paused-until]') !== null && document.querySelector('#panel button[data-action=unpause]') !== null",
    );
    b.click("#panel button[data-action=unpause]");
    wait_for("the device unpaused in spind", Duration::from_secs(15), || {
        let p = s.call("list_paused_devices", json!({}));
        p.as_array().unwrap().is_empty().then_some(())
    });

    // The Lists dialog: the blocklist with spind's counts, and the network-wide switches.
    let counts = s.call("list_blocklists", json!({}));
    let c = &counts["lists"][0];
    assert_eq!((c["names"].as_u64(), c["skipped"].as_u64()), (Some(3), Some(1)), "{counts}");
    b.click("#show-controls");
    let want = format!("{} names", c["names"]);
    b.wait_js(
        "the blocklist's counts in the Lists dialog",
        Duration::from_secs(15),
        &format!(
            "document.querySelector('#controls').open && document.querySelector('#controls-blocklists').textContent.includes({})",
            json!(want)
        ),
    );
    let text = b.text("#controls-blocklists");
    assert!(text.contains(&list.display().to_string()) && text.contains("1 lines skipped"), "{text}");
    b.wait_js(
        "the network-wide switches",
        Duration::from_secs(10),
        "document.querySelector('#controls-services input[data-service=youtube]') !== null",
    );
    b.click("#controls-services input[data-service=youtube]");
    wait_for("YouTube blocked for the whole network", Duration::from_secs(15), || {
        let l = s.call("list_services", json!({}));
        (blocked_for(&l, "youtube") == true).then_some(())
    });

    // A list from a URL (a real HTTP server on loopback): a bad address is refused with spind's
    // error; a good one is added, downloaded by spind's fetcher and shown with its counts; Remove
    // takes it away again.
    b.type_into("#blocklist-url", "ftp://lists.example/x.txt");
    b.click("#blocklist-add button[type=submit]");
    b.wait_js(
        "spind's refusal of the URL",
        Duration::from_secs(10),
        "!document.querySelector('#toast').hidden && document.querySelector('#toast').textContent.includes(\"Invalid 'url'\")",
    );
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("kids.txt"), "||games.example^\n0.0.0.0 video.example\n").unwrap();
    let port = testbed::free_port();
    let (shell, www_dir, port_s) = (testbed::netns::shell(), www.display().to_string(), port.to_string());
    let server = testbed::runner::cmd!(shell, "python3 -m http.server {port_s} --bind 127.0.0.1 --directory {www_dir}")
        .spawn(testbed::runner::Stream::Null, testbed::runner::Stream::Null)
        .expect("python3's HTTP server");
    let _server = KillOnDrop(server);
    wait_for("the list's HTTP server", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let url = format!("http://127.0.0.1:{port}/kids.txt");
    b.js("document.querySelector('#blocklist-url').value = '';", json!([]));
    b.type_into("#blocklist-url", &url);
    b.type_into("#blocklist-name", "Kids' list");
    b.click("#blocklist-add button[type=submit]");
    let added = wait_for("the URL list downloaded by spind", Duration::from_secs(60), || {
        let l = s.call("list_blocklists", json!({}));
        l["lists"].as_array().unwrap().iter().find(|x| x["url"] == url.as_str() && x["names"] == 2).cloned()
    });
    assert_eq!(added["name"], "Kids' list", "{added}");
    b.click("#blocklist-refresh");
    b.wait_js(
        "the URL list with its counts in the dialog",
        Duration::from_secs(20),
        "(() => { const li = document.querySelector(\"#controls-blocklists li[data-list=\\\"Kids' list\\\"]\"); return li && li.textContent.includes('2 names') && li.querySelector('button[data-remove-list]'); })()",
    );
    b.click(&format!("#controls-blocklists button[data-remove-list='{}']", added["id"]));
    wait_for("the URL list removed in spind", Duration::from_secs(15), || {
        let l = s.call("list_blocklists", json!({}));
        (!l["lists"].as_array().unwrap().iter().any(|x| x["url"] == url.as_str())).then_some(())
    });
    b.click("#controls-close");

    // A blocked DNS query as spind publishes it (the name's node, then `blocked` from the
    // device to it on port 53): the graph draws the name with a red (blocked) edge.
    let dev = node_by_label(&b, CLIENT_MAC)["id"].as_i64().unwrap();
    let h = |msg: Value| {
        b.js("window.spinState.handle(arguments[0]);", json!([msg]));
    };
    h(json!({"command": "nodeInfo", "result": {"id": 9100, "lastseen": 1, "ips": [], "domains": ["www.tiktok.com."]}}));
    h(
        json!({"command": "blocked", "result": {"from": dev, "to": 9100, "protocol": 17, "from_port": 40000, "to_port": 53, "size": 0, "count": 1}}),
    );
    b.wait_js(
        "the blocked name in the graph with a blocked edge",
        Duration::from_secs(10),
        &format!(
            "window.spinState.nodes().some(n => n.id === 9100 && n.label === 'www.tiktok.com' && n.shown) && \
             (() => {{ const e = window.spinState.graph.edges.get('{dev}>9100'); return !!e && e.color === '#dc2626'; }})()"
        ),
    );
    b.screenshot(&artifacts_dir().join("ui-controls.png"));
    let errors = b.console_log();
    assert!(!errors.contains("Uncaught"), "no script errors: {errors}");
}

/// `basic.pcap` with its clock moved so that it ends a minute ago: its traffic is today's in the
/// history (the replay's clock is the capture's). Classic pcap: 24-byte header, then records of
/// a 16-byte header (seconds first) and the frame.
fn capture_ending_now(dir: &std::path::Path) -> std::path::PathBuf {
    let mut data = std::fs::read(fixture("basic.pcap")).unwrap();
    assert_eq!(&data[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "a little-endian classic pcap");
    let mut records = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        records.push(at);
        let len = u32::from_le_bytes(data[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + len;
    }
    let secs = |d: &[u8], at: usize| u32::from_le_bytes(d[at..at + 4].try_into().unwrap()) as i64;
    let last = secs(&data, *records.last().unwrap());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let shift = now - 60 - last;
    for r in records {
        let t = (secs(&data, r) + shift) as u32;
        data[r..r + 4].copy_from_slice(&t.to_le_bytes());
    }
    let out = dir.join("basic-now.pcap");
    std::fs::write(&out, data).unwrap();
    out
}

fn history_bytes(s: &Spind, from: i64, to: i64, resolution: &str) -> u64 {
    let h = s.call("get_history", json!({"device": CLIENT_MAC, "from": from, "to": to, "resolution": resolution}));
    h.as_array().unwrap().iter().map(|b| b["bytes_in"].as_u64().unwrap() + b["bytes_out"].as_u64().unwrap()).sum()
}

/// The devices view (today's traffic and top services as spind's history has them, sorting),
/// the device page's history chart over 24 hours, 7 days and 30 days with the same totals as
/// `get_history`, and the alerts list: the capture's device is new, its alert is unread, and
/// "Mark read" acknowledges it in spind; a device joining later (over extsrc) reaches the open
/// list and the count live from `SPIN/alerts`. On a phone's width the page does not scroll
/// sideways.
#[test]
fn ui_devices_view_history_chart_and_alerts() {
    if !browser_available("ui_devices_view_history_chart_and_alerts") {
        return;
    }
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let capture = capture_ending_now(dir.path());
    let extsrc = dir.path().join("extsrc.sock");
    let s = replayed_with(&capture, &["-e", extsrc.to_str().unwrap()]);
    let b = Browser::start(1280, 800);
    b.goto(&format!("{}/", spind_ui_origin(s.http_port)));
    b.wait_js("the UI's first load", Duration::from_secs(30), "window.spinState && window.spinState.bootstrapped()");

    // The devices view: the device's traffic today is what spind's hourly history says.
    let midnight =
        b.js("const d = new Date(); d.setHours(0, 0, 0, 0); return Math.floor(d.getTime() / 1000);", json!([]));
    let midnight = midnight.as_i64().unwrap();
    let now = b.js("return Math.floor(Date.now() / 1000);", json!([])).as_i64().unwrap();
    let today = history_bytes(&s, midnight, now + 3600, "hour");
    assert!(today > 100_000, "the shifted capture is today's traffic in the history: {today}");
    b.click("#show-devices");
    let row = format!("#devices tr[data-mac='{CLIENT_MAC}']");
    b.wait_js("the device's row", Duration::from_secs(20), &format!("document.querySelector(\"{row}\") !== null"));
    let shown = b.text(&format!("{row} td[data-field=today]"));
    let want = b.js("return formatBytes(arguments[0]);", json!([today]));
    assert_eq!(shown, want.as_str().unwrap(), "today's traffic");
    let top = s.call("top_services", json!({"device": CLIENT_MAC, "from": midnight, "to": now + 3600}));
    let first = top[0]["name"].as_str().unwrap().to_string();
    assert!(b.text(&format!("{row} td[data-field=top]")).contains(&first), "top services name {first}: {top}");
    let status = b.text(&format!("{row} td[data-field=status]"));
    assert!(status == "online" || status == "offline", "neither blocked nor paused: {status}");
    // Sorting by name, both ways.
    let names = "return Array.from(document.querySelectorAll('#devices tbody tr td:first-child button')).map(x => x.dataset.label);";
    b.click("#devices th button[data-sort=label]");
    let up = b.js(names, json!([]));
    let mut sorted: Vec<String> = up.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_lowercase()).collect();
    sorted.sort();
    let got: Vec<String> = up.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_lowercase()).collect();
    assert_eq!(got, sorted, "ascending by name");
    assert_eq!(
        b.js("return document.querySelector('#devices th[aria-sort=ascending] button').dataset.sort;", json!([])),
        "label"
    );
    b.click("#devices th button[data-sort=label]");
    let down = b.js(names, json!([]));
    let mut rev: Vec<Value> = up.as_array().unwrap().clone();
    rev.reverse();
    assert_eq!(down.as_array().unwrap(), &rev, "descending by name");

    // The device page: the chart's totals are get_history's over its range, at each range.
    b.click(&format!("{row} td:first-child button"));
    b.wait_js("the history chart", Duration::from_secs(20), "document.querySelector('#history-chart') !== null");
    assert!(b.text("#device-body dl").contains("random"), "a random MAC is flagged: {}", b.text("#device-body dl"));
    for (range, buckets, resolution) in [("day", 24, "hour"), ("week", 168, "hour"), ("month", 30, "day")] {
        b.click(&format!("#device button[data-range={range}]"));
        let c = b.wait_js(
            &format!("the {range} chart"),
            Duration::from_secs(20),
            &format!("(() => {{ const c = SpinDevices.chart(); return c.range === '{range}' && document.querySelector('#history-chart') && c; }})()"),
        );
        assert_eq!(c["buckets"], buckets, "{range}: {c}");
        let (from, to) = (c["from"].as_i64().unwrap(), c["to"].as_i64().unwrap());
        assert!(from <= now && now < to, "{range} ends now: {c}");
        let want = history_bytes(&s, from, to, resolution);
        assert_eq!(c["bytes_in"].as_u64().unwrap() + c["bytes_out"].as_u64().unwrap(), want, "{range}: {c}");
        assert!(c["with_traffic"].as_u64().unwrap() >= 1, "{range}: bars drawn: {c}");
    }
    assert!(b.text("#device-top").contains(&first), "the page's top services: {}", b.text("#device-top"));
    b.screenshot(&artifacts_dir().join("ui-device-page.png"));
    b.click("#device-close");

    // Alerts: the new device's alert is unread; marking it read reaches spind.
    let alerts = s.call("list_alerts", json!({"since": 0}));
    let unread = alerts.as_array().unwrap().iter().filter(|a| a["acked"] == false).count();
    let new_dev = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "new_device" && a["device"] == CLIENT_MAC)
        .unwrap()
        .clone();
    assert!(unread >= 1);
    b.wait_js(
        "the unread count",
        Duration::from_secs(20),
        &format!("document.querySelector('#alerts-unread').textContent === '{unread}'"),
    );
    b.click("#show-alerts");
    let item = format!("#alerts li[data-alert='{}'] button.ack", new_dev["id"]);
    b.wait_js("the device's alert", Duration::from_secs(20), &format!("document.querySelector(\"{item}\") !== null"));
    b.click(&item);
    wait_for("the alert acknowledged in spind", Duration::from_secs(15), || {
        let l = s.call("list_alerts", json!({"since": 0}));
        l.as_array().unwrap().iter().any(|a| a["id"] == new_dev["id"] && a["acked"] == true).then_some(())
    });
    b.wait_js(
        "one fewer unread",
        Duration::from_secs(10),
        &format!("document.querySelector('#alerts-unread').textContent === '{}'", unread - 1),
    );

    // A live alert: a device joins while the list is open (SPIN's extsrc announces it); the
    // list and the count follow SPIN/alerts without a reload.
    let joined = "02:00:5e:10:00:99";
    let sock = std::os::unix::net::UnixDatagram::unbound().unwrap();
    sock.send_to(&crate::extsrc_input::arp(joined, [192, 168, 1, 99]), &extsrc).unwrap();
    let live = wait_for("spind's new_device alert of the joined device", Duration::from_secs(20), || {
        let l = s.call("list_alerts", json!({"since": 0}));
        l.as_array().unwrap().iter().find(|a| a["kind"] == "new_device" && a["device"] == joined).cloned()
    });
    b.wait_js(
        "the joined device's alert in the open list",
        Duration::from_secs(20),
        &format!("document.querySelector(\"#alerts li[data-alert='{}'] button.ack\") !== null", live["id"]),
    );
    b.wait_js(
        "the count risen by the live alert",
        Duration::from_secs(10),
        &format!("document.querySelector('#alerts-unread').textContent === '{unread}'"),
    );
    b.click("#alerts-close");

    // A phone: the devices view fits the width (the table scrolls inside the dialog).
    b.set_window(390, 844);
    b.click("#show-devices");
    b.wait_js(
        "the device's row on a phone",
        Duration::from_secs(20),
        &format!("document.querySelector(\"{row}\") !== null"),
    );
    let overflow = b.js("return document.documentElement.scrollWidth - window.innerWidth;", json!([]));
    assert!(overflow.as_i64().unwrap() <= 0, "no sideways scrolling on a phone: {overflow}");
    b.screenshot(&artifacts_dir().join("ui-devices-phone.png"));
    let errors = b.console_log();
    assert!(!errors.contains("Uncaught"), "no script errors: {errors}");
}
