//! The ring-buffer decoder (`connlife::kernel::event::decode`) on any bytes: it returns an
//! event or a typed error, never panics and (under ASan) never reads outside the record.
//! A decoded event is also written to JSON and read back, as `--record` and `connlife report`
//! do, and must come back the same (`sock_use.last_dir` is not recorded, so it is cleared).
#![no_main]

use connlife::kernel::event::{decode, KernelEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut event) = decode(data) else { return };
    event.sock_use.last_dir = 0;
    let json = serde_json::to_vec(&event).expect("a decoded event serializes");
    let back: KernelEvent = serde_json::from_slice(&json).expect("a recorded event reads back");
    assert_eq!(back, event, "recorded as {}", String::from_utf8_lossy(&json));
});
