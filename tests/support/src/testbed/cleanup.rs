//! What a testbed made, and taking it down: when the testbed is dropped (a panic included), when
//! the process gets SIGINT, SIGTERM or SIGHUP, and, for a run that died without either (SIGKILL),
//! at the start of the next run.
//!
//! Every namespace is named `sntb-<pid>-<serial>-<host>`, so a leftover is one whose pid no
//! longer runs. A namespace's veths go with it (every veth of a testbed has one end in the
//! switch namespace and the other in a host's), and so the host's own interfaces are never
//! touched. A named namespace lives on, unnamed, while a process is inside, so the processes in
//! it are killed first.

use std::io::Read;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};

use super::namespace_exec::run_tool;

/// The first part of every namespace name a testbed makes.
pub(crate) const NAME_PREFIX: &str = "sntb-";

/// A fresh name stem for one testbed of this process: `sntb-<pid>-<serial>`.
pub(crate) fn new_stem() -> String {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    format!("{NAME_PREFIX}{}-{}", std::process::id(), SERIAL.fetch_add(1, Ordering::Relaxed))
}

/// The namespaces of one testbed, in the order they were made.
#[derive(Default)]
pub(crate) struct Inventory {
    namespaces: Mutex<Vec<String>>,
}

/// Testbeds of this process not yet taken down (what a signal takes down).
static LIVE: Mutex<Vec<Arc<Inventory>>> = Mutex::new(Vec::new());

impl Inventory {
    /// An empty inventory, taken down on a signal until [`Inventory::take_down`].
    pub(crate) fn new() -> Arc<Inventory> {
        install_signal_cleanup();
        let inventory = Arc::new(Inventory::default());
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).push(inventory.clone());
        inventory
    }

    /// Records `ns` (call before creating it, so that a half-made one is removed too).
    pub(crate) fn add_namespace(&self, ns: &str) {
        self.namespaces.lock().unwrap_or_else(|e| e.into_inner()).push(ns.to_string());
    }

    /// Kills what runs in the namespaces and deletes them, hosts first and the switch last;
    /// also stops a signal from doing it again.
    pub(crate) fn take_down(self: &Arc<Self>) {
        let names = std::mem::take(&mut *self.namespaces.lock().unwrap_or_else(|e| e.into_inner()));
        for ns in names.iter().rev() {
            delete_namespace(ns);
        }
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).retain(|i| !Arc::ptr_eq(i, self));
    }
}

/// Kills the processes inside `ns` (never this one) and deletes it; what fails is printed, as
/// there is nothing better to do with it while taking down.
fn delete_namespace(ns: &str) {
    if let Ok(pids) = run_tool("ip", &["netns", "pids", ns]) {
        for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            if pid as u32 != std::process::id() {
                // SAFETY: kill has no memory effects.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    if let Err(e) = run_tool("ip", &["netns", "delete", ns]) {
        eprintln!("testbed: taking down {ns}: {e}");
    }
}

/// Deletes the namespaces of testbeds whose process is gone.
pub(crate) fn remove_leftovers() {
    let Ok(list) = run_tool("ip", &["netns", "list"]) else { return };
    for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = ns.strip_prefix(NAME_PREFIX) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("testbed: removing {ns}, left by process {pid}, which is gone");
            delete_namespace(ns);
        }
    }
}

/// The write end of the pipe the signal handler writes the signal number to.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

const CLEANUP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

extern "C" fn on_signal(signal: libc::c_int) {
    let byte = signal as u8;
    // SAFETY: write is async-signal-safe; the buffer is on this stack.
    unsafe { libc::write(SIGNAL_PIPE.load(Ordering::Relaxed), (&byte as *const u8).cast(), 1) };
}

/// Once per process: a handler for the cleanup signals that hands them to a thread, which takes
/// every live testbed down and then dies of the signal as the process would have.
fn install_signal_cleanup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe writes two descriptors into the array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe: {}", std::io::Error::last_os_error());
        SIGNAL_PIPE.store(fds[1], Ordering::Relaxed);
        // SAFETY: the read end is ours alone from here on.
        let mut read_end = unsafe { std::fs::File::from_raw_fd(fds[0]) };
        std::thread::Builder::new()
            .name("testbed-signals".into())
            .spawn(move || {
                let mut byte = [0u8; 1];
                if read_end.read_exact(&mut byte).is_err() {
                    return;
                }
                let signal = libc::c_int::from(byte[0]);
                eprintln!("testbed: signal {signal}, taking the network down");
                let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
                for inventory in live {
                    inventory.take_down();
                }
                // SAFETY: back to the default action, then die of it.
                unsafe {
                    libc::signal(signal, libc::SIG_DFL);
                    libc::raise(signal);
                }
            })
            .expect("the signal thread");
        for signal in CLEANUP_SIGNALS {
            // SAFETY: the handler only writes one byte to a pipe.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                action.sa_flags = libc::SA_RESTART;
                libc::sigaction(signal, &action, std::ptr::null_mut());
            }
        }
    });
}
