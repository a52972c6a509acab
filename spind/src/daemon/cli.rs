//! Command line: SPIN's `spind` flags (`getopt "c:Cde:E:f:hj:lm:oPp:v"`) plus our long options.
//!
//! Parsing only records what was given; [`Options::apply`] then lays the overrides over the
//! config file, because the command line beats the file (as in SPIN).

use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use crate::daemon::config::Config;

/// TCP port of the extsrc listener (`-E ADDR`), as in SPIN.
pub const EXTSRC_TCP_PORT: u16 = crate::sources::extsrc::DEFAULT_TCP_PORT;

/// SPIN's JSON-RPC unix socket.
pub const DEFAULT_RPC_SOCKET: &str = "/var/run/spin_rpc.sock";

/// SPIN's default config file.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/spin/spind.conf";

/// What the command line asked for. `None`/`false` = not given.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// `-c FILE` / `--config FILE`: an explicit config file (must exist).
    pub config_file: Option<PathBuf>,
    /// `-C`: print the effective config and exit.
    pub print_config: bool,
    /// `-d`: log level 7.
    pub debug: bool,
    /// `-e PATH`: extsrc unix datagram socket (an input beside the others, as in SPIN).
    pub extsrc_socket: Option<PathBuf>,
    /// `-E ADDR`: extsrc TCP listen address (port [`EXTSRC_TCP_PORT`] unless ADDR has one).
    pub extsrc_tcp: Option<SocketAddr>,
    /// `-f FILE`: log file.
    pub log_file: Option<String>,
    /// `-h` / `--help`.
    pub help: bool,
    /// `-j PATH`: JSON-RPC unix socket.
    pub rpc_socket: PathBuf,
    /// `-l`: local mode (also publish traffic where neither side has a MAC).
    pub local: bool,
    /// `-m HOST`: MQTT host (also the websocket host).
    pub mqtt_host: Option<String>,
    /// `-o`: log to stdout.
    pub log_stdout: bool,
    /// `-P`: passive mode: no kernel inputs and no firewall (SPIN still ran iptables).
    pub passive: bool,
    /// `-p PORT`: MQTT port; the websocket port becomes PORT+1.
    pub mqtt_port: Option<u16>,
    /// `-v` / `--version`.
    pub version: bool,
    /// `--replay FILE`: replay a capture instead of watching the kernel.
    pub replay: Option<PathBuf>,
    /// `--replay-speed X`: 1 = real time, 0 = as fast as possible.
    pub replay_speed: f64,
    /// `--exit-after-replay`: exit when the replay is done (benchmarks).
    pub exit_after_replay: bool,
    /// `--state-dir DIR`.
    pub state_dir: Option<PathBuf>,
    /// `--remove-firewall`: remove our firewall rules and exit.
    pub remove_firewall: bool,
    /// `--http-port PORT`: overrides `spinweb_port`.
    pub http_port: Option<u16>,
    /// `--websocket-port PORT`: overrides `pubsub_websocket_port` (also after `-p`).
    pub websocket_port: Option<u16>,
    /// `--set-password USER`: read a password from stdin, store it in `spinweb_password_file`
    /// and exit.
    pub set_password: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            config_file: None,
            print_config: false,
            debug: false,
            extsrc_socket: None,
            extsrc_tcp: None,
            log_file: None,
            help: false,
            rpc_socket: PathBuf::from(DEFAULT_RPC_SOCKET),
            local: false,
            mqtt_host: None,
            log_stdout: false,
            passive: false,
            mqtt_port: None,
            version: false,
            replay: None,
            replay_speed: 1.0,
            exit_after_replay: false,
            state_dir: None,
            remove_firewall: false,
            http_port: None,
            websocket_port: None,
            set_password: None,
        }
    }
}

/// A command line that cannot be used; the message says why (print it with the help hint).
#[derive(Clone, Debug, PartialEq)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (try 'spind -h')", self.0)
    }
}

impl std::error::Error for CliError {}

impl From<lexopt::Error> for CliError {
    fn from(e: lexopt::Error) -> Self {
        CliError(e.to_string())
    }
}

