//! Values the protocol derives from a request (task and preheat IDs, the piece size),
//! computed by the server's own code so that tests agree with it by construction. The only
//! place the tests reach into the actors crate.

use supernode_actors::TaskId;

/// The task ID of a download: sha256 over the taskURL, the sign (`md5`, else `identifier`)
/// and the `Range` header, as 64 lowercase hex digits.
pub fn task_id(task_url: &str, md5: &str, identifier: &str, range: Option<&str>) -> String {
    TaskId::compute(task_url, md5, identifier, range).as_str().to_string()
}

/// The task ID a registration of `url` without md5, identifier or Range gets.
pub fn url_task_id(url: &str) -> String {
    task_id(url, "", "", None)
}

/// Whether `id` has the shape of a task ID (64 lowercase hex digits).
pub fn is_task_id(id: &str) -> bool {
    TaskId::parse(id).is_some()
}

/// The ID of a preheat of `url`: the task ID of the URL with the `filter` keys (`&`-separated)
/// dropped from its query, with `identifier` as the sign and the `Range` header.
pub fn preheat_id(url: &str, filter: &str, identifier: &str, range: Option<&str>) -> String {
    supernode_actors::ids::preheat_id(url, filter, identifier, range).as_str().to_string()
}

/// The piece size the CDN uses for a source of `len` bytes.
pub fn piece_size(len: u64) -> u64 {
    supernode_actors::piece::piece_size_for(len as i64)
}

/// The index among nodes listening on 127.0.0.1 at `control_ports` that owns `task_id` in a
/// cluster of them all: the server's own rendezvous choice.
pub fn cluster_owner(control_ports: &[u16], task_id: &str) -> usize {
    use std::net::Ipv4Addr;
    use supernode_actors::cluster::{owner_of, Member, NodeId};
    let ip = Ipv4Addr::LOCALHOST;
    let members: Vec<Member> = control_ports
        .iter()
        .map(|&port| Member {
            id: NodeId::new(ip, port),
            advertise_ip: ip,
            port,
            download_port: 0,
            super_peer: supernode_actors::PeerId::for_supernode("", ""),
            started_ms: 0,
        })
        .collect();
    let task = TaskId::parse(task_id).expect("a task ID");
    let owner = owner_of(&members, &task).expect("at least one node");
    members.iter().position(|m| m.id == owner.id).expect("the owner is a member")
}
