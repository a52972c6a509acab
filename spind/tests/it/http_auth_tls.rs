//! Basic auth (`spinweb_password_file`) and HTTPS (`spinweb_tls_*`) against the real binary,
//! including the MQTT WebSocket over `wss://127.0.0.1:<web port>/mqtt`. Needs the `tls`
//! feature (`cargo test -p spind --all-features`).
#![cfg(feature = "tls")]

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64ct::{Base64, Encoding};
use sha_crypt::{PasswordHasher, ShaCrypt};
use testbed::http::{self, req};
use testbed::runner::cmd;

use crate::common::{passive, spind};

fn basic(user: &str, pw: &str) -> String {
    format!("Authorization: Basic {}", Base64::encode_string(format!("{user}:{pw}").as_bytes()))
}

#[test]
fn every_request_needs_basic_auth_when_a_password_file_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let pwfile = dir.path().join("passwd");
    let hash = ShaCrypt::default().hash_password_with_salt(b"s3cret", b"abcdefgh").unwrap().to_string();
    assert!(hash.starts_with("$6$"));
    std::fs::write(&pwfile, format!("admin:{hash}\n")).unwrap();
    let s = passive(&[&format!("spinweb_password_file = {}", pwfile.display())]);
    let port = s.http_port;

    for target in ["/", "/spin_api/jsonrpc", "/spin_api/tcpdump_status?device=02:00:00:00:00:01", "/nope"] {
        let r = req(port, "GET", target, &[]);
        if target.starts_with("/spin_api/") {
            assert_eq!(r.status, 401, "{target}");
            assert_eq!(r.header("www-authenticate").as_deref(), Some("Basic realm=\"SPIN\""));
        } else {
            // A browser's page request without credentials goes to the login page.
            assert_eq!((r.status, r.header("location").as_deref()), (303, Some("/login")), "{target}");
        }
    }
    // Two wrong tries each (more would trip the failed-login limit, tested in http_admin).
    for target in ["/", "/spin_api/jsonrpc"] {
        assert_eq!(req(port, "GET", target, &[&basic("admin", "wrong")]).status, 401, "{target}");
        assert_eq!(req(port, "GET", target, &[&basic("root", "s3cret")]).status, 401, "{target}");
    }
    let ok = req(port, "GET", "/", &[&basic("admin", "s3cret")]);
    assert_eq!(ok.status, 200);
    // Cached the second time; still right.
    assert_eq!(req(port, "GET", "/", &[&basic("admin", "s3cret")]).status, 200);
    // POST (JSON-RPC) needs it too.
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"list_iplist","params":{"list":"block"}}"#;
    let post = |auth: Option<String>| {
        let mut r = format!(
            "POST /spin_api/jsonrpc HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(a) = auth {
            r.push_str(&a);
            r.push_str("\r\n");
        }
        r.push_str("\r\n");
        r.push_str(body);
        http::raw(port, r.as_bytes())
    };
    assert_eq!(post(None).status, 401);
    let r = post(Some(basic("admin", "s3cret")));
    assert_eq!(r.status, 200);
    assert!(r.text().contains("\"result\""), "{}", r.text());

    // The WebSocket on /mqtt too.
    let ws = |extra: &[&str]| {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c.write_all(http::ws_upgrade(extra).as_bytes()).unwrap();
        http::read_head(&mut c)
    };
    let h = ws(&[]);
    assert!(h.starts_with("HTTP/1.1 401"), "{h}");
    assert!(h.contains("WWW-Authenticate: Basic realm=\"SPIN\""), "{h}");
    assert!(ws(&[&basic("admin", "s3cret")]).starts_with("HTTP/1.1 101"));
}

fn make_cert(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let sh = testbed::netns::shell();
    let out = cmd!(
        sh,
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=spind-test
         -addext subjectAltName=IP:127.0.0.1 -keyout {key} -out {cert}"
    )
    .output()
    .expect("this test needs the openssl command (apt-get install openssl)");
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

/// Accepts any server certificate (the test's own self-signed one).
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_connect(port: u16) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap().to_owned();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

fn https(port: u16, request: &str) -> http::Resp {
    let mut s = tls_connect(port);
    s.write_all(request.as_bytes()).unwrap();
    s.flush().unwrap();
    let mut out = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut out);
    http::parse(&out)
}

#[test]
fn the_web_port_serves_https_and_mqtt_over_wss_with_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(dir.path());
    let s = passive(&[
        &format!("spinweb_tls_certificate_file = {}", cert.display()),
        &format!("spinweb_tls_key_file = {}", key.display()),
    ]);
    let port = s.http_port;

    let r = https(port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let body = r#"{"jsonrpc":"2.0","id":3,"method":"list_iplist","params":{"list":"allow"}}"#;
    let r = https(
        port,
        &format!(
            "POST /spin_api/jsonrpc HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), r#"{"jsonrpc":"2.0","id":3,"result":[]}"#);
    // Keep-alive: two requests on one TLS connection.
    let r = https(
        port,
        "GET /spin_api/jsonrpc HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 405);

    // Plain HTTP on the HTTPS port gets nothing useful, and does not disturb the server.
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut junk = Vec::new();
    let _ = std::io::Read::read_to_end(&mut c, &mut junk);
    assert!(!String::from_utf8_lossy(&junk).contains("<html"));

    // wss://127.0.0.1:<web port>/mqtt reaches the broker.
    let mut w = tls_connect(port);
    w.write_all(http::ws_upgrade(&[]).as_bytes()).unwrap();
    w.flush().unwrap();
    let head = http::read_head(&mut w);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(http::mqtt_connect_over_ws(&mut w), [0x20, 2, 0, 0]);

    // curl agrees, if it is installed.
    let (sh, url) = (testbed::netns::shell(), format!("https://127.0.0.1:{port}/spin_api/jsonrpc"));
    if let Ok(out) = cmd!(sh, "curl -sk -o /dev/null -w '%{http_code}' {url}").output() {
        assert_eq!(String::from_utf8_lossy(&out.stdout), "405");
    }
}

#[test]
fn tls_refuses_to_start_without_both_files_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _key) = make_cert(dir.path());
    let mut s = spind()
        .arg("-P")
        .arg("-e")
        .arg(format!("/tmp/spind-web-tls-{}.sock", testbed::free_port()))
        .config_line(&format!("spinweb_tls_certificate_file = {}", cert.display()))
        .spawn();
    assert_eq!(s.wait_exit(Duration::from_secs(20)), 1);
    assert!(s.log_text().contains("must be set together"), "{}", s.log_text());
    let mut s = spind()
        .arg("-P")
        .arg("-e")
        .arg(format!("/tmp/spind-web-tls-{}.sock", testbed::free_port()))
        .config_line(&format!("spinweb_tls_certificate_file = {}", cert.display()))
        .config_line("spinweb_tls_key_file = /nonexistent/key.pem")
        .spawn();
    assert_eq!(s.wait_exit(Duration::from_secs(20)), 1);
    assert!(s.log_text().contains("spinweb_tls_key_file"), "{}", s.log_text());
}
