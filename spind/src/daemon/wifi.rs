//! The router's WiFi access point on the host: its settings file (`wifi_settings_file`, the
//! image's `/etc/spin/wifi.conf`, written 0600 and atomically; a systemd path unit restarts
//! hostapd when it changes) and hostapd's control interface (`wifi_control_dir`: a unix datagram
//! socket per interface, asked `STATUS` and `STA-FIRST`/`STA-NEXT`). What the JSON-RPC methods
//! make of it is in `model::wifi` and `model::rpc`.

use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::model::persist::write_private;
use crate::model::wifi::{
    parse_settings, parse_station, parse_status, settings_text, AccessPoint, ApStatus, WifiSettings,
};

/// How long the core waits for hostapd per request ([`Wifi::reply_timeout`] in the daemon): it
/// answers in microseconds, and the core thread must not hang on a stuck one.
pub const REPLY_TIMEOUT: Duration = Duration::from_millis(300);
/// At most this many clients are listed (a guard against a reply loop).
const MAX_STATIONS: usize = 256;

pub struct Wifi {
    pub settings_file: PathBuf,
    pub control_dir: PathBuf,
    /// Per request to hostapd ([`REPLY_TIMEOUT`]).
    pub reply_timeout: Duration,
}

impl AccessPoint for Wifi {
    fn settings(&self) -> Result<Option<WifiSettings>, String> {
        match std::fs::read_to_string(&self.settings_file) {
            Ok(text) => parse_settings(&text)
                .map(Some)
                .ok_or_else(|| format!("{} lacks ssid=, passphrase= or country=", self.settings_file.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", self.settings_file.display())),
        }
    }

    fn status(&self) -> Option<ApStatus> {
        let link = Control::open(&self.control_dir, self.reply_timeout)?;
        let mut status = parse_status(&link.ask("STATUS")?);
        let mut reply = link.ask("STA-FIRST");
        while let Some(sta) = reply.as_deref().and_then(parse_station) {
            if status.stations.len() >= MAX_STATIONS {
                break;
            }
            reply = link.ask(&format!("STA-NEXT {}", sta.mac));
            status.stations.push(sta);
        }
        Some(status)
    }

    fn store(&self, settings: &WifiSettings) -> Result<(), String> {
        write_private(&self.settings_file, settings_text(settings).as_bytes())
            .map_err(|e| format!("{}: {e}", self.settings_file.display()))
    }
}

/// One conversation with hostapd: a datagram socket bound to a path of our own (hostapd replies
/// to the sender's address), removed when done.
struct Control {
    socket: UnixDatagram,
    local: PathBuf,
}

impl Control {
    /// Connects to the first control socket in `dir` (hostapd makes one per interface).
    fn open(dir: &Path, reply_timeout: Duration) -> Option<Control> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let mut sockets: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_socket()))
            .map(|e| e.path())
            .collect();
        sockets.sort();
        let target = sockets.first()?;
        let local = std::env::temp_dir().join(format!(
            "spind-hostapd-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&local);
        let socket = UnixDatagram::bind(&local).ok()?;
        let control = Control { socket, local };
        control.socket.connect(target).ok()?;
        control.socket.set_read_timeout(Some(reply_timeout)).ok()?;
        Some(control)
    }

    fn ask(&self, command: &str) -> Option<String> {
        self.socket.send(command.as_bytes()).ok()?;
        let mut buf = vec![0u8; 8192];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.local);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hostapd's side of the control interface, answering from a table (unit level: the real
    /// hostapd is driven by the rpi3 QEMU test).
    fn fake_hostapd(dir: &Path, answers: &'static [(&'static str, &'static str)]) -> std::thread::JoinHandle<()> {
        let server = UnixDatagram::bind(dir.join("wlan0")).unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            for _ in 0..answers.len() {
                let (n, from) = server.recv_from(&mut buf).unwrap();
                let asked = std::str::from_utf8(&buf[..n]).unwrap();
                let answer = answers.iter().find(|(q, _)| *q == asked).map_or("FAIL\n", |(_, a)| a);
                server.send_to_addr(answer.as_bytes(), &from).unwrap();
            }
        })
    }

    #[test]
    fn settings_are_stored_privately_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let wifi = Wifi {
            settings_file: dir.path().join("wifi.conf"),
            control_dir: dir.path().join("none"),
            reply_timeout: REPLY_TIMEOUT,
        };
        assert_eq!(wifi.settings(), Ok(None), "no file: no WiFi");
        let s = WifiSettings { ssid: "Home".into(), passphrase: "12345678".into(), country: "NL".into() };
        wifi.store(&s).unwrap();
        assert_eq!(wifi.settings(), Ok(Some(s)));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&wifi.settings_file).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(&wifi.settings_file, "ssid=x\n").unwrap();
        assert!(wifi.settings().unwrap_err().contains("lacks"));
        assert_eq!(wifi.status(), None, "no hostapd");
    }

    #[test]
    fn hostapd_is_asked_for_its_state_and_every_station() {
        let dir = tempfile::tempdir().unwrap();
        let server = fake_hostapd(
            dir.path(),
            &[
                ("STATUS", "state=ENABLED\nchannel=6\nssid[0]=Home\n"),
                ("STA-FIRST", "02:00:00:00:01:00\nconnected_time=5\n"),
                ("STA-NEXT 02:00:00:00:01:00", "02:00:00:00:02:00\nsignal=-40\n"),
                ("STA-NEXT 02:00:00:00:02:00", ""),
            ],
        );
        // A deadline far from what a busy machine could need: this is not a timing test.
        let wifi = Wifi {
            settings_file: dir.path().join("wifi.conf"),
            control_dir: dir.path().to_path_buf(),
            reply_timeout: Duration::from_secs(30),
        };
        let st = wifi.status().unwrap();
        server.join().unwrap();
        assert_eq!((st.state.as_str(), st.ssid.as_str(), st.channel), ("ENABLED", "Home", Some(6)));
        let macs: Vec<String> = st.stations.iter().map(|s| s.mac.to_string()).collect();
        assert_eq!(macs, ["02:00:00:00:01:00", "02:00:00:00:02:00"]);
        assert_eq!(st.stations[1].signal, Some(-40));
        let ours = format!("spind-hostapd-{}-", std::process::id());
        let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&ours))
            .collect();
        assert!(left.is_empty(), "the client socket is removed: {left:?}");
    }
}
