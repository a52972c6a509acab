//! Who may use the web server, and from which page: the `Host` check (against DNS rebinding),
//! the same-origin check for state-changing requests (against cross-site requests), the
//! security headers every response carries, and the pages and forms of the admin account:
//! first-run setup, login, logout and password change.
//!
//! Order for each request ([`gate`]): `Host` (421), origin (403), then, when a password file is
//! in use: the account pages (public), setup-only mode while no admin exists, and the admin's
//! credentials (session cookie or Basic; 303 to the login page for a browser's page request,
//! 401 otherwise, 429 while the client address is locked out).

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use tiny_http::{Method, Request};

use super::{header, url_path, Reply};
use crate::transports::auth::{self, Auth, Verdict, COOKIE, REALM, SESSION_TTL};

/// Headers on every response (also the front's own and the capture stream's).
/// `Referrer-Policy: same-origin`, not `no-referrer`: under `no-referrer` a browser sends
/// `Origin: null` with the router's own form posts, the same as a sandboxed foreign page, so the
/// origin check could not tell them apart; `same-origin` still sends nothing to other sites.
pub const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
         connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
    ),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("X-Content-Type-Options", "nosniff"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
];

/// Request headers the front adds (and removes when a client sends them).
pub const PEER_HEADER: &str = "X-Spind-Peer";
pub const TLS_HEADER: &str = "X-Spind-Tls";

/// The largest account form accepted.
const MAX_FORM: usize = 4096;

/// The access policy of one web server.
pub struct Access {
    /// `None`: no password file (loopback-only demo): everything is open.
    pub auth: Option<Arc<Auth>>,
    pub first_run_file: Option<PathBuf>,
    pub hosts: Hosts,
}

/// The names and addresses the router answers to.
#[derive(Clone, Debug, Default)]
pub struct Hosts {
    addrs: Vec<IpAddr>,
    any_addr: bool,
    names: Vec<String>,
}

impl Hosts {
    /// The listening addresses, this host's name, `localhost`, `*.lan` and the configured names.
    pub fn new(listen: &[SocketAddr], configured: &[String]) -> Hosts {
        let mut names: Vec<String> = configured.iter().map(|n| n.trim().to_ascii_lowercase()).collect();
        names.push("localhost".into());
        if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            let h = h.trim().to_ascii_lowercase();
            if !h.is_empty() {
                names.push(h);
            }
        }
        Hosts {
            addrs: listen.iter().map(|a| a.ip()).collect(),
            any_addr: listen.iter().any(|a| a.ip().is_unspecified()),
            names,
        }
    }

    /// Whether a `Host` value (with or without port) names this router.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim();
        let name = if let Some(rest) = host.strip_prefix('[') {
            match rest.split_once(']') {
                Some((ip, port)) if port.is_empty() || port.starts_with(':') => ip,
                _ => return false,
            }
        } else {
            match host.rsplit_once(':') {
                Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
                _ => host,
            }
        };
        if let Ok(ip) = name.parse::<IpAddr>() {
            return self.any_addr
                || self.addrs.contains(&ip)
                || ip.is_loopback() && self.addrs.iter().any(|a| a.is_loopback());
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
            return false;
        }
        name.ends_with(".lan") || self.names.contains(&name)
    }
}

/// Whether an `Origin` (or `Referer`) value is this request's own `Host`.
pub fn same_origin(value: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let rest = value.strip_prefix("http://").or_else(|| value.strip_prefix("https://"));
    let Some(rest) = rest else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.eq_ignore_ascii_case(host.trim())
}

/// The `Host` and origin checks: the reply to send instead, if any. `changes` is whether the
/// request may change or reveal state through a browser (every method but GET and HEAD, and the
/// capture endpoints).
pub fn browser_checks(
    hosts: &Hosts,
    host: Option<&str>,
    origin: Option<&str>,
    referer: Option<&str>,
    changes: bool,
) -> Option<Reply> {
    if let Some(h) = host {
        if !hosts.allows(h) {
            return Some(Reply::html(
                421,
                "<html><body>Misdirected request: this is not a name of this router.</body></html>",
            ));
        }
    }
    if changes {
        let foreign = match (origin, referer) {
            (Some(o), _) => !same_origin(o, host),
            (None, Some(r)) => !same_origin(r, host),
            (None, None) => false,
        };
        if foreign {
            return Some(Reply::html(403, "<html><body>Forbidden: cross-site request.</body></html>"));
        }
    }
    None
}

/// The client address the front recorded.
pub fn peer(req: &Request) -> Option<IpAddr> {
    header(req, PEER_HEADER).and_then(|v| v.parse().ok())
}

