//! spind killed with SIGKILL in the middle of writing its state, a hundred times over: every
//! restart loads a valid state, and every change whose RPC was answered before the kill is
//! there (nothing acknowledged is lost). Changes in flight at the kill may or may not be.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::spind;

/// One JSON-RPC call over HTTP that may fail (spind is killed under it): the reply, if any.
fn try_rpc(port: u16, method: &str, params: &Value) -> Option<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!(
        "POST /spin_api/jsonrpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (_, json) = resp.split_once("\r\n\r\n")?;
    serde_json::from_str(json.trim()).ok()
}

#[test]
fn a_hundred_kills_while_writing_lose_no_acknowledged_change() {
    let state = tempfile::tempdir().unwrap();
    // (list, address) pairs whose add was answered with success; removals likewise.
    let mut acked: BTreeSet<(String, String)> = BTreeSet::new();
    let mut next = 0u32;
    for round in 0..100u32 {
        let s = spind().arg("-P").state_dir(state.path()).start();
        // The state of the last round loaded: every acknowledged entry is on its list.
        for list in ["block", "allow", "ignore"] {
            let r = s.rpc("list_iplist", json!({ "list": list }));
            let have: BTreeSet<String> = r["result"]
                .as_array()
                .unwrap_or_else(|| panic!("round {round}: list_iplist {list}: {r}"))
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            for (l, ip) in acked.iter().filter(|(l, _)| l == list) {
                assert!(have.contains(ip), "round {round}: acknowledged {ip} missing from {l}: {have:?}");
            }
        }
        let log = s.log_text();
        assert!(!log.contains("panicked"), "round {round}: {log}");
        // A list line cut short would be reported as `<dir>/<list>.list:<line>: ...`.
        assert!(!log.contains(".list:") && !log.contains("cannot read"), "round {round}: state unreadable:\n{log}");

        // Writers hammer the lists until the kill.
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(Mutex::new(Vec::new()));
        let port = s.http_port;
        let writers: Vec<_> = ["block", "allow", "ignore"]
            .into_iter()
            .enumerate()
            .map(|(w, list)| {
                let (stop, done) = (stop.clone(), done.clone());
                let base = next + w as u32 * 10_000;
                std::thread::spawn(move || {
                    let mut i = base;
                    while !stop.load(Ordering::Relaxed) {
                        let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
                        match try_rpc(port, "add_iplist_ip", &json!({"list": list, "ip": ip})) {
                            Some(r) if r.get("error").is_none() => done.lock().unwrap().push((list.to_string(), ip)),
                            Some(r) => panic!("add_iplist_ip refused: {r}"),
                            None => return,
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        next += 30_000;
        // Kill at a different point of the writing each round (0 to 95 ms in).
        std::thread::sleep(Duration::from_millis(u64::from(round % 20) * 5));
        let mut s = s;
        s.child.kill().unwrap();
        s.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        acked.extend(done.lock().unwrap().drain(..));
    }
    assert!(acked.len() > 300, "the writers got only {} changes through", acked.len());
    // What interrupted writes left behind was cleared at each start: no temp files pile up.
    let leftovers: Vec<String> = std::fs::read_dir(state.path())
        .unwrap()
        .chain(std::fs::read_dir(state.path().join("nodestore")).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.len() <= 3, "temp files of killed writes pile up: {leftovers:?}");
}
