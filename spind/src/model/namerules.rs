//! Name rules (issue 13): a DNS name that is blocked or allowed, for every device or for chosen
//! ones (by MAC), optionally only inside the windows of a weekly schedule and until a time.
//! Parsing and validation of what `add_name_rule` receives, the schedule's syntax
//! (`Mo-Fr 21:00-07:00; Sa,Su 22:00-08:00`, local time, a window may cross midnight), whether a
//! rule holds at a moment, the compiled [`NameMatcher`] of the rules that hold, and the file
//! they are kept in (`<state_dir>/namerules.json`, written by the core's atomic batches).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::model::event::{MacAddr, Timestamp};
use crate::model::policy::{NameMatcher, WeekSpan};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Block,
    Allow,
}

/// A moment in local time: the day of the week (0 = Monday) and the minute of the day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalTime {
    pub weekday: u8,
    pub minute: u16,
}

impl LocalTime {
    /// Unix time as UTC (the unit tests' clock, and a router without a time zone).
    pub fn utc(t: Timestamp) -> LocalTime {
        let days = t.div_euclid(86_400);
        // 1970-01-01 was a Thursday (weekday 3).
        LocalTime { weekday: (days + 3).rem_euclid(7) as u8, minute: (t.rem_euclid(86_400) / 60) as u16 }
    }
}

/// One window: on each of `days` (bit 0 = Monday) from `start` to `end` (minutes of the day);
/// `end <= start` means the window ends on the next day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    days: u8,
    start: u16,
    end: u16,
}

/// A weekly schedule: the rule holds only inside its windows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    text: String,
    windows: Vec<Window>,
}

const DAYS: [&str; 7] = ["mo", "tu", "we", "th", "fr", "sa", "su"];

fn day(s: &str) -> Result<u8, String> {
    DAYS.iter()
        .position(|d| d.eq_ignore_ascii_case(s.trim()))
        .map(|i| i as u8)
        .ok_or_else(|| format!("'{}' is not a day (Mo Tu We Th Fr Sa Su)", s.trim()))
}

fn clock(s: &str) -> Result<u16, String> {
    let bad = || format!("'{s}' is not a time of day (HH:MM)");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl std::str::FromStr for Schedule {
    type Err = String;
    fn from_str(text: &str) -> Result<Schedule, String> {
        if text.len() > 512 {
            return Err("too long".into());
        }
        let mut windows = Vec::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (days_text, times) =
                part.split_once(char::is_whitespace).ok_or_else(|| format!("'{part}': expected DAYS HH:MM-HH:MM"))?;
            let mut days = 0u8;
            for d in days_text.split(',') {
                match d.split_once('-') {
                    None => days |= 1 << day(d)?,
                    Some((a, b)) => {
                        let (mut i, b) = (day(a)?, day(b)?);
                        loop {
                            days |= 1 << i;
                            if i == b {
                                break;
                            }
                            i = (i + 1) % 7;
                        }
                    }
                }
            }
            for range in times.split(',').map(str::trim) {
                let (a, b) =
                    range.split_once('-').ok_or_else(|| format!("'{range}': expected a window HH:MM-HH:MM"))?;
                let (start, end) = (clock(a.trim())?, clock(b.trim())?);
                if start == end {
                    return Err(format!("'{range}': a window must not be empty"));
                }
                windows.push(Window { days, start, end: if end == 24 * 60 { 0 } else { end } });
            }
        }
        if windows.is_empty() {
            return Err("no window (e.g. \"Mo-Fr 21:00-07:00\")".into());
        }
        Ok(Schedule { text: text.trim().to_string(), windows })
    }
}

impl Schedule {
    /// Whether `t` lies inside a window (a window that crosses midnight belongs to the day it
    /// starts on).
    pub fn holds(&self, t: LocalTime) -> bool {
        let yesterday = (t.weekday + 6) % 7;
        self.windows.iter().any(|w| {
            let on = |d: u8| w.days & (1 << d) != 0;
            if w.start < w.end {
                on(t.weekday) && (w.start..w.end).contains(&t.minute)
            } else {
                (on(t.weekday) && t.minute >= w.start) || (on(yesterday) && t.minute < w.end)
            }
        })
    }
}

