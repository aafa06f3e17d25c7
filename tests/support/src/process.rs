//! A child process whose output goes to a log file, and waiting for a line in that log: how
//! the fixtures learn the ports a child bound itself instead of picking "free" ones up front.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A child process with stdout and stderr in a log file of its own; killed when dropped.
pub(crate) struct LoggedChild {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoggedChild {
    /// Starts `cmd` (stdin closed, stdout and stderr to the log) without waiting for anything.
    pub(crate) fn spawn(cmd: Command) -> LoggedChild {
        let program = cmd.get_program().to_owned();
        LoggedChild::try_spawn(cmd).unwrap_or_else(|e| panic!("spawning {program:?}: {e}"))
    }

    /// [`LoggedChild::spawn`], with the error when the program cannot be run.
    pub(crate) fn try_spawn(mut cmd: Command) -> std::io::Result<LoggedChild> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("output.log");
        let file = std::fs::File::create(&log)?;
        cmd.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file);
        let child = cmd.spawn()?;
        Ok(LoggedChild { child, log, _dir: dir })
    }

    /// Everything the child wrote so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (blocking, polling the log every 20 ms) for the first line `parse` accepts;
    /// panics with the log if the child exits first or nothing comes within `within`.
    pub(crate) fn wait_for_line<T>(&mut self, within: Duration, what: &str, parse: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            // only whole lines: a line still being written could hold a cut-off port number
            let complete = &log[..log.rfind('\n').map_or(0, |end| end + 1)];
            if let Some(found) = complete.lines().map(strip_ansi).find_map(|l| parse(&l)) {
                return found;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("{what}: the process exited with {status} first; its output:\n{log}");
            }
            assert!(Instant::now() < deadline, "{what}: nothing within {within:?}; the output:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Like [`LoggedChild::wait_for_line`], but `None` when the child exits first.
    pub(crate) fn wait_for_line_or_exit<T>(
        &mut self,
        within: Duration,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if let Some(found) = log.lines().map(strip_ansi).find_map(|l| parse(&l)) {
                return Some(found);
            }
            if self.child.try_wait().ok().flatten().is_some() {
                return None;
            }
            assert!(Instant::now() < deadline, "nothing within {within:?}; the output:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (blocking) for the child to exit on its own; `None` if it still runs after `within`.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, then reap: the exit status.
    pub(crate) fn kill(&mut self) -> ExitStatus {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait")
    }
}

impl Drop for LoggedChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `line` without ANSI escape sequences (the text log format colours its fields).
pub(crate) fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC '[' parameters… final byte in '@'..='~'
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of `key=value` in a log line (up to the next space).
pub(crate) fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

/// (VmHWM, VmRSS) in KiB of process `pid`, from /proc/<pid>/status (zeros once it is gone).
pub fn proc_rss(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}
