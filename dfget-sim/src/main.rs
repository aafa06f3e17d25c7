//! `dfget-sim`: one dfget 1.0.6-compatible download through a supernode, report printed as JSON.
//!
//! ```text
//! dfget-sim --node 127.0.0.1:8002[,127.0.0.1:8012=2...] --url http://127.0.0.1:8080/f.bin --output /tmp/f.bin \
//!           [--ip 127.0.0.1] [--port 0] [--md5 M] [--identifier I] [--header 'K: V']... \
//!           [--callsystem X] [--timeout SECS] [--alivetime SECS] [--corrupt-uploads]
//! ```
//!
//! Exit status: 0 success, 80 download failed (dfget's 1104), 2 bad command line.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use dfget_sim::{Peer, PeerConfig, SimError};

#[derive(Parser, Debug)]
#[command(name = "dfget-sim", version, about = "A dfget 1.0.6-compatible peer (loopback only)")]
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
    /// This peer's IP (loopback).
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
    #[arg(long, default_value_t = 0.0)]
    alivetime: f64,
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
    for node in peer.stats().registrations {
        eprintln!("dfget-sim: registered with {node}");
    }
    if let Some(alive) = secs(args.alivetime) {
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
        o.insert("uploads_served".into(), peer.uploads_served().into());
    }
    Ok(v)
}

fn main() {
    let args = Args::parse();
    let out = actix_rt::System::new().block_on(run(args));
    match out {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string()));
        }
        Err(e) => {
            println!("{}", serde_json::json!({"success": false, "error": e.to_string()}));
            eprintln!("dfget-sim: download FAIL: {e}");
            std::process::exit(80);
        }
    }
}
