//! `/peer/registry` bodies, JSON (case-insensitive keys) and form-encoded.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (form, body) = match data.split_first() {
        Some((flag, rest)) => (flag & 1 == 1, rest),
        None => (false, data),
    };
    let _ = supernode::http::registry::check_registration(body, form);
});