fn is_tls(req: &Request) -> bool {
    header(req, TLS_HEADER) == Some("1")
}

/// Paths served without credentials (the account pages and what they load).
fn public(path: &str) -> bool {
    matches!(path, "/login" | "/setup" | "/logout" | "/auth.css" | "/favicon.svg")
}

/// The access decision for a request: `Err(reply)` to answer instead of routing it.
pub fn gate(req: &mut Request, access: &Access) -> Result<(), Reply> {
    let url = req.url().to_string();
    let path = url_path(&url).to_string();
    let method = req.method().clone();
    let read_only = matches!(method, Method::Get | Method::Head);
    let changes = !read_only || path.starts_with("/spin_api/tcpdump");
    if let Some(r) =
        browser_checks(&access.hosts, header(req, "Host"), header(req, "Origin"), header(req, "Referer"), changes)
    {
        return Err(r);
    }
    let Some(auth) = &access.auth else {
        // Open (loopback demo): the account pages have nothing to do.
        return match path.as_str() {
            "/login" | "/logout" | "/setup" | "/password" => Err(see_other("/")),
            _ => Ok(()),
        };
    };
    if public(&path) {
        return Err(account_page(req, &path, auth, access));
    }
    if !auth.has_users() {
        return Err(if read_only {
            see_other("/setup")
        } else {
            Reply::html(503, "<html><body>This router has no admin password yet: open /setup.</body></html>")
        });
    }
    match auth.verdict(header(req, "Authorization"), header(req, "Cookie"), peer(req)) {
        Verdict::Admin(_) => Ok(()),
        Verdict::Limited(secs) => Err(too_many(secs)),
        Verdict::Missing if read_only && !path.starts_with("/spin_api/") && header(req, "Authorization").is_none() => {
            Err(see_other("/login"))
        }
        Verdict::Missing | Verdict::Refused => Err(unauthorized()),
    }
}

pub fn unauthorized() -> Reply {
    Reply::html(401, "<html><body>Log in first: <a href=\"/login\">login</a>.</body></html>")
        .with_header("WWW-Authenticate", format!("Basic realm=\"{REALM}\""))
}

fn too_many(secs: u64) -> Reply {
    Reply::html(429, "<html><body>Too many failed logins from your address; try again later.</body></html>")
        .with_header("Retry-After", secs.to_string())
}

fn see_other(to: &str) -> Reply {
    Reply::html(303, "<html><body>See other.</body></html>").with_header("Location", to)
}

fn session_cookie(token: &str, tls: bool) -> String {
    format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if tls { "; Secure" } else { "" }
    )
}

/// A form body (`application/x-www-form-urlencoded`), at most [`MAX_FORM`] bytes.
fn read_form(req: &mut Request) -> Option<Vec<(String, String)>> {
    if req.body_length().is_some_and(|n| n > MAX_FORM) {
        return None;
    }
    let mut body = Vec::new();
    req.as_reader().take(MAX_FORM as u64 + 1).read_to_end(&mut body).ok()?;
    if body.len() > MAX_FORM {
        return None;
    }
    let text = String::from_utf8(body).ok()?;
    text.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
}

