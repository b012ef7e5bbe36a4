//! WAL record payloads (after Prometheus `tsdb/record`): series records carry a ref and its
//! labels, sample records carry refs, timestamps and values. Decoding untrusted bytes never
//! panics.

use crate::codec::{CodecError, Reader, put_str, put_uvarint, put_varint};
use crate::index::SeriesRef;
use crate::labels::{Label, Labels, Sample};

const TYPE_SERIES: u8 = 1;
const TYPE_SAMPLES: u8 = 2;

/// Why a record payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record is empty or of an unknown type.
    #[error("unknown record type {0}")]
    UnknownType(u8),
    /// The payload ends early.
    #[error("record truncated")]
    Truncated,
    /// Bytes remain after the last entry.
    #[error("{0} trailing bytes after record")]
    Trailing(usize),
    /// A label is not valid UTF-8 or the label set is not valid.
    #[error("invalid labels in series record: {0}")]
    BadLabels(String),
}

impl From<CodecError> for RecordError {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::Truncated => RecordError::Truncated,
            CodecError::Utf8(m) => RecordError::BadLabels(m),
        }
    }
}

/// One WAL record.
#[derive(Debug, Clone, PartialEq)]
pub enum WalRecord {
    /// New series: ref and labels, logged before any sample that uses the ref.
    Series(Vec<(SeriesRef, Labels)>),
    /// Samples of series already logged.
    Samples(Vec<(SeriesRef, Sample)>),
}

impl WalRecord {
    /// Encodes the record: a type byte then the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            WalRecord::Series(series) => {
                out.push(TYPE_SERIES);
                put_uvarint(&mut out, series.len() as u64);
                for (r, labels) in series {
                    put_uvarint(&mut out, *r);
                    put_uvarint(&mut out, labels.len() as u64);
                    for l in labels.iter() {
                        put_str(&mut out, &l.name);
                        put_str(&mut out, &l.value);
                    }
                }
            }
            WalRecord::Samples(samples) => {
                out.push(TYPE_SAMPLES);
                put_uvarint(&mut out, samples.len() as u64);
                for (r, s) in samples {
                    put_uvarint(&mut out, *r);
                    put_varint(&mut out, s.t);
                    out.extend_from_slice(&s.v.to_bits().to_le_bytes());
                }
            }
        }
        out
    }

    /// Decodes a record from untrusted bytes (the fuzzing entry point for WAL records).
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let (&kind, rest) = bytes.split_first().ok_or(RecordError::UnknownType(0))?;
        let mut r = Reader { buf: rest };
        let record = match kind {
            TYPE_SERIES => {
                let n = r.count(2)?;
                let mut series = Vec::with_capacity(n);
                for _ in 0..n {
                    let sref = r.uvarint()?;
                    let nl = r.count(2)?;
                    let mut labels = Vec::with_capacity(nl);
                    for _ in 0..nl {
                        let name = r.string()?;
                        let value = r.string()?;
                        labels.push(Label { name, value });
                    }
                    let labels = Labels::from_sorted(labels)
                        .map_err(|e| RecordError::BadLabels(e.to_string()))?;
                    series.push((sref, labels));
                }
                WalRecord::Series(series)
            }
            TYPE_SAMPLES => {
                let n = r.count(10)?;
                let mut samples = Vec::with_capacity(n);
                for _ in 0..n {
                    let sref = r.uvarint()?;
                    let t = r.varint()?;
                    let b = r.bytes(8)?;
                    let mut bits = [0u8; 8];
                    bits.copy_from_slice(b);
                    samples.push((
                        sref,
                        Sample {
                            t,
                            v: f64::from_bits(u64::from_le_bytes(bits)),
                        },
                    ));
                }
                WalRecord::Samples(samples)
            }
            other => return Err(RecordError::UnknownType(other)),
        };
        if !r.buf.is_empty() {
            return Err(RecordError::Trailing(r.buf.len()));
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::stale_nan;
    use proptest::prelude::*;

    #[test]
    fn roundtrip_series_and_samples() {
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "ä")]).unwrap();
        let recs = [
            WalRecord::Series(vec![(1, labels.clone()), (u64::MAX, Labels::empty())]),
            WalRecord::Samples(vec![
                (1, Sample { t: -5, v: 1.5 }),
                (
                    2,
                    Sample {
                        t: i64::MAX,
                        v: stale_nan(),
                    },
                ),
                (
                    3,
                    Sample {
                        t: i64::MIN,
                        v: -0.0,
                    },
                ),
            ]),
        ];
        for rec in recs {
            let back = WalRecord::decode(&rec.encode()).unwrap();
            match (&rec, &back) {
                (WalRecord::Samples(a), WalRecord::Samples(b)) => {
                    for ((ra, sa), (rb, sb)) in a.iter().zip(b) {
                        assert_eq!((ra, sa.t, sa.v.to_bits()), (rb, sb.t, sb.v.to_bits()));
                    }
                }
                _ => assert_eq!(rec, back),
            }
        }
    }

    #[test]
    fn bad_input_gives_distinct_errors() {
        assert_eq!(WalRecord::decode(&[]), Err(RecordError::UnknownType(0)));
        assert_eq!(WalRecord::decode(&[9]), Err(RecordError::UnknownType(9)));
        let mut good = WalRecord::Samples(vec![(1, Sample { t: 1, v: 1.0 })]).encode();
        good.push(0);
        assert_eq!(WalRecord::decode(&good), Err(RecordError::Trailing(1)));
        assert_eq!(
            WalRecord::decode(&[TYPE_SAMPLES, 1, 1]),
            Err(RecordError::Truncated)
        );
        // Unsorted labels are refused.
        let mut b = vec![TYPE_SERIES, 1, 7, 2];
        for s in ["b", "1", "a", "2"] {
            put_str(&mut b, s);
        }
        assert!(matches!(
            WalRecord::decode(&b),
            Err(RecordError::BadLabels(_))
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = WalRecord::decode(&bytes);
        }
    }
}
