//! The admin account of the web server (SPIN's `spinweb_password_file`): HTTP Basic auth,
//! login sessions, the failed-login limit and writing the file (`spind --set-password`).
//!
//! The file has one `user:hash[:...]` line per user, as SPIN (which checked with `crypt_r`) and
//! mosquitto 1.x's `mosquitto_passwd` write them. Accepted hashes:
//! * `$6$[rounds=N$]salt$hash` and `$5$...`: SHA-512-/SHA-256-crypt (`openssl passwd -6`,
//!   `mkpasswd -m sha-512`, glibc `crypt`), what SPIN's `crypt_r` checked;
//! * `$6$<base64 salt>$<base64 hash>` with standard base64 (88 characters of hash, ending `==`):
//!   mosquitto 1.x's own format, one SHA-512 over password + salt. `crypt_r` could not check
//!   these although SPIN's documentation says the files are compatible; we can.
//!
//! Checking a crypt hash costs 5000 SHA-512 rounds (milliseconds on a router), so a successful
//! `Authorization` value is remembered (as a SHA-512 digest, not in clear) until the file changes.
//! The file is re-read when its modification time or size changes. A line that is not
//! `user:$hash` is skipped with a warning naming it; the other lines still work. A missing file
//! (or one without users) means "no admin yet": the web server then serves only first-run setup.
//!
//! Sessions: a login (form or setup) gets a random 256-bit token, kept in memory with its expiry
//! ([`SESSION_TTL`]); a change of the password file ends every session. Each session also has
//! its own random MQTT password, which the web UI fetches (`/spin_api/mqtt_login`) to log in to
//! the broker: the session cookie itself stays `HttpOnly`.
//!
//! Failed logins (Basic, form, setup, MQTT) are counted per client address; from the
//! [`FREE_FAILURES`]th failure on, that address is refused (429 with `Retry-After`) for a time
//! that doubles with each further failure, up to [`MAX_LOCKOUT`]. Unknown users cost as much as
//! known ones and get the same answer.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64ct::{Base64, Encoding};
use sha2::{Digest, Sha512};
use sha_crypt::{PasswordVerifier, ShaCrypt};

use crate::model::persist::write_private;

/// The realm sent in `WWW-Authenticate`.
pub const REALM: &str = "SPIN";

/// At most this many remembered credentials (a few users with a few browsers).
const CACHE_MAX: usize = 64;

/// How long a login session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// At most this many sessions at once (the oldest goes first).
const MAX_SESSIONS: usize = 256;
/// Failures from one address before it is slowed down.
pub const FREE_FAILURES: u32 = 5;
/// The longest wait imposed on one address.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(900);
/// Addresses remembered by the limiter (a flood of addresses evicts the oldest entries).
const MAX_TRACKED: usize = 4096;
/// The session cookie's name.
pub const COOKIE: &str = "spind_session";

/// A password file and the credentials already checked against it.
pub struct Auth {
    path: PathBuf,
    state: Mutex<State>,
    sessions: Mutex<HashMap<String, Session>>,
    limiter: Mutex<HashMap<IpAddr, Failures>>,
}

/// A login session, keyed by its cookie token.
struct Session {
    user: String,
    expires: Instant,
    /// The session's MQTT password (random, not derived from the cookie).
    mqtt: String,
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    until: Option<Instant>,
    last: Instant,
}

/// The outcome of checking a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The admin (user name).
    Admin(String),
    /// No credentials at all.
    Missing,
    /// Wrong or malformed credentials.
    Refused,
    /// Too many failures from this address: wait this many seconds.
    Limited(u64),
}

struct State {
    /// (mtime, size) of the file when read.
    stamp: Option<(SystemTime, u64)>,
    users: Vec<(String, String)>,
    /// SHA-512 of `Authorization` header values that passed.
    good: HashSet<[u8; 64]>,
}