/// Parses the arguments (without the program name).
pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Options, CliError> {
    use lexopt::prelude::*;
    let mut o = Options::default();
    let mut p = lexopt::Parser::from_args(args);
    while let Some(arg) = p.next()? {
        match arg {
            Short('c') | Long("config") => o.config_file = Some(p.value()?.into()),
            Short('C') => o.print_config = true,
            Short('d') => o.debug = true,
            Short('e') => o.extsrc_socket = Some(p.value()?.into()),
            Short('E') => o.extsrc_tcp = Some(extsrc_addr(&string(p.value()?, "-E")?)?),
            Short('f') => o.log_file = Some(string(p.value()?, "-f")?),
            Short('h') | Long("help") => o.help = true,
            Short('j') => o.rpc_socket = p.value()?.into(),
            Short('l') => o.local = true,
            Short('m') => o.mqtt_host = Some(string(p.value()?, "-m")?),
            Short('o') => o.log_stdout = true,
            Short('P') => o.passive = true,
            // 65535 is excluded because the websocket port is PORT+1.
            Short('p') => o.mqtt_port = Some(port(p.value()?, "-p", 65534)?),
            Short('v') | Long("version") => o.version = true,
            Long("replay") => o.replay = Some(p.value()?.into()),
            Long("replay-speed") => o.replay_speed = speed(p.value()?)?,
            Long("exit-after-replay") => o.exit_after_replay = true,
            Long("state-dir") => o.state_dir = Some(p.value()?.into()),
            Long("remove-firewall") => o.remove_firewall = true,
            Long("http-port") => o.http_port = Some(port(p.value()?, "--http-port", 65535)?),
            Long("websocket-port") => o.websocket_port = Some(port(p.value()?, "--websocket-port", 65535)?),
            Long("set-password") => o.set_password = Some(string(p.value()?, "--set-password")?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    if o.extsrc_socket.is_some() && o.extsrc_tcp.is_some() {
        return Err(CliError("-e and -E cannot be used together".into()));
    }
    if o.exit_after_replay && o.replay.is_none() {
        return Err(CliError("--exit-after-replay needs --replay FILE".into()));
    }
    Ok(o)
}

fn string(v: OsString, flag: &str) -> Result<String, CliError> {
    v.into_string().map_err(|v| CliError(format!("invalid value for {flag}: {v:?} is not UTF-8")))
}

fn port(v: OsString, flag: &str, max: u16) -> Result<u16, CliError> {
    let s = string(v, flag)?;
    match s.parse::<u16>() {
        Ok(p) if (1..=max).contains(&p) => Ok(p),
        _ => Err(CliError(format!("invalid value for {flag}: '{s}' (expected a port 1..={max})"))),
    }
}

fn speed(v: OsString) -> Result<f64, CliError> {
    let s = string(v, "--replay-speed")?;
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(CliError(format!(
            "invalid value for --replay-speed: '{s}' (expected a number >= 0; 0 = as fast as possible)"
        ))),
    }
}

/// `-E` takes an IP address (port 20867), or an address with a port.
fn extsrc_addr(s: &str) -> Result<SocketAddr, CliError> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, EXTSRC_TCP_PORT));
    }
    s.parse().map_err(|_| CliError(format!("invalid value for -E: '{s}' (expected an IP address, or ADDR:PORT)")))
}

impl Options {
    /// Lays the command-line overrides over `cfg` (command line beats config file).
    pub fn apply(&self, cfg: &mut Config) {
        if self.debug {
            cfg.log_loglevel = 7;
        }
        if let Some(f) = &self.log_file {
            cfg.log_file = f.clone();
        }
        if let Some(h) = &self.mqtt_host {
            cfg.pubsub_host = h.clone();
            cfg.pubsub_websocket_host = h.clone();
        }
        if let Some(p) = self.mqtt_port {
            cfg.pubsub_port = p;
            cfg.pubsub_websocket_port = p + 1;
        }
        // After -p, so an explicit websocket port wins over the derived one.
        if let Some(p) = self.websocket_port {
            cfg.pubsub_websocket_port = p;
        }
        if let Some(p) = self.http_port {
            cfg.spinweb_port = p;
        }
        if let Some(d) = &self.state_dir {
            cfg.state_dir = d.clone();
        }
    }
}

/// Where the clock comes from when no kernel source drives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// The conntrack thread ticks after each dump (live router).
    Conntrack,
    /// The replayed capture's own clock.
    Replay,
    /// A wall-clock ticker thread (passive mode with or without extsrc).
    Ticker,
}

