//! [`Cmd`]: xshell's command with our ways of running it, and errors that name the command.

use std::fs::File;
use std::io::Write;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::progress::{self, Progress, ProgressParser};
use crate::{Error, Result};

/// What a command reads on standard input.
#[derive(Debug, Default)]
pub enum Stdin {
    /// Nothing (`/dev/null`): the default, so no command waits for a terminal.
    #[default]
    Null,
    /// These bytes.
    Bytes(Vec<u8>),
    /// This file.
    File(PathBuf),
    /// A pipe the caller writes to ([`Cmd::spawn`] only).
    Piped,
}

/// Where a spawned child's stdout or stderr goes ([`Cmd::spawn`]).
#[derive(Debug)]
pub enum Stream {
    Null,
    Inherit,
    Piped,
    File(File),
}

impl From<Stream> for Stdio {
    fn from(s: Stream) -> Stdio {
        match s {
            Stream::Null => Stdio::null(),
            Stream::Inherit => Stdio::inherit(),
            Stream::Piped => Stdio::piped(),
            Stream::File(f) => Stdio::from(f),
        }
    }
}

/// A command line made by [`crate::cmd!`], not yet run.
#[must_use]
pub struct Cmd<'a> {
    inner: xshell::Cmd<'a>,
    stdin: Stdin,
    echo: bool,
    keep_fds: Vec<RawFd>,
}