impl Auth {
    /// Reads the password file; an unreadable file is an error at start-up (the user asked for
    /// auth, so serving without it would be wrong).
    /// A missing file is "no admin yet" (first-run setup).
    pub fn load(path: &Path) -> anyhow::Result<Auth> {
        let (users, stamp) = match read_users(path) {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), None),
            Err(e) => anyhow::bail!("cannot read spinweb_password_file {}: {e}", path.display()),
        };
        if users.is_empty() {
            log::warn!(
                "spinweb_password_file {} has no users: only first-run setup is served until an admin \
                 password is set (in the browser with the first-run password, or with spind --set-password)",
                path.display()
            );
        }
        Ok(Auth {
            path: path.to_path_buf(),
            state: Mutex::new(State { stamp, users, good: HashSet::new() }),
            sessions: Mutex::new(HashMap::new()),
            limiter: Mutex::new(HashMap::new()),
        })
    }

    /// The password file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether an admin password exists (otherwise only setup is served).
    pub fn has_users(&self) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.refresh(&mut st);
        !st.users.is_empty()
    }

    /// Checks a user name and password (constant work whether or not the user exists).
    pub fn check_password(&self, user: &str, password: &str) -> bool {
        let users = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            self.refresh(&mut st);
            st.users.clone()
        };
        let hash = users.iter().find(|(u, _)| ct_eq(u.as_bytes(), user.as_bytes())).map(|(_, h)| h.as_str());
        verify(password, hash.unwrap_or(DUMMY)) && hash.is_some()
    }

    /// The credentials of a request: a session cookie (from the `Cookie` header) or Basic auth,
    /// with the failed-login limit for `peer`.
    pub fn verdict(&self, authorization: Option<&str>, cookie: Option<&str>, peer: Option<IpAddr>) -> Verdict {
        if let Some(user) = cookie.and_then(session_token).and_then(|t| self.session_user(t)) {
            return Verdict::Admin(user);
        }
        if let Some(wait) = self.limited(peer) {
            return Verdict::Limited(wait);
        }
        let Some(value) = authorization else {
            return if cookie.and_then(session_token).is_some() { Verdict::Refused } else { Verdict::Missing };
        };
        match decode_basic(value) {
            Some((user, _)) if self.check(Some(value)) => {
                self.succeeded(peer);
                Verdict::Admin(user)
            }
            _ => {
                self.failed(peer);
                Verdict::Refused
            }
        }
    }

    /// Seconds `peer` must still wait, if it is locked out.
    pub fn limited(&self, peer: Option<IpAddr>) -> Option<u64> {
        let peer = peer?;
        let lim = self.limiter.lock().unwrap_or_else(|e| e.into_inner());
        let until = lim.get(&peer)?.until?;
        let now = Instant::now();
        (until > now).then(|| (until - now).as_secs().max(1))
    }

    /// Counts a failed login from `peer`.
    pub fn failed(&self, peer: Option<IpAddr>) {
        let Some(peer) = peer else { return };
        let now = Instant::now();
        let mut lim = self.limiter.lock().unwrap_or_else(|e| e.into_inner());
        if lim.len() >= MAX_TRACKED && !lim.contains_key(&peer) {
            if let Some(oldest) = lim.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| *k) {
                lim.remove(&oldest);
            }
        }
        let f = lim.entry(peer).or_insert(Failures { count: 0, until: None, last: now });
        // A quiet day forgives.
        if now.duration_since(f.last) > Duration::from_secs(24 * 3600) {
            f.count = 0;
        }
        f.count += 1;
        f.last = now;
        if f.count >= FREE_FAILURES {
            let exp = (f.count - FREE_FAILURES).min(16);
            let wait = Duration::from_secs(1u64 << exp).min(MAX_LOCKOUT);
            f.until = Some(now + wait);
            log::warn!("{} failed logins from {peer}: refusing it for {} s", f.count, wait.as_secs());
        }
    }

    /// A successful login from `peer` clears its failures.
    pub fn succeeded(&self, peer: Option<IpAddr>) {
        if let Some(peer) = peer {
            self.limiter.lock().unwrap_or_else(|e| e.into_inner()).remove(&peer);
        }
    }

    /// Starts a session for `user`; returns its token.
    pub fn new_session(&self, user: &str) -> std::io::Result<String> {
        // A password just written must not end this session at the next request.
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            self.refresh(&mut st);
        }
        let token = random_hex(32)?;
        let mqtt = random_hex(32)?;
        let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        s.retain(|_, v| v.expires > now);
        if s.len() >= MAX_SESSIONS {
            if let Some(oldest) = s.iter().min_by_key(|(_, v)| v.expires).map(|(k, _)| k.clone()) {
                s.remove(&oldest);
            }
        }
        s.insert(token.clone(), Session { user: user.to_string(), expires: now + SESSION_TTL, mqtt });
        Ok(token)
    }

    /// Ends the session of a `Cookie` header, if any.
    pub fn end_session(&self, cookie: Option<&str>) {
        if let Some(t) = cookie.and_then(session_token) {
            self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(t);
        }
    }

    fn session_user(&self, token: &str) -> Option<String> {
        // Refresh first: a changed password file ends every session.
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            self.refresh(&mut st);
        }
        let s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        // The map lookup hashes the token; the final comparison is constant-time.
        let (key, v) = s.get_key_value(token)?;
        (ct_eq(key.as_bytes(), token.as_bytes()) && v.expires > Instant::now()).then(|| v.user.clone())
    }

    /// The MQTT user name and password of the session in a `Cookie` header.
    pub fn mqtt_credentials(&self, cookie: Option<&str>) -> Option<(String, String)> {
        let token = cookie.and_then(session_token)?;
        let user = self.session_user(token)?;
        let s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        Some((user, s.get(token)?.mqtt.clone()))
    }

    /// An MQTT CONNECT's user name and password from `peer`: a live session's MQTT password
    /// (what the web UI uses) or the admin's password, with the failed-login limit.
    pub fn mqtt_login(&self, user: &str, password: &str, peer: Option<IpAddr>) -> Verdict {
        if self.mqtt_session(user, password) {
            return Verdict::Admin(user.to_string());
        }
        if let Some(wait) = self.limited(peer) {
            return Verdict::Limited(wait);
        }
        if self.check_password(user, password) {
            self.succeeded(peer);
            Verdict::Admin(user.to_string())
        } else {
            self.failed(peer);
            Verdict::Refused
        }
    }

    /// Whether `password` is the MQTT password of a live session of `user`.
    fn mqtt_session(&self, user: &str, password: &str) -> bool {
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            self.refresh(&mut st);
        }
        let now = Instant::now();
        let s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        // Every session is compared (constant-time each), so timing tells nothing about which.
        s.values().fold(false, |found, v| {
            let hit = ct_eq(v.mqtt.as_bytes(), password.as_bytes()) & ct_eq(v.user.as_bytes(), user.as_bytes());
            found | (hit && v.expires > now)
        })
    }

    /// Whether the value of an `Authorization` header (if any) grants access.
    pub fn check(&self, authorization: Option<&str>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let digest: [u8; 64] = Sha512::digest(value.as_bytes()).into();
        let users = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            self.refresh(&mut st);
            if st.good.contains(&digest) {
                return true;
            }
            st.users.clone()
        };
        let Some((user, password)) = decode_basic(value) else {
            return false;
        };
        // Unknown users cost as much as known ones, so timing does not tell who exists.
        let hash = users.iter().find(|(u, _)| ct_eq(u.as_bytes(), user.as_bytes())).map(|(_, h)| h.as_str());
        let ok = verify(&password, hash.unwrap_or(DUMMY)) && hash.is_some();
        if ok {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.good.len() >= CACHE_MAX {
                st.good.clear();
            }
            st.good.insert(digest);
        }
        ok
    }

    fn refresh(&self, st: &mut State) {
        if file_stamp(&self.path) == st.stamp {
            return;
        }
        match read_users(&self.path) {
            Ok((users, stamp)) => {
                log::info!("re-read spinweb_password_file {} ({} users)", self.path.display(), users.len());
                st.users = users;
                st.stamp = stamp;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                st.users.clear();
                st.stamp = None;
            }
            Err(e) => {
                // Fail closed: nobody gets in until the file is readable again.
                log::warn!("cannot re-read spinweb_password_file {}: {e}", self.path.display());
                st.users.clear();
                st.stamp = None;
            }
        }
        st.good.clear();
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Unknown users are checked against this, so they cost as much as known ones.
const DUMMY: &str =
    "$6$spindummysalt$ETT6/HK0p26fo8NkK7.0wugbHSsTauGjKneLSN3WVHXqqZNVvFS6.EKGJsAic/uc90XSo7UmeG8/e0Df1zuSR0";

/// The session token in a `Cookie` header (`spind_session=<64 hex digits>`).
pub fn session_token(cookie: &str) -> Option<&str> {
    cookie.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k.trim() == COOKIE && v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())).then_some(v)
    })
}

