//! The framed piece format (4-byte header, payload, 0x7F) read back from the cache.
#![no_main]
use libfuzzer_sys::fuzz_target;
use supernode_actors::piece::{piece_header, unwrap_piece, MIB, PIECE_TRAILER};

fuzz_target!(|data: &[u8]| {
    for piece_size in [4 * MIB, 15 * MIB] {
        if let Ok(payload) = unwrap_piece(data, piece_size) {
            let mut again = piece_header(payload.len() as u64, piece_size).to_vec();
            again.extend_from_slice(payload);
            again.push(PIECE_TRAILER);
            assert_eq!(again, data);
        }
    }
});
