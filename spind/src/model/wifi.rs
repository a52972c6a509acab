//! The router's WiFi access point as the JSON-RPC methods `get_wifi`/`set_wifi` see it: its
//! settings (network name, passphrase, country) with WPA's rules, the text of the settings file
//! that the image's `/usr/lib/spin/wifi` turns into hostapd's configuration, and hostapd's
//! `STATUS`/`STA-*` replies. Pure: the file and hostapd's control socket are read and written by
//! `daemon/wifi` through [`AccessPoint`].

use crate::model::event::MacAddr;

/// What the network is: `/etc/spin/wifi.conf` (`ssid=`, `passphrase=`, `country=` lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WifiSettings {
    pub ssid: String,
    pub passphrase: String,
    /// ISO 3166 alpha-2, upper case (hostapd's `country_code`).
    pub country: String,
}

/// What hostapd says about the running access point.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApStatus {
    /// hostapd's interface state (`ENABLED`, `COUNTRY_UPDATE`, `DISABLED`, ...).
    pub state: String,
    /// The network name it broadcasts (differs from the settings until a restart applied them).
    pub ssid: String,
    pub channel: Option<u32>,
    pub stations: Vec<Station>,
}

/// A client associated with the access point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Station {
    pub mac: MacAddr,
    /// Seconds since it associated.
    pub connected_time: Option<u64>,
    /// dBm, where the driver reports it.
    pub signal: Option<i64>,
}

/// The host's access point: implemented by `daemon/wifi` (the settings file and hostapd's
/// control socket), by a stand-in in the unit tests.
pub trait AccessPoint {
    /// The stored settings; `Ok(None)` when there are none (the router has no WiFi yet).
    fn settings(&self) -> Result<Option<WifiSettings>, String>;
    /// hostapd's view; `None` when it does not answer (not running, no radio).
    fn status(&self) -> Option<ApStatus>;
    /// Replaces the stored settings (checked already) atomically; the image applies them.
    fn store(&self, settings: &WifiSettings) -> Result<(), String>;
}

/// A network name: 1 to 32 printable ASCII characters (the space included), so that hostapd's
/// line-based configuration and every client agree on it.
pub fn check_ssid(ssid: &str) -> Result<(), String> {
    if ssid.is_empty() || ssid.len() > 32 || !printable(ssid) {
        return Err(format!("the network name must have 1 to 32 printable ASCII characters (it has {})", ssid.len()));
    }
    Ok(())
}

/// A WPA passphrase: 8 to 63 printable ASCII characters (never an open network).
pub fn check_passphrase(pass: &str) -> Result<(), String> {
    if pass.len() < 8 || pass.len() > 63 || !printable(pass) {
        return Err(format!(
            "the passphrase must have 8 to 63 printable ASCII characters (it has {})",
            pass.chars().count()
        ));
    }
    Ok(())
}

/// A regulatory country: two letters (`nl` becomes `NL`).
pub fn check_country(country: &str) -> Result<String, String> {
    let c = country.to_ascii_uppercase();
    if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!("'{country}' is not a two-letter country code such as NL"));
    }
    Ok(c)
}

fn printable(s: &str) -> bool {
    s.bytes().all(|b| (b' '..=b'~').contains(&b))
}

/// Reads the settings file as `/usr/lib/spin/wifi` does: `KEY=value` lines, the last one wins,
/// CR line ends and a UTF-8 BOM ignored. `None` when a field is missing.
pub fn parse_settings(text: &str) -> Option<WifiSettings> {
    let (mut ssid, mut passphrase, mut country) = (None, None, None);
    for line in text.trim_start_matches('\u{feff}').lines() {
        let line = line.strip_suffix('\r').unwrap_or(line).trim_start();
        let Some((key, value)) = line.split_once('=') else { continue };
        match key.trim_end() {
            "ssid" => ssid = Some(value.to_string()),
            "passphrase" => passphrase = Some(value.to_string()),
            "country" => country = Some(value.to_string()),
            _ => {}
        }
    }
    Some(WifiSettings { ssid: ssid?, passphrase: passphrase?, country: country? })
}

