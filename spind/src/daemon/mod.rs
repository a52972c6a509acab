//! The daemon room: the command line, the configuration, logging, and the wiring that starts
//! everything (sources, transports, the broker, the enforcer) and runs the one thread that owns
//! the [`Core`].
//!
//! This is the only room that knows every other room. It owns no state of the model and makes
//! no decision of the core: it builds the settings from the config, starts each part, and in
//! the core loop hands every [`Input`] to the core and every [`Publish`] to the broker.

pub(crate) mod cli;
pub(crate) mod config;
pub(crate) mod logging;
pub(crate) mod wifi;

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use log::{error, info, warn};

use crate::enforcer;
use crate::model::core::{Core, CoreSettings, ALERTS_TOPIC};
use crate::model::event::{Event, Input, Publish, RpcReply, Timestamp};
use crate::model::history::HistorySettings;
use crate::model::namerules::LocalTime;
use crate::model::names::Names;
use crate::model::persist::StateDir;
use crate::model::policy::Enforcer;
use crate::model::rpc;
use crate::model::wifi::AccessPoint;
use crate::sources::{extsrc, fetch, kernel, replay};
use crate::transports::auth::Auth;
use crate::transports::{http, mqtt, rpc_socket, webhook};
use cli::Options;
use config::Config;

static STOP: AtomicBool = AtomicBool::new(false);
/// Whether a stop signal asks the core loop to stop (once everything is up) or ends spind at
/// once (during start-up, as the signal's default action would).
static STOP_BY_CORE_LOOP: AtomicBool = AtomicBool::new(false);

