//! A CPU profile of the server process over one phase, by `perf record`, read back as the
//! share of samples per thread (which names the stage: `cdn` reads sources, `cdn-writer-…`
//! frames, hashes pieces and writes, `cdn-md5` hashes the whole source, `download-port` serves
//! pieces, `actix-rt|system` is the control API and the actors) and per kind of work (md5,
//! copies, the kernel's network and file paths).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// `perf record` of the whole machine until [`Recording::stop`], read back for one process:
/// attaching to the process would miss the threads it starts meanwhile (a CDN run's writer
/// and hasher).
pub struct Recording {
    child: Child,
    file: PathBuf,
    pid: u32,
}

/// Sample shares (0–1) of a phase.
#[derive(Default)]
pub struct Profile {
    pub samples: u64,
    pub by_stage: BTreeMap<String, f64>,
    pub by_kind: BTreeMap<&'static str, f64>,
    /// `stage: symbol` → share.
    pub by_symbol: BTreeMap<String, f64>,
}

impl Recording {
    /// Starts sampling every CPU at 999 Hz, for `pid`'s profile; `Err` says why perf cannot run here.
    pub fn start(pid: u32, file: &Path) -> Result<Recording, String> {
        let child = Command::new("perf")
            .args(["record", "-a", "-q", "-F", "999", "-o"])
            .arg(file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("perf: {e}"))?;
        Ok(Recording { child, file: file.to_path_buf(), pid })
    }

    /// Stops sampling (SIGINT, as perf expects) and reads the profile back.
    pub fn stop(self) -> Result<Profile, String> {
        // SAFETY: kill(2) on the child's own pid, which it keeps until it is reaped below.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let out = self.child.wait_with_output().map_err(|e| format!("perf record: {e}"))?;
        if !self.file.exists() {
            return Err(format!("perf record wrote nothing: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        let pid = self.pid.to_string();
        let report = Command::new("perf")
            .args(["report", "--stdio", "--no-children", "-q", "-n", "--percentage", "relative", "--pid", &pid])
            .args(["--sort", "comm,dso,sym", "-i"])
            .arg(&self.file)
            .output()
            .map_err(|e| format!("perf report: {e}"))?;
        let _ = std::fs::remove_file(&self.file);
        let profile = parse(&String::from_utf8_lossy(&report.stdout));
        if profile.samples == 0 {
            return Err(format!("perf report found no samples: {}", String::from_utf8_lossy(&report.stderr).trim()));
        }
        Ok(profile)
    }
}

/// Lines of `perf report -n --sort comm,dso,sym -q`: `  12.34%  567  comm  dso  [.] symbol`.
fn parse(report: &str) -> Profile {
    let mut p = Profile::default();
    for line in report.lines() {
        let mut fields = line.split_whitespace();
        let Some(share) = fields.next().and_then(|f| f.strip_suffix('%')?.parse::<f64>().ok()) else { continue };
        let Some(samples) = fields.next().and_then(|f| f.parse::<u64>().ok()) else { continue };
        let (Some(comm), Some(dso)) = (fields.next(), fields.next()) else { continue };
        let sym = fields.skip(1).collect::<Vec<&str>>().join(" ");
        let share = share / 100.0;
        p.samples += samples;
        *p.by_stage.entry(stage(comm).to_string()).or_default() += share;
        *p.by_kind.entry(kind(dso, &sym)).or_default() += share;
        *p.by_symbol.entry(format!("{}: {}", stage(comm), short(&sym))).or_default() += share;
    }
    p
}

/// A symbol without its Rust hash and generic arguments, at most 80 characters.
fn short(sym: &str) -> String {
    let sym = sym.split("::h").next().unwrap_or(sym);
    sym.chars().take(80).collect()
}

/// The stage a thread does; writer threads carry their task's ID.
fn stage(comm: &str) -> &str {
    if comm.starts_with("cdn-writer") {
        "cdn-writer"
    } else {
        comm
    }
}

fn kind(dso: &str, sym: &str) -> &'static str {
    let s = sym.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| s.contains(w));
    if has(&["md5"]) {
        "md5"
    } else if has(&["memcpy", "memmove", "copy_user", "rep_movs", "copy_to_", "copy_from_", "copy_page"]) {
        "copies"
    } else if dso == "[kernel.kallsyms]" {
        if has(&["tcp", "skb", "sock", "inet", "ip_", "net_", "napi", "loopback", "dev_", "sendfile", "splice"]) {
            "kernel: network"
        } else if has(&["filemap", "folio", "page", "ext4", "xfs", "btrfs", "iomap", "shmem", "lru", "write_", "read_"])
        {
            "kernel: files and page cache"
        } else {
            "kernel: other"
        }
    } else if dso == "[unknown]" {
        "unknown"
    } else {
        "user: other"
    }
}
