//! The one place where xtask, the image builder (`imagebuild`), the test bed (`testbed`, and
//! through it spind's integration tests) and the QEMU tests (`qemu-tests`) run host commands,
//! and the host tools those commands need.
//!
//! Every external command is one readable line, arguments interpolated safely by xshell:
//!
//! ```no_run
//! use runner::{cmd, Shell};
//! # fn f(root_tar: &str, image: &str, log: &std::path::Path) -> Result<(), runner::Error> {
//! let sh = Shell::new()?;
//! cmd!(sh, "mkfs.ext4 -q -d {root_tar} {image}").run()?;
//! let version = cmd!(sh, "qemu-img --version").read()?;
//! cmd!(sh, "mkfs.ext4 -q -d {root_tar} {image}").run_logged("mkfs.ext4", log)?;
//! # Ok(()) }
//! ```
//!
//! [`Cmd`] wraps xshell's command: plain ([`Cmd::run`], [`Cmd::read`], [`Cmd::output`]), logged
//! to a file with a progress line ([`Cmd::run_logged`], [`Cmd::run_progress`]), or spawned as a
//! long-running child ([`Cmd::spawn`]: QEMU, servers in namespaces, pipes) which xshell cannot
//! hold. Errors name the command and its exit status (and the log); a program that is not
//! installed is named with the Debian package that provides it ([`host::TOOLS`]).
//!
//! Invariant: nothing else in xtask, imagebuild, the test bed (`testbed`), qemu-tests or spind's
//! integration tests uses `std::process::Command` (`xtask/src/tidy.rs` checks it).

mod cmd;
pub mod host;
pub mod progress;

pub use cmd::{Cmd, Stdin, Stream};
pub use xshell::Shell;

#[doc(hidden)]
pub use xshell as __xshell;

use std::path::PathBuf;
use std::process::ExitStatus;

/// `cmd!(sh, "program {arg} {args...}")`: xshell's command line, wrapped in [`Cmd`].
#[macro_export]
macro_rules! cmd {
    ($sh:expr, $cmd:literal) => {
        $crate::Cmd::new($crate::__xshell::cmd!($sh, $cmd))
    };
}

/// Why a command (or a host tool check) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The program is not installed.
    #[error("cannot run `{cmd}`: {program} is not installed{}", host::install_hint(program))]
    NotFound { cmd: String, program: String },
    /// It could not be started or waited for.
    #[error("cannot run `{cmd}`: {source}")]
    Io { cmd: String, source: std::io::Error },
    /// It ran and failed; what it printed on stderr (or stdout) is kept.
    #[error("`{cmd}` failed ({status}){}", output_tail(output))]
    Failed { cmd: String, status: ExitStatus, output: String },
    /// It ran with its output in a log file, and failed.
    #[error("`{cmd}` failed ({status}); log {}, last lines:\n    {tail}", log.display())]
    FailedLogged { cmd: String, status: ExitStatus, log: PathBuf, tail: String },
    /// Its output is not UTF-8.
    #[error("`{cmd}` printed something that is not UTF-8")]
    NotUtf8 { cmd: String },
    /// A file the runner needed (a log, a stdin file) could not be opened.
    #[error("{what} {}: {source}", path.display())]
    File { what: &'static str, path: PathBuf, source: std::io::Error },
    /// Host tools are missing and were not installed.
    #[error("missing host tools: {}\ninstall them (as root, Debian 12) with:\n  {}", missing.join(", "), commands.join("\n  "))]
    Missing { missing: Vec<String>, commands: Vec<String> },
    /// Anything else, said in words (binfmt registration, a still-missing tool after apt).
    #[error("{0}")]
    Other(String),
    #[error(transparent)]
    Shell(#[from] xshell::Error),
}

fn output_tail(output: &str) -> String {
    let t = output.trim();
    if t.is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = t.lines().collect();
    format!(": {}", lines[lines.len().saturating_sub(25)..].join("\n    "))
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The QEMU tests keep their errors as text (the report prints them): `?` turns ours into it.
impl From<Error> for String {
    fn from(e: Error) -> String {
        e.to_string()
    }
}

/// A shell in the current directory, with our error type.
pub fn shell() -> Result<Shell> {
    Ok(Shell::new()?)
}
