//! The configuration parser and validator: any text in, a `Config` or an error out, never a
//! panic (the agent refuses a bad file with exit 2; a crash would skip that message).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = failoverd::config::parse(Path::new("fuzz.yaml"), text);
    }
});
