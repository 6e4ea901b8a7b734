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

/// A quota override: every ward of a province (`unit` = its 2-digit code)
/// or one ward (5-digit code); either access type may be left at the default.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawQuota {
    pub unit: String,
    pub mobile: Option<u64>,
    pub fixed: Option<u64>,
}

/// The `[collector]` table (and `ispeed serve`'s config file).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub data: Option<PathBuf>,
    /// Where results live: `sqlite:DIR` (default: the data directory) or
    /// `postgres://user@host:port/db[?schema=NAME]`.
    pub store: Option<String>,
    /// A PostgreSQL read replica (streaming standby) of `store` that
    /// answers statistics reads: `postgres://user@replica/db` (the schema is
    /// the store's). Writes and everything else go to `store`.
    pub store_replica: Option<String>,
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
    /// Ward quota overrides per province or ward (`[[collector.quotas]]`).
    #[serde(default)]
    pub quotas: Vec<RawQuota>,
    /// How long a web sign-in lasts (default 8 h).
    pub session_ttl_s: Option<u64>,
    /// Mark cookies `Secure` even without `X-Forwarded-Proto: https`
    /// (a collector served over HTTPS directly).
    pub secure_cookies: Option<bool>,
}

/// Where the store lives, parsed from `store = "..."` / `--store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// The embedded SQLite store in this directory.
    Sqlite(PathBuf),
    /// A PostgreSQL database; `schema` keeps several deployments (or test
    /// runs) apart in one database.
    Postgres { url: String, schema: Option<String> },
}

/// A PostgreSQL schema name that needs no quoting (it is written into SQL
/// and `search_path` as is): lower-case letters, digits and `_`, not
/// starting with a digit, at most 63 bytes.
pub fn valid_schema_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

impl StoreLocation {
    /// `sqlite:DIR`, `postgres://...` or `postgresql://...`; a `schema=NAME`
    /// query parameter selects the schema (created if missing).
    pub fn parse(text: &str) -> Result<StoreLocation, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            field: "store",
            reason,
        };
        if let Some(dir) = text.strip_prefix("sqlite:") {
            if dir.is_empty() {
                return Err(invalid("sqlite: needs a directory".to_owned()));
            }
            return Ok(StoreLocation::Sqlite(PathBuf::from(dir)));
        }
        if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
            return Err(invalid(format!(
                "{text:?}: expected sqlite:DIR or postgres://user@host/db"
            )));
        }
        let (base, query) = match text.split_once('?') {
            Some((base, query)) => (base, query),
            None => (text, ""),
        };
        let mut schema = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.strip_prefix("schema=") {
                Some(name) => {
                    if !valid_schema_name(name) {
                        return Err(invalid(format!(
                            "schema {name:?}: use lower-case letters, digits and _"
                        )));
                    }
                    schema = Some(name.to_owned());
                }
                None => kept.push(pair),
            }
        }
        let url = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        url.parse::<tokio_postgres::Config>()
            .map_err(|e| invalid(format!("{e}")))?;
        Ok(StoreLocation::Postgres { url, schema })
    }

    /// For logs: the URL without a password.
    pub fn describe(&self) -> String {
        match self {
            StoreLocation::Sqlite(dir) => format!("sqlite:{}", dir.display()),
            StoreLocation::Postgres { url, schema } => {
                let shown = match (url.find("://"), url.rfind('@')) {
                    (Some(start), Some(at)) if at > start => {
                        let userinfo = &url[start + 3..at];
                        let user = userinfo.split(':').next().unwrap_or("");
                        format!("{}{user}{}", &url[..start + 3], &url[at..])
                    }
                    _ => url.clone(),
                };
                match schema {
                    Some(s) => format!("{shown} (schema {s})"),
                    None => shown,
                }
            }
        }
    }
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
    pub store: StoreLocation,
    /// See [`RawConfig::store_replica`]; only with a PostgreSQL store.
    pub store_replica: Option<String>,
    pub receipt_max_age: Duration,
    pub heavy_tester_cap: u32,
    pub thresholds: Thresholds,
    pub max_body_bytes: usize,
    pub max_batch: usize,
    pub mmdb: Option<PathBuf>,
    pub test_points: Vec<RawTestPoint>,
    pub admin_token_file: PathBuf,
    pub collector_key_file: PathBuf,
    pub quotas: Quotas,
    pub session_ttl: Duration,
    pub secure_cookies: bool,
}

/// Samples a ward should reach per month and access type: the default
/// (`ward_quota`, mobile and fixed counted separately), a province's
/// override for its wards, or a ward's own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quotas {
    pub default: u64,
    overrides: std::collections::BTreeMap<String, (Option<u64>, Option<u64>)>,
}