/// `/login`, `/setup`, `/logout`, `/password` and their files.
fn account_page(req: &mut Request, path: &str, auth: &Auth, access: &Access) -> Reply {
    let post = *req.method() == Method::Post;
    let tls = is_tls(req);
    let who = peer(req);
    match (path, post) {
        ("/auth.css", false) => Reply::new(200, "text/css; charset=utf-8", AUTH_CSS),
        ("/favicon.svg", false) => {
            Reply::new(200, "image/svg+xml", super::statics::builtin("favicon.svg").unwrap_or_default())
        }
        ("/login", false) if !auth.has_users() => see_other("/setup"),
        ("/login", false) => page(200, "Log in", LOGIN_FORM, ""),
        ("/login", true) => {
            if let Some(secs) = auth.limited(who) {
                return too_many(secs);
            }
            let Some(form) = read_form(req) else { return bad_form() };
            let (user, pw) = (field(&form, "user"), field(&form, "password"));
            if auth.check_password(user, pw) {
                auth.succeeded(who);
                match auth.new_session(user) {
                    Ok(t) => {
                        log::info!("{user} logged in from {who:?}");
                        see_other("/").with_header("Set-Cookie", session_cookie(&t, tls))
                    }
                    Err(e) => Reply::html(500, format!("<html><body>No session: {e}</body></html>")),
                }
            } else {
                auth.failed(who);
                page(401, "Log in", LOGIN_FORM, "Wrong user name or password.")
            }
        }
        ("/logout", true) => {
            auth.end_session(header(req, "Cookie"));
            see_other("/login")
                .with_header("Set-Cookie", format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"))
        }
        ("/setup", false) if auth.has_users() => see_other("/login"),
        ("/setup", false) => page(200, "Set up SPIN", SETUP_FORM, ""),
        ("/setup", true) => setup(req, auth, access, who, tls),
        _ => Reply::html(405, "<html><body>Method not allowed.</body></html>"),
    }
}

fn setup(req: &mut Request, auth: &Auth, access: &Access, who: Option<IpAddr>, tls: bool) -> Reply {
    if auth.has_users() {
        return Reply::html(
            409,
            "<html><body>This router already has an admin password: <a href=\"/login\">log in</a>.</body></html>",
        );
    }
    if let Some(secs) = auth.limited(who) {
        return too_many(secs);
    }
    let Some(form) = read_form(req) else { return bad_form() };
    let expected = access
        .first_run_file
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let Some(expected) = expected else {
        return page(
            503,
            "Set up SPIN",
            "",
            "This router has no first-run password. Set the admin password on the router itself: \
             spind --set-password admin",
        );
    };
    if !auth::ct_eq(field(&form, "first_run").trim().as_bytes(), expected.as_bytes()) {
        auth.failed(who);
        return page(401, "Set up SPIN", SETUP_FORM, "That is not the first-run password.");
    }
    let user = match field(&form, "user") {
        "" => "admin",
        u => u,
    };
    let (pw, pw2) = (field(&form, "password"), field(&form, "password2"));
    if pw != pw2 {
        return page(400, "Set up SPIN", SETUP_FORM, "The two passwords differ.");
    }
    if let Some(problem) = auth::password_problem(user, pw) {
        return page(400, "Set up SPIN", SETUP_FORM, problem);
    }
    if let Err(e) = auth::set_password(auth.path(), user, pw) {
        log::warn!("first-run setup: {e:#}");
        return page(500, "Set up SPIN", SETUP_FORM, "The password could not be saved.");
    }
    auth.succeeded(who);
    log::info!("first-run setup from {who:?}: admin password of {user} set");
    match auth.new_session(user) {
        Ok(t) => see_other("/").with_header("Set-Cookie", session_cookie(&t, tls)),
        Err(_) => see_other("/login"),
    }
}

/// `GET /password` (the form) and `POST /password` (the admin changes the password).
pub fn password_page(req: &mut Request, _path: &str, ctx: &super::Ctx) -> Reply {
    let Some(auth) = &ctx.access.auth else {
        return Reply::html(404, "<html><body>No password file in use.</body></html>");
    };
    if *req.method() != Method::Post {
        return page(200, "Change password", PASSWORD_FORM, "");
    }
    let who = peer(req);
    let tls = is_tls(req);
    let user = match auth.verdict(header(req, "Authorization"), header(req, "Cookie"), who) {
        Verdict::Admin(u) => u,
        _ => return unauthorized(),
    };
    let Some(form) = read_form(req) else { return bad_form() };
    if !auth.check_password(&user, field(&form, "current")) {
        auth.failed(who);
        return page(401, "Change password", PASSWORD_FORM, "The current password is wrong.");
    }
    let (pw, pw2) = (field(&form, "password"), field(&form, "password2"));
    if pw != pw2 {
        return page(400, "Change password", PASSWORD_FORM, "The two new passwords differ.");
    }
    if let Some(problem) = auth::password_problem(&user, pw) {
        return page(400, "Change password", PASSWORD_FORM, problem);
    }
    if let Err(e) = auth::set_password(auth.path(), &user, pw) {
        log::warn!("password change: {e:#}");
        return page(500, "Change password", PASSWORD_FORM, "The password could not be saved.");
    }
    log::info!("password of {user} changed from {who:?}");
    // The new file ended every session; this browser gets a new one.
    match auth.new_session(&user) {
        Ok(t) => see_other("/").with_header("Set-Cookie", session_cookie(&t, tls)),
        Err(_) => see_other("/login"),
    }
}

fn bad_form() -> Reply {
    Reply::html(400, "<html><body>Bad form.</body></html>")
}

fn page(status: u16, title: &str, form: &str, message: &str) -> Reply {
    let msg = if message.is_empty() {
        String::new()
    } else {
        format!("<p class=\"msg\" role=\"alert\">{}</p>", html_escape(message))
    };
    Reply::html(
        status,
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>SPIN – {title}</title><link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">\
             <link rel=\"stylesheet\" href=\"/auth.css\"></head><body><main><h1>{title}</h1>{msg}{form}</main></body></html>\n"
        ),
    )
    .with_header("Cache-Control", "no-store")
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const LOGIN_FORM: &str = "<form method=\"post\" action=\"/login\">\
<label>User name <input name=\"user\" id=\"user\" autocomplete=\"username\" value=\"admin\" required></label>\
<label>Password <input type=\"password\" name=\"password\" id=\"password\" autocomplete=\"current-password\" required autofocus></label>\
<button type=\"submit\" id=\"login\">Log in</button></form>";

const SETUP_FORM: &str = "<p>This router has no admin password yet. To prove you have the router in hand, \
enter the first-run password shown on its console and screen (file /etc/spin/first-run-password), then \
choose the admin password.</p><form method=\"post\" action=\"/setup\">\
<label>First-run password <input name=\"first_run\" id=\"first_run\" autocomplete=\"off\" required autofocus></label>\
<label>User name <input name=\"user\" id=\"user\" value=\"admin\" autocomplete=\"username\" required></label>\
<label>New password <input type=\"password\" name=\"password\" id=\"password\" autocomplete=\"new-password\" required></label>\
<label>New password again <input type=\"password\" name=\"password2\" id=\"password2\" autocomplete=\"new-password\" required></label>\
<button type=\"submit\" id=\"setup\">Set the password</button></form>";

const PASSWORD_FORM: &str = "<form method=\"post\" action=\"/password\">\
<label>Current password <input type=\"password\" name=\"current\" autocomplete=\"current-password\" required></label>\
<label>New password <input type=\"password\" name=\"password\" autocomplete=\"new-password\" required></label>\
<label>New password again <input type=\"password\" name=\"password2\" autocomplete=\"new-password\" required></label>\
<button type=\"submit\">Change the password</button></form><p><a href=\"/\">Back</a></p>";

const AUTH_CSS: &str = "body{font-family:system-ui,sans-serif;background:#f8fafc;color:#0f172a;margin:0}\
main{max-width:26em;margin:4em auto;padding:1.5em;background:#fff;border:1px solid #cbd5e1;border-radius:8px}\
label{display:block;margin:.8em 0}input{display:block;width:100%;box-sizing:border-box;padding:.4em;font-size:1em}\
button{margin-top:1em;padding:.5em 1.2em;font-size:1em}.msg{color:#b91c1c;font-weight:600}\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let listen: Vec<SocketAddr> = vec!["192.168.8.1:13026".parse().unwrap(), "[fd00::1]:13026".parse().unwrap()];
        let h = Hosts::new(&listen, &["spin.example.org".to_string()]);
        for ok in [
            "192.168.8.1",
            "192.168.8.1:13026",
            "[fd00::1]:13026",
            "router.lan",
            "ROUTER.LAN.",
            "spin.example.org:80",
            "localhost",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for bad in ["evil.example", "192.168.8.2", "127.0.0.1", "[fd00::1", "lan", "x.lan\u{0}", "a b.lan", ""] {
            assert!(!h.allows(bad), "{bad:?}");
        }
        let any = Hosts::new(&["0.0.0.0:80".parse().unwrap()], &[]);
        assert!(any.allows("10.1.2.3") && !any.allows("rebind.example"));
    }

    #[test]
    fn origins() {
        let h = Hosts::new(&["192.168.8.1:80".parse().unwrap()], &[]);
        let host = Some("192.168.8.1");
        assert!(browser_checks(&h, host, Some("http://192.168.8.1"), None, true).is_none());
        assert!(browser_checks(&h, host, None, Some("http://192.168.8.1/x?y"), true).is_none());
        assert!(browser_checks(&h, host, None, None, true).is_none(), "scripts send neither");
        assert_eq!(browser_checks(&h, host, Some("http://evil.example"), None, true).unwrap().status, 403);
        assert_eq!(browser_checks(&h, host, Some("null"), None, true).unwrap().status, 403);
        assert_eq!(browser_checks(&h, host, None, Some("http://192.168.8.1.evil/"), true).unwrap().status, 403);
        assert!(browser_checks(&h, host, Some("http://evil.example"), None, false).is_none());
        assert_eq!(browser_checks(&h, Some("evil.example"), None, None, false).unwrap().status, 421);
    }

    #[test]
    fn forms() {
        assert_eq!(percent_decode("a%20b+c%3D").as_deref(), Some("a b c="));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%ff"), None, "not UTF-8");
    }
}