/// The settings file's text (the format the first boot writes).
pub fn settings_text(s: &WifiSettings) -> String {
    format!(
        "# The WiFi network (written by spind's set_wifi; /usr/lib/spin/wifi reads it).\nssid={}\npassphrase={}\ncountry={}\n",
        s.ssid, s.passphrase, s.country
    )
}

/// hostapd's `STATUS` reply: `key=value` lines.
pub fn parse_status(text: &str) -> ApStatus {
    let mut st = ApStatus::default();
    for (k, v) in text.lines().filter_map(|l| l.split_once('=')) {
        match k {
            "state" => st.state = v.to_string(),
            "ssid[0]" => st.ssid = v.to_string(),
            "channel" => st.channel = v.parse().ok(),
            _ => {}
        }
    }
    st
}

/// One `STA-FIRST`/`STA-NEXT` reply: the station's MAC on the first line, then `key=value`
/// lines. `None` for an empty reply (no more stations) or `FAIL`.
pub fn parse_station(text: &str) -> Option<Station> {
    let mut lines = text.lines();
    let mac: MacAddr = lines.next()?.trim().parse().ok()?;
    let mut sta = Station { mac, connected_time: None, signal: None };
    for (k, v) in lines.filter_map(|l| l.split_once('=')) {
        match k {
            "connected_time" => sta.connected_time = v.trim().parse().ok(),
            "signal" => sta.signal = v.trim().parse().ok(),
            _ => {}
        }
    }
    Some(sta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_file_round_trips_and_reads_like_the_shell_script() {
        let s = WifiSettings { ssid: "Our Home".into(), passphrase: "correct horse 42".into(), country: "DE".into() };
        assert_eq!(parse_settings(&settings_text(&s)), Some(s.clone()));
        // Windows line ends, a BOM, the last line wins, unknown keys ignored.
        let text = "\u{feff}ssid=Old\r\nssid=Our Home\r\nother=x\r\npassphrase=correct horse 42\r\ncountry=DE\r\n";
        assert_eq!(parse_settings(text), Some(s));
        assert_eq!(parse_settings("ssid=a\npassphrase=12345678\n"), None, "no country");
    }

    #[test]
    fn settings_follow_wpa_rules_and_say_why_not() {
        assert!(check_ssid("SPIN-AB12").is_ok());
        assert!(check_ssid(&"x".repeat(32)).is_ok());
        assert!(check_ssid("").unwrap_err().contains("1 to 32"));
        assert!(check_ssid(&"x".repeat(33)).unwrap_err().contains("(it has 33)"));
        assert!(check_ssid("tab\there").is_err());
        assert!(check_ssid("caf\u{e9}").is_err(), "not ASCII");
        assert!(check_passphrase("12345678").is_ok());
        assert_eq!(
            check_passphrase("1234567").unwrap_err(),
            "the passphrase must have 8 to 63 printable ASCII characters (it has 7)"
        );
        assert!(check_passphrase(&"p".repeat(64)).is_err());
        assert!(check_passphrase("line\nbreak!").is_err());
        assert_eq!(check_country("nl").unwrap(), "NL");
        assert!(check_country("NLD").unwrap_err().contains("two-letter"));
        assert!(check_country("N1").is_err());
    }

    #[test]
    fn hostapds_replies_are_read() {
        let st = parse_status(
            "state=ENABLED\nphy=phy0\nfreq=2437\nchannel=6\nbss[0]=wlan0\nssid[0]=SPIN-AB12\nnum_sta[0]=1\n",
        );
        assert_eq!(st.state, "ENABLED");
        assert_eq!(st.ssid, "SPIN-AB12");
        assert_eq!(st.channel, Some(6));
        let sta = parse_station("02:00:00:00:01:00\nflags=[AUTH][ASSOC][AUTHORIZED]\nconnected_time=42\nsignal=-30\n")
            .unwrap();
        assert_eq!(sta.mac.to_string(), "02:00:00:00:01:00");
        assert_eq!((sta.connected_time, sta.signal), (Some(42), Some(-30)));
        assert_eq!(parse_station(""), None);
        assert_eq!(parse_station("FAIL\n"), None);
    }
}
