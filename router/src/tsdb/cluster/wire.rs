//! The messages of the `metrics` mesh channel: versioned protobuf (prost) requests and
//! responses between a coordinator and the replicas. Everything decoded is validated (version,
//! size, tenant, label sets, sample counts, matchers) before anyone acts on it; a message that
//! fails is refused whole, so nothing of it is stored.

use prost::Message;
use weft_metrics::index::{MatchOp, Matcher};
use weft_metrics::labels::{Label, Labels, Sample, Series};
use weft_metrics::tenant::TenantId;

/// Version of the encoding; a message with another version is refused.
pub(crate) const VERSION: u32 = 1;

/// Largest encoded message accepted or produced (the mesh carries frames up to 8 MiB).
pub(crate) const MAX_MESSAGE: usize = 6 * 1024 * 1024;

/// Target size of one write request: a replica's part of a batch is split above it.
pub(crate) const MAX_WRITE_BATCH: usize = 1024 * 1024;

/// Why a message was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    /// Larger than [`MAX_MESSAGE`].
    #[error("metrics message of {0} bytes exceeds the {MAX_MESSAGE}-byte limit")]
    TooLarge(usize),
    /// Not protobuf of the expected shape.
    #[error("undecodable metrics message: {0}")]
    Decode(#[from] prost::DecodeError),
    /// Encoded by a different version.
    #[error("metrics message version {0}, this router speaks {VERSION}")]
    Version(u32),
    /// Decodes, but its content is invalid.
    #[error("invalid metrics message: {0}")]
    Invalid(String),
}

/// One message: a request or the response to one, matched by `id`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Envelope {
    /// [`VERSION`].
    #[prost(uint32, tag = "1")]
    pub(crate) version: u32,
    /// Request id, chosen by the requester and echoed in the response.
    #[prost(uint64, tag = "2")]
    pub(crate) id: u64,
    /// The message.
    #[prost(oneof = "Body", tags = "3, 4, 5, 6")]
    pub(crate) body: Option<Body>,
}

/// What a message carries.
#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum Body {
    /// Store these series durably.
    #[prost(message, tag = "3")]
    Write(WireWrite),
    /// The outcome of a [`Body::Write`].
    #[prost(message, tag = "4")]
    WriteResult(WireWriteResult),
    /// Return the local series matching these matchers.
    #[prost(message, tag = "5")]
    Select(WireSelect),
    /// The outcome of a [`Body::Select`].
    #[prost(message, tag = "6")]
    SelectResult(WireSelectResult),
}

/// A replica write.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct WireWrite {
    /// The tenant.
    #[prost(string, tag = "1")]
    pub(crate) tenant: String,
    /// The coordinator's clock, for the replica's validation.
    #[prost(int64, tag = "2")]
    pub(crate) now_ms: i64,
    /// The series.
    #[prost(message, repeated, tag = "3")]
    pub(crate) series: Vec<WireSeries>,
    /// A copy of samples the receiver may partly hold already (hand-over): series it refuses
    /// (too old, conflicting) are skipped instead of failing the whole request.
    #[prost(bool, tag = "4")]
    pub(crate) handover: bool,
}

/// A series with samples.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct WireSeries {
    /// Label names and values, alternating, sorted by name.
    #[prost(string, repeated, tag = "1")]
    pub(crate) labels: Vec<String>,
    /// Sample timestamps.
    #[prost(int64, repeated, tag = "2")]
    pub(crate) timestamps: Vec<i64>,
    /// Sample values, as many as timestamps.
    #[prost(double, repeated, tag = "3")]
    pub(crate) values: Vec<f64>,
}

/// How a replica answered a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum WriteStatus {
    /// Durable.
    Ok = 0,
    /// Refused as invalid (out of order, label limits): the client's fault.
    Invalid = 1,
    /// The tenant is over a limit on the replica.
    Limited = 2,
    /// The replica could not write (WAL failure, overload).
    Failed = 3,
}

/// The outcome of a replica write.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct WireWriteResult {
    /// [`WriteStatus`].
    #[prost(enumeration = "WriteStatus", tag = "1")]
    pub(crate) status: i32,
    /// The replica's error message.
    #[prost(string, tag = "2")]
    pub(crate) message: String,
}

