//! [`ExportingStore`]: the served store, queueing every accepted write for export.

use std::sync::Arc;

use weft_metrics::index::Matcher;
use weft_metrics::labels::{Labels, Series};
use weft_metrics::remote_write::encode_write_request;
use weft_metrics::storage::{StorageError, Store, WriteError, WriteStats};
use weft_metrics::tenant::TenantId;

use super::Exporter;

/// A [`Store`] that forwards reads to `inner` and, after `inner` accepted a write, queues the
/// write for every export destination.
pub struct ExportingStore {
    inner: Arc<dyn Store>,
    exporter: Arc<Exporter>,
}

impl ExportingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, exporter: Arc<Exporter>) -> Self {
        Self { inner, exporter }
    }
}

impl Store for ExportingStore {
    fn write(
        &self,
        tenant: &TenantId,
        batch: Vec<Series>,
        now_ms: i64,
    ) -> Result<WriteStats, WriteError> {
        if !self.exporter.wants(tenant) {
            return self.inner.write(tenant, batch, now_ms);
        }
        let samples: usize = batch.iter().map(|s| s.samples.len()).sum();
        let body = encode_write_request(&batch);
        let stats = self.inner.write(tenant, batch, now_ms)?;
        if samples > 0 {
            self.exporter
                .enqueue(tenant, u32::try_from(samples).unwrap_or(u32::MAX), &body);
        }
        Ok(stats)
    }

    fn select(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, StorageError> {
        self.inner.select(tenant, matchers, mint, maxt)
    }

    fn series(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        self.inner.series(tenant, matchers, mint, maxt)
    }

    fn label_names(
        &self,
        tenant: &TenantId,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        self.inner.label_names(tenant, matchers, mint, maxt)
    }

    fn label_values(
        &self,
        tenant: &TenantId,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        self.inner.label_values(tenant, name, matchers, mint, maxt)
    }
}
