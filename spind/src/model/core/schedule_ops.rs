//! Schedules in the kernel (issue 13): the addresses of names that scheduled block rules block,
//! one group per schedule for the kernel's time matches, and the device bedtimes' operations
//! (`set_device_schedule`, `remove_device_schedule`, `list_device_schedules`).

use serde_json::Value;

use super::{Core, OpError, OpResult, Resolved};
use crate::model::event::{MacAddr, Publish};
use crate::model::messages;
use crate::model::namerules::{Action, LocalTime, NameRule, Schedule};
use crate::model::policy::{NameBlock, NameMatcher, NameVerdict, ScheduledNames};

impl Core {
    /// The name blocks for the kernel's unscheduled sets, one group per schedule of the block
    /// rules and one per schedule of the allow rules. The unscheduled sets come from the
    /// unscheduled rules that hold now. A scheduled block goes only into its schedule's group (the
    /// kernel matches its windows, so it ends on time with spind down); that group holds what its
    /// rules (allows included) and the unscheduled ones block, less what the unscheduled sets hold.
    /// A scheduled allow's group holds the unscheduled blocks it excepts, which the kernel lets
    /// through inside its windows (so the exception starts and ends on time with spind down too).
    pub(super) fn name_blocks_and_scheduled(
        &self,
        local: LocalTime,
        offset: i32,
    ) -> (Vec<NameBlock>, Vec<ScheduledNames>, Vec<ScheduledNames>) {
        let now = self.now;
        let (blocks, allows) =
            (self.name_rules.schedules(Action::Block, now), self.name_rules.schedules(Action::Allow, now));
        if blocks.is_empty() && allows.is_empty() {
            return (self.name_blocks(&self.matcher), Vec::new(), Vec::new());
        }
        let unscheduled = self.compile_rules(|r| r.holds(now, local) && r.schedule.is_none());
        let base = self.name_blocks(&unscheduled);
        let live = |r: &NameRule| r.until.is_none_or(|u| now < u);
        let has = |r: &NameRule, s: &Schedule| r.schedule.as_ref() == Some(s);
        let block_groups = blocks
            .iter()
            .map(|s| {
                let m = self.compile_rules(|r| live(r) && (r.schedule.is_none() || has(r, s)));
                let blocks = self
                    .name_blocks(&m)
                    .into_iter()
                    .filter(|b| !base.iter().any(|o| o.ip == b.ip && o.device == b.device))
                    .collect();
                ScheduledNames { spans: s.utc_spans(offset), blocks }
            })
            .collect();
        let allow_groups = allows
            .iter()
            .map(|s| {
                let m = self
                    .compile_rules(|r| live(r) && (r.schedule.is_none() || (r.action == Action::Allow && has(r, s))));
                ScheduledNames { spans: s.utc_spans(offset), blocks: self.name_exceptions(&unscheduled, &m) }
            })
            .collect();
        (base, block_groups, allow_groups)
    }

    /// The addresses that `base` blocks and `excepting` does not, for every device (when
    /// `excepting` blocks them for none) or per device.
    fn name_exceptions(&self, base: &NameMatcher, excepting: &NameMatcher) -> Vec<NameBlock> {
        let mut known: Vec<[u8; 6]> = self.nodes.devices().iter().filter_map(|n| n.mac.map(|m| m.0)).collect();
        known.extend(base.devices());
        known.extend(excepting.devices());
        known.sort();
        known.dedup();
        let blocks = |m: &NameMatcher, r: &Resolved, d| {
            r.names.iter().any(|n| m.decide(n.as_bytes(), d) == Some(NameVerdict::Block))
        };
        let mut out = Vec::new();
        for (ip, r) in self.resolved.iter().filter(|(_, r)| r.expires > self.now) {
            if blocks(base, r, None)
                && !blocks(excepting, r, None)
                && known.iter().all(|d| !blocks(excepting, r, Some(*d)))
            {
                out.push(NameBlock { device: None, ip: *ip, expires: r.expires });
                continue;
            }
            for d in &known {
                if blocks(base, r, Some(*d)) && !blocks(excepting, r, Some(*d)) {
                    out.push(NameBlock { device: Some(*d), ip: *ip, expires: r.expires });
                }
            }
        }
        out.sort();
        out
    }

    pub(super) fn device_schedules_msg(&self) -> Publish {
        self.traffic_msg(messages::device_schedules(&self.device_schedules.to_value()))
    }

    /// `set_device_schedule`: the device's internet is cut inside the schedule's windows (it
    /// replaces the device's schedule); saved, enforced and published.
    pub fn op_set_device_schedule(
        &mut self,
        device: MacAddr,
        schedule: Schedule,
        out: &mut Vec<Publish>,
    ) -> OpResult<()> {
        let undo = self.undo_point();
        if let Err(e) = self.device_schedules.set(device, schedule) {
            self.undo(undo);
            return Err(OpError::new(-1, format!("Invalid 'device': {e}")));
        }
        self.device_schedules_changed();
        let msg = self.device_schedules_msg();
        self.commit(undo, out, vec![msg])
    }