/// Minutes in a week.
pub const WEEK_MINUTES: i32 = 7 * 1440;

impl Schedule {
    /// The windows as spans of the week in UTC, for a router whose local time is UTC plus
    /// `offset` minutes (see [`LocalTime::offset_from_utc`]): one span per day and window.
    pub fn utc_spans(&self, offset: i32) -> Vec<WeekSpan> {
        let mut out = Vec::new();
        for w in &self.windows {
            let len = if w.end > w.start { w.end - w.start } else { 1440 - w.start + w.end };
            for d in (0..7u8).filter(|d| w.days & (1 << d) != 0) {
                let local = i32::from(d) * 1440 + i32::from(w.start);
                out.push(WeekSpan { start: (local - offset).rem_euclid(WEEK_MINUTES) as u16, len });
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl LocalTime {
    /// Minutes that local time is ahead of UTC at `t`, given `local` = the local time of `t`.
    pub fn offset_from_utc(local: LocalTime, t: Timestamp) -> i32 {
        let week = |l: LocalTime| i32::from(l.weekday) * 1440 + i32::from(l.minute);
        // Within half a week either way (real offsets are within +-14 h).
        (week(local) - week(LocalTime::utc(t)) + WEEK_MINUTES / 2).rem_euclid(WEEK_MINUTES) - WEEK_MINUTES / 2
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A DNS name as rules keep it: lowercase, without the trailing dot, letters, digits, `-` and
/// `_` in labels of 1-63 bytes, at most 253 bytes. International names are given in punycode.
pub fn normalise_name(name: &str) -> Result<String, String> {
    let n = name.trim().trim_end_matches('.');
    if n.is_empty() {
        return Err("empty".into());
    }
    if !n.is_ascii() {
        return Err("international names must be given in punycode (xn--...)".into());
    }
    if n.len() > 253 {
        return Err("longer than 253 bytes".into());
    }
    for label in n.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("'{label}' is not a label of 1 to 63 characters"));
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(format!("'{label}' has a character other than a-z, 0-9, '-' or '_'"));
        }
    }
    Ok(n.to_ascii_lowercase())
}

/// The shipped list of well-known DoH resolver names (`spind/data/doh-resolvers.txt`, its
/// sources noted there): blocked for every device while `doh_block` is on.
const DOH_RESOLVERS: &str = include_str!("../../data/doh-resolvers.txt");

/// The names of [`DOH_RESOLVERS`], without comments; each is a valid, normalised name (a unit
/// test checks).
pub fn doh_resolvers() -> impl Iterator<Item = &'static str> {
    DOH_RESOLVERS.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameRule {
    pub id: u64,
    pub name: String,
    pub action: Action,
    /// Empty: every device.
    pub devices: Vec<MacAddr>,
    pub schedule: Option<Schedule>,
    pub until: Option<Timestamp>,
}

impl NameRule {
    /// Whether the rule holds at `now` (unix time) whose local time is `local`.
    pub fn holds(&self, now: Timestamp, local: LocalTime) -> bool {
        self.until.is_none_or(|u| now < u) && self.schedule.as_ref().is_none_or(|s| s.holds(local))
    }
}

/// A rule as JSON: in `list_name_rules`, on MQTT and in `namerules.json`.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct NameRuleJson {
    pub id: u64,
    pub name: String,
    pub action: Action,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
}

impl NameRuleJson {
    pub fn of(r: &NameRule) -> NameRuleJson {
        NameRuleJson {
            id: r.id,
            name: r.name.clone(),
            action: r.action,
            devices: r.devices.iter().map(|m| m.to_string()).collect(),
            schedule: r.schedule.as_ref().map(|s| s.to_string()),
            until: r.until,
        }
    }
}

/// What `add_name_rule` was given, checked: `Err((field, why))` names the bad field.
pub fn parse_rule(
    name: &str,
    action: &str,
    devices: &[&str],
    schedule: Option<&str>,
    until: Option<Timestamp>,
) -> Result<NameRule, (&'static str, String)> {
    let name = normalise_name(name).map_err(|e| ("name", e))?;
    let action = match action {
        "block" => Action::Block,
        "allow" => Action::Allow,
        other => return Err(("action", format!("'{other}' is neither 'block' nor 'allow'"))),
    };
    let macs = device_macs(devices)?;
    let schedule = schedule.map(str::parse).transpose().map_err(|e| ("schedule", e))?;
    Ok(NameRule { id: 0, name, action, devices: macs, schedule, until })
}

/// The `devices` of a name rule or a blocklist: unicast MACs, each once; a bad one names the
/// field.
pub fn device_macs(devices: &[&str]) -> Result<Vec<MacAddr>, (&'static str, String)> {
    let mut macs = Vec::new();
    for d in devices {
        let m: MacAddr = d.parse().map_err(|e| ("devices", format!("'{d}': {e}")))?;
        if !m.is_unicast() {
            return Err(("devices", format!("'{d}' is not a device's (unicast) address")));
        }
        if !macs.contains(&m) {
            macs.push(m);
        }
    }
    Ok(macs)
}

/// Every rule, by id, and the next id to hand out (ids are never reused).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameRules {
    rules: BTreeMap<u64, NameRule>,
    next_id: u64,
}

impl NameRules {
    pub fn add(&mut self, mut rule: NameRule) -> u64 {
        self.next_id = self.next_id.max(1);
        rule.id = self.next_id;
        self.next_id += 1;
        self.rules.insert(rule.id, rule);
        self.next_id - 1
    }

