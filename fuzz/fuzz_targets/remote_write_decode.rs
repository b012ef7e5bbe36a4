//! Fuzzes the remote_write 1.0 decoder (snappy block + protobuf + validation) with arbitrary
//! request bodies: it must never panic, and whatever it accepts must be well-formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_metrics::remote_write::decode_write_request;

/// A fixed "now" so that runs are reproducible.
const NOW_MS: i64 = 1_700_000_000_000;
const MAX_FUTURE_MS: i64 = 10 * 60 * 1000;

fuzz_target!(|body: &[u8]| {
    if let Ok(series) = decode_write_request(body, NOW_MS, MAX_FUTURE_MS) {
        for s in &series {
            assert!(
                s.labels.metric_name().is_some(),
                "accepted a series without a name"
            );
            assert!(
                s.labels
                    .iter()
                    .zip(s.labels.iter().skip(1))
                    .all(|(a, b)| a.name < b.name),
                "accepted unsorted or duplicate labels: {}",
                s.labels
            );
            assert!(
                s.samples.iter().all(|x| x.t <= NOW_MS + MAX_FUTURE_MS),
                "accepted a sample too far in the future"
            );
        }
    }
});
