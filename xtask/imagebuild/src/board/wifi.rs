//! `[wifi]` of a Debian board: the radio the image turns into an access point (hostapd, bridged
//! into `br-lan`). A board without the table has no WiFi and builds as before.

use serde::Deserialize;

use super::values::Band;
use super::{BoardError, Errors, Network};

/// `[wifi]`: the access point's interface, the firmware its chip needs and the defaults of the
/// network the first boot sets up (the settings file on the boot partition overrides band-less
/// ones: name, passphrase, country).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wifi {
    /// The radio's interface (`wlan0`).
    pub interface: String,
    /// The Debian package with the chip's firmware (`firmware-brcm80211`), installed with hostapd.
    pub firmware_package: String,
    /// `2.4` or `5` (GHz).
    pub band: Band,
    /// A channel of that band (2.4: 1-13; 5: 36-48, 52-64, 100-144 in steps of 4, 149-165).
    pub channel: u8,
    /// ISO 3166-1 alpha-2, upper case (`NL`): the regulatory domain until the user sets theirs.
    pub country: String,
}

/// The packages a WiFi board gets on top of its `debian.packages` (and the firmware): the
/// access point, and the regulatory database without which the kernel keeps the world domain
/// whatever country hostapd sets.
pub const WIFI_PACKAGES: &[&str] = &["hostapd", "wireless-regdb"];

impl Wifi {
    pub(crate) fn validate(&self, e: &Errors, network: &Network) -> Result<(), BoardError> {
        let name_ok = |n: &str| {
            !n.is_empty() && n.len() <= 15 && n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if !name_ok(&self.interface) {
            return Err(e.err(
                "wifi.interface",
                format!("{:?} is not an interface name of 1-15 letters, digits, '-', '_' or '.'", self.interface),
            ));
        }
        if self.interface == network.wan || network.lan.contains(&self.interface) || self.interface == "br-lan" {
            return Err(e.err(
                "wifi.interface",
                format!(
                    "{:?} is already the WAN, a LAN port or the bridge (hostapd adds the radio to br-lan itself)",
                    self.interface
                ),
            ));
        }
        let p = &self.firmware_package;
        let pkg_ok = p.len() >= 2
            && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
        if !pkg_ok {
            return Err(e.err("wifi.firmware_package", format!("{p:?} is not a Debian package name")));
        }
        if !self.band.channels().contains(&self.channel) {
            return Err(e.err(
                "wifi.channel",
                format!(
                    "{} is not a channel of the {} GHz band: allowed: {}",
                    self.channel,
                    self.band,
                    self.band.allowed()
                ),
            ));
        }
        if !country_ok(&self.country) {
            return Err(e.err(
                "wifi.country",
                format!("{:?}: allowed: a two-letter ISO 3166-1 country code in upper case, such as NL", self.country),
            ));
        }
        Ok(())
    }

    /// hostapd's `hw_mode` for the band.
    pub fn hw_mode(&self) -> &'static str {
        match self.band {
            Band::G24 => "g",
            Band::G5 => "a",
        }
    }
}

/// Two upper-case ASCII letters (hostapd's `country_code`; `00`, the world domain, is not one:
/// hostapd needs a real country for 802.11d).
pub fn country_ok(c: &str) -> bool {
    c.len() == 2 && c.chars().all(|c| c.is_ascii_uppercase())
}

impl Band {
    /// The channels a board may name for this band.
    pub fn channels(self) -> Vec<u8> {
        match self {
            Band::G24 => (1..=13).collect(),
            Band::G5 => (36..=64).step_by(4).chain((100..=144).step_by(4)).chain((149..=165).step_by(4)).collect(),
        }
    }
    fn allowed(self) -> &'static str {
        match self {
            Band::G24 => "1-13",
            Band::G5 => "36-64, 100-144 (steps of 4), 149-165 (steps of 4)",
        }
    }
}
