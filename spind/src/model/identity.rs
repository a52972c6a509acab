//! What a device says it is (issue 14): its vendor from the MAC's OUI (the IEEE registry as a
//! compact table, embedded at build time by `build.rs`, or another one from `oui_file`, made by
//! `cargo xtask oui`), whether its MAC is locally administered
//! (randomised), and a guess of its type from the vendor, its host name, what it says over mDNS
//! (its model and services) and the names it looked up, which the user may correct (`set_device_type`, kept in `devicetypes.list`).
//!
//! The vendor file's format (`SPINOUI1`, all integers little-endian):
//! `"SPINOUI1"`, `u32` entry count N, `u32` name count M, N entries of 3 bytes OUI + `u16` name
//! index (strictly ascending by OUI, so a lookup is a binary search), then M names, each a `u8`
//! length and that many bytes of UTF-8. Nothing else; anything else is a corrupt file.

use std::fmt;
use std::io::Read;
use std::path::Path;

use crate::model::event::MacAddr;

/// True when the MAC is a unicast, locally administered one: what phones and laptops make up
/// per network (randomised MACs); its OUI names no vendor.
pub fn is_random_mac(mac: &MacAddr) -> bool {
    mac.0[0] & 0x02 != 0 && mac.0[0] & 0x01 == 0
}

pub const OUI_MAGIC: &[u8; 8] = b"SPINOUI1";
/// A larger vendor file is refused (the whole registry is about 380 KB).
pub const OUI_FILE_MAX: u64 = 1 << 20;
const HEADER: usize = 16;
const ENTRY: usize = 5;

/// The vendor table: the file's bytes and where each name starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OuiTable {
    data: Vec<u8>,
    entries: usize,
    /// (start, length) of each name in `data`.
    names: Vec<(u32, u8)>,
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

impl OuiTable {
    /// Checks a whole vendor file; any inconsistency is an error, never a panic.
    pub fn parse(data: Vec<u8>) -> Result<OuiTable, String> {
        if data.len() as u64 > OUI_FILE_MAX {
            return Err(format!("{} bytes, more than the {OUI_FILE_MAX} allowed", data.len()));
        }
        if data.len() < HEADER || &data[..8] != OUI_MAGIC {
            return Err("not a SPINOUI1 vendor file (made by `cargo xtask oui`)".into());
        }
        let (n, m) = (u32_at(&data, 8), u32_at(&data, 12));
        let names_at = n
            .checked_mul(ENTRY)
            .and_then(|e| e.checked_add(HEADER))
            .filter(|end| *end <= data.len())
            .ok_or_else(|| format!("{n} entries do not fit in {} bytes", data.len()))?;
        if m > usize::from(u16::MAX) + 1 {
            return Err(format!("{m} names, more than an index can name"));
        }
        let mut prev: Option<u32> = None;
        for i in 0..n {
            let e = &data[HEADER + i * ENTRY..HEADER + (i + 1) * ENTRY];
            let oui = u32::from_be_bytes([0, e[0], e[1], e[2]]);
            if prev.is_some_and(|p| p >= oui) {
                return Err(format!("entry {i} ({oui:06X}) is out of order"));
            }
            prev = Some(oui);
            let idx = usize::from(u16::from_le_bytes([e[3], e[4]]));
            if idx >= m {
                return Err(format!("entry {i} names vendor {idx} of {m}"));
            }
        }
        let mut names = Vec::with_capacity(m);
        let mut at = names_at;
        for i in 0..m {
            let len = *data.get(at).ok_or_else(|| format!("the file ends before name {i}"))?;
            let start = at + 1;
            let end = start + usize::from(len);
            let text = data.get(start..end).ok_or_else(|| format!("name {i} runs past the end"))?;
            if len == 0 || std::str::from_utf8(text).is_err() {
                return Err(format!("name {i} is empty or not UTF-8"));
            }
            names.push((start as u32, len));
            at = end;
        }
        if at != data.len() {
            return Err(format!("{} bytes after the last name", data.len() - at));
        }
        Ok(OuiTable { data, entries: n, names })
    }

    /// The table embedded at build time (gzip-compressed; empty when the build host had no
    /// registry), decompressed and checked.
    pub fn builtin() -> Result<OuiTable, String> {
        const PACKED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/oui.bin.gz"));
        if PACKED.is_empty() {
            return Ok(OuiTable::default());
        }
        let mut data = Vec::new();
        flate2::read::GzDecoder::new(PACKED)
            .take(OUI_FILE_MAX + 1)
            .read_to_end(&mut data)
            .map_err(|e| format!("the built-in vendor table: {e}"))?;
        OuiTable::parse(data)
    }

