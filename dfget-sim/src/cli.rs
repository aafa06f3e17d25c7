//! The `dfget-sim` command line: one dfget 1.0.6-compatible download through a supernode, the
//! report printed as JSON on stdout. The binary is this module's [`main`]; a harness that runs
//! peers as processes of its own executable calls [`run_command_line`] instead, so that the
//! peer code it runs is always the one it was built with.
//!
//! ```text
//! dfget-sim --node 127.0.0.1:8002[,127.0.0.1:8012=2...] --url http://127.0.0.1:8080/f.bin --output /tmp/f.bin \
//!           [--ip 127.0.0.1] [--port 0] [--md5 M] [--identifier I] [--header 'K: V']... \
//!           [--callsystem X] [--timeout SECS] [--alivetime SECS | --serve-until-stdin-closes] \
//!           [--allow-net 10.77.0.0/24]... [--corrupt-uploads]
//! ```
//!
//! Exit status: 0 success, 80 download failed (dfget's 1104), 2 bad command line. Right after
//! the download, before the uploader's extra lifetime, stderr gets `dfget-sim: download
//! finished` or `dfget-sim: download FAIL: <why>`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use crate::{Ipv4Network, Peer, PeerConfig, SimError};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "dfget-sim", version, about = "A dfget 1.0.6-compatible peer (loopback unless --allow-net)")]
struct Args {
    /// Supernode control addresses HOST[:PORT][=WEIGHT], comma-separated (a node given twice
    /// weighs twice); the run registers with the first of them in a weighted random order that
    /// accepts, and moves on to the next when one fails it.
    #[arg(long, short = 'n', default_value = "127.0.0.1:8002")]
    node: String,
    /// URL to download.
    #[arg(long, short = 'u')]
    url: String,
    /// Output file.
    #[arg(long, short = 'o')]
    output: PathBuf,
    /// This peer's IP (loopback, or inside an --allow-net network).
    #[arg(long, default_value = "127.0.0.1")]
    ip: Ipv4Addr,
    /// Uploader port (0 = a free one in 15000-65000).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Expected md5 of the file.
    #[arg(long, short = 'm')]
    md5: Option<String>,
    /// Task identifier (used when no md5 is given).
    #[arg(long, short = 'i')]
    identifier: Option<String>,
    /// Origin header "Name: value" (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Caller name (metrics label).
    #[arg(long)]
    callsystem: Option<String>,
    /// Download timeout in seconds (default: dfget's fileLength / 64 KiB + 10 s).
    #[arg(long, short = 'e')]
    timeout: Option<f64>,
    /// After the download keep serving pieces until none was requested for this many seconds;
    /// /peer/service/down is sent before the uploader stops.
    #[arg(long, default_value_t = 0.0, conflicts_with = "serve_until_stdin_closes")]
    alivetime: f64,
    /// After the download keep serving pieces until standard input is closed (by the harness
    /// that started this process, or because it died); /peer/service/down is sent before the
    /// uploader stops.
    #[arg(long)]
    serve_until_stdin_closes: bool,
    /// A network besides loopback that this peer may use as its own IP, its supernodes and its
    /// piece sources, e.g. 10.77.0.0/24 (repeatable). Without it everything must be loopback.
    #[arg(long = "allow-net", value_name = "CIDR")]
    allow_net: Vec<Ipv4Network>,
    /// Serve corrupted pieces (fault injection).
    #[arg(long)]
    corrupt_uploads: bool,
}

fn secs(s: f64) -> Option<Duration> {
    (s.is_finite() && s > 0.0).then(|| Duration::from_secs_f64(s))
}