/// What a command line starts: which inputs, whether spind enforces in the kernel, and what
/// drives the clock. SPIN 1.0's meaning (reference §5.3, §4.5, §7.2): only `-P` (passive mode)
/// turns the kernel inputs off; `-e`/`-E` add the extsrc input beside whatever else runs;
/// `--replay` (ours) is passive too. Unlike SPIN, passive mode never touches the firewall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// conntrack, NFLOG and the neighbour table of this machine.
    pub kernel: bool,
    /// `table inet spin`: enforced only where the kernel inputs run (a passive spind decides
    /// and reports blocks itself).
    pub enforcer: bool,
    pub extsrc_unix: Option<PathBuf>,
    pub extsrc_tcp: Option<SocketAddr>,
    pub replay: Option<PathBuf>,
    pub clock: Clock,
}

impl Options {
    /// The inputs this command line asks for (see [`Plan`]).
    pub fn plan(&self) -> Plan {
        let kernel = self.replay.is_none() && !self.passive;
        let clock = if kernel {
            Clock::Conntrack
        } else if self.replay.is_some() {
            Clock::Replay
        } else {
            Clock::Ticker
        };
        Plan {
            kernel,
            enforcer: kernel,
            extsrc_unix: self.extsrc_socket.clone(),
            extsrc_tcp: self.extsrc_tcp,
            replay: self.replay.clone(),
            clock,
        }
    }
}

/// `-v` output.
pub fn version_text() -> String {
    let mut v = format!(
        "SPIN daemon version {}\nspind: Rust reimplementation, wire-compatible with SPIN 1.0\n",
        env!("CARGO_PKG_VERSION")
    );
    // A build can stamp the binary (SPIND_BUILD_ID at compile time; cargo rebuilds spind when it
    // changes). `cargo xtask bench image` uses it to make a real spind change.
    if let Some(id) = option_env!("SPIND_BUILD_ID") {
        v.push_str(&format!("build: {id}\n"));
    }
    v
}

/// `-h` output.
pub fn help_text() -> &'static str {
    "\
Usage: spind [options]
SPIN daemon: shows which device on your network talks to which internet service.

Options (as in SPIN 1.0):
  -c FILE     read config from FILE (default /etc/spin/spind.conf)
  -C          print the effective configuration and exit
  -d          debug logging (log level 7)
  -e PATH     also take extsrc messages on unix datagram socket PATH
  -E ADDR     also take extsrc messages on TCP ADDR, port 20867 (not with -e)
  -f FILE     also log to FILE
  -h          show this help and exit
  -j PATH     JSON-RPC unix socket (default /var/run/spin_rpc.sock)
  -l          local mode: also report traffic where neither side has a MAC address
  -m HOST     MQTT host (also the websocket host)
  -o          log to stdout instead of stderr/syslog
  -P          passive mode: no kernel inputs (conntrack, NFLOG, neighbours) and no
              firewall; with -e/-E, extsrc is the only input
  -p PORT     MQTT port (1-65534); the websocket port becomes PORT+1
  -v          print the version and exit

More options:
  --config FILE          same as -c
  --state-dir DIR        where lists, names.conf and the node store live (default /etc/spin)
  --replay FILE          replay a capture file (passive: no kernel inputs, no firewall)
  --replay-speed X       replay speed factor (default 1; 0 = as fast as possible)
  --exit-after-replay    exit when the replay is done
  --remove-firewall      remove spind's firewall rules and exit
  --http-port PORT       web server port (overrides spinweb_port)
  --websocket-port PORT  MQTT websocket port (overrides pubsub_websocket_port)
  --set-password USER    read USER's new password (one line) from standard input, store
                         it in spinweb_password_file and exit
  --help, --version      same as -h, -v
