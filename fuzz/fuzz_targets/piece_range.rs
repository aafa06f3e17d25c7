//! `start-end` piece ranges from `/peer/task`, `/peer/piece/suc` and the v1 piece API.
#![no_main]
use libfuzzer_sys::fuzz_target;
use supernode_actors::piece::PieceRange;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(range) = text.parse::<PieceRange>() {
            assert!(range.end >= range.start);
            assert!(range.len() >= 1);
            assert_eq!(range.to_string().parse::<PieceRange>().ok(), Some(range));
        }
    }
});
