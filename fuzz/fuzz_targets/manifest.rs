//! Registry manifests and `WWW-Authenticate` challenges read during image preheat.
#![no_main]
use libfuzzer_sys::fuzz_target;
use supernode_actors::preheat::image::{parse_challenge, parse_manifest, pick_platform, Manifest};

fuzz_target!(|data: &[u8]| {
    if let Ok(Manifest::Index(entries)) = parse_manifest(data) {
        let _ = pick_platform(&entries, "linux/amd64");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_challenge(text);
    }
});