/// A matcher operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum MatchKind {
    /// `=`.
    Equal = 0,
    /// `!=`.
    NotEqual = 1,
    /// `=~`.
    Regex = 2,
    /// `!~`.
    NotRegex = 3,
}

/// A label matcher.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct WireMatcher {
    /// The label name.
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    /// [`MatchKind`].
    #[prost(enumeration = "MatchKind", tag = "2")]
    pub(crate) kind: i32,
    /// The value or the (unanchored) pattern.
    #[prost(string, tag = "3")]
    pub(crate) value: String,
}

/// A read of the replica's local series.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct WireSelect {
    /// The tenant.
    #[prost(string, tag = "1")]
    pub(crate) tenant: String,
    /// Matchers, all of which must match.
    #[prost(message, repeated, tag = "2")]
    pub(crate) matchers: Vec<WireMatcher>,
    /// Start of the time range.
    #[prost(int64, tag = "3")]
    pub(crate) mint: i64,
    /// End of the time range.
    #[prost(int64, tag = "4")]
    pub(crate) maxt: i64,
    /// Only label sets, no samples.
    #[prost(bool, tag = "5")]
    pub(crate) labels_only: bool,
}

/// The outcome of a read.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct WireSelectResult {
    /// Empty on success, else why the read failed.
    #[prost(string, tag = "1")]
    pub(crate) error: String,
    /// The series (without samples for a labels-only read).
    #[prost(message, repeated, tag = "2")]
    pub(crate) series: Vec<WireSeries>,
}

impl Envelope {
    /// A message of this version.
    pub(crate) fn new(id: u64, body: Body) -> Self {
        Self {
            version: VERSION,
            id,
            body: Some(body),
        }
    }

    /// The encoding, or [`WireError::TooLarge`].
    pub(crate) fn encode(&self) -> Result<Vec<u8>, WireError> {
        let len = self.encoded_len();
        if len > MAX_MESSAGE {
            return Err(WireError::TooLarge(len));
        }
        Ok(self.encode_to_vec())
    }

    /// Decodes and checks the size and the version (the body is checked by its accessors).
    pub(crate) fn decode_checked(bytes: &[u8]) -> Result<Self, WireError> {
        if bytes.len() > MAX_MESSAGE {
            return Err(WireError::TooLarge(bytes.len()));
        }
        let env = Self::decode(bytes)?;
        if env.version != VERSION {
            return Err(WireError::Version(env.version));
        }
        if env.body.is_none() {
            return Err(WireError::Invalid("no body".into()));
        }
        Ok(env)
    }
}

/// A tenant id from the wire.
pub(crate) fn tenant(s: &str) -> Result<TenantId, WireError> {
    TenantId::new(s).map_err(|e| WireError::Invalid(format!("tenant {s:?}: {e}")))
}

/// Encodes a series (samples unless `labels_only`).
pub(crate) fn series_to_wire(s: &Series) -> WireSeries {
    WireSeries {
        labels: labels_to_wire(&s.labels),
        timestamps: s.samples.iter().map(|x| x.t).collect(),
        values: s.samples.iter().map(|x| x.v).collect(),
    }
}

/// Encodes a label set with no samples.
pub(crate) fn labels_only_to_wire(l: &Labels) -> WireSeries {
    WireSeries {
        labels: labels_to_wire(l),
        timestamps: Vec::new(),
        values: Vec::new(),
    }
}

fn labels_to_wire(l: &Labels) -> Vec<String> {
    l.iter()
        .flat_map(|l| [l.name.clone(), l.value.clone()])
        .collect()
}

