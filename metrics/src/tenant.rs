//! Tenant identities and per-tenant limits (after Cortex: `X-Scope-OrgID`, ingestion rate,
//! active series, label count and length).

use std::fmt;

/// Longest tenant id accepted (as in Cortex).
pub const MAX_TENANT_ID_LEN: usize = 150;

/// The tenant used when tenancy is off.
pub const ANONYMOUS: &str = "anonymous";

/// Why a tenant id is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantIdError {
    /// Empty id.
    #[error("tenant id is empty")]
    Empty,
    /// Longer than [`MAX_TENANT_ID_LEN`].
    #[error("tenant id longer than {MAX_TENANT_ID_LEN} characters")]
    TooLong,
    /// `.` or `..`, which would escape the data directory.
    #[error("tenant id {0:?} is not allowed")]
    Reserved(String),
    /// A character outside `[A-Za-z0-9!-_.*'()]` (so no `/`).
    #[error("tenant id contains unsupported character {0:?}")]
    BadChar(char),
}

/// A validated tenant id: safe to use as a directory name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    /// Validates a tenant id with the Cortex rules.
    pub fn new(id: &str) -> Result<Self, TenantIdError> {
        if id.is_empty() {
            return Err(TenantIdError::Empty);
        }
        if id.len() > MAX_TENANT_ID_LEN {
            return Err(TenantIdError::TooLong);
        }
        if id == "." || id == ".." {
            return Err(TenantIdError::Reserved(id.to_owned()));
        }
        if let Some(c) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "!-_.*'()".contains(*c)))
        {
            return Err(TenantIdError::BadChar(c));
        }
        Ok(Self(id.to_owned()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Limits applied to every tenant.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Sustained samples per second.
    pub ingestion_rate: f64,
    /// Samples a tenant may send at once above the sustained rate.
    pub ingestion_burst: f64,
    /// Series held in the head at most.
    pub max_series: usize,
    /// Labels a series may have at most.
    pub max_label_names: usize,
    /// Longest label name in bytes.
    pub max_label_name_len: usize,
    /// Longest label value in bytes.
    pub max_label_value_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // Cortex defaults, with a larger rate for a single-router store.
        Self {
            ingestion_rate: 100_000.0,
            ingestion_burst: 200_000.0,
            max_series: 1_000_000,
            max_label_names: 30,
            max_label_name_len: 1024,
            max_label_value_len: 2048,
        }
    }
}

/// A token bucket for the ingestion rate, driven by the caller's clock.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    tokens: f64,
    last_ms: Option<i64>,
}

impl RateLimiter {
    /// A full bucket.
    pub fn new(limits: &Limits) -> Self {
        Self {
            tokens: limits.ingestion_burst,
            last_ms: None,
        }
    }

    fn refill(&mut self, limits: &Limits, now_ms: i64) {
        if let Some(last) = self.last_ms {
            let elapsed = (now_ms - last).max(0) as f64 / 1000.0;
            self.tokens =
                (self.tokens + elapsed * limits.ingestion_rate).min(limits.ingestion_burst);
        }
        self.last_ms = Some(self.last_ms.map_or(now_ms, |l| l.max(now_ms)));
    }

    /// Checks whether `n` samples may be taken now; on refusal, the milliseconds after which
    /// retrying can succeed.
    pub fn check(&mut self, limits: &Limits, now_ms: i64, n: usize) -> Result<(), u64> {
        self.refill(limits, now_ms);
        let missing = n as f64 - self.tokens;
        if missing <= 0.0 {
            return Ok(());
        }
        let rate = limits.ingestion_rate.max(f64::MIN_POSITIVE);
        Err(((missing / rate) * 1000.0).ceil().max(1.0) as u64)
    }

    /// Takes `n` samples from the bucket (after a successful [`RateLimiter::check`]).
    pub fn take(&mut self, n: usize) {
        self.tokens -= n as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_refuse_path_traversal() {
        assert!(TenantId::new("team-a_1.prod").is_ok());
        assert_eq!(TenantId::new(""), Err(TenantIdError::Empty));
        assert_eq!(
            TenantId::new(".."),
            Err(TenantIdError::Reserved("..".into()))
        );
        assert_eq!(TenantId::new("."), Err(TenantIdError::Reserved(".".into())));
        assert_eq!(TenantId::new("a/b"), Err(TenantIdError::BadChar('/')));
        assert_eq!(TenantId::new("../etc"), Err(TenantIdError::BadChar('/')));
        assert_eq!(TenantId::new("a\\b"), Err(TenantIdError::BadChar('\\')));
        assert_eq!(TenantId::new(&"x".repeat(151)), Err(TenantIdError::TooLong));
    }

    #[test]
    fn rate_limiter_refills_with_time() {
        let limits = Limits {
            ingestion_rate: 10.0,
            ingestion_burst: 20.0,
            ..Limits::default()
        };
        let mut rl = RateLimiter::new(&limits);
        assert_eq!(rl.check(&limits, 0, 20), Ok(()));
        rl.take(20);
        assert_eq!(rl.check(&limits, 0, 5), Err(500));
        assert_eq!(rl.check(&limits, 500, 5), Ok(()));
        rl.take(5);
        assert_eq!(rl.check(&limits, 500, 1), Err(100));
    }
}
