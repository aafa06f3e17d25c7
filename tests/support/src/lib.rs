//! Fixtures shared by the supernode's integration tests (`tests/`) and benchmarks
//! (`benches/`), kept once so that every test talks to a server, an origin or a registry
//! the same way:
//!
//! * the server: in-process on ephemeral ports with a temporary home ([`start`],
//!   [`TestServer`]), or the built binary as a child process ([`ChildServer`]) that reports
//!   the ports it bound;
//! * the control API as dfget and operators use it ([`get_json`], [`register`],
//!   [`wait_success`], [`metrics`], …) and waiting on conditions instead of sleeping
//!   ([`eventually`]);
//! * sources: the in-process [`origin`] and a real Docker [`registry`];
//! * simulated dfget peers ([`swarm`]), a file larger than the disk through them
//!   ([`large_file`]), and the IDs the protocol derives ([`protocol`]);
//! * cluster mode: a real [`redis`] and several supernode processes on it ([`cluster`]);
//! * a small filesystem of a test's own that really fills up ([`tmpfs`]);
//! * a [`testbed`] of hosts in network namespaces with shaped links, for P2P where the network
//!   is the limit.
//!
//! The server's Rust API (and its manual clock) is used in `server.rs` only, the rest of the
//! actors crate in [`protocol`] only: when either changes, the fixtures follow it in one place
//! and the tests stay as they are.

mod child;
pub mod cluster;
mod dfget;
mod http;
mod loopback;
mod metrics;
mod process;
mod server;
mod wait;

pub mod large_file;
pub mod origin;
pub mod protocol;
pub mod redis;
pub mod registry;
pub mod swarm;
pub mod testbed;
pub mod tmpfs;

pub use child::{absent_default_config, supernode_command, ChildServer};
pub use dfget::{
    cache_dir, data_path, dfget_body, download, first_poll, first_poll_past_hold, post_registration, register,
    task_info, wait_done, wait_success,
};
pub use http::{call, client, delete, get, get_json, json, post_json, Control};
pub use loopback::ClosedPort;
pub use metrics::{metrics, Metrics, Sample};
pub use process::proc_rss;
pub use server::{
    config_with, control_routes, settings_from_args, start, start_from_args_on_manual_clock, start_on_manual_clock,
    start_with, Config, GcReport, ManualClock, RunGc, TestServer,
};
pub use wait::{eventually, poll_until};