/// Decodes and validates a series: labels sorted and unique, samples paired and in order.
pub(crate) fn series_from_wire(w: WireSeries) -> Result<Series, WireError> {
    if !w.labels.len().is_multiple_of(2) {
        return Err(WireError::Invalid("odd number of label strings".into()));
    }
    if w.timestamps.len() != w.values.len() {
        return Err(WireError::Invalid(format!(
            "{} timestamps but {} values",
            w.timestamps.len(),
            w.values.len()
        )));
    }
    if w.timestamps.windows(2).any(|p| p[0] >= p[1]) {
        return Err(WireError::Invalid("samples not in timestamp order".into()));
    }
    let mut it = w.labels.into_iter();
    let mut labels = Vec::new();
    while let (Some(name), Some(value)) = (it.next(), it.next()) {
        labels.push(Label::new(name, value));
    }
    let labels = Labels::from_sorted(labels).map_err(|e| WireError::Invalid(e.to_string()))?;
    let samples = w
        .timestamps
        .into_iter()
        .zip(w.values)
        .map(|(t, v)| Sample { t, v })
        .collect();
    Ok(Series { labels, samples })
}

/// Encodes a matcher (regexes as the pattern the user wrote).
pub(crate) fn matcher_to_wire(m: &Matcher) -> WireMatcher {
    let unanchor = |s: &str| {
        s.strip_prefix("^(?:")
            .and_then(|s| s.strip_suffix(")$"))
            .unwrap_or(s)
            .to_owned()
    };
    let (kind, value) = match &m.op {
        MatchOp::Equal(v) => (MatchKind::Equal, v.clone()),
        MatchOp::NotEqual(v) => (MatchKind::NotEqual, v.clone()),
        MatchOp::Regex(r) => (MatchKind::Regex, unanchor(r.as_str())),
        MatchOp::NotRegex(r) => (MatchKind::NotRegex, unanchor(r.as_str())),
    };
    WireMatcher {
        name: m.name.clone(),
        kind: kind as i32,
        value,
    }
}

/// Decodes a matcher, compiling its regex.
pub(crate) fn matcher_from_wire(w: &WireMatcher) -> Result<Matcher, WireError> {
    let bad = |e: weft_metrics::index::MatcherError| WireError::Invalid(e.to_string());
    match MatchKind::try_from(w.kind) {
        Ok(MatchKind::Equal) => Ok(Matcher::equal(&w.name, &w.value)),
        Ok(MatchKind::NotEqual) => Ok(Matcher::not_equal(&w.name, &w.value)),
        Ok(MatchKind::Regex) => Matcher::regex(&w.name, &w.value).map_err(bad),
        Ok(MatchKind::NotRegex) => Matcher::not_regex(&w.name, &w.value).map_err(bad),
        Err(_) => Err(WireError::Invalid(format!("matcher kind {}", w.kind))),
    }
}

