//! The supernode in the test's own process, on ephemeral 127.0.0.1 ports with a temporary home.
//!
//! This is the only place that uses the server's Rust API (`supernode::start`, its
//! configuration and settings types, its route table): when that API changes, only this file
//! follows it.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser;
use supernode::config::{Cli, Settings};
use supernode::RunningServer;
use supernode_actors::clock::SharedClock;

pub use supernode::config::Config;
pub use supernode_actors::clock::ManualClock;
pub use supernode_actors::gc::{GcReport, RunGc};

/// A running in-process supernode and the temporary home it keeps its cache in.
pub struct TestServer {
    server: RunningServer,
    home: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with `config` on the existing `home` (e.g. one a stopped server left).
    pub async fn start_in(home: tempfile::TempDir, config: Config) -> TestServer {
        let server = supernode::start(settings(home.path(), config)).await.expect("server starts");
        TestServer { server, home }
    }

    /// [`TestServer::start_in`] on a clock the test moves itself.
    pub async fn start_in_on(home: tempfile::TempDir, config: Config, clock: Arc<ManualClock>) -> TestServer {
        let clock: SharedClock = clock;
        let server = supernode::start_with_clock(settings(home.path(), config), clock).await.expect("server starts");
        TestServer { server, home }
    }

    /// Starts a server with `settings` as they are on the existing `home`, on `clock`.
    async fn start_settings_on(home: tempfile::TempDir, settings: Settings, clock: Arc<ManualClock>) -> TestServer {
        let clock: SharedClock = clock;
        let server = supernode::start_with_clock(settings, clock).await.expect("server starts");
        TestServer { server, home }
    }

    /// Runs one garbage collection now and waits for its report.
    pub async fn run_gc(&self, kind: RunGc) -> GcReport {
        self.server.run_gc(kind).await
    }

    pub fn control(&self) -> SocketAddr {
        self.server.control_addr
    }

    pub fn download(&self) -> SocketAddr {
        self.server.download_addr
    }

    /// The control API over HTTPS, when the config set `[server] tls_port` (any port: the
    /// test server binds it on an ephemeral one).
    pub fn tls(&self) -> Option<SocketAddr> {
        self.server.tls_addr
    }

    /// `http://127.0.0.1:<control port><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.server.control_addr, path)
    }

    pub fn home_path(&self) -> PathBuf {
        self.home.path().to_path_buf()
    }

    /// Stops both listeners gracefully and hands back the home, so a test can start another
    /// server on the same cache.
    pub async fn stop(self) -> tempfile::TempDir {
        self.server.stop(true).await;
        self.home
    }
}

/// Settings for a loopback server with ephemeral ports and the given home dir.
fn settings(home: &Path, mut config: Config) -> Settings {
    config.server.port = 0;
    config.server.download_port = 0;
    config.server.tls_port = config.server.tls_port.map(|_| 0);
    config.server.listen_host = IpAddr::V4(Ipv4Addr::LOCALHOST);
    config.server.advertise_ip = Some(Ipv4Addr::LOCALHOST);
    config.server.home_dir = Some(home.to_path_buf());
    Settings::from_config(config, home.to_path_buf(), Ipv4Addr::LOCALHOST).expect("test settings are valid")
}

/// Settings as the binary resolves them from the command line `args` (flags, a `--config`
/// file, `SUPERNODE_*` variables), but on ephemeral 127.0.0.1 ports, with `home` and without
/// a default configuration file: those flags are appended, and a repeated flag's last value
/// wins.
pub fn settings_from_args(args: &[&str], home: &Path) -> Settings {
    let forced: [OsString; 8] = [
        "--port=0".into(),
        "--download-port=0".into(),
        "--listen-host=127.0.0.1".into(),
        "--advertise-ip=127.0.0.1".into(),
        "--home-dir".into(),
        home.into(),
        "--default-config".into(),
        crate::child::absent_default_config().into(),
    ];
    let argv = std::iter::once(OsString::from("supernode")).chain(args.iter().map(OsString::from)).chain(forced);
    let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("command line {args:?}: {e}"));
    Settings::resolve(&cli).unwrap_or_else(|e| panic!("command line {args:?}: {e}"))
}

/// A server configured by the command line `args` as the binary would be (see
/// [`settings_from_args`]), whose actors read the returned clock.
pub async fn start_from_args_on_manual_clock(args: &[&str]) -> (TestServer, Arc<ManualClock>) {
    let clock = ManualClock::new();
    let home = tempfile::tempdir().expect("temp home");
    let settings = settings_from_args(args, home.path());
    (TestServer::start_settings_on(home, settings, clock.clone()).await, clock)
}

/// A server with `config` and a fresh temporary home.
pub async fn start_with(config: Config) -> TestServer {
    TestServer::start_in(tempfile::tempdir().expect("temp home"), config).await
}

/// A server with `config` whose actors read the returned clock: idle times, GC and preheat
/// cadences, retention and least-recently-used order move only when the test advances it.
pub async fn start_on_manual_clock(config: Config) -> (TestServer, Arc<ManualClock>) {
    let clock = ManualClock::new();
    let home = tempfile::tempdir().expect("temp home");
    (TestServer::start_in_on(home, config, clock.clone()).await, clock)
}

/// A server with the default configuration and a fresh temporary home.
pub async fn start() -> TestServer {
    start_with(Config::default()).await
}

/// (METHOD, path pattern) of every route the control API has, e.g. `("GET", "/api/v1/peers/{id}")`.
pub fn control_routes() -> Vec<(String, String)> {
    supernode::http::route_table()
        .into_iter()
        .map(|(method, path)| (method.as_str().to_ascii_uppercase(), path))
        .collect()
}

/// The default configuration changed by `change`.
pub fn config_with(change: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::default();
    change(&mut c);
    c
}