    /// `remove_device_schedule`; error -1 when the device has none.
    pub fn op_remove_device_schedule(&mut self, device: MacAddr, out: &mut Vec<Publish>) -> OpResult<()> {
        let undo = self.undo_point();
        if !self.device_schedules.remove(&device) {
            self.undo(undo);
            return Err(OpError::new(-1, "That device has no bedtime"));
        }
        self.device_schedules_changed();
        let msg = self.device_schedules_msg();
        self.commit(undo, out, vec![msg])
    }

    /// `list_device_schedules`: `[{"device": MAC, "schedule": S}, ...]`.
    pub fn op_list_device_schedules(&self) -> Value {
        self.device_schedules.to_value()
    }

    fn device_schedules_changed(&mut self) {
        self.dirty.device_schedules = true;
        self.enforce_pending = true;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::super::testutil::{core_in, on_topic};
    use super::super::CoreSettings;
    use crate::model::event::{DnsData, DnsRecord, Event};
    use crate::model::policy::WeekSpan;
    use crate::model::rpc::{handle, Host};

    const HOST: Host = Host { own_addresses: Vec::new, wifi: None };

    fn call(core: &mut super::Core, method: &str, params: &str) -> (Value, Vec<super::Publish>) {
        let mut out = Vec::new();
        let req = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#);
        let reply = handle(core, &req, &HOST, &mut out).expect("a reply");
        (serde_json::from_str(&reply).unwrap(), out)
    }

    fn answer(core: &mut super::Core, time: i64, name: &str, addr: &str) {
        let records = vec![DnsRecord { owner: name.into(), ttl: 300, data: DnsData::Addr(addr.parse().unwrap()) }];
        core.handle(Event::DnsAnswer { time, qname: name.into(), records }, &mut Vec::new());
    }

    #[test]
    fn a_scheduled_blocks_addresses_go_to_its_own_group_inside_and_outside_the_window() {
        let dir = tempfile::tempdir().unwrap();
        // Unix time 1000 is a Thursday, 00:16 UTC: outside Monday's window.
        let mut core = core_in(dir.path(), CoreSettings::default());
        call(&mut core, "add_name_rule", r#"{"name":"video.test","action":"block","schedule":"Mo 10:00-11:00"}"#);
        call(&mut core, "add_name_rule", r#"{"name":"always.test","action":"block"}"#);
        call(&mut core, "add_name_rule", r#"{"name":"ok.video.test","action":"allow"}"#);
        answer(&mut core, 1001, "www.video.test.", "198.51.100.10");
        answer(&mut core, 1001, "always.test.", "198.51.100.20");
        answer(&mut core, 1001, "ok.video.test.", "198.51.100.30");
        let p = core.policy();
        let plain: Vec<String> = p.name_blocks.iter().map(|b| b.ip.to_string()).collect();
        assert_eq!(plain, ["198.51.100.20"], "a scheduled block never goes into the unscheduled sets");
        assert_eq!(p.scheduled_names.len(), 1);
        let g = &p.scheduled_names[0];
        assert_eq!(g.spans, [WeekSpan { start: 600, len: 60 }]);
        let sched: Vec<String> = g.blocks.iter().map(|b| b.ip.to_string()).collect();
        assert_eq!(sched, ["198.51.100.10"], "kept outside the window; the allow exception left out");
        // The address is remembered across a restart, outside the window too.
        drop(core);
        let core = core_in(dir.path(), CoreSettings::default());
        let p = core.policy();
        assert_eq!(p.scheduled_names[0].blocks.len(), 1, "{:?}", p.scheduled_names);
    }

    #[test]
    fn a_scheduled_allows_exceptions_go_to_its_own_group_and_the_unscheduled_sets_keep_the_block() {
        let dir = tempfile::tempdir().unwrap();
        // Unix time 1000 is a Thursday, 00:16 UTC: outside Monday's window.
        let mut core = core_in(dir.path(), CoreSettings::default());
        call(&mut core, "add_name_rule", r#"{"name":"video.test","action":"block"}"#);
        call(
            &mut core,
            "add_name_rule",
            r#"{"name":"school.video.test","action":"allow","schedule":"Mo 10:00-11:00"}"#,
        );
        call(
            &mut core,
            "add_name_rule",
            r#"{"name":"kids.video.test","action":"allow","devices":["02:00:5e:00:00:01"],"schedule":"Mo 10:00-11:00"}"#,
        );
        answer(&mut core, 1001, "www.video.test.", "198.51.100.10");
        answer(&mut core, 1001, "school.video.test.", "198.51.100.20");
        answer(&mut core, 1001, "kids.video.test.", "198.51.100.30");
        let p = core.policy();
        let ips = |b: &[crate::model::policy::NameBlock]| -> Vec<String> {
            b.iter()
                .map(|b| format!("{} {}", b.ip, b.device.map_or("all".into(), |d| format!("{:02x}", d[5]))))
                .collect()
        };
        assert_eq!(
            ips(&p.name_blocks),
            ["198.51.100.10 all", "198.51.100.20 all", "198.51.100.30 all"],
            "outside and inside the window alike: the kernel lets the exceptions through"
        );
        assert!(p.scheduled_names.is_empty());
        assert_eq!(p.scheduled_allows.len(), 1, "one schedule");
        let g = &p.scheduled_allows[0];
        assert_eq!(g.spans, [WeekSpan { start: 600, len: 60 }]);
        assert_eq!(ips(&g.blocks), ["198.51.100.20 all", "198.51.100.30 01"], "for all, and for the one device");
        // The exceptions' addresses are remembered across a restart, outside the window too.
        core.handle(Event::Tick { time: 1002 }, &mut Vec::new());
        drop(core);
        let core = core_in(dir.path(), CoreSettings::default());
        assert_eq!(ips(&core.policy().scheduled_allows[0].blocks), ["198.51.100.20 all", "198.51.100.30 01"]);
    }

    #[test]
    fn device_schedules_are_set_listed_published_saved_replaced_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut core = core_in(dir.path(), CoreSettings::default());
        let (r, out) = call(
            &mut core,
            "set_device_schedule",
            r#"{"device":"02:00:5E:00:00:01","schedule":"Mo-Th,Su 21:00-07:00"}"#,
        );
        assert!(r.get("error").is_none() && r.get("result").is_none(), "{r}");
        assert_eq!(
            on_topic(&out, "SPIN/traffic"),
            [
                r#"{"command":"deviceSchedules","result":[{"device":"02:00:5e:00:00:01","schedule":"Mo-Th,Su 21:00-07:00"}]}"#
            ]
        );
        call(&mut core, "set_device_schedule", r#"{"device":"02:00:5e:00:00:01","schedule":"Mo-Su 22:00-07:00"}"#);
        call(&mut core, "set_device_schedule", r#"{"device":"02:00:5e:00:00:02","schedule":"Sa 10:00-11:00"}"#);
        let want = json!([
            {"device": "02:00:5e:00:00:01", "schedule": "Mo-Su 22:00-07:00"},
            {"device": "02:00:5e:00:00:02", "schedule": "Sa 10:00-11:00"}
        ]);
        assert_eq!(call(&mut core, "list_device_schedules", "{}").0["result"], want);
        assert_eq!(core.policy().bedtimes.len(), 2);
        assert_eq!(core.policy().bedtimes[0].spans.len(), 7);
        let mut again = core_in(dir.path(), CoreSettings::default());
        assert_eq!(call(&mut again, "list_device_schedules", "{}").0["result"], want, "saved");
        let (r, out) = call(&mut core, "remove_device_schedule", r#"{"device":"02:00:5e:00:00:01"}"#);
        assert!(r.get("error").is_none(), "{r}");
        assert_eq!(on_topic(&out, "SPIN/traffic").len(), 1);
        let (r, out) = call(&mut core, "remove_device_schedule", r#"{"device":"02:00:5e:00:00:01"}"#);
        assert_eq!(r["error"]["message"], "That device has no bedtime");
        assert!(out.is_empty());
        assert_eq!(call(&mut core, "list_device_schedules", "{}").0["result"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn bad_device_schedules_name_the_field_and_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut core = core_in(dir.path(), CoreSettings::default());
        for (method, params, field) in [
            ("set_device_schedule", r#"{"device":"nope","schedule":"Mo 10:00-11:00"}"#, "'device'"),
            ("set_device_schedule", r#"{"device":"ff:ff:ff:ff:ff:ff","schedule":"Mo 10:00-11:00"}"#, "'device'"),
            ("set_device_schedule", r#"{"device":"02:00:00:00:00:01","schedule":"Mo 25:00-26:00"}"#, "'schedule'"),
            ("set_device_schedule", r#"{"device":"02:00:00:00:00:01","schedule":""}"#, "'schedule'"),
            ("set_device_schedule", r#"{"device":"02:00:00:00:00:01"}"#, "Missing argument 'schedule'"),
            ("remove_device_schedule", r#"{"device":"02:00:00:00:00"}"#, "'device'"),
        ] {
            let (r, out) = call(&mut core, method, params);
            let msg = r["error"]["message"].as_str().unwrap_or_else(|| panic!("{params}: {r}"));
            assert!(msg.contains(field), "{params}: {msg}");
            assert!(out.is_empty());
        }
        assert_eq!(call(&mut core, "list_device_schedules", "{}").0["result"], json!([]));
        assert!(!dir.path().join("bedtimes.list").exists());
    }
}
