//! The core: the one owner of all state. It turns observations into the node model and SPIN
//! messages, answers the control operations behind the JSON-RPC methods, persists what must
//! survive a restart and tells the enforcer what to enforce. Plain synchronous logic: no I/O
//! but the state files, so it is tested without a kernel or a broker.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use log::{info, warn};

use crate::model::addr::IpNet;
use crate::model::bedtimes::DeviceSchedules;
use crate::model::event::{DnsData, DnsRecord, Event, FlowSample, MacAddr, Publish, Timestamp};
use crate::model::flowblocks::{pair, FlowDecisions};
use crate::model::history::{History, HistorySettings};
use crate::model::homeassistant::{DeviceInfo, HomeAssistant};
use crate::model::identity::{self, DeviceType, MdnsInfo, OuiTable};
use crate::model::lists::Lists;
use crate::model::listsources::{Blocklists, ListSources};
use crate::model::messages::{self, FlowJson};
use crate::model::namerules::{LocalTime, NameRules};
use crate::model::names::Names;
use crate::model::nodes::{Candidate, Change, ListKind, Node, NodeCache, NodeId, NodeMarks};
use crate::model::persist::{self, StateDir, WriteError};
use crate::model::policy::{Enforcer, Guard, NameBlock, NameMatcher, NameVerdict, PairBlock, Pause, Policy};
use crate::model::services::ServiceBlocks;
use crate::model::stats::Stats;

pub const NODE_TOPIC_PREFIX: &str = "SPIN/traffic/node/";
pub const ADMIN_TOPIC: &str = "SPIN/traffic/admin";
/// Where alerts are published (not retained; `list_alerts` has them).
pub const ALERTS_TOPIC: &str = "SPIN/alerts";

const EXPIRY_INTERVAL: i64 = 60;
/// A node's `nodeInfo` goes out when what it says changes, at once; a change of `lastseen`
/// alone only every this many seconds. SPIN's bubble app drops nodes it has not seen for 600 s,
/// so the retained `lastseen` of an active node must stay well younger than that (SPIN itself
/// never refreshed it: its retained values went stale); and a busy router must not republish
/// every node every second.
pub const LASTSEEN_REFRESH: i64 = 300;
/// How often nodes are checked for a due `lastseen` refresh (so the retained value is at most
/// `LASTSEEN_REFRESH` + this old).
const LASTSEEN_CHECK_INTERVAL: i64 = 10;
const DEVICE_FLOW_INTERVAL: i64 = 15;
const STATS_INTERVAL: i64 = 30;
/// Flows per `traffic` message; more flows in one interval go out as several messages.
const MAX_FLOWS_PER_MESSAGE: usize = 1000;
/// A device keeps at most this many idle flow records before old ones are dropped (SPIN: 10).
const DEVICE_FLOW_KEEP: usize = 10;
/// Records idle this long may be dropped (SPIN: 120 periods of 15 s).
const DEVICE_FLOW_MAX_IDLE: i64 = 1800;
/// An address a blocked name resolved to stays blocked at least this long (seconds), however
/// short the answer's TTL: apps keep addresses longer than DNS says.
pub const NAME_BLOCK_MIN_TTL: i64 = 300;
/// At most this many resolved addresses are remembered for name rules (a bound on memory; the
/// oldest expire first).
const RESOLVED_MAX: usize = 65_536;
/// Names remembered per address (a CDN address serves many names).
const RESOLVED_NAMES_MAX: usize = 8;

#[derive(Clone, Debug)]
pub struct CoreSettings {
    /// `-l`: publish flows where neither side is a device.
    pub local_mode: bool,
    /// `node_cache_retain_time`: idle non-device nodes are deleted after this many seconds.
    pub retain_time: i64,
    /// `pubsub_channel_traffic`.
    pub traffic_topic: String,
    pub dots_enabled: bool,
    pub dots_log_only: bool,
    /// No kernel enforces the lists (replay, passive mode): decide blocks here and publish
    /// `blocked` instead of `traffic` for blocked flows.
    pub simulate_blocking: bool,
    /// Local time of a unix time, for name-rule schedules (the daemon asks the C library; the
    /// default, UTC, is the tests').
    pub local_time: fn(Timestamp) -> LocalTime,
    /// `dns_redirect`: DNS from the LAN to any other resolver goes to the router's own.
    pub redirect_dns: bool,
    /// `dot_refuse`: DNS over TLS (TCP 853) from the LAN to the internet is refused.
    pub refuse_dot: bool,
    /// `doh_block`: the shipped list of DoH resolver names is blocked for every device.
    pub block_doh: bool,
    /// The names of each of the `blocklist_files`, blocked for every device, and what each file
    /// gave.
    pub blocklists: Vec<(Arc<crate::model::blocklist::NameSet>, crate::model::blocklist::ListCounts)>,
    /// The per-device history and its alerts (`history_*` keys).
    pub history: HistorySettings,
    /// The vendors of OUIs (`oui_file`; empty: none known).
    pub vendors: Arc<OuiTable>,
    /// `homeassistant_discovery`: Home Assistant's discovery prefix (`homeassistant_prefix`);
    /// `None`: off.
    pub homeassistant: Option<String>,
}

impl Default for CoreSettings {
    fn default() -> Self {
        CoreSettings {
            local_mode: false,
            retain_time: 1800,
            traffic_topic: "SPIN/traffic".into(),
            dots_enabled: false,
            dots_log_only: false,
            simulate_blocking: false,
            local_time: LocalTime::utc,
            redirect_dns: false,
            refuse_dot: false,
            block_doh: false,
            blocklists: Vec::new(),
            // Off unless asked for: the daemon turns it on from `history` (default 1); the
            // core's tests of SPIN's messages see only those.
            history: HistorySettings { enabled: false, ..HistorySettings::default() },
            vendors: Arc::default(),
            homeassistant: None,
        }
    }
}

/// Cumulative traffic of a device to one remote node and port (`list_device_flows`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceFlow {
    pub packets: u64,
    pub bytes: u64,
    pub last_seen: Timestamp,
}

/// (remote node, destination port, ICMP type).
pub type DeviceFlowKey = (NodeId, u16, u8);

/// One row of `list_device_flows`: a device's traffic to one remote node on one port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceFlowRow {
    pub to: NodeId,
    pub dst_port: u16,
    pub icmp_type: u8,
    pub traffic: DeviceFlowTraffic,
}

/// What `list_device_flows` says about a flow's traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceFlowTraffic {
    /// The pair is flow-blocked: SPIN reports only that.
    Blocked,
    Counted(DeviceFlow),
}

/// A failed control operation: the JSON-RPC error code and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpError {
    pub code: i64,
    pub message: String,
}

impl OpError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        OpError { code, message: message.into() }
    }
}

pub type OpResult<T> = Result<T, OpError>;

/// What must be written to the state directory before memory and disk agree again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Dirty {
    lists: [bool; 3],
    withdrawn: [bool; 3],
    names: bool,
    node_store: bool,
    name_rules: bool,
    /// The addresses of blocked names (`names.resolved`), so their blocks survive a restart.
    name_resolved: bool,
    paused: bool,
    /// The user's device types (`devicetypes.list`).
    device_types: bool,
    device_schedules: bool,
    services: bool,
    /// The household's blocklists (`blocklists.json`).
    blocklists: bool,
}

