//! Domain types and the long-lived actors of the supernode.
//!
//! Nothing in this crate speaks HTTP: the binary crate parses wire requests, sends the
//! typed messages defined next to each actor, and renders replies. Each actor owns its
//! state; they talk only through messages, and workflows that span actors (a
//! registration, a piece error, the seed network view) run inside the actor that owns
//! the first step.
//!
//! The vocabulary every actor speaks lives in leaf modules that import nothing else of
//! the crate: [`ids`], [`piece`], [`status`], [`failure`], [`spec`], [`clock`], [`rate`]; [`events`]
//! holds the one-way messages between actors and imports only those. The actors:
//! [`peer_registry`], [`cdn`], [`scheduler`], [`task_manager`], [`preheat`], [`gc`], and
//! [`reports`] for dfget's end-of-run reports.

pub mod cdn;
pub mod clock;
pub mod cluster;
pub mod events;
pub mod failure;
pub mod gc;
pub mod ids;
pub mod metrics;
pub mod peer_registry;
pub mod piece;
pub mod preheat;
pub mod rate;
pub mod reports;
pub mod scheduler;
pub mod spec;
pub mod status;
pub mod task_manager;
pub mod throttle;

pub use ids::{ClientId, PeerId, PreheatId, TaskId};
pub use peer_registry::PeerRegistry;
