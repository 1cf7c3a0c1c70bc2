//! The ring-buffer decoder (`connlife::kernel::event::decode`) and the unfolding of what a
//! record folds (`connlife::kernel::unfold`) on any bytes: an event or a typed error, never a
//! panic and (under ASan) never a read outside the record. Each event a record unfolds into is
//! what the driver records: written to JSON and read back, as `--record` and `connlife report`
//! do, it must come back the same (`sock_use.last_dir` is not recorded, so it is cleared).
#![no_main]

use connlife::kernel::{
    event::{decode, KernelEvent},
    unfold::Unfolder,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = decode(data) else { return };
    let mut unfolded = Vec::new();
    Unfolder::default().record(event, &mut unfolded);
    for mut event in unfolded {
        assert!(event.folded.is_none(), "an unfolded event folds nothing");
        event.sock_use.last_dir = 0;
        let json = serde_json::to_vec(&event).expect("a decoded event serializes");
        let back: KernelEvent = serde_json::from_slice(&json).expect("a recorded event reads back");
        assert_eq!(back, event, "recorded as {}", String::from_utf8_lossy(&json));
    }
});
