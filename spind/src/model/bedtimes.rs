//! Device bedtimes (issue 13): a weekly schedule per device (by MAC), the same syntax as the
//! name rules' ([`Schedule`]), inside whose windows the device's internet (not the LAN) is cut,
//! as a pause is. The checks of what `set_device_schedule` receives, and the file they are kept
//! in (`<state_dir>/bedtimes.list`, `MAC SCHEDULE` a line, written by the core's atomic batches).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::model::event::MacAddr;
use crate::model::namerules::Schedule;
use crate::model::policy::Bedtime;

/// At most this many devices have a bedtime (each is a set element and the file a line).
pub const DEVICE_SCHEDULES_MAX: usize = 1024;

/// Every device's bedtime.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceSchedules {
    by_device: BTreeMap<MacAddr, Schedule>,
}

impl DeviceSchedules {
    /// Sets (or replaces) the device's schedule; `Err` when it is a new device and the table is
    /// full.
    pub fn set(&mut self, device: MacAddr, schedule: Schedule) -> Result<(), String> {
        if !self.by_device.contains_key(&device) && self.by_device.len() >= DEVICE_SCHEDULES_MAX {
            return Err(format!("at most {DEVICE_SCHEDULES_MAX} devices can have a bedtime"));
        }
        self.by_device.insert(device, schedule);
        Ok(())
    }

    /// Whether the device had one.
    pub fn remove(&mut self, device: &MacAddr) -> bool {
        self.by_device.remove(device).is_some()
    }

    /// `[{"device": MAC, "schedule": S}, ...]`, by MAC: the RPC's result and the message's.
    pub fn to_value(&self) -> Value {
        self.by_device.iter().map(|(m, s)| json!({"device": m.to_string(), "schedule": s.to_string()})).collect()
    }

    /// The bedtimes for the enforcer, for a router whose local time is UTC plus `offset` minutes.
    pub fn bedtimes(&self, offset: i32) -> Vec<Bedtime> {
        self.by_device.iter().map(|(m, s)| Bedtime { device: m.0, spans: s.utc_spans(offset) }).collect()
    }

    /// The file's text.
    pub fn file_text(&self) -> String {
        self.by_device.iter().map(|(m, s)| format!("{m} {s}\n")).collect()
    }

    /// Reads the file's text; a line that does not parse is reported and left out.
    pub fn from_file_text(text: &str) -> (DeviceSchedules, Vec<String>) {
        let mut out = DeviceSchedules::default();
        let mut warnings = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let parsed = line.split_once(char::is_whitespace).ok_or_else(|| "not 'MAC SCHEDULE'".to_string()).and_then(
                |(m, s)| Ok((m.parse::<MacAddr>().map_err(|e| e.to_string())?, s.trim().parse::<Schedule>()?)),
            );
            match parsed.and_then(|(m, s)| out.set(m, s)) {
                Ok(()) => {}
                Err(e) => warnings.push(format!("{e}, skipped: {line}")),
            }
        }
        (out, warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_round_trips_and_bad_lines_are_skipped() {
        let mut d = DeviceSchedules::default();
        let a: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        d.set(a, "Mo-Th,Su 21:00-07:00".parse().unwrap()).unwrap();
        d.set(a, "Mo-Su 22:00-07:00".parse().unwrap()).unwrap();
        d.set("02:00:00:00:00:02".parse().unwrap(), "Sa 10:00-11:00".parse().unwrap()).unwrap();
        let text = d.file_text();
        assert_eq!(text, "02:00:00:00:00:01 Mo-Su 22:00-07:00\n02:00:00:00:00:02 Sa 10:00-11:00\n");
        let (back, warnings) = DeviceSchedules::from_file_text(&format!("{text}junk\n02:00:00:00:00:03 Xy 1\n"));
        assert_eq!(back, d);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert_eq!(
            d.to_value(),
            json!([{"device": "02:00:00:00:00:01", "schedule": "Mo-Su 22:00-07:00"},
                   {"device": "02:00:00:00:00:02", "schedule": "Sa 10:00-11:00"}])
        );
        assert!(d.remove(&a) && !d.remove(&a));
    }
}