impl std::fmt::Display for Cmd<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<'a> Cmd<'a> {
    pub fn new(inner: xshell::Cmd<'a>) -> Cmd<'a> {
        Cmd { inner, stdin: Stdin::Null, echo: true, keep_fds: Vec::new() }
    }

    pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Self {
        self.inner = self.inner.arg(arg);
        self
    }

    pub fn args<I>(mut self, args: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<std::ffi::OsStr>,
    {
        self.inner = self.inner.args(args);
        self
    }

    pub fn env(mut self, key: impl AsRef<std::ffi::OsStr>, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.inner = self.inner.env(key, value);
        self
    }

    /// Sets `key` unless the caller's environment already has it (a user's override wins).
    pub fn env_default(self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        if std::env::var_os(key).is_some() {
            self
        } else {
            self.env(key, value)
        }
    }

    pub fn env_remove(mut self, key: impl AsRef<std::ffi::OsStr>) -> Self {
        self.inner = self.inner.env_remove(key);
        self
    }

    /// Does not echo the command line before [`Cmd::run`].
    pub fn quiet(mut self) -> Self {
        self.echo = false;
        self
    }

    pub fn stdin(mut self, stdin: Stdin) -> Self {
        self.stdin = stdin;
        self
    }

    /// Descriptors the child inherits (they are close-on-exec in the parent): QEMU's tap devices.
    pub fn keep_fds(mut self, fds: &[RawFd]) -> Self {
        self.keep_fds.extend_from_slice(fds);
        self
    }

    /// The program and its arguments, as they would run (for tests of command lines).
    pub fn into_argv(self) -> (String, Vec<String>) {
        let c = Command::from(self.inner);
        let program = c.get_program().to_string_lossy().into_owned();
        (program, c.get_args().map(|a| a.to_string_lossy().into_owned()).collect())
    }

    /// The std command this stands for, with the descriptors to keep; stdin as configured.
    fn command(self) -> Result<(String, Command, Option<Vec<u8>>)> {
        let shown = self.inner.to_string();
        let mut c = Command::from(self.inner);
        let mut bytes = None;
        match self.stdin {
            Stdin::Null => {
                c.stdin(Stdio::null());
            }
            Stdin::Bytes(b) => {
                c.stdin(Stdio::piped());
                bytes = Some(b);
            }
            Stdin::File(p) => {
                let f = File::open(&p).map_err(|source| Error::File { what: "cannot open", path: p, source })?;
                c.stdin(Stdio::from(f));
            }
            Stdin::Piped => {
                c.stdin(Stdio::piped());
            }
        }
        if !self.keep_fds.is_empty() {
            let fds = self.keep_fds;
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec only fcntl runs, which is async-signal-safe.
            unsafe {
                c.pre_exec(move || {
                    for &fd in &fds {
                        if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        Ok((shown, c, bytes))
    }

    /// Starts the command; stdin bytes are written from a thread (a child that fills its
    /// stdout pipe before reading all its input must not deadlock).
    fn start(self, stdout: Stdio, stderr: Stdio) -> Result<(String, Child, Option<std::thread::JoinHandle<()>>)> {
        let (shown, mut c, bytes) = self.command()?;
        c.stdout(stdout).stderr(stderr);
        let mut child = c.spawn().map_err(|e| spawn_error(&shown, &c, e))?;
        let writer = bytes.map(|b| {
            let mut stdin = child.stdin.take().expect("piped stdin");
            std::thread::spawn(move || {
                let _ = stdin.write_all(&b);
            })
        });
        Ok((shown, child, writer))
    }

    /// Runs to completion with stdout and stderr on the terminal (echoing the command line
    /// first); an error unless it exits 0.
    pub fn run(self) -> Result<()> {
        if self.echo {
            eprintln!("$ {self}");
        }
        let (shown, mut child, writer) = self.start(Stdio::inherit(), Stdio::inherit())?;
        let status = child.wait().map_err(|source| Error::Io { cmd: shown.clone(), source })?;
        if let Some(w) = writer {
            let _ = w.join();
        }
        if status.success() {
            Ok(())
        } else {
            Err(Error::Failed { cmd: shown, status, output: String::new() })
        }
    }

    /// Runs to completion and returns stdout (one trailing newline removed); an error (with
    /// stderr) unless it exits 0.
    pub fn read(self) -> Result<String> {
        let shown = self.to_string();
        let out = self.output()?;
        if !out.status.success() {
            let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
            if text.trim().is_empty() {
                text = String::from_utf8_lossy(&out.stdout).into_owned();
            }
            return Err(Error::Failed { cmd: shown, status: out.status, output: text });
        }
        let mut s = String::from_utf8(out.stdout).map_err(|_| Error::NotUtf8 { cmd: shown })?;
        if s.ends_with('\n') {
            s.pop();
        }
        Ok(s)
    }

    /// Runs to completion and returns what it printed and its exit status, whatever that is.
    pub fn output(self) -> Result<Output> {
        let (shown, child, writer) = self.start(Stdio::piped(), Stdio::piped())?;
        let out = child.wait_with_output().map_err(|source| Error::Io { cmd: shown, source })?;
        if let Some(w) = writer {
            let _ = w.join();
        }
        Ok(out)
    }

    /// Runs quietly (output discarded) and tells whether it exited 0: for commands that are
    /// checks (`qemu-img compare`, `sh -n`).
    pub fn succeeds(self) -> Result<bool> {
        let (shown, mut child, writer) = self.start(Stdio::null(), Stdio::null())?;
        let status = child.wait().map_err(|source| Error::Io { cmd: shown, source })?;
        if let Some(w) = writer {
            let _ = w.join();
        }
        Ok(status.success())
    }

    /// Starts a long-running child (QEMU, a server in a namespace, one end of a pipe): the
    /// caller owns it, waits for it or kills it.
    pub fn spawn(self, stdout: Stream, stderr: Stream) -> Result<Child> {
        let (_, child, writer) = self.start(stdout.into(), stderr.into())?;
        drop(writer);
        Ok(child)
    }

    /// Runs to completion with its output appended to `log`, showing `what` with the elapsed
    /// time meanwhile ([`Progress`]). On failure the error names the command, the exit status
    /// and the log, with the log's last lines.
    pub fn run_logged(self, what: &str, log: &Path) -> Result<()> {
        self.logged(what, log, None)
    }

    /// [`Cmd::run_logged`] for a command that reports how far it is on stdout (`qemu-img
    /// convert -p`): `parse` reads one `\r`/`\n`-separated piece as (done, total), and the
    /// progress line becomes a bar. Other output goes to the log.
    pub fn run_progress(self, what: &str, log: &Path, parse: ProgressParser) -> Result<()> {
        self.logged(what, log, Some(parse))
    }

    fn logged(self, what: &str, log: &Path, parse: Option<ProgressParser>) -> Result<()> {
        let file_err = |source| Error::File { what: "cannot open log", path: log.to_path_buf(), source };
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log).map_err(file_err)?;
        let _ = writeln!(f, "\n$ {self}");
        let err = f.try_clone().map_err(file_err)?;
        let progress = Progress::start(what);
        let result = match parse {
            None => self.start(Stdio::from(f), Stdio::from(err)).and_then(|(shown, mut child, w)| {
                let st = child.wait().map_err(|source| Error::Io { cmd: shown.clone(), source });
                if let Some(w) = w {
                    let _ = w.join();
                }
                st.map(|st| (shown, st))
            }),
            Some(parse) => self.start(Stdio::piped(), Stdio::from(err)).and_then(|(shown, mut child, w)| {
                let out = child.stdout.take().expect("piped stdout");
                progress::follow(out, f, parse, &progress.fraction);
                let st = child.wait().map_err(|source| Error::Io { cmd: shown.clone(), source });
                if let Some(w) = w {
                    let _ = w.join();
                }
                st.map(|st| (shown, st))
            }),
        };
        progress.stop();
        let (shown, status) = result?;
        if status.success() {
            return Ok(());
        }
        let tail = std::fs::read_to_string(log)
            .map(|s| {
                let lines: Vec<&str> = s.lines().collect();
                lines[lines.len().saturating_sub(25)..].join("\n    ")
            })
            .unwrap_or_default();
        Err(Error::FailedLogged { cmd: shown, status, log: log.to_path_buf(), tail })
    }
}

fn spawn_error(shown: &str, c: &Command, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::NotFound { cmd: shown.to_string(), program: c.get_program().to_string_lossy().into_owned() }
    } else {
        Error::Io { cmd: shown.to_string(), source: e }
    }
}
