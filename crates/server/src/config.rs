//! Test point configuration, parsed in two stages: [`RawConfig`] is what a
//! TOML file or flags say, [`ServerConfig`] is the checked result with every
//! default filled in.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ispeed_proto::registry::{valid_id, AccessMode, TestPointClass, HEARTBEAT_INTERVAL_S};
use serde::Deserialize;

/// Default line rate: high enough that a test on loopback is not cut off by
/// its budget; production test points set their NIC's rate.
pub const DEFAULT_LINE_RATE_MBPS: f64 = 100_000.0;

/// Configuration as written in a TOML file; every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub test_point_id: Option<String>,
    pub listen: Option<Vec<SocketAddr>>,
    pub key_file: Option<PathBuf>,
    pub max_sessions: Option<u32>,
    pub max_seconds_per_direction: Option<f64>,
    pub session_ttl_s: Option<f64>,
    pub line_rate_mbps: Option<f64>,
    pub byte_budget: Option<u64>,
    pub ipv4_url: Option<String>,
    pub ipv6_url: Option<String>,
    pub shutdown_grace_s: Option<f64>,
    /// Register with this collector and send it heartbeats.
    pub collector: Option<String>,
    /// The collector's token key (base64url), pinned; otherwise learnt from
    /// the collector's first heartbeat answer.
    pub collector_key: Option<String>,
    /// `open` (default) or `token-required`.
    pub access: Option<AccessMode>,
    pub class: Option<TestPointClass>,
    pub operator: Option<String>,
    pub name: Option<String>,
    pub asn: Option<u32>,
    pub province_code: Option<String>,
    pub ward_code: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub heartbeat_interval_s: Option<f64>,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid setting {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl RawConfig {
    /// Reads a TOML file.
    pub fn from_file(path: &std::path::Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Checks values and fills defaults.
    pub fn resolve(self) -> Result<ServerConfig, ConfigError> {
        let positive = |field: &'static str, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(value)
            } else {
                Err(ConfigError::Invalid {
                    field,
                    reason: format!("must be a positive number, got {value}"),
                })
            }
        };
        let max_seconds = positive(
            "max_seconds_per_direction",
            self.max_seconds_per_direction.unwrap_or(15.0),
        )?;
        let ttl = positive("session_ttl_s", self.session_ttl_s.unwrap_or(60.0))?;
        let line_rate_mbps = positive(
            "line_rate_mbps",
            self.line_rate_mbps.unwrap_or(DEFAULT_LINE_RATE_MBPS),
        )?;
        let invalid = |field: &'static str, reason: &str| ConfigError::Invalid {
            field,
            reason: reason.to_owned(),
        };
        let test_point_id = self.test_point_id.unwrap_or_else(|| "local".to_owned());
        if !valid_id(&test_point_id) {
            return Err(invalid(
                "test_point_id",
                "1-64 characters of a-z, 0-9, '-', '_', '.'",
            ));
        }
        let access = self.access.unwrap_or_default();
        if access == AccessMode::TokenRequired
            && self.collector.is_none()
            && self.collector_key.is_none()
        {
            return Err(invalid(
                "access",
                "token-required needs `collector` or `collector_key` (whose tokens to accept)",
            ));
        }
        if let Some(key) = &self.collector_key {
            ispeed_proto::receipt::decode_public_key(key)
                .map_err(|_| invalid("collector_key", "not an Ed25519 public key"))?;
        }
        let registration = match self.collector {
            None => None,
            Some(url) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(invalid("collector", "must be an http:// or https:// URL"));
                }
                match (self.lat, self.lon) {
                    (None, None) => {}
                    (Some(lat), Some(lon))
                        if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) => {}
                    _ => return Err(invalid("lat", "lat and lon go together, in range")),
                }
                let interval = positive(
                    "heartbeat_interval_s",
                    self.heartbeat_interval_s
                        .unwrap_or(HEARTBEAT_INTERVAL_S as f64),
                )?;
                Some(Registration {
                    collector_url: url.trim_end_matches('/').to_owned(),
                    class: self.class.unwrap_or(TestPointClass::Cloud),
                    operator: self
                        .operator
                        .filter(|o| !o.trim().is_empty())
                        .unwrap_or_else(|| test_point_id.clone()),
                    name: self.name,
                    asn: self.asn,
                    province_code: self.province_code,
                    ward_code: self.ward_code,
                    lat: self.lat,
                    lon: self.lon,
                    interval: Duration::from_secs_f64(interval),
                })
            }
        };
        let max_sessions = self.max_sessions.unwrap_or(200);
        if max_sessions == 0 {
            return Err(ConfigError::Invalid {
                field: "max_sessions",
                reason: "must be at least 1".into(),
            });
        }
        // Both directions at full line rate for their whole time, plus 10 %.
        let default_budget = (line_rate_mbps * 1e6 / 8.0 * max_seconds * 2.0 * 1.1) as u64;
        Ok(ServerConfig {
            test_point_id,
            listen: self.listen.unwrap_or_else(default_listen),
            key_file: self
                .key_file
                .unwrap_or_else(|| PathBuf::from("ispeed-test-point.key")),
            max_sessions,
            max_per_direction: Duration::from_secs_f64(max_seconds),
            session_ttl: Duration::from_secs_f64(ttl.max(max_seconds * 2.0)),
            line_rate_mbps,
            byte_budget: self.byte_budget.unwrap_or(default_budget),
            ipv4_url: self.ipv4_url,
            ipv6_url: self.ipv6_url,
            shutdown_grace: Duration::from_secs_f64(self.shutdown_grace_s.unwrap_or(5.0).max(0.0)),
            access,
            collector_key: self.collector_key,
            registration,
        })
    }
}