/// Splits `batch` into groups whose encoding stays near [`MAX_WRITE_BATCH`] (a single larger
/// series is split by samples).
pub(crate) fn split_batch(batch: Vec<Series>) -> Vec<Vec<Series>> {
    // Upper bound of a sample's encoding (packed i64 varint + f64).
    const SAMPLE_BYTES: usize = 18;
    let label_bytes = |s: &Series| -> usize {
        s.labels
            .iter()
            .map(|l| l.name.len() + l.value.len() + 4)
            .sum()
    };
    let mut out = Vec::new();
    let mut cur: Vec<Series> = Vec::new();
    let mut size = 0usize;
    for s in batch {
        let lb = label_bytes(&s) + 8;
        let per_part = ((MAX_WRITE_BATCH - lb.min(MAX_WRITE_BATCH / 2)) / SAMPLE_BYTES).max(1);
        for samples in s.samples.chunks(per_part) {
            let bytes = lb + samples.len() * SAMPLE_BYTES;
            if size + bytes > MAX_WRITE_BATCH && !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
                size = 0;
            }
            size += bytes;
            cur.push(Series {
                labels: s.labels.clone(),
                samples: samples.to_vec(),
            });
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, n: usize) -> Series {
        Series {
            labels: Labels::from_pairs([("__name__", name), ("job", "x")]).expect("labels"),
            samples: (0..n)
                .map(|i| Sample {
                    t: i as i64 * 1000,
                    v: i as f64,
                })
                .collect(),
        }
    }

    #[test]
    fn requests_round_trip_with_matchers_and_samples() {
        let m = [
            Matcher::equal("__name__", "up"),
            Matcher::regex("job", "a|b").expect("regex"),
            Matcher::not_regex("x", ".+").expect("regex"),
            Matcher::not_equal("y", "z"),
        ];
        let env = Envelope::new(
            7,
            Body::Select(WireSelect {
                tenant: "t".into(),
                matchers: m.iter().map(matcher_to_wire).collect(),
                mint: -5,
                maxt: 99,
                labels_only: false,
            }),
        );
        let back = Envelope::decode_checked(&env.encode().expect("encode")).expect("decode");
        assert_eq!(back, env);
        let Some(Body::Select(sel)) = back.body else {
            panic!("not a select")
        };
        let decoded: Vec<Matcher> = sel
            .matchers
            .iter()
            .map(|w| matcher_from_wire(w).expect("matcher"))
            .collect();
        assert!(decoded[1].matches("a") && !decoded[1].matches("ab"));
        assert!(decoded[2].matches("") && !decoded[2].matches("q"));
        let s = series("up", 3);
        assert_eq!(
            series_from_wire(series_to_wire(&s)).expect("series"),
            s,
            "series round trip"
        );
    }

    #[test]
    fn malformed_oversized_and_foreign_messages_are_refused() {
        assert!(matches!(
            Envelope::decode_checked(&[0xff, 0xff, 0xff]),
            Err(WireError::Decode(_))
        ));
        assert!(matches!(
            Envelope::decode_checked(&vec![0u8; MAX_MESSAGE + 1]),
            Err(WireError::TooLarge(_))
        ));
        let mut env = Envelope::new(1, Body::WriteResult(WireWriteResult::default()));
        env.version = 2;
        assert!(matches!(
            Envelope::decode_checked(&env.encode_to_vec()),
            Err(WireError::Version(2))
        ));
        let empty = Envelope {
            version: VERSION,
            id: 1,
            body: None,
        };
        assert!(Envelope::decode_checked(&empty.encode_to_vec()).is_err());
        let huge = Envelope::new(
            1,
            Body::Write(WireWrite {
                tenant: "t".into(),
                now_ms: 0,
                handover: false,
                series: vec![series_to_wire(&series("up", 600_000))],
            }),
        );
        assert!(matches!(huge.encode(), Err(WireError::TooLarge(_))));
    }

    #[test]
    fn invalid_series_and_matchers_are_refused() {
        let mut w = series_to_wire(&series("up", 2));
        w.values.pop();
        assert!(series_from_wire(w).is_err(), "unpaired samples");
        let mut w = series_to_wire(&series("up", 2));
        w.timestamps.reverse();
        assert!(series_from_wire(w).is_err(), "unsorted samples");
        let mut w = series_to_wire(&series("up", 1));
        w.labels.swap(0, 2);
        w.labels.swap(1, 3);
        assert!(series_from_wire(w).is_err(), "unsorted labels");
        let mut w = series_to_wire(&series("up", 1));
        w.labels.pop();
        assert!(series_from_wire(w).is_err(), "odd labels");
        let bad = WireMatcher {
            name: "a".into(),
            kind: MatchKind::Regex as i32,
            value: "(".into(),
        };
        assert!(matcher_from_wire(&bad).is_err());
        let bad = WireMatcher {
            name: "a".into(),
            kind: 9,
            value: String::new(),
        };
        assert!(matcher_from_wire(&bad).is_err());
        assert!(tenant("../x").is_err());
    }

    #[test]
    fn batches_split_below_the_limit_and_keep_every_sample() {
        let batch: Vec<Series> = (0..50)
            .map(|i| series(&format!("m{i}"), 3000))
            .chain([series("big", 200_000)])
            .collect();
        let total: usize = batch.iter().map(|s| s.samples.len()).sum();
        let parts = split_batch(batch);
        assert!(parts.len() > 3, "{} parts", parts.len());
        let mut seen = 0;
        for p in &parts {
            let env = Envelope::new(
                0,
                Body::Write(WireWrite {
                    tenant: "t".into(),
                    now_ms: 0,
                    handover: false,
                    series: p.iter().map(series_to_wire).collect(),
                }),
            );
            let len = env.encode().expect("encode").len();
            assert!(len <= MAX_WRITE_BATCH + 1024, "part of {len} bytes");
            seen += p.iter().map(|s| s.samples.len()).sum::<usize>();
        }
        assert_eq!(seen, total);
        assert!(split_batch(Vec::new()).is_empty());
    }
}