impl Quotas {
    pub fn new(default: u64) -> Quotas {
        Quotas {
            default,
            overrides: Default::default(),
        }
    }

    /// The province and ward codes with an override.
    pub fn units(&self) -> impl Iterator<Item = &str> + '_ {
        self.overrides.keys().map(String::as_str)
    }

    /// (mobile, fixed) for a ward of `province_code`.
    pub fn of_ward(&self, ward_code: &str, province_code: &str) -> (u64, u64) {
        let ward = self.overrides.get(ward_code).copied().unwrap_or_default();
        let province = self
            .overrides
            .get(province_code)
            .copied()
            .unwrap_or_default();
        (
            ward.0.or(province.0).unwrap_or(self.default),
            ward.1.or(province.1).unwrap_or(self.default),
        )
    }
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
        let mut quotas = Quotas::new(self.ward_quota.unwrap_or(defaults.ward_quota));
        for q in &self.quotas {
            let code_ok =
                matches!(q.unit.len(), 2 | 5) && q.unit.bytes().all(|b| b.is_ascii_digit());
            if !code_ok {
                return Err(invalid(
                    "quotas.unit",
                    "a 2-digit province or 5-digit ward code",
                ));
            }
            if q.mobile.is_none() && q.fixed.is_none() {
                return Err(invalid("quotas", "set mobile, fixed or both"));
            }
            if quotas
                .overrides
                .insert(q.unit.clone(), (q.mobile, q.fixed))
                .is_some()
            {
                return Err(invalid("quotas.unit", "listed twice"));
            }
        }
        let store = match &self.store {
            Some(text) => StoreLocation::parse(text)?,
            None => StoreLocation::Sqlite(data.clone()),
        };
        let store_replica = match (&self.store_replica, &store) {
            (None, _) => None,
            (Some(text), StoreLocation::Postgres { .. }) => match StoreLocation::parse(text)? {
                StoreLocation::Postgres { url, schema: None } => Some(url),
                _ => {
                    return Err(invalid(
                        "store_replica",
                        "a postgres:// URL without a schema (the store's is used)",
                    ))
                }
            },
            (Some(_), StoreLocation::Sqlite(_)) => {
                return Err(invalid("store_replica", "needs a PostgreSQL store"))
            }
        };
        Ok(CollectorConfig {
            store,
            store_replica,
            quotas,
            session_ttl: Duration::from_secs(match self.session_ttl_s {
                Some(0) => return Err(invalid("session_ttl_s", "must be at least 1")),
                Some(s) => s,
                None => 8 * 3600,
            }),
            secure_cookies: self.secure_cookies.unwrap_or(false),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(quotas: &str) -> Result<CollectorConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(quotas).unwrap();
        raw.resolve(Path::new("data"))
    }

    #[test]
    fn a_ward_override_beats_its_province_which_beats_the_default() {
        let config = resolve(
            "ward_quota = 250\n\
             [[quotas]]\nunit = \"79\"\nmobile = 200\n\
             [[quotas]]\nunit = \"26740\"\nfixed = 50\n",
        )
        .unwrap();
        let q = &config.quotas;
        assert_eq!(q.of_ward("26740", "79"), (200, 50));
        assert_eq!(q.of_ward("26743", "79"), (200, 250));
        assert_eq!(q.of_ward("00070", "01"), (250, 250));
    }

    #[test]
    fn store_locations_parse_and_hide_passwords() {
        assert_eq!(
            StoreLocation::parse("sqlite:/tmp/x").unwrap(),
            StoreLocation::Sqlite("/tmp/x".into())
        );
        let pg = StoreLocation::parse(
            "postgres://app:secret@db:5432/ispeed?schema=prod&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(
            pg,
            StoreLocation::Postgres {
                url: "postgres://app:secret@db:5432/ispeed?connect_timeout=5".into(),
                schema: Some("prod".into())
            }
        );
        assert!(!pg.describe().contains("secret"));
        for bad in [
            "mysql://x",
            "sqlite:",
            "postgres://h/db?schema=Bad-Name",
            "postgres://h/db?schema=1x",
            "postgres://h:notaport/db",
        ] {
            assert!(StoreLocation::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            resolve("").unwrap().store,
            StoreLocation::Sqlite("data".into())
        );
    }

    #[test]
    fn bad_overrides_are_refused() {
        for bad in [
            "[[quotas]]\nunit = \"7\"\nmobile = 1\n",
            "[[quotas]]\nunit = \"79\"\n",
            "[[quotas]]\nunit = \"79\"\nmobile = 1\n[[quotas]]\nunit = \"79\"\nfixed = 1\n",
        ] {
            assert!(resolve(bad).is_err(), "{bad}");
        }
    }
}