/// SIGTERM and SIGINT are taken by a thread (`sigwait`) rather than a handler: blocked here in
/// the main thread before any other thread starts (every thread inherits the mask; children
/// such as `nft` get a clean one from std). Before [`STOP_BY_CORE_LOOP`] is set the signal
/// ends spind as its default action would; after, it sets [`STOP`].
fn take_stop_signals() -> anyhow::Result<()> {
    use nix::sys::signal::{raise, SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block().context("cannot block SIGTERM and SIGINT")?;
    std::thread::Builder::new()
        .name("spind-signals".into())
        .spawn(move || loop {
            let Ok(sig) = set.wait() else { continue };
            if STOP_BY_CORE_LOOP.load(Ordering::SeqCst) {
                STOP.store(true, Ordering::SeqCst);
            } else {
                // Unblocked on this thread only, the raised signal takes its default action.
                let _ = set.thread_unblock();
                let _ = raise(sig);
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

pub fn wall_clock() -> Timestamp {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Runs spind with these arguments (without the program name) and returns the exit code.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> i32 {
    let opts = match cli::parse_args(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("spind: {e}");
            return 1;
        }
    };
    if opts.help {
        print!("{}", cli::help_text());
        return 0;
    }
    if opts.version {
        println!("{}", cli::version_text());
        return 0;
    }
    if let Some(user) = &opts.set_password {
        return match set_password(&opts, user) {
            Ok(path) => {
                eprintln!("spind: password of {user} stored in {}", path.display());
                0
            }
            Err(e) => {
                eprintln!("spind: {e:#}");
                1
            }
        };
    }
    match run(opts) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("spind: {e:#}");
            error!("{e:#}");
            1
        }
    }
}

/// `--set-password USER`: one line from standard input into the password file.
fn set_password(opts: &Options, user: &str) -> anyhow::Result<std::path::PathBuf> {
    let (cfg, _) = load_config(opts)?;
    let path = password_file(&cfg).context("no password file")?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("cannot read the password from standard input")?;
    let pw = line.strip_suffix('\n').unwrap_or(&line);
    let pw = pw.strip_suffix('\r').unwrap_or(pw);
    if pw.is_empty() {
        bail!("refusing an empty password (give it as one line on standard input)");
    }
    crate::transports::auth::set_password(&path, user, pw)?;
    Ok(path)
}

/// `spinweb_password_file`, or `<state_dir>/spinweb.passwd` when it is not set.
fn password_file(cfg: &Config) -> Option<std::path::PathBuf> {
    Some(if cfg.spinweb_password_file.is_empty() {
        cfg.state_dir.join(DEFAULT_PASSWORD_FILE_NAME)
    } else {
        std::path::PathBuf::from(&cfg.spinweb_password_file)
    })
}

/// The password file used when `spinweb_password_file` is not set.
pub const DEFAULT_PASSWORD_FILE_NAME: &str = "spinweb.passwd";

/// The password file of the admin account (web server and embedded broker): the configured
/// one; without one, when a web or MQTT listener is not on loopback (or when `--set-password`
/// wrote one), `<state_dir>/spinweb.passwd`; otherwise none (the laptop demo, loopback only,
/// runs open).
fn effective_password_file(cfg: &Config, addrs: &[SocketAddr]) -> Option<std::path::PathBuf> {
    if !cfg.spinweb_password_file.is_empty() {
        return password_file(cfg);
    }
    let default = cfg.state_dir.join(DEFAULT_PASSWORD_FILE_NAME);
    (addrs.iter().any(|a| !a.ip().is_loopback()) || default.exists()).then_some(default)
}

/// OpenWrt keeps the settings in UCI; SPIN used it instead of spind.conf when present.
const UCI_CONFIG_FILE: &str = "/etc/config/spin";

fn load_config(opts: &Options) -> anyhow::Result<(Config, Vec<String>)> {
    let (mut cfg, warnings) = match &opts.config_file {
        Some(p) => Config::load(p, true)?,
        None if Path::new(UCI_CONFIG_FILE).exists() => {
            let text =
                std::fs::read_to_string(UCI_CONFIG_FILE).with_context(|| format!("cannot read {UCI_CONFIG_FILE}"))?;
            Config::parse_uci(&text, UCI_CONFIG_FILE)?
        }
        None => Config::load(Path::new(cli::DEFAULT_CONFIG_FILE), false)?,
    };
    opts.apply(&mut cfg);
    Ok((cfg, warnings))
}

fn listen_addrs(cfg: &Config, port: u16) -> anyhow::Result<Vec<SocketAddr>> {
    cfg.spinweb_interfaces
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpAddr>()
                .map(|ip| SocketAddr::new(ip, port))
                .with_context(|| format!("spinweb_interfaces: {s:?} is not an IP address"))
        })
        .collect()
}

/// The web server's settings from the config (SPIN's `spinweb_*` keys plus our own).
fn http_settings(cfg: &Config, addrs: Vec<SocketAddr>) -> anyhow::Result<http::HttpSettings> {
    let path = |s: &str| (!s.is_empty()).then(|| std::path::PathBuf::from(s));
    let tls = match (path(&cfg.spinweb_tls_certificate_file), path(&cfg.spinweb_tls_key_file)) {
        (Some(certificate), Some(key)) => Some(http::TlsFiles { certificate, key }),
        (None, None) => None,
        // Serving plain HTTP when the user asked for HTTPS would be the wrong surprise.
        _ => bail!("spinweb_tls_certificate_file and spinweb_tls_key_file must be set together"),
    };
    // `/mqtt` on the web port goes to the broker's WebSocket listener: ours (on the first
    // spinweb interface, loopback preferred) or, with an external broker, pubsub_host's.
    let ws_host = if cfg.pubsub_run_mosquitto {
        let hosts: Vec<&str> = cfg.spinweb_interfaces.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        hosts
            .iter()
            .copied()
            .find(|h| *h == "127.0.0.1" || *h == "::1")
            .or(hosts.first().copied())
            .unwrap_or("127.0.0.1")
            .to_string()
    } else {
        cfg.pubsub_host.clone()
    };
    let mqtt_websocket = match ws_host.parse::<IpAddr>() {
        Ok(ip) => {
            // A wildcard listener is reached on loopback.
            let ip = match ip {
                IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
                IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
                ip => ip,
            };
            Some(SocketAddr::new(ip, cfg.pubsub_websocket_port))
        }
        Err(_) => std::net::ToSocketAddrs::to_socket_addrs(&(ws_host.as_str(), cfg.pubsub_websocket_port))
            .ok()
            .and_then(|mut a| a.next()),
    };
    Ok(http::HttpSettings {
        addrs: addrs.clone(),
        static_dir: (!cfg.spinweb_static_dir.as_os_str().is_empty()).then(|| cfg.spinweb_static_dir.clone()),
        first_run_password_file: (!cfg.spinweb_first_run_password_file.as_os_str().is_empty())
            .then(|| cfg.spinweb_first_run_password_file.clone()),
        hostnames: cfg
            .spinweb_hostnames
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        tls,
        mqtt_websocket,
    })
}

/// The kernel sources' settings from the config: the NFLOG groups the enforcer logs to, and the
/// interfaces whose neighbours are not devices.
fn kernel_settings(cfg: &Config) -> kernel::KernelSettings {
    kernel::KernelSettings {
        dns_group: cfg.iptable_queue_dns,
        block_group: cfg.iptable_queue_block,
        wan_interfaces: kernel::WanInterfaces::parse(&cfg.wan_interfaces),
    }
}

/// The NFQUEUE number of DNS queries to the router (queues are per network namespace).
const DNS_QUEUE: u16 = 53;

/// Local time of a unix time, as the C library sees the time zone (`TZ`, `/etc/localtime`;
/// OpenWrt's musl reads `/etc/TZ`), for name-rule schedules.
fn local_time(t: Timestamp) -> LocalTime {
    // The C type is inferred (naming `libc::time_t` is deprecated on musl).
    let time = t as _;
    // SAFETY: a zeroed `tm` is a valid value of the plain C struct, and localtime_r writes only
    // into `tm`, which lives on this stack.
    let (ok, tm) = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        (!libc::localtime_r(&time, &mut tm).is_null(), tm)
    };
    if !ok {
        return LocalTime::utc(t);
    }
    // tm_wday: 0 = Sunday; LocalTime: 0 = Monday.
    LocalTime { weekday: ((tm.tm_wday + 6) % 7) as u8, minute: (tm.tm_hour * 60 + tm.tm_min) as u16 }
}

