//! The admin account on a spind that listens on a non-loopback address (in a network namespace):
//! first-run setup with the first-run password, login sessions, Basic auth, every endpoint
//! refused without credentials, foreign `Origin` and `Host` refused, malformed credentials and
//! oversize heads refused cleanly, the failed-login limit; and `spind --set-password`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use base64ct::{Base64, Encoding};
use testbed::http::{self, Resp};
use testbed::runner::cmd;
use testbed::runner::Stdin;

use crate::common::SPIND;

const ADDR: &str = "10.77.0.1";

fn basic(user: &str, pw: &str) -> String {
    format!("Authorization: Basic {}", Base64::encode_string(format!("{user}:{pw}").as_bytes()))
}

use crate::common::http_request as ask;

fn ws(addr: SocketAddr, extra: &[&str]) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let up = http::ws_upgrade(extra).replace("Host: 127.0.0.1", &format!("Host: {addr}"));
    c.write_all(up.as_bytes()).unwrap();
    http::read_head(&mut c)
}

/// Publishes `request` on `SPIN/jsonrpc/q` as an anonymous MQTT client (QoS 1, so the broker
/// has routed it once the PUBACK is in) and collects what arrives on `SPIN/jsonrpc/a` in the
/// next 3 s: empty when nobody answered. A broker on the LAN refuses the CONNECT itself (5, not
/// authorized): then nothing was published (`mqtt_admin` tests the broker's side in full).
fn anonymous_mqtt_rpc(broker: SocketAddr, request: &str) -> Vec<u8> {
    use crate::mqtt_clients::{connect, packet, string, subscribe};
    let mut s = TcpStream::connect(broker).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = [0u8; 4];
    s.write_all(&connect("anonymous-lan-device", 4)).unwrap();
    s.read_exact(&mut head).unwrap();
    if head == [0x20, 2, 0, 5] {
        return Vec::new();
    }
    assert_eq!(head, [0x20, 2, 0, 0], "CONNACK accepted");
    s.write_all(&subscribe(1, &["SPIN/jsonrpc/a"])).unwrap();
    let mut suback = [0u8; 5];
    s.read_exact(&mut suback).unwrap();
    assert_eq!(suback[0], 0x90, "SUBACK");
    let mut body = Vec::new();
    string("SPIN/jsonrpc/q", &mut body);
    body.extend_from_slice(&2u16.to_be_bytes());
    body.extend_from_slice(request.as_bytes());
    s.write_all(&packet(0x32, &body)).unwrap();
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x40, "PUBACK");
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    answer
}

fn cookie_of(r: &Resp) -> String {
    let c = r.header("set-cookie").unwrap_or_else(|| panic!("no cookie: {}", r.head));
    c.split(';').next().unwrap().to_string()
}

const RPC_BLOCK: &str =
    r#"{"jsonrpc":"2.0","id":1,"method":"add_iplist_ip","params":{"list":"block","ip":"203.0.113.9"}}"#;
const RPC_LIST: &[u8] = br#"{"jsonrpc":"2.0","id":2,"method":"list_iplist","params":{"list":"block"}}"#;