impl Dirty {
    fn any(&self) -> bool {
        self.names
            || self.node_store
            || self.name_rules
            || self.name_resolved
            || self.paused
            || self.device_types
            || self.device_schedules
            || self.services
            || self.blocklists
            || self.lists.iter().chain(&self.withdrawn).any(|&d| d)
    }

    fn or(self, other: Dirty) -> Dirty {
        let either = |a: [bool; 3], b: [bool; 3]| [a[0] || b[0], a[1] || b[1], a[2] || b[2]];
        Dirty {
            lists: either(self.lists, other.lists),
            withdrawn: either(self.withdrawn, other.withdrawn),
            names: self.names || other.names,
            node_store: self.node_store || other.node_store,
            name_rules: self.name_rules || other.name_rules,
            name_resolved: self.name_resolved || other.name_resolved,
            paused: self.paused || other.paused,
            device_types: self.device_types || other.device_types,
            device_schedules: self.device_schedules || other.device_schedules,
            services: self.services || other.services,
            blocklists: self.blocklists || other.blocklists,
        }
    }
}

/// The state a control operation may change, taken before it changes anything: when its
/// change cannot be saved, memory goes back to this (what is on disk) and the caller is told.
struct Undo {
    lists: Lists,
    withdrawn: Lists,
    flows: FlowDecisions,
    names: Names,
    name_rules: NameRules,
    paused: BTreeMap<MacAddr, Timestamp>,
    device_types: BTreeMap<MacAddr, DeviceType>,
    device_schedules: DeviceSchedules,
    services: ServiceBlocks,
    list_sources: ListSources,
    marks: Vec<NodeMarks>,
    modified: BTreeSet<NodeId>,
    dirty: Dirty,
    enforce_pending: bool,
    /// An address the operation gave a node (`node_add_ip`), taken away again.
    added_ip: Option<(NodeId, IpAddr)>,
}

/// What the last `nodeInfo` of a node said: its digest ([`messages::node_digest`]) and its
/// `lastseen`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Published {
    digest: u64,
    lastseen: Timestamp,
}

/// Aggregation key of a published flow (SPIN's 38-byte pkt_info prefix).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    protocol: u8,
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
}

/// The names an address was last given for (a DNS answer's whole CNAME chain), until when.
#[derive(Clone, Debug)]
struct Resolved {
    names: Vec<String>,
    expires: Timestamp,
}

/// A name block as last enforced: for one device (or every device, `None`), until when.
type NameBlocked = (Option<[u8; 6]>, Timestamp);

pub struct Core {
    settings: CoreSettings,
    nodes: NodeCache,
    lists: Lists,
    /// Per list, the addresses the user took off it by hand: a node's list flag never puts them
    /// back (an explicit add does).
    withdrawn: Lists,
    names: Names,
    state: StateDir,
    enforcer: Option<Box<dyn Enforcer>>,
    neighbours: HashMap<IpAddr, MacAddr>,
    device_flows: BTreeMap<NodeId, BTreeMap<DeviceFlowKey, DeviceFlow>>,
    /// Blocked node pairs and the ones the user unblocked again.
    flows: FlowDecisions,
    /// State changed in memory and not yet on disk.
    dirty: Dirty,
    /// The policy changed and must go to the enforcer.
    enforce_pending: bool,
    /// Addresses of blocked names were learnt from DNS answers and are not yet enforced and
    /// saved; they go at most once a second (`flush_resolved`): under a busy home's DNS every
    /// answer would otherwise cost a walk of all remembered addresses, an `nft` run and a write.
    resolved_due: bool,
    /// The second in which learnt addresses last went to the enforcer.
    resolved_flushed_at: Timestamp,
    /// After a failed write from an observation, the next try waits for this second (a full
    /// disk must not cost a write attempt and a log line per packet).
    retry_save_at: Option<Timestamp>,
    /// The last `nodeInfo` of each announced node (retained on the broker).
    published: HashMap<NodeId, Published>,
    /// Merges and deletions applied to the core's tables, not yet announced.
    settled: Vec<Change>,
    next_lastseen_check: Timestamp,
    now: Timestamp,
    next_expiry: Timestamp,
    next_device_flow_clean: Timestamp,
    next_stats: Timestamp,
    stats: Stats,
    /// The enforcer's last healing failure, logged once until it changes.
    heal_error: Option<String>,
    /// The user's name rules, and the compiled ones that hold now.
    name_rules: NameRules,
    matcher: Arc<NameMatcher>,
    /// What every address was recently resolved from, so that a name rule also cuts the
    /// addresses its names resolved to (cached by apps), CNAME chains included.
    resolved: HashMap<IpAddr, Resolved>,
    /// The name blocks last enforced, by address (`None`: every device), for deciding blocks
    /// without a kernel.
    name_blocked: HashMap<IpAddr, Vec<NameBlocked>>,
    /// The interfaces facing the internet, as the neighbour source last said (`None`: not yet).
    wan: Option<Vec<String>>,
    /// Paused devices (`pause_device`) and until when; kept in `paused.list`.
    paused: BTreeMap<MacAddr, Timestamp>,
    /// The types the user gave devices (`set_device_type`); kept in `devicetypes.list`. A guess
    /// never replaces one.
    device_types: BTreeMap<MacAddr, DeviceType>,
    /// What devices said of themselves over mDNS, by MAC (at most [`MDNS_DEVICES_MAX`]); in
    /// memory only.
    mdns: BTreeMap<MacAddr, MdnsInfo>,
    /// mDNS announcements from addresses whose MAC is not known yet, and when they came (at
    /// most [`MDNS_PENDING_MAX`], for [`MDNS_PENDING_SECS`]): the neighbour table may learn the
    /// address a moment later.
    mdns_pending: HashMap<IpAddr, (Timestamp, MdnsInfo)>,
    /// Device bedtimes (`set_device_schedule`); kept in `bedtimes.list`.
    device_schedules: DeviceSchedules,
    /// Minutes local time is ahead of UTC, as last enforced: the kernel's time matches are in
    /// UTC, so a change (daylight saving time) rewrites them.
    utc_offset: i32,
    /// The per-device history and alerts (its files are state files of the core's).
    history: History,
    /// Home Assistant's discovery, when `homeassistant_discovery` is on.
    ha: Option<HomeAssistant>,
    /// Of the history's bytes written, those counted in the statistics so far.
    history_written: u64,
    /// The services switched off (`set_service`), compiled into the name matcher.
    services: ServiceBlocks,
    /// The config's and the household's blocklists, their counters and the fetcher.
    blocklists: Blocklists,
}

