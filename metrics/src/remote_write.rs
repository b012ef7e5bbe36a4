//! Prometheus remote_write 1.0 decoding: a snappy *block* (not framed) compressed protobuf
//! `prometheus.WriteRequest`, turned into validated [`Series`]. Messages are declared by hand
//! with `prost` derives (no protoc). Label names and values are read as bytes so that invalid
//! UTF-8 gets its own error instead of a generic protobuf one.

use prost::Message;

use crate::labels::{Label, Labels, LabelsError, Sample, Series};

/// Largest decompressed request accepted (32 MiB of protobuf).
pub const MAX_DECOMPRESSED_BYTES: usize = 32 * 1024 * 1024;

/// `prometheus.WriteRequest` (remote_write 1.0); metadata (field 3) is skipped.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`; exemplars (field 3) are skipped, native histograms (field 4) are
/// detected and refused.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Labels, which must be sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<ProtoLabel>,
    /// Float samples.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<ProtoSample>,
    /// Native histograms, kept as raw bytes only to refuse them.
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub histograms: Vec<Vec<u8>>,
}

/// `prometheus.Label`, with name and value as raw bytes.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoLabel {
    /// The label name.
    #[prost(bytes = "vec", tag = "1")]
    pub name: Vec<u8>,
    /// The label value.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoSample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Why a remote_write body was refused; every variant is a client error (HTTP 400).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RemoteWriteError {
    /// The body is not a snappy block.
    #[error("body is not snappy block-compressed: {0}")]
    NotSnappy(String),
    /// The snappy block ends before its announced length.
    #[error("snappy body truncated: {0}")]
    Truncated(String),
    /// The decompressed body is larger than allowed.
    #[error("decompressed body of {0} bytes exceeds the limit of {MAX_DECOMPRESSED_BYTES}")]
    TooLarge(usize),
    /// The decompressed bytes are not a WriteRequest.
    #[error("invalid protobuf WriteRequest: {0}")]
    Protobuf(String),
    /// A label name or value is not UTF-8.
    #[error("series {series}: label {what} is not valid UTF-8")]
    InvalidUtf8 {
        /// Index of the series in the request.
        series: usize,
        /// `name` or `value`.
        what: &'static str,
    },
    /// The label set is invalid (unsorted, duplicate, empty name, no metric name).
    #[error("series {series} ({labels}): {source}")]
    Labels {
        /// Index of the series in the request.
        series: usize,
        /// The labels as received, for the message.
        labels: String,
        /// What is wrong.
        source: LabelsError,
    },
    /// A timestamp lies too far in the future.
    #[error(
        "series {series}: sample timestamp {t} is too far in the future (latest accepted {max})"
    )]
    FutureTimestamp {
        /// Index of the series in the request.
        series: usize,
        /// The timestamp.
        t: i64,
        /// Latest accepted timestamp.
        max: i64,
    },
    /// The series carries native histograms, which are not supported.
    #[error("series {series}: native histograms are not supported")]
    NativeHistograms {
        /// Index of the series in the request.
        series: usize,
    },
}

/// Decompresses a snappy block.
fn decompress(body: &[u8]) -> Result<Vec<u8>, RemoteWriteError> {
    let len =
        snap::raw::decompress_len(body).map_err(|e| RemoteWriteError::NotSnappy(e.to_string()))?;
    if len > MAX_DECOMPRESSED_BYTES {
        return Err(RemoteWriteError::TooLarge(len));
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| match e {
            snap::Error::Literal { .. }
            | snap::Error::CopyRead { .. }
            | snap::Error::HeaderMismatch { .. } => RemoteWriteError::Truncated(e.to_string()),
            other => RemoteWriteError::NotSnappy(other.to_string()),
        })
}