    /// Reads and checks `path`, at most [`OUI_FILE_MAX`] bytes of it.
    pub fn load(path: &Path) -> Result<OuiTable, String> {
        let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
        let mut data = Vec::new();
        file.take(OUI_FILE_MAX + 1).read_to_end(&mut data).map_err(|e| format!("cannot read: {e}"))?;
        OuiTable::parse(data)
    }

    /// How many OUIs the table has.
    pub fn prefixes(&self) -> usize {
        self.entries
    }

    fn oui_at(&self, i: usize) -> u32 {
        let e = &self.data[HEADER + i * ENTRY..];
        u32::from_be_bytes([0, e[0], e[1], e[2]])
    }

    /// The vendor registered for the MAC's OUI; none for a locally administered MAC (its first
    /// three bytes were made up, whatever the registry says of them).
    pub fn vendor(&self, mac: &MacAddr) -> Option<&str> {
        if is_random_mac(mac) {
            return None;
        }
        let oui = u32::from_be_bytes([0, mac.0[0], mac.0[1], mac.0[2]]);
        let (mut lo, mut hi) = (0, self.entries);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.oui_at(mid).cmp(&oui) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    let e = &self.data[HEADER + mid * ENTRY..];
                    let (start, len) = self.names[usize::from(u16::from_le_bytes([e[3], e[4]]))];
                    let text = &self.data[start as usize..start as usize + usize::from(len)];
                    return std::str::from_utf8(text).ok();
                }
            }
        }
        None
    }
}

/// What a device is, as guessed or as the user said.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeviceType {
    Phone,
    Laptop,
    Tv,
    Speaker,
    Camera,
    Console,
    Printer,
    Iot,
    Router,
}

impl DeviceType {
    pub const ALL: [DeviceType; 9] = [
        DeviceType::Phone,
        DeviceType::Laptop,
        DeviceType::Tv,
        DeviceType::Speaker,
        DeviceType::Camera,
        DeviceType::Console,
        DeviceType::Printer,
        DeviceType::Iot,
        DeviceType::Router,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DeviceType::Phone => "phone",
            DeviceType::Laptop => "laptop",
            DeviceType::Tv => "tv",
            DeviceType::Speaker => "speaker",
            DeviceType::Camera => "camera",
            DeviceType::Console => "console",
            DeviceType::Printer => "printer",
            DeviceType::Iot => "iot",
            DeviceType::Router => "router",
        }
    }

    pub fn parse(text: &str) -> Option<DeviceType> {
        DeviceType::ALL.into_iter().find(|t| t.name() == text)
    }
}

impl fmt::Display for DeviceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

use DeviceType as T;

/// Parts of DHCP host names (lower case) and what they say. Checked first: a host name is the
/// most specific thing a device says (an Apple or Samsung MAC alone says little).
const HOST_HINTS: &[(&str, DeviceType)] = &[
    ("iphone", T::Phone),
    ("android", T::Phone),
    ("galaxy", T::Phone),
    ("pixel", T::Phone),
    ("oneplus", T::Phone),
    ("redmi", T::Phone),
    // A tablet counts as a phone: mobile, no keyboard.
    ("ipad", T::Phone),
    ("tablet", T::Phone),
    ("macbook", T::Laptop),
    ("laptop", T::Laptop),
    ("notebook", T::Laptop),
    ("thinkpad", T::Laptop),
    ("chromebook", T::Laptop),
    ("desktop-", T::Laptop),
    ("imac", T::Laptop),
    ("chromecast", T::Tv),
    ("appletv", T::Tv),
    ("apple-tv", T::Tv),
    ("roku", T::Tv),
    ("firetv", T::Tv),
    ("fire-tv", T::Tv),
    ("bravia", T::Tv),
    ("webos", T::Tv),
    ("smarttv", T::Tv),
    ("sonos", T::Speaker),
    ("homepod", T::Speaker),
    ("google-home", T::Speaker),
    ("googlehome", T::Speaker),
    ("nest-mini", T::Speaker),
    ("nest-audio", T::Speaker),
    ("echo-", T::Speaker),
    ("printer", T::Printer),
    ("laserjet", T::Printer),
    ("officejet", T::Printer),
    ("deskjet", T::Printer),
    ("epson", T::Printer),
    ("canon", T::Printer),
    ("camera", T::Camera),
    ("ipcam", T::Camera),
    ("doorbell", T::Camera),
    ("hikvision", T::Camera),
    ("playstation", T::Console),
    ("ps4", T::Console),
    ("ps5", T::Console),
    ("xbox", T::Console),
    ("nintendo", T::Console),
    ("steamdeck", T::Console),
    ("esp32", T::Iot),
    ("esp8266", T::Iot),
    ("esp_", T::Iot),
    ("esp-", T::Iot),
    ("shelly", T::Iot),
    ("tasmota", T::Iot),
    ("sonoff", T::Iot),
    ("wled", T::Iot),
    ("tuya", T::Iot),
    ("router", T::Router),
    ("openwrt", T::Router),
    ("fritz", T::Router),
];

