//! A dfget 1.0.6-compatible peer for tests and benchmarks.
//!
//! The supernode is meant to serve the stock dfget client unchanged, and its P2P behaviour only
//! shows with several clients serving each other. This crate lets a test run many such clients
//! in one process, each with its own uploader on a loopback port, make them misbehave (corrupt
//! uploads, dying or stalling uploaders, slow peers, peers claiming pieces they lack) and read what they saw.
//!
//! [`Peer`] (also exported as [`DfgetSim`]) does on the wire what one run of dfget 1.0.6 does:
//!
//! * an uploader (an actix-web server on `<ip>:<port>`) that serves the pieces this peer holds at
//!   `GET /peer/file/<taskFileName>` exactly like dfget's uploader;
//! * `POST /peer/registry` with dfget's keys, key order and escaping, to the first supernode of
//!   its (weighted, shuffled) node list that accepts;
//! * the `/peer/task` loop: `700/502` first, `701/503` after a success, `701/500` after a failure,
//!   dfget's merging of successes and its 602 back-off;
//! * one piece download per handed-out piece (`Range`, `pieceNum`, `pieceSize`), md5 check of the
//!   wrapped piece, `/peer/piece/error` reports, framing stripped, payload written at
//!   `pieceNum·(pieceSize-5)`, `/peer/piece/suc` (3 attempts);
//! * on 600 the whole-file md5 check, then `POST /task/metrics`;
//! * dfget's migration: when a supernode fails the run (a `/peer/task` code other than
//!   600–603, a failed request), it registers with the next node of the list and goes on there
//!   with the pieces it holds (a piece handed out again is reported, not fetched again).
//!
//! It never downloads from the origin itself (dfget `--notbs`), and it is meant for loopback use:
//! its uploader binds a loopback address and it fetches pieces from loopback sources only, unless
//! its configuration allows a network besides ([`AddressScope`]), as a harness with its own
//! private network does.
//! Everything runs on the caller's actix/tokio runtime (the futures are `!Send`: use them inside
//! `#[actix_web::test]`, `actix_rt::System` or a tokio `LocalSet`).
//!
//! The code, by module: `cli` (the `dfget-sim` command line), `peer` (the public [`Peer`]), `nodes` (the supernode list and its
//! order), `register` (`/peer/registry` and which node it goes to), `control` (the `/peer/task`
//! loop, migration and `/task/metrics`), `piece` (one piece: fetch, check, write, report),
//! `uploader`, `sink` (the streaming output), `client` (how control requests are sent), `config`,
//! `scope` (the addresses it may use), `stats`, `error`, and `wire` (protocol constants and Go's
//! JSON and number formats).

pub mod cli;
mod client;
mod config;
mod control;
mod error;
mod nodes;
mod peer;
mod piece;
mod register;
mod scope;
mod sink;
mod stats;
mod uploader;
mod wire;

#[cfg(test)]
mod fake_node;
#[cfg(test)]
mod migration_tests;

pub use config::PeerConfig;
pub use control::FinishData;
pub use error::SimError;
pub use peer::{uploader_addr, DfgetSim, Peer, Report};
pub use register::Registration;
pub use scope::{AddressScope, Ipv4Network};
pub use sink::SinkGroup;
pub use stats::{FetchedPiece, StatsSnapshot, Wait};
pub use wire::{
    md5_file, md5_hex, piece_count, DEFAULT_MIN_RATE, DFGET_VERSION, PEER_DOWN_OK, PEER_PATH_PREFIX, PIECE_META,
    PIECE_TAIL, SUPER_CID_PREFIX,
};
