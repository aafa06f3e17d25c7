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