/// Parts of vendor names (lower case) that say the type: vendors that make one kind of device.
const VENDOR_HINTS: &[(&str, DeviceType)] = &[
    ("sonos", T::Speaker),
    ("bose", T::Speaker),
    ("roku", T::Tv),
    ("vizio", T::Tv),
    ("hisense", T::Tv),
    ("nintendo", T::Console),
    ("sony interactive", T::Console),
    ("valve", T::Console),
    ("espressif", T::Iot),
    ("tuya", T::Iot),
    ("shelly", T::Iot),
    ("allterco", T::Iot),
    ("signify", T::Iot),
    ("philips lighting", T::Iot),
    ("nest labs", T::Iot),
    ("ecobee", T::Iot),
    ("itead", T::Iot),
    ("hikvision", T::Camera),
    ("dahua", T::Camera),
    ("reolink", T::Camera),
    ("ezviz", T::Camera),
    ("arlo", T::Camera),
    ("axis communications", T::Camera),
    ("brother", T::Printer),
    ("canon", T::Printer),
    ("seiko epson", T::Printer),
    ("xerox", T::Printer),
    ("lexmark", T::Printer),
    ("kyocera", T::Printer),
    ("ricoh", T::Printer),
    ("fairphone", T::Phone),
    ("oneplus", T::Phone),
    ("vivo mobile", T::Phone),
    ("realme", T::Phone),
    ("hmd global", T::Phone),
    ("motorola mobility", T::Phone),
    ("ubiquiti", T::Router),
    ("mikrotik", T::Router),
    ("routerboard", T::Router),
    ("netgear", T::Router),
    ("zyxel", T::Router),
    ("avm", T::Router),
];

/// Names a device looked up (the name or any name below it) that say what it is.
const DOMAIN_HINTS: &[(&str, DeviceType)] = &[
    ("nintendo.net", T::Console),
    ("playstation.net", T::Console),
    ("playstation.com", T::Console),
    ("xboxlive.com", T::Console),
    ("sonos.com", T::Speaker),
    ("roku.com", T::Tv),
    ("lgtvsdp.com", T::Tv),
    ("tuyaeu.com", T::Iot),
    ("tuyaus.com", T::Iot),
    ("meethue.com", T::Iot),
    ("ezvizlife.com", T::Camera),
    ("hpeprint.com", T::Printer),
    ("epsonconnect.com", T::Printer),
];

fn under(name: &str, domain: &str) -> bool {
    let name = name.trim_end_matches('.');
    name.eq_ignore_ascii_case(domain)
        || (name.len() > domain.len()
            && name.as_bytes()[name.len() - domain.len() - 1] == b'.'
            && name[name.len() - domain.len()..].eq_ignore_ascii_case(domain))
}

/// The type a device seems to be, from (in this order) its host name, its vendor and the names
/// it looked up; `None` when nothing says.
pub fn guess_type<'a>(
    host_name: Option<&str>,
    vendor: Option<&str>,
    domains: impl IntoIterator<Item = &'a str>,
) -> Option<DeviceType> {
    let contains = |text: &str, hints: &[(&str, DeviceType)]| {
        let lower = text.to_ascii_lowercase();
        hints.iter().find(|(part, _)| lower.contains(part)).map(|(_, t)| *t)
    };
    host_name.and_then(|h| contains(h, HOST_HINTS)).or_else(|| vendor.and_then(|v| contains(v, VENDOR_HINTS))).or_else(
        || domains.into_iter().find_map(|d| DOMAIN_HINTS.iter().find(|(dom, _)| under(d, dom)).map(|(_, t)| *t)),
    )
}

/// Service types kept per device (as many as one announcement may carry, `sources::mdns`).
pub const MDNS_SERVICES_MAX: usize = 16;

/// What a device said of itself over mDNS (`sources::mdns`): its latest name and model, and
/// the service types of all its announcements (at most [`MDNS_SERVICES_MAX`], sorted). Kept in memory only: devices announce
/// themselves again when they join, and answer whenever asked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MdnsInfo {
    pub name: Option<String>,
    pub model: Option<String>,
    pub services: Vec<String>,
}