fn run(opts: Options) -> anyhow::Result<()> {
    take_stop_signals()?;
    let (cfg, warnings) = load_config(&opts)?;
    if opts.print_config {
        print!("{}", cfg.print());
        return Ok(());
    }
    let log_file = (!cfg.log_file.is_empty()).then(|| Path::new(&cfg.log_file));
    logging::init(cfg.log_loglevel, opts.log_stdout, log_file, cfg.log_usesyslog && !opts.log_stdout)
        .context("cannot set up logging")?;
    for w in warnings {
        warn!("{w}");
    }
    if opts.remove_firewall {
        // Blocks stay in force when spind stops; this is how to lift them.
        let existed = enforcer::remove_table()?;
        println!(
            "{}",
            if existed { "removed nftables table inet spin" } else { "no nftables table inet spin to remove" }
        );
        return Ok(());
    }
    // What the command line starts (SPIN's meaning: only -P, or --replay, leaves the kernel
    // alone; -e/-E add extsrc input beside the rest). Passive mode needs no privileges.
    let plan = opts.plan();
    if plan.kernel {
        kernel::check()?;
    }
    let mut _dns_queue = None;
    let enforcer: Option<Box<dyn Enforcer>> = if plan.enforcer {
        let mut e = enforcer::NftEnforcer::new(cfg.iptable_queue_dns, cfg.iptable_queue_block)?;
        // Name rules on the DNS path; without NFQUEUE they still hold on the flow path.
        match e.start_dns_queue(DNS_QUEUE) {
            Ok(q) => {
                info!("DNS queries to this router are judged by the name rules (NFQUEUE {DNS_QUEUE})");
                _dns_queue = Some(q);
            }
            Err(e) => warn!("no DNS verdicts for name rules (only their addresses are blocked): {e}"),
        }
        Some(Box::new(e))
    } else {
        None
    };

    // Check every input before anything starts listening.
    let capture = match &plan.replay {
        Some(path) => Some(replay::validate(path)?),
        None => None,
    };
    let state = StateDir::open(&cfg.state_dir)?;
    let names = Names::load(&state.names_file(), &cfg.dhcp_config_file, &cfg.dhcp_leases_file);
    let loading = std::time::Instant::now();
    let blocklists = crate::model::blocklist::load_files(&cfg.blocklist_files);
    for (_, c) in &blocklists {
        match &c.error {
            Some(e) => log::warn!("blocklist {}: {e}", c.file),
            None => log::info!(
                "blocklist {}: {} names, {} lines skipped, {} duplicates",
                c.file,
                c.names,
                c.skipped,
                c.duplicates
            ),
        }
    }
    if !blocklists.is_empty() {
        let names: usize = blocklists.iter().map(|(s, _)| s.len()).sum();
        log::info!("blocklists: {names} names in {} ms", loading.elapsed().as_millis());
    }
    let vendors = load_vendors(&cfg.oui_file);
    let lists_dir = state.blocklists_dir();
    let settings = CoreSettings {
        local_mode: opts.local,
        retain_time: cfg.node_cache_retain_time,
        traffic_topic: cfg.pubsub_channel_traffic.clone(),
        dots_enabled: cfg.dots_enabled,
        dots_log_only: cfg.dots_log_only,
        // Without the kernel nobody drops packets: decide and report blocks here.
        simulate_blocking: !plan.enforcer,
        local_time,
        redirect_dns: cfg.dns_redirect,
        refuse_dot: cfg.dot_refuse,
        block_doh: cfg.doh_block,
        blocklists: blocklists.into_iter().map(|(s, c)| (Arc::new(s), c)).collect(),
        vendors: std::sync::Arc::new(vendors),
        homeassistant: cfg.homeassistant_discovery.then(|| cfg.homeassistant_prefix.clone()),
        history: HistorySettings {
            enabled: cfg.history,
            hourly_days: cfg.history_hourly_days,
            daily_days: cfg.history_daily_days,
            max_bytes: (cfg.history_max_size as u64) << 20,
            learning_days: cfg.history_learning_days,
        },
    };
    let start_time = capture.as_ref().map(|c| c.first_ts as Timestamp).unwrap_or_else(wall_clock);
    // In live mode this rebuilds `table inet spin` from the persisted lists before anything else.
    let mut core = Core::new(settings, state, names, enforcer, start_time)?;

    let (tx, rx) = mpsc::channel::<Input>();
    if let Some(q) = _dns_queue.as_mut() {
        forward_blocked_queries(q, tx.clone())?;
    }
    let mqtt_settings = mqtt::MqttSettings {
        embedded: cfg.pubsub_run_mosquitto,
        host: cfg.pubsub_host.clone(),
        port: cfg.pubsub_port,
        websocket_hosts: cfg
            .spinweb_interfaces
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        websocket_port: cfg.pubsub_websocket_port,
        keepalive_secs: cfg.pubsub_timeout,
    };
    let web = listen_addrs(&cfg, cfg.spinweb_port)?;
    // One admin account for the web server and the embedded broker: on as soon as one of
    // their listeners is not on loopback (or a password file is configured).
    let listeners: Vec<SocketAddr> = web.iter().copied().chain(mqtt::listen_addresses(&mqtt_settings)?).collect();
    let password_file = effective_password_file(&cfg, &listeners);
    let auth = match &password_file {
        Some(p) => Some(Arc::new(Auth::load(p)?)),
        None => None,
    };
    if !cfg.pubsub_run_password_file.is_empty() {
        warn!("pubsub_run_password_file is not used: the embedded broker takes the admin account's credentials");
    }
    let broker_access = mqtt::BrokerAccess {
        auth: auth.clone(),
        anonymous_read: cfg.pubsub_anonymous_read,
        traffic_topic: cfg.pubsub_channel_traffic.clone(),
        ha_prefix: cfg.homeassistant_discovery.then(|| cfg.homeassistant_prefix.clone()),
    };
    if cfg.pubsub_anonymous_read && auth.is_some() {
        warn!("pubsub_anonymous_read is on: every LAN device may read all MQTT traffic (not change anything)");
    }
    let broker = mqtt::start(&mqtt_settings, &broker_access, tx.clone()).context("cannot start MQTT")?;
    info!(
        "MQTT on {}:{} ({}), WebSocket on port {}",
        cfg.pubsub_host,
        cfg.pubsub_port,
        if cfg.pubsub_run_mosquitto { "embedded broker" } else { "external broker" },
        cfg.pubsub_websocket_port
    );

    let rpc_socket_served = match rpc_socket::serve(&opts.rpc_socket, tx.clone()) {
        Ok(_) => {
            info!("JSON-RPC on unix socket {}", opts.rpc_socket.display());
            true
        }
        // The default path needs root; on a laptop the HTTP and MQTT transports still work.
        Err(e) if opts.rpc_socket == Path::new(cli::DEFAULT_RPC_SOCKET) => {
            warn!("no JSON-RPC unix socket at {} ({e}); use -j PATH for one", opts.rpc_socket.display());
            false
        }
        Err(e) => return Err(e).with_context(|| format!("cannot serve JSON-RPC on {}", opts.rpc_socket.display())),
    };
    let web_settings = http_settings(&cfg, web.clone())?;
    let scheme = if web_settings.tls.is_some() { "https" } else { "http" };
    match &password_file {
        None => warn!(
            "no admin password: the web server and the MQTT broker listen on loopback only and let \
             every local user in (set one with spind --set-password admin)"
        ),
        Some(p) => info!("admin account in {} (web server and MQTT broker)", p.display()),
    }
    http::serve(&web_settings, auth, tx.clone())?;
    for a in &web {
        info!("web UI and JSON-RPC on {scheme}://{a}/ (MQTT WebSocket also at /mqtt)");
    }
    if let Some(path) = &plan.extsrc_unix {
        extsrc::serve_unix(path, tx.clone())
            .with_context(|| format!("cannot listen for extsrc on {}", path.display()))?;
        info!("extsrc input on unix socket {}", path.display());
    }
    if let Some(addr) = plan.extsrc_tcp {
        extsrc::serve_tcp(addr, tx.clone()).with_context(|| format!("cannot listen for extsrc on {addr}"))?;
        info!("extsrc input on tcp {addr}");
    }

    // From here on SIGTERM and SIGINT stop the core loop, which then cleans up.
    STOP_BY_CORE_LOOP.store(true, Ordering::SeqCst);

    let webhook = match cfg.alert_webhook_url.as_str() {
        "" => None,
        url => {
            let hook = webhook::Webhook::start(webhook::Url::parse(url)?)?;
            info!("alerts are also POSTed to {url}");
            Some(hook)
        }
    };
    let outputs = Outputs { broker: &broker, webhook: webhook.as_ref() };
    let mut out = Vec::new();
    core.startup(&mut out);
    publish_all(&outputs, &mut out);

    // Kept alive for the daemon's lifetime; the conntrack thread also drives the clock.
    let mut _kernel_sources = None;
    if plan.kernel {
        let k = kernel_settings(&cfg);
        _kernel_sources = Some(kernel::start_sources(&k, tx.clone())?);
        info!(
            "watching this router: conntrack, NFLOG groups {} (DNS) and {} (blocked), neighbours",
            k.dns_group, k.block_group
        );
    }
    if let (Some(path), Some(info)) = (&plan.replay, capture) {
        info!("replaying {} ({} packets) at speed {}", path.display(), info.packets, opts.replay_speed);
        let (path, speed, tx) = (path.clone(), opts.replay_speed, tx.clone());
        std::thread::spawn(move || {
            if let Err(e) = replay::run(&path, speed, tx) {
                error!("replay stopped: {e}");
            }
        });
    }
    if plan.clock == cli::Clock::Ticker {
        spawn_ticker(tx.clone());
    }
    // The household's blocklists are kept fresh in a thread of their own (in every mode: the
    // laptop demo's lists come from URLs too).
    let fetch = fetch::FetchSettings {
        command: fetch::FetchSettings::command_words(&cfg.blocklist_fetch_command),
        refresh: cfg.blocklist_refresh,
        dir: lists_dir,
        clock: wall_clock,
    };
    match fetch::start(fetch, tx.clone()) {
        Ok(queue) => core.set_fetcher(queue),
        Err(e) => warn!("no blocklist downloads (the lists' last copies stay in force): {e}"),
    }
    drop(tx);
    // What the JSON-RPC methods ask of this host: its addresses (from the kernel) and its WiFi.
    let access_point = (!cfg.wifi_settings_file.as_os_str().is_empty()).then(|| wifi::Wifi {
        settings_file: cfg.wifi_settings_file.clone(),
        control_dir: cfg.wifi_control_dir.clone(),
        reply_timeout: wifi::REPLY_TIMEOUT,
    });
    let host =
        rpc::Host { own_addresses: kernel::host_addresses, wifi: access_point.as_ref().map(|w| w as &dyn AccessPoint) };
    core_loop(&mut core, &rx, &outputs, &host, opts.exit_after_replay);
    core.shutdown();
    if rpc_socket_served {
        let _ = std::fs::remove_file(&opts.rpc_socket);
    }
    info!("spind stopped");
    Ok(())
}

