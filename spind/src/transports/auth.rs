//! HTTP Basic auth for the web server (SPIN's `spinweb_password_file`).
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
//! The file is re-read when its modification time or size changes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use base64ct::{Base64, Encoding};
use sha2::{Digest, Sha512};
use sha_crypt::{PasswordVerifier, ShaCrypt};

/// The realm sent in `WWW-Authenticate`.
pub const REALM: &str = "SPIN";

/// At most this many remembered credentials (a few users with a few browsers).
const CACHE_MAX: usize = 64;

/// A password file and the credentials already checked against it.
pub struct Auth {
    path: PathBuf,
    state: Mutex<State>,
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
    pub fn load(path: &Path) -> anyhow::Result<Auth> {
        let (users, stamp) = read_users(path)
            .map_err(|e| anyhow::anyhow!("cannot read spinweb_password_file {}: {e}", path.display()))?;
        if users.is_empty() {
            log::warn!("spinweb_password_file {} has no users: every request will be refused", path.display());
        }
        Ok(Auth { path: path.to_path_buf(), state: Mutex::new(State { stamp, users, good: HashSet::new() }) })
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
        const DUMMY: &str =
            "$6$spindummysalt$ETT6/HK0p26fo8NkK7.0wugbHSsTauGjKneLSN3WVHXqqZNVvFS6.EKGJsAic/uc90XSo7UmeG8/e0Df1zuSR0";
        let hash = users.iter().find(|(u, _)| *u == user).map(|(_, h)| h.as_str());
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
            Err(e) => {
                // Fail closed: nobody gets in until the file is readable again.
                log::warn!("cannot re-read spinweb_password_file {}: {e}", self.path.display());
                st.users.clear();
                st.stamp = None;
            }
        }
        st.good.clear();
    }
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

type Users = Vec<(String, String)>;

fn read_users(path: &Path) -> std::io::Result<(Users, Option<(SystemTime, u64)>)> {
    let stamp = file_stamp(path);
    let text = std::fs::read_to_string(path)?;
    Ok((parse_users(&text), stamp))
}

/// `user:hash[:anything]` lines; blank lines and `#` comments are skipped.
pub fn parse_users(text: &str) -> Users {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let user = parts.next()?;
            let hash = parts.next()?;
            Some((user.to_string(), hash.to_string()))
        })
        .collect()
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
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
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
}