async fn run(args: Args) -> Result<serde_json::Value, SimError> {
    let mut cfg = PeerConfig::with_nodes(args.node.split(','), args.url, args.output);
    cfg.ip = args.ip;
    cfg.scope = args.allow_net.iter().fold(cfg.scope, |scope, net| scope.allow(*net));
    cfg.port = args.port;
    cfg.md5 = args.md5;
    cfg.identifier = args.identifier;
    cfg.headers = args.headers;
    cfg.callsystem = args.callsystem;
    cfg.download_timeout = args.timeout.and_then(secs);
    cfg.corrupt_uploads = args.corrupt_uploads;
    let peer = Peer::new(cfg)?;
    let port = peer.start_uploader()?;
    eprintln!("dfget-sim: cid {} uploader http://{}:{port}{}", peer.cid(), peer.config().ip, peer.path());
    let result = peer.download().await;
    match &result {
        Ok(_) => eprintln!("dfget-sim: download finished"),
        Err(e) => eprintln!("dfget-sim: download FAIL: {e}"),
    }
    for node in peer.stats().registrations {
        eprintln!("dfget-sim: registered with {node}");
    }
    if args.serve_until_stdin_closes {
        wait_for_stdin_eof().await;
    } else if let Some(alive) = secs(args.alivetime) {
        let started = std::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let last = peer.last_upload_ms();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            let idle = if last == 0 { started.elapsed() } else { Duration::from_millis(now.saturating_sub(last)) };
            if idle >= alive && started.elapsed() >= alive {
                break;
            }
        }
    }
    // like dfget's uploader at shutdown: tell the supernode this peer serves no more
    if peer.task_id().is_some() {
        match peer.service_down().await {
            Ok(code) => eprintln!("dfget-sim: /peer/service/down answered code {code}"),
            Err(e) => eprintln!("dfget-sim: /peer/service/down failed: {e}"),
        }
    }
    peer.stop_uploader().await;
    let report = result?;
    let mut v = serde_json::to_value(&report).map_err(|e| SimError::Io(e.to_string()))?;
    if let Some(o) = v.as_object_mut() {
        // what the uploader served until it stopped, not only during the download
        let stats = peer.stats();
        o.insert("uploads_served".into(), stats.uploads_served.into());
        o.insert("upload_bytes".into(), stats.upload_bytes.into());
    }
    Ok(v)
}

/// Reads standard input to its end (or to a read error, which ends it as well).
async fn wait_for_stdin_eof() {
    use tokio::io::AsyncReadExt;
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// Runs the command line `args` (the program name first, as in `std::env::args_os`): prints the
/// report or the failure and returns the exit status.
pub fn run_command_line(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    let args = match Args::try_parse_from(args) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match actix_rt::System::new().block_on(run(args)) {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string()));
            0
        }
        Err(e) => {
            println!("{}", serde_json::json!({"success": false, "error": e.to_string()}));
            80
        }
    }
}

/// The `dfget-sim` binary.
pub fn main() {
    std::process::exit(run_command_line(std::env::args_os()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> i32 {
        run_command_line(
            ["dfget-sim", "--url", "http://127.0.0.1:1/f", "--output", "/nonexistent/f"]
                .iter()
                .chain(args)
                .map(Into::into),
        )
    }

    #[test]
    fn addresses_outside_the_scope_are_refused() {
        assert_eq!(run_args(&["--allow-net", "10.77.0.0/33"]), 2, "a bad network is a bad command line");
        assert_eq!(run_args(&["--ip", "10.77.0.10"]), 80, "a peer IP outside loopback needs --allow-net");
        assert_eq!(run_args(&["--node", "10.77.0.3:8002"]), 80, "so does a supernode outside loopback");
        let args = Args::try_parse_from(["dfget-sim", "-u", "u", "-o", "o", "--allow-net", "10.77.0.0/24"]).unwrap();
        assert_eq!(args.allow_net, vec!["10.77.0.0/24".parse::<Ipv4Network>().unwrap()]);
        assert!(Args::try_parse_from([
            "dfget-sim",
            "-u",
            "u",
            "-o",
            "o",
            "--alivetime",
            "1",
            "--serve-until-stdin-closes"
        ])
        .is_err());
    }
}