/// Decodes and validates a remote_write 1.0 body (the fuzzing entry point: never panics).
/// Samples later than `now_ms + max_future_ms` are refused. NaN and ±Inf values are accepted,
/// as Prometheus does (NaN is also how staleness is written).
pub fn decode_write_request(
    body: &[u8],
    now_ms: i64,
    max_future_ms: i64,
) -> Result<Vec<Series>, RemoteWriteError> {
    let raw = decompress(body)?;
    let req = WriteRequest::decode(raw.as_slice())
        .map_err(|e| RemoteWriteError::Protobuf(e.to_string()))?;
    let max = now_ms.saturating_add(max_future_ms);
    let mut out = Vec::with_capacity(req.timeseries.len());
    for (i, ts) in req.timeseries.into_iter().enumerate() {
        if !ts.histograms.is_empty() {
            return Err(RemoteWriteError::NativeHistograms { series: i });
        }
        let mut labels = Vec::with_capacity(ts.labels.len());
        for l in ts.labels {
            let name = String::from_utf8(l.name).map_err(|_| RemoteWriteError::InvalidUtf8 {
                series: i,
                what: "name",
            })?;
            let value = String::from_utf8(l.value).map_err(|_| RemoteWriteError::InvalidUtf8 {
                series: i,
                what: "value",
            })?;
            labels.push(Label { name, value });
        }
        let shown = || {
            labels
                .iter()
                .map(|l| format!("{}={:?}", l.name, l.value))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let labels = match Labels::from_sorted(labels.clone()) {
            Ok(ls) if ls.metric_name().is_none() => Err(LabelsError::MissingMetricName),
            other => other,
        }
        .map_err(|source| RemoteWriteError::Labels {
            series: i,
            labels: format!("{{{}}}", shown()),
            source,
        })?;
        let mut samples = Vec::with_capacity(ts.samples.len());
        for s in ts.samples {
            if s.timestamp > max {
                return Err(RemoteWriteError::FutureTimestamp {
                    series: i,
                    t: s.timestamp,
                    max,
                });
            }
            samples.push(Sample {
                t: s.timestamp,
                v: s.value,
            });
        }
        out.push(Series { labels, samples });
    }
    Ok(out)
}

/// Encodes series as a remote_write 1.0 body (protobuf, snappy block), for clients and tests.
pub fn encode_write_request(series: &[Series]) -> Vec<u8> {
    let req = WriteRequest {
        timeseries: series
            .iter()
            .map(|s| TimeSeries {
                labels: s
                    .labels
                    .iter()
                    .map(|l| ProtoLabel {
                        name: l.name.clone().into_bytes(),
                        value: l.value.clone().into_bytes(),
                    })
                    .collect(),
                samples: s
                    .samples
                    .iter()
                    .map(|x| ProtoSample {
                        value: x.v,
                        timestamp: x.t,
                    })
                    .collect(),
                histograms: Vec::new(),
            })
            .collect(),
    };
    compress(&req.encode_to_vec())
}

/// Snappy block compression of raw bytes.
fn compress(raw: &[u8]) -> Vec<u8> {
    // Compressing an in-memory buffer only fails for inputs above 4 GiB.
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::{is_stale_nan, stale_nan};
    use proptest::prelude::*;

    const NOW: i64 = 1_700_000_000_000;

    fn raw_request(labels: &[(&[u8], &[u8])], samples: &[(i64, f64)]) -> Vec<u8> {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: labels
                    .iter()
                    .map(|(n, v)| ProtoLabel {
                        name: n.to_vec(),
                        value: v.to_vec(),
                    })
                    .collect(),
                samples: samples
                    .iter()
                    .map(|&(t, v)| ProtoSample {
                        value: v,
                        timestamp: t,
                    })
                    .collect(),
                histograms: vec![],
            }],
        };
        compress(&req.encode_to_vec())
    }

    fn decode(body: &[u8]) -> Result<Vec<Series>, RemoteWriteError> {
        decode_write_request(body, NOW, 10 * 60 * 1000)
    }

    #[test]
    fn roundtrip_including_nan_inf_and_staleness() {
        let s = Series {
            labels: Labels::from_pairs([("__name__", "up"), ("job", "a")]).unwrap(),
            samples: vec![
                Sample {
                    t: NOW - 2,
                    v: f64::INFINITY,
                },
                Sample {
                    t: NOW - 1,
                    v: f64::NAN,
                },
                Sample {
                    t: NOW,
                    v: stale_nan(),
                },
            ],
        };
        let back = decode(&encode_write_request(std::slice::from_ref(&s))).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].labels, s.labels);
        assert_eq!(back[0].samples[0].v, f64::INFINITY);
        assert!(back[0].samples[1].v.is_nan() && !is_stale_nan(back[0].samples[1].v));
        assert!(is_stale_nan(back[0].samples[2].v));
    }

    #[test]
    fn each_bad_input_has_its_own_error() {
        assert!(matches!(
            decode(b"definitely not snappy \xff\xff\xff\xff\xff"),
            Err(RemoteWriteError::NotSnappy(_))
        ));
        let good = raw_request(&[(b"__name__", b"up")], &[(NOW, 1.0)]);
        assert!(matches!(
            decode(&good[..good.len() - 3]),
            Err(RemoteWriteError::Truncated(_))
        ));
        // Valid snappy, but not protobuf.
        assert!(matches!(
            decode(&compress(b"\xff\xff\xff")),
            Err(RemoteWriteError::Protobuf(_))
        ));
        let unsorted = raw_request(&[(b"__name__", b"up"), (b"b", b"1"), (b"a", b"2")], &[]);
        assert!(matches!(
            decode(&unsorted),
            Err(RemoteWriteError::Labels {
                source: LabelsError::Unsorted(..),
                ..
            })
        ));
        let dup = raw_request(&[(b"__name__", b"up"), (b"a", b"1"), (b"a", b"2")], &[]);
        assert!(matches!(
            decode(&dup),
            Err(RemoteWriteError::Labels {
                source: LabelsError::Duplicate(_),
                ..
            })
        ));
        let empty = raw_request(&[(b"", b"x"), (b"__name__", b"up")], &[]);
        assert!(matches!(
            decode(&empty),
            Err(RemoteWriteError::Labels {
                source: LabelsError::EmptyName,
                ..
            })
        ));
        let noname = raw_request(&[(b"job", b"x")], &[]);
        assert!(matches!(
            decode(&noname),
            Err(RemoteWriteError::Labels {
                source: LabelsError::MissingMetricName,
                ..
            })
        ));
        let utf8 = raw_request(&[(b"__name__", b"up"), (b"job", b"\xc3\x28")], &[]);
        assert_eq!(
            decode(&utf8),
            Err(RemoteWriteError::InvalidUtf8 {
                series: 0,
                what: "value"
            })
        );
        let future = raw_request(&[(b"__name__", b"up")], &[(NOW + 11 * 60 * 1000, 1.0)]);
        assert!(matches!(
            decode(&future),
            Err(RemoteWriteError::FutureTimestamp { .. })
        ));
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![ProtoLabel {
                    name: b"__name__".to_vec(),
                    value: b"h".to_vec(),
                }],
                samples: vec![],
                histograms: vec![vec![8, 1]],
            }],
        };
        assert_eq!(
            decode(&compress(&req.encode_to_vec())),
            Err(RemoteWriteError::NativeHistograms { series: 0 })
        );
        // Messages are distinct and say what is wrong.
        let msg = decode(&unsorted).unwrap_err().to_string();
        assert!(msg.contains("not sorted"), "{msg}");
    }

    proptest! {
        #[test]
        fn random_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
            let _ = decode(&compress(&bytes));
        }
    }
}