/// Hands the verdict thread's reports of blocked queries to the core (`spind-dnsq-report`), so
/// that it publishes them as `blocked`: the bounded channel keeps the verdict path from waiting
/// for the core; this thread may wait.
fn forward_blocked_queries(q: &mut enforcer::dnsqueue::DnsQueue, tx: Sender<Input>) -> anyhow::Result<()> {
    let Some(reports) = q.take_reports() else { return Ok(()) };
    std::thread::Builder::new().name("spind-dnsq-report".into()).spawn(move || {
        for b in reports {
            let ev = Event::DnsBlocked {
                time: wall_clock(),
                client: b.client.ip(),
                client_port: b.client.port(),
                protocol: if b.udp { 17 } else { 6 },
                qname: String::from_utf8_lossy(b.name()).into_owned(),
            };
            if tx.send(Input::Event(ev)).is_err() {
                return;
            }
        }
    })?;
    Ok(())
}

/// Wall-clock ticks for live and extsrc modes (replay drives its own clock).
fn spawn_ticker(tx: Sender<Input>) {
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(1));
        if tx.send(Input::Event(Event::Tick { time: wall_clock() })).is_err() {
            return;
        }
    });
}

/// Where the core's messages go: the broker, and alerts also to the webhook.
struct Outputs<'a> {
    broker: &'a mqtt::MqttHandle,
    webhook: Option<&'a webhook::Webhook>,
}

