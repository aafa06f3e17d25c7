//! Running things inside a host's network namespace: the `ip` and `tc` tools, child processes
//! (`ip netns exec`) and threads of this process (`setns`).
//!
//! Child processes get SIGKILL when the thread that started them ends (`PR_SET_PDEATHSIG`,
//! which survives `ip netns exec`'s exec), so a harness that dies in any way takes its hosts'
//! processes with it. Start them from a thread that lives as long as the testbed: a bench's
//! main thread or the test's own thread.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::thread::JoinHandle;

/// Where `ip netns` keeps its named namespaces.
const NETNS_DIR: &str = "/run/netns";

/// Runs `program args…` to its end; its stdout, or why it failed (with its stderr).
pub(crate) fn run_tool<S: AsRef<OsStr>>(program: &str, args: &[S]) -> Result<String, String> {
    let shown = || {
        let words: Vec<String> = args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect();
        format!("{program} {}", words.join(" "))
    };
    let out = Command::new(program).args(args).output().map_err(|e| format!("{}: {e}", shown()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{}: {}: {}", shown(), out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// `ip args…`, which must succeed (a failure once the network is up is a real one).
pub(crate) fn ip(args: &[&str]) -> String {
    run_tool("ip", args).unwrap_or_else(|e| panic!("{e}"))
}

/// `program` run inside namespace `ns`, killed when the calling thread ends.
pub(crate) fn command_in(ns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    // SAFETY: prctl is async-signal-safe and touches nothing of the parent's state.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Runs `f` on a new thread that has joined namespace `ns` first: sockets it creates belong to
/// that namespace for their whole life, whichever thread uses them later.
pub(crate) fn thread_in<T: Send + 'static>(
    ns: &str,
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let path = format!("{NETNS_DIR}/{ns}");
    let handle = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            use std::os::fd::AsRawFd;
            // SAFETY: setns on a file we hold open; it changes this thread's namespace only.
            let joined = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(joined, 0, "setns {path}: {}", std::io::Error::last_os_error());
            drop(handle);
            f()
        })
        .expect("a thread")
}