impl MdnsInfo {
    /// Takes in one announcement (what it does not say stays as it was); true when anything
    /// changed.
    pub fn merge(&mut self, other: MdnsInfo) -> bool {
        let before = self.clone();
        if other.name.is_some() {
            self.name = other.name;
        }
        if other.model.is_some() {
            self.model = other.model;
        }
        for s in other.services {
            if let Err(at) = self.services.binary_search(&s) {
                if self.services.len() < MDNS_SERVICES_MAX {
                    self.services.insert(at, s);
                }
            }
        }
        *self != before
    }
}

/// Parts of mDNS models (`_device-info._tcp` `model=`, lower case) and what they say; in this
/// order (`macbook` before `mac`).
const MODEL_HINTS: &[(&str, DeviceType)] = &[
    ("iphone", T::Phone),
    ("ipad", T::Phone),
    ("ipod", T::Phone),
    ("appletv", T::Tv),
    // HomePods call themselves AudioAccessory.
    ("audioaccessory", T::Speaker),
    ("macbook", T::Laptop),
    ("imac", T::Laptop),
    ("macmini", T::Laptop),
    ("macpro", T::Laptop),
    ("macstudio", T::Laptop),
    ("mac", T::Laptop),
];

/// mDNS service types and what offering one says, in this order: a printer prints whatever
/// else it offers; a TV casts or takes AirPlay video (Apple TVs, smart TVs); AirPlay audio
/// alone (`_raop`), Spotify Connect and Sonos are speakers; Apple's phones and tablets offer
/// companion links; HomeKit accessories (`_hap`) are IoT.
const SERVICE_HINTS: &[(&str, DeviceType)] = &[
    ("_ipp._tcp", T::Printer),
    ("_ipps._tcp", T::Printer),
    ("_printer._tcp", T::Printer),
    ("_pdl-datastream._tcp", T::Printer),
    ("_googlecast._tcp", T::Tv),
    ("_airplay._tcp", T::Tv),
    ("_amzn-wplay._tcp", T::Tv),
    ("_androidtvremote2._tcp", T::Tv),
    ("_raop._tcp", T::Speaker),
    ("_spotify-connect._tcp", T::Speaker),
    ("_sonos._tcp", T::Speaker),
    ("_companion-link._tcp", T::Phone),
    ("_apple-mobdev2._tcp", T::Phone),
    ("_axis-video._tcp", T::Camera),
    ("_hap._tcp", T::Iot),
    ("_hue._tcp", T::Iot),
    ("_shelly._tcp", T::Iot),
];

/// The type a device seems to be, from (in this order) the model it says over mDNS (the most
/// exact thing a device says), its host name, the services it offers over mDNS, its vendor and
/// the names it looked up; `None` when nothing says.
pub fn guess_with_mdns<'a>(
    host_name: Option<&str>,
    mdns: Option<&MdnsInfo>,
    vendor: Option<&str>,
    domains: impl IntoIterator<Item = &'a str>,
) -> Option<DeviceType> {
    let model = mdns.and_then(|m| m.model.as_deref()).and_then(|m| {
        let lower = m.to_ascii_lowercase();
        MODEL_HINTS.iter().chain(HOST_HINTS).find(|(part, _)| lower.contains(part)).map(|(_, t)| *t)
    });
    let services = || {
        let offered = &mdns?.services;
        SERVICE_HINTS.iter().find(|(svc, _)| offered.iter().any(|o| o == svc)).map(|(_, t)| *t)
    };
    model
        .or_else(|| guess_type(host_name, None, std::iter::empty()))
        .or_else(services)
        .or_else(|| guess_type(None, vendor, domains))
}

/// `devicetypes.list`: the user's types, `MAC TYPE` a line; bad lines are reported and skipped.
pub fn parse_device_types(text: &str) -> (std::collections::BTreeMap<MacAddr, DeviceType>, Vec<String>) {
    let mut types = std::collections::BTreeMap::new();
    let mut warnings = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let mut f = line.split_whitespace();
        match (f.next().and_then(|m| m.parse::<MacAddr>().ok()), f.next().and_then(DeviceType::parse), f.next()) {
            (Some(mac), Some(t), None) => {
                types.insert(mac, t);
            }
            _ => warnings.push(format!("not 'MAC TYPE', skipped: {line}")),
        }
    }
    (types, warnings)
}

pub fn device_types_text(types: &std::collections::BTreeMap<MacAddr, DeviceType>) -> String {
    types.iter().map(|(mac, t)| format!("{mac} {t}\n")).collect()
}

#[cfg(test)]
mod tests;