fn publish_all(outputs: &Outputs, out: &mut Vec<Publish>) {
    for p in out.drain(..) {
        if let Some(hook) = outputs.webhook {
            if p.topic == ALERTS_TOPIC {
                hook.send(String::from_utf8_lossy(&p.payload).into_owned());
            }
        }
        outputs.broker.publish(p);
    }
}

fn core_loop(core: &mut Core, rx: &Receiver<Input>, outputs: &Outputs, host: &rpc::Host, exit_after_replay: bool) {
    let mut out = Vec::new();
    while !STOP.load(Ordering::SeqCst) {
        let input = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(i) => i,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match input {
            Input::Event(ev) => {
                let finished = matches!(ev, Event::ReplayFinished { .. });
                core.handle(ev, &mut out);
                publish_all(outputs, &mut out);
                if finished && exit_after_replay {
                    break;
                }
            }
            Input::Rpc { request, reply } => {
                let answer = rpc::handle(core, &request, host, &mut out);
                match reply {
                    RpcReply::Channel(back) => {
                        let _ = back.send(answer);
                    }
                    RpcReply::Mqtt => {
                        if let Some(a) = answer {
                            out.push(Publish::new("SPIN/jsonrpc/a", a, false));
                        }
                    }
                }
                publish_all(outputs, &mut out);
            }
        }
    }
}