impl Core {
    /// Loads the persisted lists and flow blocks from the state directory and enforces them.
    pub fn new(
        settings: CoreSettings,
        state: StateDir,
        names: Names,
        enforcer: Option<Box<dyn Enforcer>>,
        now: Timestamp,
    ) -> anyhow::Result<Core> {
        let read = |file: &std::path::Path, lists: &mut Lists, kind: ListKind| {
            let (entries, warnings) = persist::read_list(file);
            for w in warnings {
                warn!("{w}");
            }
            let list = lists.get_mut(kind);
            for net in entries {
                list.add(net);
            }
        };
        let (mut lists, mut withdrawn) = (Lists::default(), Lists::default());
        for kind in ListKind::ALL {
            read(&state.list_file(kind.name()), &mut lists, kind);
            read(&state.withdrawn_file(kind.name()), &mut withdrawn, kind);
        }
        let name_rules = match std::fs::read_to_string(state.name_rules_file()) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => NameRules::default(),
            Err(e) => anyhow::bail!("cannot read {}: {e}", state.name_rules_file().display()),
            Ok(text) => {
                let (rules, warnings) = NameRules::from_file_text(&text).map_err(|e| {
                    anyhow::anyhow!("{}: {e} (fix or remove the file)", state.name_rules_file().display())
                })?;
                for w in warnings {
                    warn!("{}: {w}", state.name_rules_file().display());
                }
                rules
            }
        };
        let mut resolved = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(state.name_resolved_file()) {
            for line in text.lines() {
                let mut f = line.split_whitespace();
                let (Some(ip), Some(exp)) =
                    (f.next().and_then(|s| s.parse().ok()), f.next().and_then(|s| s.parse().ok()))
                else {
                    continue;
                };
                let names: Vec<String> = f.take(RESOLVED_NAMES_MAX).map(str::to_string).collect();
                if exp > now && !names.is_empty() {
                    resolved.insert(ip, Resolved { names, expires: exp });
                }
            }
        }
        let mut paused = BTreeMap::new();
        if let Ok(text) = std::fs::read_to_string(state.paused_file()) {
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
                let mut f = line.split_whitespace();
                match (f.next().and_then(|m| m.parse::<MacAddr>().ok()), f.next().and_then(|t| t.parse().ok())) {
                    (Some(mac), Some(until)) => {
                        if until > now {
                            paused.insert(mac, until);
                        }
                    }
                    _ => warn!("{}: not 'MAC UNTIL', skipped: {line}", state.paused_file().display()),
                }
            }
        }
        let device_types = read_state_file(&state.device_types_file(), identity::parse_device_types)?;
        let device_schedules = read_state_file(&state.device_schedules_file(), DeviceSchedules::from_file_text)?;
        let history = History::open(settings.history.clone(), &state.history_dir(), now);
        let services = read_state_file(&state.services_file(), ServiceBlocks::from_file_text)?;
        let blocklists = Self::load_blocklists(&settings, &state)?;
        let mut core = Core {
            ha: settings.homeassistant.as_deref().map(HomeAssistant::new),
            services,
            blocklists,
            wan: None,
            paused,
            device_types,
            device_schedules,
            utc_offset: LocalTime::offset_from_utc((settings.local_time)(now), now),
            history,
            history_written: 0,
            name_rules,
            matcher: Arc::default(),
            resolved,
            name_blocked: HashMap::new(),
            settings,
            nodes: NodeCache::new(),
            lists,
            withdrawn,
            names,
            state,
            enforcer,
            neighbours: HashMap::new(),
            mdns: BTreeMap::new(),
            mdns_pending: HashMap::new(),
            device_flows: BTreeMap::new(),
            flows: FlowDecisions::default(),
            dirty: Dirty::default(),
            enforce_pending: false,
            resolved_due: false,
            resolved_flushed_at: Timestamp::MIN,
            retry_save_at: None,
            published: HashMap::new(),
            settled: Vec::new(),
            next_lastseen_check: now + LASTSEEN_CHECK_INTERVAL,
            now,
            next_expiry: now + EXPIRY_INTERVAL,
            next_device_flow_clean: now + DEVICE_FLOW_INTERVAL,
            next_stats: now + STATS_INTERVAL,
            stats: Stats::default(),
            heal_error: None,
        };
        core.restore_node_store();
        core.matcher = Arc::new(core.compile_name_rules());
        // The restored nodes' new ids go to disk (or wait, said, for a disk with room).
        if core.dirty.any() {
            if let Err(e) = core.save() {
                warn!("{e}; kept in memory, trying again every second");
                core.retry_save_at = Some(now + 1);
            }
        }
        // Unlike SPIN 1.0, the persisted lists are enforced from the start; a router that
        // cannot enforce them must say so rather than run unprotected.
        core.enforce().map_err(|e| anyhow::anyhow!("cannot enforce the persisted lists: {}", e.message))?;
        Ok(core)
    }

    /// The node cache, read-only (for tests: nothing but the core changes it).
    #[cfg(test)]
    pub fn nodes(&self) -> &NodeCache {
        &self.nodes
    }

    /// What a fresh client must hear first: `serverRestart`, then the three lists.
    pub fn startup(&mut self, out: &mut Vec<Publish>) {
        let mut msgs = vec![self.traffic_msg(messages::server_restart())];
        for kind in ListKind::ALL {
            msgs.push(self.list_msg(kind, kind.name()));
        }
        msgs.push(self.name_rules_msg());
        msgs.push(self.device_schedules_msg());
        msgs.push(self.services_msg());
        if let Some(ha) = &self.ha {
            ha.startup(&mut msgs);
        }
        self.alert_msgs(&mut msgs);
        self.emit(out, msgs);
    }

    /// At shutdown: the history's last interval goes to disk.
    pub fn shutdown(&mut self) {
        let nodes = &self.nodes;
        self.history.flush(self.now, &|ip| remote_key(nodes, ip));
        if self.history.enabled() {
            info!("history: {} bytes written since start", self.history.bytes_written());
        }
    }

    /// The alerts raised since the last call, as `SPIN/alerts` messages.
    fn alert_msgs(&mut self, msgs: &mut Vec<Publish>) {
        for a in self.history.take_fresh_alerts() {
            info!("alert {}: {}", a.kind, a.detail);
            msgs.push(Publish::new(ALERTS_TOPIC, a.to_json().to_string(), false));
            if let Some(ha) = &self.ha {
                ha.alert(&a, msgs);
            }
        }
    }

    pub fn handle(&mut self, ev: Event, out: &mut Vec<Publish>) {
        self.now = self.now.max(ev.time());
        let mut msgs = match ev {
            Event::Flows { time, flows, local } => self.on_flows(time, flows, local),
            Event::DnsQuery { time, client, qname } => self.on_dns_query(time, client, &qname),
            Event::DnsAnswer { time, qname, records } => self.on_dns_answer(time, &qname, &records),
            Event::DnsBlocked { time, client, client_port, protocol, qname } => {
                self.on_dns_blocked(time, (client, client_port, protocol), &qname)
            }
            Event::Neighbour { time, ip, mac } => self.on_neighbour(time, ip, mac),
            Event::MdnsName { time, ip, mac, name, model, services } => {
                self.on_mdns(time, ip, mac, MdnsInfo { name, model, services })
            }
            Event::Blocked { time, packet } => self.on_blocked(time, &packet),
            Event::Tick { .. } => self.on_tick(),
            Event::WanInterfaces { names } => {
                if self.wan.as_ref() != Some(&names) {
                    self.wan = Some(names);
                    self.enforce_pending = true;
                }
                Vec::new()
            }
            Event::ReplayFinished { packets, .. } => {
                info!("replay finished: {packets} packets, {} nodes", self.nodes.len());
                Vec::new()
            }
            Event::BlocklistFetched { id, outcome } => self.on_blocklist_fetched(id, outcome),
        };
        self.alert_msgs(&mut msgs);
        self.emit(out, msgs);
    }

    /// The MACs of two nodes (`None` for a node that is not a device).
    fn macs(&self, a: NodeId, b: NodeId) -> (Option<MacAddr>, Option<MacAddr>) {
        (self.nodes.get(a).and_then(|n| n.mac), self.nodes.get(b).and_then(|n| n.mac))
    }

    // ---- observations -------------------------------------------------------------------

    /// The node for an address: refreshed if known, else created with what the neighbour
    /// table and the names know about it.
    fn node_for_ip(&mut self, ip: IpAddr, time: Timestamp) -> NodeId {
        if let Some(id) = self.nodes.touch_ip(&ip, time) {
            return id;
        }
        let mac = self.neighbours.get(&ip).copied();
        let name = self.device_name(mac.as_ref(), &[ip]).map(str::to_string);
        self.nodes.add(Candidate { mac, ips: vec![ip], name, last_seen: time, ..Default::default() }, time)
    }

    fn is_device(&self, id: NodeId) -> bool {
        self.nodes.get(id).is_some_and(|n| n.is_device())
    }

    fn ignored(&self, ip: &IpAddr) -> bool {
        self.lists.get(ListKind::Ignore).contains(ip)
    }

    /// Whether traffic between these addresses/nodes is blocked (allow wins over block).
    fn blocks(&self, a: &IpAddr, b: &IpAddr, na: NodeId, nb: NodeId) -> bool {
        let allow = self.lists.get(ListKind::Allow);
        if allow.contains(a) || allow.contains(b) {
            return false;
        }
        let block = self.lists.get(ListKind::Block);
        block.contains(a) || block.contains(b) || self.flows.is_blocked(&pair(na, nb)) || self.name_blocks_flow(a, b)
    }

    /// Whether a name block cuts traffic from `a` to `b` (or back): `b` is an address of a
    /// blocked name, for every device or for `a`'s.
    fn name_blocks_flow(&self, a: &IpAddr, b: &IpAddr) -> bool {
        let cut = |dev: &IpAddr, remote: &IpAddr| {
            self.name_blocked.get(remote).is_some_and(|ds| {
                let mac = self.neighbours.get(dev).map(|m| m.0);
                ds.iter().any(|(d, expires)| *expires > self.now && (d.is_none() || *d == mac))
            })
        };
        cut(a, b) || cut(b, a)
    }

    fn on_flows(&mut self, time: Timestamp, flows: Vec<FlowSample>, local: bool) -> Vec<Publish> {
        let local = local || self.settings.local_mode;
        let mut order: Vec<FlowKey> = Vec::new();
        let mut sums: HashMap<FlowKey, (u64, u64)> = HashMap::new();
        let mut blocked = Vec::new();
        for s in &flows {
            let src = self.node_for_ip(s.src, time);
            let dst = self.node_for_ip(s.dst, time);
            self.record_device_flow(src, dst, s, time);
            let is_blocked = self.settings.simulate_blocking && self.blocks(&s.src, &s.dst, src, dst);
            let macs = self.macs(src, dst);
            self.history.flow(time, s, macs, is_blocked);
            if is_blocked {
                blocked.push(s.clone());
                continue;
            }
            if !local && !self.is_device(src) && !self.is_device(dst) {
                continue;
            }
            if self.ignored(&s.src) || self.ignored(&s.dst) {
                continue;
            }
            let key =
                FlowKey { protocol: s.protocol, src: s.src, dst: s.dst, src_port: s.src_port, dst_port: s.dst_port };
            let e = sums.entry(key).or_insert_with(|| {
                order.push(key);
                (0, 0)
            });
            e.0 += s.bytes;
            e.1 += s.packets;
        }
        self.stats.add("spind", "flows", flows.len() as u64);
        let mut msgs = Vec::new();
        if !order.is_empty() {
            // Nodes are looked up at send time: a later sample may have merged an earlier node.
            // A flow whose node lookup fails is dropped from `flows` but still counted in the
            // totals, as SPIN does.
            let mut lost = (0, 0);
            let mut out = Vec::with_capacity(order.len());
            for k in &order {
                let (size, count) = sums[k];
                match (self.nodes.by_ip(&k.src), self.nodes.by_ip(&k.dst)) {
                    (Some(from), Some(to)) => out.push(FlowJson {
                        from,
                        to,
                        protocol: k.protocol,
                        from_port: k.src_port,
                        to_port: k.dst_port,
                        size,
                        count,
                    }),
                    _ => lost = (lost.0 + size, lost.1 + count),
                }
            }
            // A busy router has tens of thousands of flows a second: several messages of a
            // bounded size keep every subscriber's (and the broker's) buffers small.
            for (i, chunk) in out.chunks(MAX_FLOWS_PER_MESSAGE).enumerate() {
                let (mut size, mut count) = if i == 0 { lost } else { (0, 0) };
                for f in chunk {
                    size += f.size;
                    count += f.count;
                }
                self.stats.add("spind", "traffic-messages", 1);
                msgs.push(self.traffic_msg(messages::traffic(chunk, time, size, count)));
            }
            if out.is_empty() {
                msgs.push(self.traffic_msg(messages::traffic(&[], time, lost.0, lost.1)));
            }
        }
        for s in blocked {
            msgs.push(self.blocked_msg(&s));
        }
        msgs
    }

    fn record_device_flow(&mut self, src: NodeId, dst: NodeId, s: &FlowSample, time: Timestamp) {
        for (device, remote) in [(src, dst), (dst, src)] {
            if device == remote || !self.is_device(device) {
                continue;
            }
            let rec =
                self.device_flows.entry(device).or_default().entry((remote, s.dst_port, s.icmp_type)).or_default();
            rec.packets += s.packets;
            rec.bytes += s.bytes;
            rec.last_seen = time;
        }
    }

    fn blocked_msg(&mut self, s: &FlowSample) -> Publish {
        let time = self.now;
        let from = self.node_for_ip(s.src, time);
        let to = self.node_for_ip(s.dst, time);
        self.stats.add("spind", "blocked", s.packets);
        let f = FlowJson {
            from,
            to,
            protocol: s.protocol,
            from_port: s.src_port,
            to_port: s.dst_port,
            size: s.bytes,
            count: s.packets,
        };
        self.traffic_msg(messages::blocked(Some(&f)))
    }

    fn on_blocked(&mut self, time: Timestamp, packet: &FlowSample) -> Vec<Publish> {
        // Unlike SPIN, both sides always get a node, so the message always has a result.
        let msg = self.blocked_msg(packet);
        let (src, dst) = (self.node_for_ip(packet.src, time), self.node_for_ip(packet.dst, time));
        let macs = self.macs(src, dst);
        self.history.flow(time, packet, macs, true);
        vec![msg]
    }

    fn on_dns_query(&mut self, time: Timestamp, client: IpAddr, qname: &str) -> Vec<Publish> {
        self.stats.add("dns", "queries", 1);
        if self.settings.simulate_blocking {
            self.count_simulated_block(client, qname);
        }
        let from = self.node_for_ip(client, time);
        // A query names a node whatever its TTL: no new node for a name we already know.
        let queried = match self.nodes.by_domain(qname) {
            Some(id) => {
                self.nodes.touch(id, time);
                id
            }
            None => self.nodes.add(
                Candidate { domains: vec![(qname.to_string(), None)], last_seen: time, ..Default::default() },
                time,
            ),
        };
        if self.ignored(&client) {
            return Vec::new();
        }
        vec![self.traffic_msg(messages::dns_query(from, queried, qname))]
    }

    /// Every address the question name resolves to, following CNAME chains, with the
    /// shortest TTL along its chain.
    fn resolve_chain(qname: &str, records: &[DnsRecord]) -> Vec<(IpAddr, u32)> {
        let mut names: Vec<(String, u32)> = vec![(qname.to_ascii_lowercase(), u32::MAX)];
        let mut i = 0;
        while i < names.len() && names.len() <= 16 {
            let (name, ttl) = names[i].clone();
            for r in records {
                if let DnsData::Cname(target) = &r.data {
                    let t = target.to_ascii_lowercase();
                    if r.owner.eq_ignore_ascii_case(&name) && !names.iter().any(|(n, _)| *n == t) {
                        names.push((t, ttl.min(r.ttl)));
                    }
                }
            }
            i += 1;
        }
        let mut out = Vec::new();
        for r in records {
            if let DnsData::Addr(ip) = r.data {
                if let Some((_, ttl)) = names.iter().find(|(n, _)| r.owner.eq_ignore_ascii_case(n)) {
                    out.push((ip, r.ttl.min(*ttl)));
                }
            }
        }
        out
    }

    fn on_dns_answer(&mut self, time: Timestamp, qname: &str, records: &[DnsRecord]) -> Vec<Publish> {
        self.stats.add("dns", "answers", 1);
        let resolved = Self::resolve_chain(qname, records);
        if !resolved.is_empty() {
            self.remember_resolved(time, qname, records, &resolved);
        }
        for (ip, ttl) in resolved {
            let mac = self.neighbours.get(&ip).copied();
            let name = self.device_name(mac.as_ref(), &[ip]).map(str::to_string);
            self.nodes.add(
                Candidate {
                    mac,
                    ips: vec![ip],
                    domains: vec![(qname.to_string(), Some(time + i64::from(ttl)))],
                    name,
                    last_seen: time,
                },
                time,
            );
        }
        Vec::new()
    }

    /// Remembers which names (the whole CNAME chain) the answer's addresses belong to; if a name
    /// rule blocks one of them, the addresses are enforced at once.
    fn remember_resolved(&mut self, time: Timestamp, qname: &str, records: &[DnsRecord], ips: &[(IpAddr, u32)]) {
        let mut chain = vec![qname.trim_end_matches('.').to_ascii_lowercase()];
        for r in records {
            if let DnsData::Cname(target) = &r.data {
                let t = target.trim_end_matches('.').to_ascii_lowercase();
                if !chain.contains(&t) {
                    chain.push(t);
                }
            }
        }
        chain.truncate(RESOLVED_NAMES_MAX);
        let blocked = chain.iter().any(|n| self.blocked_for_anyone(n));
        if self.resolved.len() >= RESOLVED_MAX {
            self.resolved.retain(|_, r| r.expires > time);
        }
        for &(ip, ttl) in ips {
            let expires = time + i64::from(ttl).max(NAME_BLOCK_MIN_TTL);
            if self.resolved.len() >= RESOLVED_MAX && !self.resolved.contains_key(&ip) {
                self.stats.add("names", "resolved-dropped", 1);
                continue;
            }
            let e = self.resolved.entry(ip).or_insert_with(|| Resolved { names: Vec::new(), expires });
            e.expires = e.expires.max(expires);
            for n in &chain {
                if !e.names.contains(n) {
                    if e.names.len() >= RESOLVED_NAMES_MAX {
                        e.names.remove(0);
                    }
                    e.names.push(n.clone());
                }
            }
        }
        if blocked {
            self.resolved_due = true;
            self.flush_resolved();
        }
    }

    /// Learnt addresses of blocked names go to the enforcer and the state file: the first in a
    /// second at once, later ones of the same second on the next tick.
    fn flush_resolved(&mut self) {
        if self.resolved_due && self.now > self.resolved_flushed_at {
            self.resolved_due = false;
            self.resolved_flushed_at = self.now;
            self.enforce_pending = true;
            self.dirty.name_resolved = true;
        }
    }

    /// Whether a rule that holds now blocks `name` for some device, or a scheduled rule covers
    /// it (in its windows or not: the kernel matches its windows, an allow's exception too).
    fn blocked_for_anyone(&self, name: &str) -> bool {
        if self.name_rules.scheduled_rule_covers(name, self.now) {
            return true;
        }
        if self.matcher.is_empty() {
            return false;
        }
        let n = name.as_bytes();
        self.matcher.decide(n, None) == Some(NameVerdict::Block)
            || self.matcher.devices().iter().any(|d| self.matcher.decide(n, Some(*d)) == Some(NameVerdict::Block))
    }

    /// The name rules that hold now, compiled.
    fn compile_name_rules(&self) -> NameMatcher {
        let local = (self.settings.local_time)(self.now);
        self.compile_rules(|r| r.holds(self.now, local))
    }

    /// The rules `keep` selects, with the blocklists and the DoH list, compiled.
    fn compile_rules(&self, keep: impl Fn(&crate::model::namerules::NameRule) -> bool) -> NameMatcher {
        let mut m = self.name_rules.matcher_of(keep, self.neighbours.iter());
        // After the user's rules: at one name the user's allow beats a service's block.
        self.services.compile_into(&mut m, self.neighbours.iter());
        self.set_match_lists(&mut m);
        if self.settings.block_doh {
            // After the user's rules: at one name the user's allow beats this block.
            for name in crate::model::namerules::doh_resolvers() {
                m.add(name, None, false);
            }
        }
        m
    }

    /// Re-evaluates schedules and expiry (and the addresses of the devices rules name): a
    /// change goes to the enforcer.
    pub(crate) fn refresh_name_rules(&mut self) {
        let offset = LocalTime::offset_from_utc((self.settings.local_time)(self.now), self.now);
        if offset != self.utc_offset {
            self.utc_offset = offset;
            self.enforce_pending = true;
        }
        let m = self.compile_name_rules();
        if *self.matcher != m {
            self.matcher = Arc::new(m);
            self.enforce_pending = true;
        }
    }

    /// `names.resolved`: the remembered addresses that a rule blocks now, one per line
    /// (`address expires name...`), so that the kernel's blocks are rebuilt after a restart.
    fn name_resolved_text(&self) -> String {
        let mut lines: Vec<String> = self
            .resolved
            .iter()
            .filter(|(_, r)| r.expires > self.now && r.names.iter().any(|n| self.blocked_for_anyone(n)))
            .map(|(ip, r)| format!("{ip} {} {}\n", r.expires, r.names.join(" ")))
            .collect();
        lines.sort();
        lines.concat()
    }

    /// `paused.list`: one paused device a line, `MAC UNTIL`.
    fn paused_text(&self) -> String {
        self.paused.iter().map(|(mac, until)| format!("{mac} {until}\n")).collect()
    }

    fn name_rules_msg(&self) -> Publish {
        self.traffic_msg(messages::name_rules(&self.name_rules.to_value()))
    }

    /// The addresses that blocked names resolved to, per device or for every device. An
    /// address is blocked for all only if no device has an exception for it; otherwise for
    /// each known device it is blocked for.
    fn name_blocks(&self, m: &NameMatcher) -> Vec<NameBlock> {
        if m.is_empty() {
            return Vec::new();
        }
        let named = m.devices();
        let mut known: Vec<[u8; 6]> = self.nodes.devices().iter().filter_map(|n| n.mac.map(|m| m.0)).collect();
        known.extend(named);
        known.sort();
        known.dedup();
        let blocks = |r: &Resolved, d| r.names.iter().any(|n| m.decide(n.as_bytes(), d) == Some(NameVerdict::Block));
        let mut out = Vec::new();
        for (ip, r) in &self.resolved {
            if r.expires <= self.now {
                continue;
            }
            let all = blocks(r, None);
            if all && named.iter().all(|d| blocks(r, Some(*d))) {
                out.push(NameBlock { device: None, ip: *ip, expires: r.expires });
                continue;
            }
            let devices = if all { &known[..] } else { named };
            for d in devices {
                if blocks(r, Some(*d)) {
                    out.push(NameBlock { device: Some(*d), ip: *ip, expires: r.expires });
                }
            }
        }
        out.sort();
        out
    }

    fn on_neighbour(&mut self, time: Timestamp, ip: IpAddr, mac: MacAddr) -> Vec<Publish> {
        if self.neighbours.insert(ip, mac) == Some(mac) && self.nodes.by_ip(&ip) == self.nodes.by_mac(&mac) {
            return Vec::new();
        }
        if let Some((_, info)) = self.mdns_pending.remove(&ip) {
            self.learn_mdns(mac, info);
        }
        let name = self.device_name(Some(&mac), &[ip]).map(str::to_string);
        self.nodes.add(Candidate { mac: Some(mac), ips: vec![ip], name, last_seen: time, ..Default::default() }, time);
        if mac.is_unicast() {
            self.history.device_seen(time, mac);
        }
        Vec::new()
    }

    fn on_tick(&mut self) -> Vec<Publish> {
        let now = self.now;
        self.heal_enforcement();
        // A write that failed (full disk) is tried again once a second until it succeeds.
        if self.retry_save_at.is_some_and(|t| now >= t) {
            self.retry_save_at = None;
        }
        if self.names.reload_leases() {
            self.apply_names();
        }
        self.refresh_name_rules();
        self.flush_resolved();
        self.blocklists.new_day((self.settings.local_time)(now).weekday);
        // A pause ends by itself (the kernel's element times out too); the file follows.
        let before = self.paused.len();
        self.paused.retain(|_, until| *until > now);
        if self.paused.len() != before {
            self.dirty.paused = true;
            self.enforce_pending = true;
        }
        if self.history.flush_due(now) {
            let nodes = &self.nodes;
            self.history.flush(now, &|ip| remote_key(nodes, ip));
            let written = self.history.bytes_written();
            self.stats.add("history", "bytes-written", written - self.history_written);
            self.history_written = written;
        }
        if now >= self.next_expiry {
            self.resolved.retain(|_, r| r.expires > now);
        }
        if now >= self.next_device_flow_clean {
            self.next_device_flow_clean = now + DEVICE_FLOW_INTERVAL;
            for records in self.device_flows.values_mut() {
                if records.len() > DEVICE_FLOW_KEEP {
                    records.retain(|_, r| r.last_seen >= now - DEVICE_FLOW_MAX_IDLE);
                }
            }
        }
        if now >= self.next_expiry {
            self.next_expiry = now + EXPIRY_INTERVAL;
            let keep: BTreeSet<NodeId> = self.protected_nodes();
            self.nodes.expire(now - self.settings.retain_time, now, &|id| keep.contains(&id));
        }
        let mut msgs = Vec::new();
        if now >= self.next_lastseen_check {
            self.next_lastseen_check = now + LASTSEEN_CHECK_INTERVAL;
            self.refresh_lastseen(&mut msgs);
            if let Some(ha) = self.ha.as_mut() {
                let nodes = &self.nodes;
                ha.refresh(now, |mac| nodes.by_mac(mac).and_then(|id| nodes.get(id)).map(|n| n.last_seen), &mut msgs);
            }
        }
        if now >= self.next_stats {
            self.next_stats = now + STATS_INTERVAL;
            self.stats.set_max("node_cache", "nodes", self.nodes.len() as u64);
            for (module, name, kind, value, count) in self.stats.take_changed() {
                msgs.push(Publish::new(
                    format!("SPIN/stat/{module}/{name}"),
                    messages::stat(module, name, kind, value, count),
                    true,
                ));
            }
        }
        msgs
    }

    /// Nodes that must not expire: referenced by a device flow, in a flow block, or on a list.
    fn protected_nodes(&self) -> BTreeSet<NodeId> {
        let mut keep: BTreeSet<NodeId> = self.device_flows.values().flat_map(|r| r.keys().map(|k| k.0)).collect();
        keep.extend(self.flows.blocked().flat_map(|(a, b)| [a, b]));
        keep.extend(self.nodes.iter().filter(|n| ListKind::ALL.iter().any(|k| n.on_list(*k))).map(|n| n.id));
        keep
    }

    /// Re-applies user and DHCP names to every node (after a names or leases change).
    fn apply_names(&mut self) {
        let updates: Vec<(NodeId, String)> = self
            .nodes
            .iter()
            .filter_map(|n| {
                let ips: Vec<IpAddr> = n.ips.iter().copied().collect();
                let name = self.device_name(n.mac.as_ref(), &ips)?;
                (n.name.as_deref() != Some(name)).then(|| (n.id, name.to_string()))
            })
            .collect();
        for (id, name) in updates {
            self.nodes.set_name(id, Some(name));
        }
    }

    // ---- publishing ---------------------------------------------------------------------

    fn traffic_msg(&self, payload: String) -> Publish {
        Publish::new(self.settings.traffic_topic.clone(), payload, false)
    }

    fn list_msg(&self, kind: ListKind, command: &str) -> Publish {
        self.traffic_msg(messages::list(command, &self.lists.get(kind).to_strings()))
    }

    /// Publishes `msgs` after everything they may refer to: merges and deletions are applied
    /// to the flow tables, node-list flags follow new addresses, names follow the user's, what
    /// changed is saved and enforced, and every modified node's `nodeInfo` goes out first
    /// (SPIN's "announced before first use").
    fn emit(&mut self, out: &mut Vec<Publish>, msgs: Vec<Publish>) {
        let list_msgs = self.settle();
        let changes = std::mem::take(&mut self.settled);
        if self.dirty.any() && self.retry_save_at.is_none() {
            match self.save() {
                Ok(()) => {}
                Err(e) => {
                    // Nobody to answer for an observation: keep memory, say so, retry each second.
                    warn!("{e}; kept in memory, trying again every second");
                    self.retry_save_at = Some(self.now + 1);
                }
            }
        }
        self.enforce_if_pending();
        for id in self.nodes.take_modified() {
            self.announce(id, false, out);
            self.ha_device(id, out);
        }
        for c in changes {
            let (id, payload) = match c {
                Change::Merged { from, into } => (from, messages::node_merged(from, into)),
                Change::Deleted(id) => (id, messages::node_deleted(id)),
            };
            self.published.remove(&id);
            out.push(Publish::new(ADMIN_TOPIC, payload, false));
            out.push(Publish::new(format!("{NODE_TOPIC_PREFIX}{id}"), Vec::new(), true));
        }
        out.extend(list_msgs);
        out.extend(msgs);
    }

    /// Publishes node `id`'s `nodeInfo` (retained) if it says something the last one did not:
    /// anything but `lastseen` at once, a newer `lastseen` alone when `refresh` asks for it (see
    /// [`LASTSEEN_REFRESH`]). An unchanged node is never published again.
    fn announce(&mut self, id: NodeId, refresh: bool, out: &mut Vec<Publish>) {
        let Some(node) = self.nodes.get(id) else { return };
        let now = Published { digest: messages::node_digest(node), lastseen: node.last_seen };
        if let Some(last) = self.published.get(&id) {
            let same = last.digest == now.digest;
            if same && (!refresh || now.lastseen <= last.lastseen) {
                return;
            }
        }
        self.published.insert(id, now);
        out.push(Publish::new(format!("{NODE_TOPIC_PREFIX}{id}"), messages::node_info(node), true));
    }

    /// A device's Home Assistant discovery (when on): what HA needs when it is new or changed.
    fn ha_device(&mut self, id: NodeId, out: &mut Vec<Publish>) {
        if self.ha.is_none() {
            return;
        }
        let Some(n) = self.nodes.get(id) else { return };
        let Some(mac) = n.mac.filter(MacAddr::is_unicast) else { return };
        let identity = self.op_identity(n);
        let info = DeviceInfo {
            mac,
            name: n.name.clone(),
            vendor: identity.vendor.map(str::to_string),
            kind: identity.kind,
            random_mac: identity.random_mac,
            ips: n.ips.iter().map(IpAddr::to_string).collect(),
            last_seen: n.last_seen,
        };
        let now = self.now;
        if let Some(ha) = self.ha.as_mut() {
            ha.device(&info, now, out);
        }
    }

    /// Nodes whose retained `lastseen` is [`LASTSEEN_REFRESH`] seconds behind get a fresh
    /// `nodeInfo`.
    fn refresh_lastseen(&mut self, out: &mut Vec<Publish>) {
        let due: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|n| self.published.get(&n.id).is_some_and(|p| n.last_seen - p.lastseen >= LASTSEEN_REFRESH))
            .map(|n| n.id)
            .collect();
        for id in due {
            self.announce(id, true, out);
        }
    }

    /// What follows from the cache's changes since the last call, in memory: merged and deleted
    /// nodes leave the flow tables and decisions; a node on a list takes its new addresses with it
    /// (except those the user took off the list by hand); a node is named as the names say (the
    /// user's name first); persistent nodes that changed are marked for saving. Returns the
    /// list messages of lists that grew; the merges/deletions wait in `settled` for `emit`.
    fn settle(&mut self) -> Vec<Publish> {
        self.settle_changes();
        let modified = self.nodes.modified();
        let mut grown = Vec::new();
        let mut renames = Vec::new();
        for &id in &modified {
            let Some(node) = self.nodes.get(id) else { continue };
            for kind in ListKind::ALL {
                if !node.on_list(kind) {
                    continue;
                }
                let missing: Vec<IpNet> = node
                    .ips
                    .iter()
                    .filter(|ip| !self.lists.get(kind).contains(ip) && !self.withdrawn.get(kind).contains(ip))
                    .map(|ip| IpNet::host(*ip))
                    .collect();
                if !missing.is_empty() {
                    for net in missing {
                        self.lists.get_mut(kind).add(net);
                    }
                    self.dirty.lists[kind as usize] = true;
                    self.enforce_pending |= kind != ListKind::Ignore;
                    if !grown.contains(&kind) {
                        grown.push(kind);
                    }
                }
            }
            let ips: Vec<IpAddr> = node.ips.iter().copied().collect();
            if let Some(name) = self.device_name(node.mac.as_ref(), &ips) {
                if node.name.as_deref() != Some(name) {
                    renames.push((id, name.to_string()));
                }
            }
            if self.is_persistent(id) {
                self.dirty.node_store = true;
                // A blocked pair follows its nodes' addresses.
                self.enforce_pending |= self.flows.blocks(id);
            }
        }
        for (id, name) in renames {
            self.nodes.set_name(id, Some(name));
        }
        grown.into_iter().map(|kind| self.list_msg(kind, kind.name())).collect()
    }

    /// Applies the cache's merges and deletions to the core's own tables (device flows, flow
    /// decisions) and keeps them in `settled` to be announced.
    fn settle_changes(&mut self) {
        for c in self.nodes.take_changes() {
            match c {
                Change::Merged { from, into } => {
                    self.renumber(from, into);
                    // The node store holds persisted nodes only; a merge of others changes nothing there.
                    self.dirty.node_store |= self.is_persistent(into);
                }
                Change::Deleted(id) => {
                    self.device_flows.remove(&id);
                    if self.flows.forget(id) {
                        self.dirty.node_store = true;
                    }
                }
            }
            self.settled.push(c);
        }
    }

    /// Node `from` was merged into `into`: its device-flow references and flow decisions follow.
    fn renumber(&mut self, from: NodeId, into: NodeId) {
        if let Some(records) = self.device_flows.remove(&from) {
            let dest = self.device_flows.entry(into).or_default();
            for (k, v) in records {
                let r = dest.entry(k).or_default();
                r.packets += v.packets;
                r.bytes += v.bytes;
                r.last_seen = r.last_seen.max(v.last_seen);
            }
        }
        for records in self.device_flows.values_mut() {
            let moved: Vec<DeviceFlowKey> = records.keys().filter(|k| k.0 == from).copied().collect();
            for k in moved {
                let v = records.remove(&k).unwrap_or_default();
                let r = records.entry((into, k.1, k.2)).or_default();
                r.packets += v.packets;
                r.bytes += v.bytes;
                r.last_seen = r.last_seen.max(v.last_seen);
            }
        }
        if self.flows.renumber(from, into) {
            self.dirty.node_store = true;
            self.enforce_pending = true;
        }
    }

    // ---- persistence and enforcement ------------------------------------------------------

    /// Nodes whose identity must survive a restart: in a flow-block decision or put on a list.
    fn is_persistent(&self, id: NodeId) -> bool {
        self.flows.involves(id) || self.nodes.get(id).is_some_and(|n| ListKind::ALL.iter().any(|k| n.on_list(*k)))
    }

    /// Writes everything dirty in one batch ([`persist::write_files`]: all or nothing).
    fn save(&mut self) -> Result<(), WriteError> {
        let d = self.dirty;
        let mut files: Vec<(std::path::PathBuf, Vec<u8>)> = Vec::new();
        for kind in ListKind::ALL {
            let i = kind as usize;
            if d.lists[i] {
                let text = persist::list_text(self.lists.get(kind).entries());
                files.push((self.state.list_file(kind.name()), text.into_bytes()));
            }
            if d.withdrawn[i] {
                let text = persist::list_text(self.withdrawn.get(kind).entries());
                files.push((self.state.withdrawn_file(kind.name()), text.into_bytes()));
            }
        }
        if d.name_rules {
            files.push((self.state.name_rules_file(), self.name_rules.file_text().into_bytes()));
        }
        if d.name_resolved || d.name_rules || d.services {
            files.push((self.state.name_resolved_file(), self.name_resolved_text().into_bytes()));
        }
        if d.paused {
            files.push((self.state.paused_file(), self.paused_text().into_bytes()));
        }
        if d.device_types {
            files.push((self.state.device_types_file(), identity::device_types_text(&self.device_types).into_bytes()));
        }
        if d.device_schedules {
            files.push((self.state.device_schedules_file(), self.device_schedules.file_text().into_bytes()));
        }
        if d.services {
            files.push((self.state.services_file(), self.services.file_text().into_bytes()));
        }
        if d.blocklists {
            files.push((self.state.blocklists_file(), self.blocklists.sources.file_text().into_bytes()));
        }
        if d.names {
            files.push((self.names.user_path().to_path_buf(), self.names.user_text().into_bytes()));
        }
        let mut keep = BTreeSet::new();
        if d.node_store {
            let nodes: Vec<&Node> = self.nodes.iter().filter(|n| self.is_persistent(n.id)).collect();
            keep = nodes.iter().map(|n| n.id).collect();
            let (pairs, unpairs) = self.flows.stored();
            files.extend(self.state.node_store_files(&nodes, &pairs, &unpairs));
        }
        persist::write_files(&files)?;
        if d.node_store {
            self.state.remove_other_nodes(&keep);
        }
        if self.retry_save_at.take().is_some() {
            info!(
                "saved the state in {} again",
                self.state.nodestore_dir().parent().unwrap_or(std::path::Path::new(".")).display()
            );
        }
        self.dirty = Dirty::default();
        Ok(())
    }

    /// Recreates persisted nodes (with new ids, as SPIN) and their flow decisions and flags.
    fn restore_node_store(&mut self) {
        let persist::NodeStore { nodes: stored, pairs, unpairs } = self.state.load_node_store();
        let mut remap: HashMap<NodeId, NodeId> = HashMap::new();
        for (old_id, n) in stored {
            let cand = Candidate {
                mac: n.mac,
                ips: n.ips,
                domains: n.domains.into_iter().map(|d| (d, None)).collect(),
                name: n.name,
                last_seen: n.last_seen.unwrap_or(self.now),
            };
            let id = self.nodes.add(cand, self.now);
            for (on, kind) in
                [(n.blocked, ListKind::Block), (n.excepted, ListKind::Allow), (n.ignored, ListKind::Ignore)]
            {
                if on {
                    self.nodes.set_on_list(id, kind, true);
                }
            }
            remap.insert(old_id, id);
        }
        self.flows = FlowDecisions::restore(&pairs, &unpairs, |old| remap.get(&old).copied());
        if !remap.is_empty() {
            info!("restored {} persisted nodes and {} flow blocks", remap.len(), self.flows.blocked().count());
            self.dirty.node_store = true;
        }
    }

    fn policy(&self) -> Policy {
        let local = (self.settings.local_time)(self.now);
        let offset = LocalTime::offset_from_utc(local, self.now);
        let (name_blocks, scheduled_names, scheduled_allows) = self.name_blocks_and_scheduled(local, offset);
        let ips = |id: NodeId| -> Vec<IpAddr> {
            self.nodes.get(id).map(|n| n.ips.iter().copied().collect()).unwrap_or_default()
        };
        Policy {
            block: self.lists.get(ListKind::Block).entries().copied().collect(),
            allow: self.lists.get(ListKind::Allow).entries().copied().collect(),
            pairs: self
                .flows
                .blocked()
                .map(|(a, b)| PairBlock { node1: a, node2: b, ips1: ips(a), ips2: ips(b) })
                .collect(),
            names: self.matcher.clone(),
            name_blocks,
            guard: Guard {
                redirect_dns: self.settings.redirect_dns,
                refuse_dot: self.settings.refuse_dot,
                wan: self.wan.clone(),
            },
            paused: self
                .paused
                .iter()
                .filter(|(_, until)| **until > self.now)
                .map(|(mac, until)| Pause { device: mac.0, until: *until })
                .collect(),
            scheduled_names,
            scheduled_allows,
            bedtimes: self.device_schedules.bedtimes(offset),
        }
    }

    fn enforce(&mut self) -> OpResult<()> {
        self.enforce_pending = false;
        let policy = self.policy();
        self.name_blocked.clear();
        // Userspace decides flows as the kernel would now (replay has no kernel): with schedules,
        // the rules that hold now; without, the unscheduled sets are all there is.
        let scheduled = !policy.scheduled_names.is_empty() || !policy.scheduled_allows.is_empty();
        let recomputed;
        let now_blocked: &[NameBlock] = if scheduled {
            recomputed = self.name_blocks(&self.matcher);
            &recomputed
        } else {
            &policy.name_blocks
        };
        for b in now_blocked {
            self.name_blocked.entry(b.ip).or_default().push((b.device, b.expires));
        }
        match self.enforcer.as_mut() {
            None => Ok(()),
            Some(e) => e.apply(&policy).map_err(|e| {
                self.stats.add("enforce", "errors", 1);
                OpError::new(-3, format!("firewall update failed: {e:#}"))
            }),
        }
    }

    /// Has the enforcer check that the kernel still holds the last policy and restore it if
    /// not: a block holds even after someone flushed the ruleset (once a second, on the tick).
    fn heal_enforcement(&mut self) {
        let Some(e) = self.enforcer.as_mut() else { return };
        match e.heal() {
            Ok(None) => self.heal_error = None,
            Ok(Some(what)) => {
                self.heal_error = None;
                self.stats.add("enforce", "restored", 1);
                warn!("{what}: restored the household's blocks and allows");
            }
            Err(e) => {
                self.stats.add("enforce", "errors", 1);
                let msg = format!("{e:#}");
                if self.heal_error.as_ref() != Some(&msg) {
                    warn!("cannot check or restore the firewall table: {msg}");
                    self.heal_error = Some(msg);
                }
            }
        }
    }

    /// Hands the enforcer the policy if it changed (a failure is logged: the next change tries
    /// again with the whole policy).
    fn enforce_if_pending(&mut self) {
        if self.enforce_pending {
            if let Err(e) = self.enforce() {
                warn!("{}", e.message);
            }
        }
    }
}

/// How the history names a remote address: the DNS name of its node (the shortest, without
/// the trailing dot), else the address.
pub(crate) fn remote_key(nodes: &NodeCache, ip: IpAddr) -> String {
    nodes
        .by_ip(&ip)
        .and_then(|id| nodes.get(id))
        .and_then(|n| n.sorted_domains().first().map(|d| d.trim_end_matches('.').to_ascii_lowercase()))
        .unwrap_or_else(|| ip.to_string())
}

/// A state file read by `parse` (what it holds and a warning per line it skipped, each logged);
/// a missing file is the default (nothing saved yet), an unreadable one an error at start.
fn read_state_file<T: Default>(
    path: &std::path::Path,
    parse: impl FnOnce(&str) -> (T, Vec<String>),
) -> anyhow::Result<T> {
    match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
        Ok(text) => {
            let (value, warnings) = parse(&text);
            for w in warnings {
                warn!("{}: {w}", path.display());
            }
            Ok(value)
        }
    }
}

mod blocklist_ops;
#[cfg(test)]
mod blocklist_tests;
mod history_ops;
#[cfg(test)]
mod homeassistant_tests;
mod identity_ops;
mod ops;
mod schedule_ops;
mod service_ops;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;
