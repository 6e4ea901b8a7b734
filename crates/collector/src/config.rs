//! Collector configuration in two stages: [`RawConfig`] is what the TOML file
//! says (every field optional), [`CollectorConfig`] the checked result with
//! defaults filled in.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ispeed_analytics::Thresholds;
use serde::Deserialize;

/// Default age beyond which a receipt is refused.
pub const DEFAULT_RECEIPT_MAX_AGE_S: u64 = 15 * 60;
/// Default heavy-tester cap: results per device per day that count.
pub const DEFAULT_HEAVY_TESTER_CAP: u32 = 3;
/// Largest accepted submission body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// A test point approved in the config file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawTestPoint {
    pub id: String,
    pub public_key: String,
    pub url: String,
    pub name: Option<String>,
    pub province_code: Option<String>,
    pub line_rate_mbps: Option<f64>,
}

/// The `[collector]` table (and `ispeed serve`'s config file).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub data: Option<PathBuf>,
    pub receipt_max_age_s: Option<u64>,
    pub heavy_tester_cap: Option<u32>,
    pub province_min_samples: Option<u64>,
    pub ward_quota: Option<u64>,
    pub max_body_bytes: Option<usize>,
    /// Results per transaction at most (1 = no group commit).
    pub max_batch: Option<usize>,
    /// A MaxMind-format ASN database replacing the embedded prefix table.
    pub mmdb: Option<PathBuf>,
    #[serde(default)]
    pub test_points: Vec<RawTestPoint>,
    /// The admin bearer token (64 hex digits; created if missing).
    /// Default `<data>/admin-token`.
    pub admin_token_file: Option<PathBuf>,
    /// The key that signs locate's access tokens (created if missing).
    /// Default `<data>/collector.key`.
    pub collector_key_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid setting {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    pub data: PathBuf,
    pub receipt_max_age: Duration,
    pub heavy_tester_cap: u32,
    pub thresholds: Thresholds,
    pub max_body_bytes: usize,
    pub max_batch: usize,
    pub mmdb: Option<PathBuf>,
    pub test_points: Vec<RawTestPoint>,
    pub admin_token_file: PathBuf,
    pub collector_key_file: PathBuf,
}

impl RawConfig {
    pub fn resolve(self, default_data: &Path) -> Result<CollectorConfig, ConfigError> {
        let invalid = |field, reason: &str| ConfigError::Invalid {
            field,
            reason: reason.to_owned(),
        };
        let cap = self.heavy_tester_cap.unwrap_or(DEFAULT_HEAVY_TESTER_CAP);
        if cap == 0 {
            return Err(invalid("heavy_tester_cap", "must be at least 1"));
        }
        let max_batch = self.max_batch.unwrap_or(2048);
        if max_batch == 0 {
            return Err(invalid("max_batch", "must be at least 1"));
        }
        for tp in &self.test_points {
            if let Some(rate) = tp.line_rate_mbps {
                if !(rate.is_finite() && rate > 0.0) {
                    return Err(invalid("test_points.line_rate_mbps", "must be positive"));
                }
            }
        }
        let defaults = Thresholds::default();
        let data = self.data.unwrap_or_else(|| default_data.to_owned());
        Ok(CollectorConfig {
            admin_token_file: self
                .admin_token_file
                .unwrap_or_else(|| data.join("admin-token")),
            collector_key_file: self
                .collector_key_file
                .unwrap_or_else(|| data.join("collector.key")),
            data,
            receipt_max_age: Duration::from_secs(
                self.receipt_max_age_s.unwrap_or(DEFAULT_RECEIPT_MAX_AGE_S),
            ),
            heavy_tester_cap: cap,
            thresholds: Thresholds {
                province_min: self.province_min_samples.unwrap_or(defaults.province_min),
                ward_quota: self.ward_quota.unwrap_or(defaults.ward_quota),
            },
            max_body_bytes: self.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
            max_batch,
            mmdb: self.mmdb,
            test_points: self.test_points,
        })
    }
}
