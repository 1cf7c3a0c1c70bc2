//! The `--record` reader (`connlife::run::record::RecordReader`) on any bytes: it yields inputs
//! and stops at the first error, never panics. A last line that does not parse is the only one
//! that may be skipped (reported by `truncated_tail`), and never together with an error. Every
//! input read is written again as the recorder would and reads back to the same JSON.
#![no_main]

use connlife::{model::session::Input, run::record::RecordReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut reader = RecordReader::from_reader("<fuzz>", data);
    let mut errors = 0;
    for item in reader.by_ref() {
        match item {
            Ok(input) => {
                let json = serde_json::to_string(&input).expect("an input serializes");
                let back: Input = serde_json::from_str(&json).expect("a recorded input reads back");
                assert_eq!(serde_json::to_string(&back).expect("again"), json);
            }
            Err(_) => errors += 1,
        }
    }
    assert!(errors <= 1, "the reader goes on after an error");
    if let Some(line) = reader.truncated_tail() {
        assert_eq!(errors, 0, "a cut tail and an error at once");
        let lines = data.split(|&b| b == b'\n').count();
        assert!((1..=lines).contains(&line), "cut line {line} of {lines}");
    }
});