/// Where a test point listens unless told otherwise: every IPv4 and IPv6
/// address on port 8080.
pub fn default_listen() -> Vec<SocketAddr> {
    vec![
        SocketAddr::from(([0, 0, 0, 0], 8080)),
        SocketAddr::from(([0u16; 8], 8080)),
    ]
}

/// Checked configuration of a test point.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub test_point_id: String,
    pub listen: Vec<SocketAddr>,
    pub key_file: PathBuf,
    pub max_sessions: u32,
    pub max_per_direction: Duration,
    pub session_ttl: Duration,
    pub line_rate_mbps: f64,
    pub byte_budget: u64,
    pub ipv4_url: Option<String>,
    pub ipv6_url: Option<String>,
    pub shutdown_grace: Duration,
    pub access: AccessMode,
    /// Pinned collector key for access tokens, if configured.
    pub collector_key: Option<String>,
    /// Heartbeats to a collector, if configured.
    pub registration: Option<Registration>,
}

/// What a test point tells its collector about itself (besides its key,
/// URLs, capacity and load, which come from the rest of the config and
/// from the running state).
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// Base URL of the collector, without a trailing `/`.
    pub collector_url: String,
    pub class: TestPointClass,
    pub operator: String,
    pub name: Option<String>,
    pub asn: Option<u32>,
    pub province_code: Option<String>,
    pub ward_code: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub interval: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        RawConfig::default().resolve().expect("defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployment_example_is_a_valid_config() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/test-point.toml");
        let config = RawConfig::from_file(&path).unwrap().resolve().unwrap();
        let registration = config.registration.expect("the example registers");
        assert_eq!(registration.class, TestPointClass::OnNet);
        assert_eq!(config.access, AccessMode::TokenRequired);
        assert_eq!(config.listen, default_listen());
    }

    #[test]
    fn token_required_needs_a_collector_to_trust() {
        let raw = RawConfig {
            access: Some(AccessMode::TokenRequired),
            ..RawConfig::default()
        };
        assert!(raw.resolve().is_err());
        let bad_id = RawConfig {
            test_point_id: Some("Has Spaces".into()),
            ..RawConfig::default()
        };
        assert!(bad_id.resolve().is_err());
    }
}