/// `n` random bytes from the kernel, as hex.
pub fn random_hex(n: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A new SHA-512-crypt hash (`$6$<16 salt characters>$...`, 5000 rounds) of `password`.
pub fn hash_password(password: &str) -> std::io::Result<String> {
    use sha_crypt::PasswordHasher;
    const ALPHABET: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut raw = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
    let salt: Vec<u8> = raw.iter().map(|b| ALPHABET[(*b & 63) as usize]).collect();
    ShaCrypt::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| std::io::Error::other(format!("cannot hash the password: {e}")))
}

/// Why a password cannot be stored.
pub fn password_problem(user: &str, password: &str) -> Option<&'static str> {
    if user.is_empty() || user.contains([':', '\n', '\r']) || user.chars().any(char::is_control) {
        return Some("the user name must not be empty or contain ':' or control characters");
    }
    if password.is_empty() {
        return Some("the password must not be empty");
    }
    if password.contains(['\n', '\r']) {
        return Some("the password must be one line");
    }
    None
}

/// Sets `user`'s password in the file at `path`: other users' lines (and comments) are kept,
/// the file is written to a temporary file (mode 0600) and renamed over the old one.
pub fn set_password(path: &Path, user: &str, password: &str) -> anyhow::Result<()> {
    if let Some(p) = password_problem(user, password) {
        anyhow::bail!("{p}");
    }
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    };
    let line = format!("{user}:{}", hash_password(password)?);
    let mut out = String::new();
    let mut replaced = false;
    for l in old.lines() {
        if l.split(':').next() == Some(user) && l.contains(':') {
            if !replaced {
                out.push_str(&line);
                out.push('\n');
                replaced = true;
            }
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    if !replaced {
        out.push_str(&line);
        out.push('\n');
    }
    write_private(path, out.as_bytes()).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

type Users = Vec<(String, String)>;

fn read_users(path: &Path) -> std::io::Result<(Users, Option<(SystemTime, u64)>)> {
    let stamp = file_stamp(path);
    let text = std::fs::read_to_string(path)?;
    let (users, bad) = parse_users_checked(&text);
    for b in bad {
        log::warn!("spinweb_password_file {}: {b}; skipped", path.display());
    }
    Ok((users, stamp))
}

/// The users of a password file (`user:hash[:anything]` lines; blank lines and `#` comments are
/// skipped), and one message per line that is not `user:$hash[:...]`
/// (naming the line; the line itself is not quoted, it may hold a password).
pub fn parse_users_checked(text: &str) -> (Users, Vec<String>) {
    let mut users = Vec::new();
    let mut bad = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim_end_matches('\r');
        if l.trim().is_empty() || l.starts_with('#') {
            continue;
        }
        let mut parts = l.splitn(3, ':');
        let user = parts.next().unwrap_or("");
        match parts.next() {
            Some(hash) if !user.is_empty() && hash.starts_with('$') => users.push((user.to_string(), hash.to_string())),
            Some(_) if user.is_empty() => bad.push(format!("line {}: no user name", i + 1)),
            Some(_) => bad.push(format!("line {} (user {user:?}): the hash is not a crypt hash ($6$...)", i + 1)),
            None => bad.push(format!("line {}: not user:hash", i + 1)),
        }
    }
    (users, bad)
}

/// The user and password of a `Basic` `Authorization` value.
pub fn decode_basic(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = Base64::decode_vec(rest.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Checks a password against one stored hash (formats in the module documentation).
pub fn verify(password: &str, hash: &str) -> bool {
    if let Some(ok) = verify_mosquitto1(password, hash) {
        return ok;
    }
    if hash.starts_with("$6$") || hash.starts_with("$5$") {
        return ShaCrypt::default().verify_password(password.as_bytes(), hash).is_ok();
    }
    false
}

/// mosquitto 1.x: `$6$` base64(salt) `$` base64(SHA-512(password + salt)). `None` if the hash
/// is not in that format.
fn verify_mosquitto1(password: &str, hash: &str) -> Option<bool> {
    let rest = hash.strip_prefix("$6$")?;
    let (salt_b64, hash_b64) = rest.split_once('$')?;
    if hash_b64.len() != 88 || !hash_b64.ends_with("==") {
        return None;
    }
    let salt = Base64::decode_vec(salt_b64).ok()?;
    let expected = Base64::decode_vec(hash_b64).ok()?;
    let mut h = Sha512::new();
    h.update(password.as_bytes());
    h.update(&salt);
    let got = h.finalize();
    Some(ct_eq(&got, &expected))
}

/// Compares without an early exit.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A truncated hash.
    const GLIBC: &str = "$6$TYx56i8DFAF1MJDZ$";

    #[test]
    fn sha512_crypt_round_trip_and_rejects() {
        use sha_crypt::PasswordHasher;
        let h = ShaCrypt::default().hash_password_with_salt(b"secret", b"saltsaltsalt").unwrap().to_string();
        assert!(h.starts_with("$6$"), "{h}");
        assert!(verify("secret", &h));
        assert!(!verify("Secret", &h));
        assert!(!verify("secret", "plain"));
        assert!(!verify("secret", GLIBC));
    }

    #[test]
    fn glibc_vector() {
        // `openssl passwd -6 -salt saltsalt secret`
        let h = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
        assert!(verify("secret", h));
        assert!(!verify("secreT", h));
    }

    #[test]
    fn mosquitto1_format() {
        let salt = b"0123456789ab";
        let mut d = Sha512::new();
        d.update(b"pw");
        d.update(salt);
        let h = format!("$6${}${}", Base64::encode_string(salt), Base64::encode_string(&d.finalize()));
        assert!(verify("pw", &h));
        assert!(!verify("pW", &h));
    }

    #[test]
    fn basic_header_and_cache() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        let hash = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
        std::fs::write(&f, format!("# comment\n\nadmin:{hash}:extra\n")).unwrap();
        let a = Auth::load(&f).unwrap();
        let good = format!("Basic {}", Base64::encode_string(b"admin:secret"));
        let bad = format!("Basic {}", Base64::encode_string(b"admin:nope"));
        let nobody = format!("basic {}", Base64::encode_string(b"root:secret"));
        assert!(a.check(Some(&good)));
        assert!(a.check(Some(&good)), "cached");
        assert!(!a.check(Some(&bad)));
        assert!(!a.check(Some(&nobody)));
        assert!(!a.check(None));
        assert!(!a.check(Some("Bearer x")));
        // Changing the file drops the cache.
        std::fs::write(&f, "other:$6$x$y\n").unwrap();
        assert!(!a.check(Some(&good)));
    }

    #[test]
    fn bad_lines_are_named_and_good_lines_still_work() {
        let text = "nocolon\n:$6$x$y\nplain:secret\n# c\nadmin:$6$a$b\n";
        let (users, bad) = parse_users_checked(text);
        assert_eq!(users, vec![("admin".to_string(), "$6$a$b".to_string())]);
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(bad[0].starts_with("line 1"), "{bad:?}");
        assert!(bad[1].starts_with("line 2"), "{bad:?}");
        assert!(bad[2].starts_with("line 3") && !bad[2].contains("secret"), "{bad:?}");
    }

    #[test]
    fn set_password_keeps_others_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "# mine\nother:$6$saltsalt$x\nadmin:$6$old$old\n").unwrap();
        set_password(&f, "admin", "n3w").unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.starts_with("# mine\nother:$6$saltsalt$x\nadmin:$6$"), "{text}");
        assert_eq!(text.lines().count(), 3);
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
        let a = Auth::load(&f).unwrap();
        assert!(a.check_password("admin", "n3w"));
        assert!(!a.check_password("admin", "old"));
        assert!(set_password(&f, "admin", "").is_err());
        assert!(set_password(&f, "a:b", "x").is_err());
        assert_eq!(std::fs::read_to_string(&f).unwrap(), text, "a refused change writes nothing");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn missing_file_is_setup_and_sessions_end_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        let a = Auth::load(&f).unwrap();
        assert!(!a.has_users());
        set_password(&f, "admin", "pw").unwrap();
        assert!(a.has_users());
        let t = a.new_session("admin").unwrap();
        let cookie = format!("x=1; {COOKIE}={t}");
        assert_eq!(a.verdict(None, Some(&cookie), None), Verdict::Admin("admin".into()));
        assert_eq!(a.verdict(None, Some(&format!("{COOKIE}=zz")), None), Verdict::Missing);
        a.end_session(Some(&cookie));
        assert_eq!(a.verdict(None, Some(&cookie), None), Verdict::Refused);
        let t = a.new_session("admin").unwrap();
        let cookie = format!("{COOKIE}={t}");
        std::thread::sleep(Duration::from_millis(20)); // mtime granularity
        set_password(&f, "admin", "pw2").unwrap();
        assert_eq!(a.verdict(None, Some(&cookie), None), Verdict::Refused, "a new password ends sessions");
    }

    #[test]
    fn failures_lock_an_address_out_with_growing_waits() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        set_password(&f, "admin", "pw").unwrap();
        let a = Auth::load(&f).unwrap();
        let peer: Option<IpAddr> = Some("192.0.2.7".parse().unwrap());
        let other: Option<IpAddr> = Some("192.0.2.8".parse().unwrap());
        let bad = format!("Basic {}", Base64::encode_string(b"admin:nope"));
        let good = format!("Basic {}", Base64::encode_string(b"admin:pw"));
        for _ in 0..FREE_FAILURES - 1 {
            assert_eq!(a.verdict(Some(&bad), None, peer), Verdict::Refused);
        }
        assert_eq!(a.verdict(Some(&bad), None, peer), Verdict::Refused);
        assert!(matches!(a.verdict(Some(&good), None, peer), Verdict::Limited(_)), "even the right password waits");
        assert_eq!(a.verdict(Some(&good), None, other), Verdict::Admin("admin".into()), "per address");
        a.failed(peer);
        a.failed(peer);
        let w = a.limited(peer).unwrap();
        assert!(w >= 3, "the wait grows: {w}");
        assert_eq!(a.verdict(Some("Basic !!!"), None, other), Verdict::Refused);
    }
}
