//! A tiny `log` backend: `spind[<LEVEL>] <message>` lines to stderr (or stdout with `-o`),
//! optionally appended to a file (`log_file`/`-f`) and sent to syslog (`log_usesyslog`).
//!
//! The threshold is a syslog level as in SPIN's config (`log_loglevel`, 7 = debug).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};
use nix::syslog::{Facility, LogFlags, Severity};

/// Syslog threshold (0..=7) → `log` filter: 7 debug, 6 info, 5 and 4 warn, 3 and below error.
pub fn level_filter(syslog_level: u8) -> LevelFilter {
    match syslog_level {
        7.. => LevelFilter::Debug,
        6 => LevelFilter::Info,
        4 | 5 => LevelFilter::Warn,
        _ => LevelFilter::Error,
    }
}

fn syslog_priority(level: Level) -> Severity {
    match level {
        Level::Error => Severity::LOG_ERR,
        Level::Warn => Severity::LOG_WARNING,
        Level::Info => Severity::LOG_INFO,
        Level::Debug | Level::Trace => Severity::LOG_DEBUG,
    }
}

struct Logger {
    filter: LevelFilter,
    to_stdout: bool,
    file: Option<Mutex<File>>,
    syslog: bool,
}

impl Logger {
    fn new(level: u8, to_stdout: bool, file: Option<&Path>, syslog: bool) -> io::Result<Logger> {
        let file = match file {
            Some(p) => Some(Mutex::new(OpenOptions::new().create(true).append(true).open(p)?)),
            None => None,
        };
        if syslog && !to_stdout {
            // The ident must outlive every syslog() call: nix takes only a static C string.
            nix::syslog::openlog(Some(c"spind"), LogFlags::LOG_PID, Facility::LOG_DAEMON)?;
        }
        Ok(Logger { filter: level_filter(level), to_stdout, file, syslog: syslog && !to_stdout })
    }
}

fn format_line(record: &Record) -> String {
    format!("spind[{}] {}\n", record.level(), record.args())
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        // Libraries (the MQTT broker and client) chat at info level; only show their warnings
        // unless we are debugging.
        let ours = m.target().starts_with("spind");
        m.level() <= self.filter && (ours || m.level() <= Level::Warn || self.filter >= Level::Debug)
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format_line(record);
        // Logging must never fail the daemon: write errors are ignored.
        if self.to_stdout {
            let _ = io::stdout().lock().write_all(line.as_bytes());
        } else {
            let _ = io::stderr().lock().write_all(line.as_bytes());
        }
        if let Some(f) = &self.file {
            if let Ok(mut f) = f.lock() {
                let _ = f.write_all(line.as_bytes());
            }
        }
        if self.syslog {
            // Interior NULs would make the message no C string; replace them.
            let msg = record.args().to_string().replace('\0', " ");
            // nix passes the message as the argument of "%s", never as the format.
            let _ = nix::syslog::syslog(syslog_priority(record.level()), &msg);
        }
    }

    fn flush(&self) {
        let _ = io::stdout().flush();
        if let Some(f) = &self.file {
            if let Ok(mut f) = f.lock() {
                let _ = f.flush();
            }
        }
    }
}

/// Installs the logger. `level` is a syslog level (0..=7). Fails if the log file cannot be
/// opened or a logger is already installed.
pub fn init(level: u8, to_stdout: bool, file: Option<&Path>, syslog: bool) -> io::Result<()> {
    let logger = Logger::new(level, to_stdout, file, syslog)?;
    let filter = logger.filter;
    log::set_logger(Box::leak(Box::new(logger)))
        .map_err(|e| io::Error::new(io::ErrorKind::AlreadyExists, e.to_string()))?;
    log::set_max_level(filter);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(level_filter(7), LevelFilter::Debug);
        assert_eq!(level_filter(6), LevelFilter::Info);
        assert_eq!(level_filter(5), LevelFilter::Warn);
        assert_eq!(level_filter(4), LevelFilter::Warn);
        assert_eq!(level_filter(3), LevelFilter::Error);
        assert_eq!(level_filter(0), LevelFilter::Error);
        assert_eq!(syslog_priority(Level::Warn) as libc::c_int, libc::LOG_WARNING);
    }

    fn record<'a>(level: Level, target: &'a str, args: std::fmt::Arguments<'a>) -> Record<'a> {
        Record::builder().level(level).target(target).args(args).build()
    }

    #[test]
    fn writes_lines_to_file_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spind.log");
        std::fs::write(&path, "earlier\n").unwrap();
        let l = Logger::new(6, true, Some(&path), false).unwrap();
        l.log(&record(Level::Info, "spind::core", format_args!("hello {}", 1)));
        l.log(&record(Level::Debug, "spind::core", format_args!("hidden")));
        l.log(&record(Level::Info, "rumqttd::server", format_args!("chatty")));
        l.log(&record(Level::Warn, "rumqttd::server", format_args!("broker warning")));
        l.flush();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "earlier\nspind[INFO] hello 1\nspind[WARN] broker warning\n"
        );

        let debug = Logger::new(7, true, None, false).unwrap();
        assert!(debug.enabled(record(Level::Info, "rumqttd", format_args!("")).metadata()));
        assert!(debug.enabled(record(Level::Debug, "spind", format_args!("")).metadata()));
        let quiet = Logger::new(3, true, None, false).unwrap();
        assert!(!quiet.enabled(record(Level::Warn, "spind", format_args!("")).metadata()));
    }

    #[test]
    fn unopenable_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Logger::new(6, false, Some(&dir.path().join("no/such/dir/log")), false).is_err());
    }
}