#[test]
fn only_the_admin_controls_a_router_on_the_lan() {
    if !testbed::gate::root_or_skip("only_the_admin_controls_a_router_on_the_lan") {
        return;
    }
    let ns = crate::common::lan_namespace("auth", ADDR);
    let dir = tempfile::tempdir().unwrap();
    let first_run = dir.path().join("first-run-password");
    std::fs::write(&first_run, "horse-battery-42\n").unwrap();
    let pwfile = dir.path().join("passwd");
    let s = crate::common::lan_spind(&ns, ADDR, &pwfile)
        .arg("-P")
        .config_line(&format!("spinweb_first_run_password_file = {}", first_run.display()))
        .config_line("spinweb_hostnames = spin.example.org")
        .spawn();
    let addr: SocketAddr = format!("{ADDR}:{}", s.http_port).parse().unwrap();
    let mqtt: SocketAddr = format!("{ADDR}:{}", s.mqtt_port).parse().unwrap();
    let rpc_sock = s.rpc_socket();
    let blocked = move || http::rpc_unix(&rpc_sock, RPC_LIST).contains("203.0.113.9");
    let log = s.log.clone();
    ns.run(move || {
        testbed::wait_for("spind's web port in the namespace", Duration::from_secs(20), || {
            TcpStream::connect(addr).ok()
        });
        // Before setup: only the setup page.
        let r = ask(addr, "GET", "/", &[], "");
        assert_eq!((r.status, r.header("location").as_deref()), (303, Some("/setup")), "{}", r.head);
        assert_eq!(ask(addr, "POST", "/spin_api/jsonrpc", &[], RPC_BLOCK).status, 503);
        assert!(ws(addr, &[]).starts_with("HTTP/1.1 503"));
        let page = ask(addr, "GET", "/setup", &[], "");
        assert_eq!(page.status, 200);
        assert!(page.text().contains("first-run password") && !page.text().contains("<script"), "{}", page.text());
        // Security headers on every page.
        for h in ["content-security-policy", "x-frame-options", "referrer-policy", "x-content-type-options"] {
            assert!(page.header(h).is_some(), "{h} missing: {}", page.head);
        }
        assert!(page.header("content-security-policy").unwrap().contains("frame-ancestors 'none'"));
        assert!(!page.header("content-security-policy").unwrap().contains("script-src 'self' 'unsafe-inline'"));
        let form = "first_run=wrong&user=admin&password=n3w-secret&password2=n3w-secret";
        assert_eq!(ask(addr, "POST", "/setup", &["Content-Type: application/x-www-form-urlencoded"], form).status, 401);
        assert!(!blocked());
        let form = "first_run=horse-battery-42&user=admin&password=n3w-secret&password2=n3w-secret";
        let foreign = ask(addr, "POST", "/setup", &["Origin: http://evil.example"], form);
        assert_eq!(foreign.status, 403, "setup from a foreign page");
        let r = ask(addr, "POST", "/setup", &[&format!("Origin: http://{addr}")], form);
        assert_eq!(r.status, 303, "{}", r.text());
        let set = r.header("set-cookie").unwrap();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Max-Age="), "{set}");
        let cookie = format!("Cookie: {}", cookie_of(&r));
        // The first-run password no longer works anywhere.
        assert_eq!(ask(addr, "POST", "/setup", &[], form).status, 409);
        assert_eq!(ask(addr, "POST", "/login", &[], "user=admin&password=horse-battery-42").status, 401);
        assert_eq!(ask(addr, "GET", "/", &[&basic("admin", "horse-battery-42")], "").status, 401);
        let mode = std::fs::metadata(&pwfile).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // Every endpoint refused without credentials, working with them.
        let status_url = "/spin_api/tcpdump_status?device=02:00:00:00:00:01";
        for (m, t) in [
            ("GET", status_url),
            ("GET", "/spin_api/tcpdump_stop?device=02:00:00:00:00:01"),
            ("GET", "/spin_api/tcpdump_start?device=02:00:00:00:00:01"),
            ("GET", "/spin_api/jsonrpc"),
            ("POST", "/password"),
        ] {
            assert_eq!(ask(addr, m, t, &[], "").status, 401, "{m} {t}");
        }
        assert_eq!(ask(addr, "POST", "/spin_api/jsonrpc", &[], RPC_BLOCK).status, 401);
        assert!(!blocked(), "an anonymous RPC changed nothing");
        // Nor does one published anonymously on SPIN/jsonrpc/q: no answer, nothing changed.
        let answer = anonymous_mqtt_rpc(mqtt, RPC_BLOCK);
        assert!(answer.is_empty(), "an anonymous MQTT RPC was answered: {answer:?}");
        assert!(!blocked(), "an anonymous MQTT RPC changed nothing");
        let r = ask(addr, "GET", "/index.html", &[], "");
        assert_eq!((r.status, r.header("location").as_deref()), (303, Some("/login")));
        let r = ask(addr, "GET", "/js/app.js", &[], "");
        assert_eq!(r.status, 303, "the UI's files need a login too");
        assert!(ws(addr, &[]).starts_with("HTTP/1.1 401"));
        assert_eq!(ask(addr, "GET", status_url, &[&cookie], "").status, 200);
        assert_eq!(ask(addr, "GET", "/", &[&cookie], "").status, 200);
        assert_eq!(ask(addr, "GET", status_url, &[&basic("admin", "n3w-secret")], "").status, 200);
        assert!(ws(addr, &[&cookie, &format!("Origin: http://{ADDR}:{}", addr.port())]).starts_with("HTTP/1.1 101"));
        assert!(ws(addr, &[&basic("admin", "n3w-secret")]).starts_with("HTTP/1.1 101"), "scripts use Basic");

        // A foreign Origin (or Referer) is refused even with valid credentials; nothing changes.
        let auth = basic("admin", "n3w-secret");
        for bad in ["Origin: http://evil.example", "Origin: null", "Referer: http://evil.example/x"] {
            assert_eq!(ask(addr, "POST", "/spin_api/jsonrpc", &[&auth, bad], RPC_BLOCK).status, 403, "{bad}");
            assert_eq!(ask(addr, "POST", "/spin_api/jsonrpc", &[&cookie, bad], RPC_BLOCK).status, 403, "{bad}");
        }
        assert!(ws(addr, &[&cookie, "Origin: http://evil.example"]).starts_with("HTTP/1.1 403"));
        assert!(!blocked());
        // A foreign Host (DNS rebinding) is refused.
        for h in ["Host: rebind.example", "Host: 10.77.0.2", "Host: evil.example:13026"] {
            assert_eq!(ask(addr, "GET", "/", &[h, &cookie], "").status, 421, "{h}");
            assert_eq!(ask(addr, "POST", "/spin_api/jsonrpc", &[h, &auth], RPC_BLOCK).status, 421, "{h}");
        }
        assert!(!blocked());
        for h in ["Host: router.lan", "Host: spin.example.org"] {
            assert_eq!(ask(addr, "GET", "/", &[h, &cookie], "").status, 200, "{h}");
        }
        // Same origin with credentials works.
        let ok = ask(
            addr,
            "POST",
            "/spin_api/jsonrpc",
            &[&cookie, &format!("Origin: http://{ADDR}:{}", addr.port())],
            RPC_BLOCK,
        );
        assert_eq!(ok.status, 200, "{}", ok.text());
        assert!(blocked());

        // Malformed credentials and oversize heads: a clean refusal.
        for bad in [
            "Authorization: Basic",
            "Authorization: Basic !!!",
            "Authorization: Digest x=y",
            "Authorization: Basic YWRtaW4=",
            "Cookie: spind_session=",
            "Cookie: spind_session=zzzz",
            "Cookie: spind_session=00000000000000000000000000000000000000000000000000000000000000000",
        ] {
            let r = ask(
                addr,
                "POST",
                "/spin_api/jsonrpc",
                &[bad],
                RPC_LIST.iter().map(|b| *b as char).collect::<String>().as_str(),
            );
            assert_eq!(r.status, 401, "{bad}");
        }
        let huge = format!("Cookie: {}", "a".repeat(20000));
        let r = ask(addr, "GET", "/", &[&huge], "");
        assert!(r.status == 431 || r.status == 400, "{}", r.head);

        // Logout ends the session.
        assert_eq!(ask(addr, "POST", "/logout", &[&cookie], "").status, 303);
        assert_eq!(ask(addr, "GET", status_url, &[&cookie], "").status, 401);
        // Login gives a new one.
        let r = ask(addr, "POST", "/login", &[], "user=admin&password=n3w-secret");
        assert_eq!(r.status, 303);
        let cookie = format!("Cookie: {}", cookie_of(&r));
        assert_eq!(ask(addr, "GET", status_url, &[&cookie], "").status, 200);
        // A wrong password and an unknown user get the same answer.
        let a = ask(addr, "POST", "/login", &[], "user=admin&password=nope");
        let b = ask(addr, "POST", "/login", &[], "user=nobody&password=nope");
        assert_eq!((a.status, a.text()), (b.status, b.text()));

        // Brute force: the address is refused (429, Retry-After), even with the right password.
        let mut limited = None;
        for _ in 0..10 {
            let r = ask(addr, "GET", status_url, &[&basic("admin", "guess")], "");
            if r.status == 429 {
                limited = Some(r);
                break;
            }
            assert_eq!(r.status, 401);
        }
        let r = limited.expect("no 429 after 10 wrong passwords");
        assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
        assert_eq!(ask(addr, "GET", status_url, &[&basic("admin", "n3w-secret")], "").status, 429);
        assert_eq!(ask(addr, "POST", "/login", &[], "user=admin&password=n3w-secret").status, 429);
        assert!(ws(addr, &[&basic("admin", "n3w-secret")]).starts_with("HTTP/1.1 429"));
        // A logged-in browser keeps working.
        assert_eq!(ask(addr, "GET", status_url, &[&cookie], "").status, 200);
    });
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(text.contains("failed logins from 10.77.0.1"), "{text}");
    drop(s);
}