    pub fn remove(&mut self, id: u64) -> bool {
        self.rules.remove(&id).is_some()
    }

    pub fn to_json(&self) -> Vec<NameRuleJson> {
        self.rules.values().map(NameRuleJson::of).collect()
    }

    /// The rules as one JSON value: the one serialization that the messages, the RPC result
    /// and the file share (each a copy of the code costs binary size).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self.to_json()).unwrap_or_default()
    }

    /// The rules that hold at `now`, compiled; `neighbours` gives the addresses of the devices
    /// they name.
    #[cfg(test)]
    pub fn matcher<'a>(
        &self,
        now: Timestamp,
        local: LocalTime,
        neighbours: impl Iterator<Item = (&'a std::net::IpAddr, &'a MacAddr)>,
    ) -> NameMatcher {
        self.matcher_of(|r| r.holds(now, local), neighbours)
    }

    /// The rules `keep` selects, compiled (whatever their schedule says now).
    pub fn matcher_of<'a>(
        &self,
        keep: impl Fn(&NameRule) -> bool,
        neighbours: impl Iterator<Item = (&'a std::net::IpAddr, &'a MacAddr)>,
    ) -> NameMatcher {
        let mut m = NameMatcher::default();
        for r in self.rules.values().filter(|r| keep(r)) {
            let devices = (!r.devices.is_empty()).then(|| r.devices.iter().map(|d| d.0).collect());
            m.add(&r.name, devices, r.action == Action::Allow);
        }
        if !m.is_empty() {
            let named = m.devices().to_vec();
            for (ip, mac) in neighbours {
                if named.contains(&mac.0) {
                    m.add_device_ip(*ip, mac.0);
                }
            }
        }
        m
    }

    /// The distinct schedules of the `action` rules that have not ended at `now`: each gets its
    /// own kernel sets, matched only inside its windows.
    pub fn schedules(&self, action: Action, now: Timestamp) -> Vec<Schedule> {
        let mut out: Vec<Schedule> = Vec::new();
        for r in self.rules.values().filter(|r| r.action == action && r.until.is_none_or(|u| now < u)) {
            if let Some(s) = &r.schedule {
                if !out.iter().any(|o| o.text == s.text) {
                    out.push(s.clone());
                }
            }
        }
        out.sort_by(|a, b| a.text.cmp(&b.text));
        out
    }

    /// Whether a scheduled rule (block or allow) that has not ended covers `name` (itself or a
    /// name below it), inside its windows or not: its addresses are kept for the kernel's time
    /// matches.
    pub fn scheduled_rule_covers(&self, name: &str, now: Timestamp) -> bool {
        self.rules.values().any(|r| {
            r.schedule.is_some()
                && r.until.is_none_or(|u| now < u)
                && (name == r.name || name.strip_suffix(r.name.as_str()).is_some_and(|rest| rest.ends_with('.')))
        })
    }

    /// The file's text.
    pub fn file_text(&self) -> String {
        let f = serde_json::json!({"next_id": self.next_id, "rules": self.to_value()});
        f.to_string() + "\n"
    }

    /// Reads the file's text; a rule that no longer parses is reported and left out.
    pub fn from_file_text(text: &str) -> Result<(NameRules, Vec<String>), String> {
        // Read through `Value` (already in the binary) rather than a derived Deserialize.
        let f: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let next_id = f["next_id"].as_u64().ok_or("no next_id")?;
        let rules = f["rules"].as_array().ok_or("no rules")?;
        let mut out = NameRules { rules: BTreeMap::new(), next_id };
        let mut warnings = Vec::new();
        for j in rules {
            let Some(id) = j["id"].as_u64() else {
                warnings.push(format!("a name rule without an id: {j}"));
                continue;
            };
            let devices: Vec<&str> = j["devices"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let (name, action) = (j["name"].as_str().unwrap_or(""), j["action"].as_str().unwrap_or(""));
            match parse_rule(name, action, &devices, j["schedule"].as_str(), j["until"].as_i64()) {
                Ok(mut r) => {
                    r.id = id;
                    out.next_id = out.next_id.max(id + 1);
                    out.rules.insert(id, r);
                }
                Err((field, e)) => warnings.push(format!("name rule {id}: {field}: {e}")),
            }
        }
        Ok((out, warnings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::policy::NameVerdict;

    fn at(weekday: u8, h: u16, m: u16) -> LocalTime {
        LocalTime { weekday, minute: h * 60 + m }
    }

    #[test]
    fn schedules_with_windows_across_midnight() {
        let s: Schedule = "Mo-Fr 21:00-07:00; Sa,Su 22:00-08:00".parse().unwrap();
        assert!(s.holds(at(0, 21, 0)), "Monday 21:00");
        assert!(s.holds(at(1, 6, 59)), "Tuesday morning, the window of Monday night");
        assert!(!s.holds(at(1, 7, 0)), "ends at 07:00");
        assert!(!s.holds(at(0, 20, 59)));
        assert!(s.holds(at(0, 6, 0)), "Monday 06:00 belongs to Sunday's window, which ends at 08:00");
        assert!(s.holds(at(0, 7, 30)), "... so at 07:30 on Monday it still holds");
        assert!(!s.holds(at(0, 8, 0)));
        assert!(s.holds(at(5, 6, 30)), "Saturday 06:30: Friday's window");
        assert!(!s.holds(at(5, 7, 30)), "Friday's window ended at 07:00, Saturday's starts at 22:00");
        assert!(s.holds(at(6, 23, 0)));
        assert_eq!(s.to_string(), "Mo-Fr 21:00-07:00; Sa,Su 22:00-08:00");
        let day: Schedule = "sa 09:00-12:00,14:00-24:00".parse().unwrap();
        assert!(day.holds(at(5, 9, 0)) && !day.holds(at(5, 12, 0)) && day.holds(at(5, 23, 59)));
        assert!(!day.holds(at(6, 0, 0)), "24:00 is the end of the day, not a crossing");
        let wrap: Schedule = "Fr-Mo 10:00-11:00".parse().unwrap();
        assert!(wrap.holds(at(6, 10, 30)) && wrap.holds(at(0, 10, 30)) && !wrap.holds(at(2, 10, 30)));
    }

    #[test]
    fn bad_schedules_say_why() {
        for (bad, why) in [
            ("", "no window"),
            ("Mo-Fr", "expected DAYS"),
            ("Xy 10:00-11:00", "not a day"),
            ("Mo 25:00-11:00", "not a time"),
            ("Mo 10:60-11:00", "not a time"),
            ("Mo 10:00", "expected a window"),
            ("Mo 10:00-10:00", "empty"),
            ("Mo 1000-1100", "not a time"),
        ] {
            let e = bad.parse::<Schedule>().unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!("x".repeat(600).parse::<Schedule>().is_err());
    }

    #[test]
    fn windows_become_utc_spans_of_the_week() {
        let s: Schedule = "Mo-Th,Su 21:00-07:00".parse().unwrap();
        // UTC: Monday 21:00 is week minute 1260; each window lasts ten hours.
        let spans = s.utc_spans(0);
        assert_eq!(spans.len(), 5);
        assert_eq!(spans[0], WeekSpan { start: 1260, len: 600 });
        assert_eq!(spans[4], WeekSpan { start: 6 * 1440 + 1260, len: 600 }, "Sunday night runs into Monday");
        // India (UTC+5:30): Monday 21:00 local is Monday 15:30 UTC; Monday 01:00 local is
        // Sunday 19:30 UTC, the end of the week.
        assert_eq!(s.utc_spans(330)[0], WeekSpan { start: 1260 - 330, len: 600 });
        let early: Schedule = "Mo 01:00-02:00".parse().unwrap();
        assert_eq!(early.utc_spans(330), [WeekSpan { start: 7 * 1440 - 270, len: 60 }]);
        assert_eq!(
            "Sa 14:00-24:00".parse::<Schedule>().unwrap().utc_spans(0),
            [WeekSpan { start: 5 * 1440 + 840, len: 600 }]
        );
        let t = 1_796_169_600 + 13 * 3600; // Wednesday 13:00 UTC
        assert_eq!(LocalTime::offset_from_utc(at(2, 18, 30), t), 330);
        assert_eq!(LocalTime::offset_from_utc(at(2, 3, 0), t), -600);
        // Sunday 23:00 UTC is Monday 09:00 in UTC+10: across the end of the week.
        let sunday = 1_796_169_600 + 4 * 86_400 + 23 * 3600;
        assert_eq!(LocalTime::offset_from_utc(at(0, 9, 0), sunday), 600);
    }

    #[test]
    fn scheduled_rules_are_found_whatever_the_time() {
        let mut rules = NameRules::default();
        rules.add(parse_rule("video.example", "block", &[], Some("Mo 10:00-11:00"), None).unwrap());
        rules.add(parse_rule("games.example", "block", &[], Some("Mo 10:00-11:00"), Some(100)).unwrap());
        rules.add(parse_rule("ok.example", "allow", &[], Some("Tu 10:00-11:00"), None).unwrap());
        rules.add(parse_rule("always.example", "block", &[], None, None).unwrap());
        assert!(rules.scheduled_rule_covers("www.video.example", 50));
        assert!(rules.scheduled_rule_covers("video.example", 50));
        assert!(!rules.scheduled_rule_covers("xvideo.example", 50));
        assert!(rules.scheduled_rule_covers("games.example", 50) && !rules.scheduled_rule_covers("games.example", 100));
        assert!(rules.scheduled_rule_covers("www.ok.example", 50), "a scheduled allow too");
        assert!(!rules.scheduled_rule_covers("always.example", 50));
        rules.add(parse_rule("late.example", "block", &[], Some("We 10:00-11:00"), Some(100)).unwrap());
        let texts = |a, t| -> Vec<String> { rules.schedules(a, t).iter().map(|s| s.to_string()).collect() };
        assert_eq!(texts(Action::Block, 50), ["Mo 10:00-11:00", "We 10:00-11:00"], "each schedule once");
        assert_eq!(texts(Action::Block, 100), ["Mo 10:00-11:00"], "an ended rule's schedule is left out");
        assert_eq!(texts(Action::Allow, 50), ["Tu 10:00-11:00"], "the allows' apart");
    }

    #[test]
    fn utc_weekday_and_minute() {
        // 2026-12-02 13:20 UTC is a Wednesday.
        assert_eq!(LocalTime::utc(1_796_169_600 + 13 * 3600 + 20 * 60), at(2, 13, 20));
        assert_eq!(LocalTime::utc(0), at(3, 0, 0));
    }

    #[test]
    fn the_shipped_doh_list_is_valid_normalised_and_without_duplicates() {
        let names: Vec<&str> = doh_resolvers().collect();
        assert!(names.len() > 50 && names.contains(&"dns.google") && names.contains(&"cloudflare-dns.com"));
        for n in &names {
            assert_eq!(normalise_name(n).as_deref(), Ok(*n));
        }
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        assert!(!names.contains(&"google.com") && !names.contains(&"quad9.net"), "never a provider's main domain");
    }

    #[test]
    fn names_are_normalised_or_refused() {
        assert_eq!(normalise_name("WWW.Video.Example.").unwrap(), "www.video.example");
        assert_eq!(normalise_name("xn--bcher-kva.example").unwrap(), "xn--bcher-kva.example");
        for bad in ["", ".", "a..b", "bücher.example", "a b.example", &"a".repeat(64), &"a.".repeat(130)] {
            assert!(normalise_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parse_rule_names_the_bad_field() {
        let field = |r: Result<NameRule, (&'static str, String)>| r.unwrap_err().0;
        assert_eq!(field(parse_rule("a..b", "block", &[], None, None)), "name");
        assert_eq!(field(parse_rule("a.b", "deny", &[], None, None)), "action");
        assert_eq!(field(parse_rule("a.b", "block", &["02:00:00:00:00"], None, None)), "devices");
        assert_eq!(field(parse_rule("a.b", "block", &["ff:ff:ff:ff:ff:ff"], None, None)), "devices");
        assert_eq!(field(parse_rule("a.b", "block", &[], Some("Mo"), None)), "schedule");
        let r =
            parse_rule("A.b", "allow", &["02:00:00:00:00:01", "02:00:00:00:00:01"], Some("Mo 10:00-11:00"), Some(5))
                .unwrap();
        assert_eq!((r.name.as_str(), r.action, r.devices.len(), r.until), ("a.b", Action::Allow, 1, Some(5)));
    }

    #[test]
    fn until_and_schedule_decide_what_holds_and_the_file_round_trips() {
        let mut rules = NameRules::default();
        let a = rules.add(parse_rule("video.example", "block", &[], None, Some(2000)).unwrap());
        let b = rules.add(parse_rule("ok.video.example", "allow", &[], Some("Mo 10:00-11:00"), None).unwrap());
        assert_eq!((a, b), (1, 2));
        let none = std::iter::empty();
        let m = rules.matcher(1999, at(0, 10, 30), none);
        assert_eq!(m.decide(b"ok.video.example", None), Some(NameVerdict::Allow));
        let m = rules.matcher(1999, at(0, 11, 0), std::iter::empty());
        assert_eq!(m.decide(b"ok.video.example", None), Some(NameVerdict::Block), "outside the allow's window");
        assert!(rules.matcher(2000, at(0, 11, 0), std::iter::empty()).is_empty(), "until has passed");
        let (back, warnings) = NameRules::from_file_text(&rules.file_text()).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(back, rules);
        assert!(rules.remove(a) && !rules.remove(a));
        assert_eq!(rules.add(parse_rule("x.example", "block", &[], None, None).unwrap()), 3, "ids are not reused");
        assert!(NameRules::from_file_text("not json").is_err());
    }
}