/// The vendor table: `oui_file`'s, else the one built in. A missing, oversized or corrupt file is
/// logged and leaves the table empty (devices then show no vendor): a bad data file must not
/// stop the router.
fn load_vendors(path: &std::path::Path) -> crate::model::identity::OuiTable {
    use crate::model::identity::OuiTable;
    let (what, table) = if path.as_os_str().is_empty() {
        ("the built-in vendor table".to_string(), OuiTable::builtin())
    } else {
        (format!("oui_file {}", path.display()), OuiTable::load(path))
    };
    match table {
        Ok(t) => {
            log::info!("{what}: {} vendor prefixes", t.prefixes());
            t
        }
        Err(e) => {
            log::warn!("{what}: {e}; devices show no vendor");
            Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::kernel::WanInterfaces;

    #[test]
    fn the_wan_interfaces_setting_reaches_the_neighbour_source_as_parsed() {
        let wan = |cfg: &Config| kernel_settings(cfg).wan_interfaces;
        assert_eq!(wan(&Config::default()), WanInterfaces::Auto);
        let (c, _) = Config::parse("wan_interfaces = eth1, pppoe-wan\n", "w.conf").unwrap();
        assert_eq!(wan(&c), WanInterfaces::Named(vec!["eth1".into(), "pppoe-wan".into()]));
        let (c, _) = Config::parse("wan_interfaces = none", "w.conf").unwrap();
        assert_eq!(wan(&c), WanInterfaces::Disabled);
        let (c, _) = Config::parse("iptable_queue_dns = 7\niptable_queue_block = 8\n", "q.conf").unwrap();
        assert_eq!((kernel_settings(&c).dns_group, kernel_settings(&c).block_group), (7, 8));
    }
}