"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, CliError> {
        parse_args(args.iter().map(OsString::from))
    }

    #[test]
    fn defaults() {
        let o = parse(&[]).unwrap();
        assert_eq!(o, Options::default());
        assert_eq!(o.rpc_socket, PathBuf::from("/var/run/spin_rpc.sock"));
        assert_eq!(o.replay_speed, 1.0);
    }

    #[test]
    fn spin_flags() {
        let o = parse(&[
            "-c",
            "/tmp/s.conf",
            "-C",
            "-d",
            "-e",
            "/tmp/ext.sock",
            "-f",
            "/tmp/log",
            "-h",
            "-j/tmp/rpc.sock",
            "-l",
            "-m",
            "broker",
            "-o",
            "-P",
            "-p",
            "2000",
            "-v",
        ])
        .unwrap();
        assert_eq!(o.config_file, Some("/tmp/s.conf".into()));
        assert!(o.print_config && o.debug && o.help && o.local && o.log_stdout && o.passive);
        assert!(o.version);
        assert_eq!(o.extsrc_socket, Some("/tmp/ext.sock".into()));
        assert_eq!(o.log_file.as_deref(), Some("/tmp/log"));
        assert_eq!(o.rpc_socket, PathBuf::from("/tmp/rpc.sock"));
        assert_eq!(o.mqtt_host.as_deref(), Some("broker"));
        assert_eq!(o.mqtt_port, Some(2000));
        // Flags can be combined as with getopt.
        let o = parse(&["-dlP"]).unwrap();
        assert!(o.debug && o.local && o.passive);
    }

    #[test]
    fn long_options() {
        let o = parse(&[
            "--config=/c",
            "--replay",
            "x.pcap",
            "--replay-speed",
            "0",
            "--exit-after-replay",
            "--state-dir",
            "/tmp/st",
            "--remove-firewall",
            "--http-port",
            "8080",
            "--websocket-port",
            "9001",
            "--help",
            "--version",
        ])
        .unwrap();
        assert_eq!(o.config_file, Some("/c".into()));
        assert_eq!(o.replay, Some("x.pcap".into()));
        assert_eq!(o.replay_speed, 0.0);
        assert!(o.exit_after_replay && o.remove_firewall && o.help && o.version);
        assert_eq!(o.state_dir, Some("/tmp/st".into()));
        assert_eq!((o.http_port, o.websocket_port), (Some(8080), Some(9001)));
        assert_eq!(parse(&["--replay", "f", "--replay-speed", "2.5"]).unwrap().replay_speed, 2.5);
    }

    #[test]
    fn extsrc_tcp() {
        let o = parse(&["-E", "127.0.0.1"]).unwrap();
        assert_eq!(o.extsrc_tcp, Some("127.0.0.1:20867".parse().unwrap()));
        assert_eq!(parse(&["-E", "::1"]).unwrap().extsrc_tcp, Some("[::1]:20867".parse().unwrap()));
        assert_eq!(parse(&["-E", "0.0.0.0:3000"]).unwrap().extsrc_tcp, Some("0.0.0.0:3000".parse().unwrap()));
        assert!(parse(&["-E", "nohost"]).unwrap_err().0.contains("-E"));
        let e = parse(&["-e", "/s", "-E", "127.0.0.1"]).unwrap_err();
        assert_eq!(e.0, "-e and -E cannot be used together");
    }

    #[test]
    fn errors() {
        let msg = |args: &[&str]| parse(args).unwrap_err().0;
        assert!(msg(&["-x"]).contains("-x"), "{}", msg(&["-x"]));
        assert!(msg(&["--frob"]).contains("--frob"));
        assert!(msg(&["-c"]).contains("-c"), "{}", msg(&["-c"]));
        assert!(msg(&["stray"]).contains("stray"));
        assert_eq!(msg(&["-p", "abc"]), "invalid value for -p: 'abc' (expected a port 1..=65534)");
        assert!(msg(&["-p", "65535"]).contains("1..=65534"));
        assert!(msg(&["-p", "0"]).contains("1..=65534"));
        assert!(msg(&["--http-port", "70000"]).contains("--http-port"));
        assert!(msg(&["--replay-speed", "-1"]).contains(">= 0"));
        assert!(msg(&["--replay-speed", "NaN"]).contains(">= 0"));
        assert!(msg(&["--exit-after-replay"]).contains("--replay"));
        assert!(CliError("x".into()).to_string().contains("spind -h"));
    }

    #[test]
    fn apply_overrides() {
        let mut cfg = Config::default();
        parse(&[]).unwrap().apply(&mut cfg);
        assert_eq!(cfg, Config::default());

        let o =
            parse(&["-d", "-f", "/tmp/l", "-m", "mq", "-p", "2883", "--http-port", "8080", "--state-dir", "/tmp/s"])
                .unwrap();
        o.apply(&mut cfg);
        assert_eq!(cfg.log_loglevel, 7);
        assert_eq!(cfg.log_file, "/tmp/l");
        assert_eq!((cfg.pubsub_host.as_str(), cfg.pubsub_websocket_host.as_str()), ("mq", "mq"));
        assert_eq!((cfg.pubsub_port, cfg.pubsub_websocket_port), (2883, 2884));
        assert_eq!(cfg.spinweb_port, 8080);
        assert_eq!(cfg.state_dir, PathBuf::from("/tmp/s"));

        parse(&["-p", "2883", "--websocket-port", "9001"]).unwrap().apply(&mut cfg);
        assert_eq!((cfg.pubsub_port, cfg.pubsub_websocket_port), (2883, 9001));
    }

    /// Every flag combination of the reference that decides the inputs (§5.3 flags, §4.5 passive
    /// mode, §7.2 the extsrc acceptance command line), and the flags that must not change them.
    #[test]
    fn the_command_line_starts_the_inputs_spin_1_0_starts() {
        let plan = |args: &[&str]| parse(args).unwrap().plan();
        let sock = || Some(PathBuf::from("/tmp/x.sock"));
        let tcp = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        let live = Plan {
            kernel: true,
            enforcer: true,
            extsrc_unix: None,
            extsrc_tcp: None,
            replay: None,
            clock: Clock::Conntrack,
        };
        let passive = Plan { kernel: false, enforcer: false, clock: Clock::Ticker, ..live.clone() };
        let cases: Vec<(&[&str], Plan)> = vec![
            (&[], live.clone()),
            // SPIN on a router: -e adds the extsrc input beside conntrack, NFLOG and the firewall.
            (
                &["-c", "/etc/spin/spind.conf", "-j", "/tmp/r.sock", "-e", "/tmp/x.sock", "-o"],
                Plan { extsrc_unix: sock(), ..live.clone() },
            ),
            (&["-e", "/tmp/x.sock"], Plan { extsrc_unix: sock(), ..live.clone() }),
            (&["-E", "127.0.0.1"], Plan { extsrc_tcp: tcp("127.0.0.1:20867"), ..live.clone() }),
            (&["-E", "0.0.0.0:3000", "-l"], Plan { extsrc_tcp: tcp("0.0.0.0:3000"), ..live.clone() }),
            // Only -P turns the kernel inputs (and, unlike SPIN, the firewall) off.
            (&["-P"], passive.clone()),
            (&["-dlP"], passive.clone()),
            (&["-oP", "-e", "/tmp/x.sock", "-j", "/tmp/r.sock"], Plan { extsrc_unix: sock(), ..passive.clone() }),
            (&["-P", "-E", "::1"], Plan { extsrc_tcp: tcp("[::1]:20867"), ..passive.clone() }),
            // --replay is passive, and the capture drives the clock.
            (&["--replay", "f.pcap"], Plan { replay: Some("f.pcap".into()), clock: Clock::Replay, ..passive.clone() }),
            (
                &["--replay", "f.pcap", "-P"],
                Plan { replay: Some("f.pcap".into()), clock: Clock::Replay, ..passive.clone() },
            ),
            (
                &["--replay", "f.pcap", "-e", "/tmp/x.sock"],
                Plan { replay: Some("f.pcap".into()), extsrc_unix: sock(), clock: Clock::Replay, ..passive.clone() },
            ),
            // Flags that say nothing about the inputs.
            (&["-l", "-d", "-m", "broker", "-p", "2000", "-f", "/tmp/log", "-j", "/tmp/r.sock"], live.clone()),
        ];
        for (args, want) in cases {
            assert_eq!(plan(args), want, "spind {}", args.join(" "));
        }
    }

    #[test]
    fn texts() {
        let v = version_text();
        assert!(v.starts_with(&format!("SPIN daemon version {}\n", env!("CARGO_PKG_VERSION"))));
        assert_eq!(v.lines().count(), 2 + usize::from(option_env!("SPIND_BUILD_ID").is_some()));
        for flag in ["-c FILE", "-C ", "-E ADDR", "-p PORT", "--replay-speed", "--state-dir"] {
            assert!(help_text().contains(flag), "{flag}");
        }
        // The help says what SPIN's flags mean: -e/-E add an input, -P takes the kernel away.
        assert!(help_text().contains("-e PATH     also take extsrc messages"), "{}", help_text());
        assert!(help_text().contains("-P          passive mode: no kernel inputs"), "{}", help_text());
    }
}