fn set_password(conf: &std::path::Path, input: &[u8]) -> (i32, String) {
    let sh = testbed::netns::shell();
    let spind = SPIND;
    let out = cmd!(sh, "{spind} -c {conf} --set-password admin").stdin(Stdin::Bytes(input.to_vec())).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn set_password_stores_a_private_sha512_crypt_line_and_keeps_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("passwd");
    std::fs::write(&pw, "# mine\nbroken line\nother:$6$saltsalt$x\n").unwrap();
    let conf = dir.path().join("spind.conf");
    std::fs::write(&conf, format!("spinweb_password_file = {}\nlog_usesyslog = 0\n", pw.display())).unwrap();
    let before = std::fs::read_to_string(&pw).unwrap();
    let (code, err) = set_password(&conf, b"\n");
    assert_eq!(code, 1, "empty password: {err}");
    assert!(err.contains("empty"), "{err}");
    assert_eq!(std::fs::read_to_string(&pw).unwrap(), before, "nothing changed");
    let (code, err) = set_password(&conf, b"s3cret pass\n");
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&pw).unwrap();
    assert!(text.starts_with("# mine\nbroken line\nother:$6$saltsalt$x\nadmin:$6$"), "{text}");
    assert_eq!(std::fs::metadata(&pw).unwrap().permissions().mode() & 0o777, 0o600);

    // A spind with that file: the bad line is named, the good one works.
    let s = crate::common::passive(&[&format!("spinweb_password_file = {}", pw.display())]);
    let port = s.http_port;
    let status = "/spin_api/tcpdump_status?device=02:00:00:00:00:01";
    assert_eq!(http::req(port, "GET", status, &[&basic("admin", "s3cret pass")]).status, 200);
    assert_eq!(http::req(port, "GET", status, &[&basic("admin", "s3cret")]).status, 401);
    assert!(s.log_text().contains("line 2: not user:hash"), "{}", s.log_text());
    // Re-read on change: a new password works without a restart.
    std::thread::sleep(Duration::from_millis(20)); // a new modification time
    assert_eq!(set_password(&conf, b"other one\r\n").0, 0);
    assert_eq!(http::req(port, "GET", status, &[&basic("admin", "other one")]).status, 200);
    assert_eq!(http::req(port, "GET", status, &[&basic("admin", "s3cret pass")]).status, 401);
}

#[test]
fn a_loopback_spind_without_a_password_says_it_is_open() {
    let s = crate::common::passive(&[]);
    assert_eq!(http::get(s.http_port, "/spin_api/tcpdump_status?device=02:00:00:00:00:01").status, 200);
    assert!(s.log_text().contains("no admin password"), "{}", s.log_text());
    let r = http::raw(s.http_port, b"GET / HTTP/1.1\r\nHost: rebind.example\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 421, "DNS rebinding is refused on loopback too");
}
