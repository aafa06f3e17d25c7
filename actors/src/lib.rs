//! Domain types and the long-lived actors of the supernode.
//!
//! Nothing in this crate speaks HTTP: the binary crate parses wire requests,
//! sends the typed messages defined next to each actor, and renders replies.
//! Each actor owns its state; they talk only through messages.

pub mod cdn;
pub mod events;
pub mod gc;
pub mod ids;
pub mod metrics;
pub mod peer_registry;
pub mod piece;
pub mod preheat;
pub mod scheduler;
pub mod task_manager;

pub use ids::{PeerId, TaskId};
pub use peer_registry::PeerRegistry;
