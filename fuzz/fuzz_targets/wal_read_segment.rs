//! Fuzzes the WAL segment reader with arbitrary file contents: it must never panic, and the
//! records it returns must re-encode to frames the reader decodes to the same records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_metrics::wal::{WalRecord, read_segment};

fuzz_target!(|data: &[u8]| {
    let (records, _end) = read_segment(data);
    for r in &records {
        let bytes = r.encode();
        let again = WalRecord::decode(&bytes).expect("an accepted record re-decodes");
        // Compared as bytes: NaN values (staleness markers) are not equal to themselves.
        assert_eq!(
            again.encode(),
            bytes,
            "record does not survive encode/decode"
        );
    }
});
