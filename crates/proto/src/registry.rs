//! The test-point network (`spec/registry.md`): signed heartbeats from test
//! points to the collector, locate answers with access tokens signed by the
//! collector, and the token check a test point runs before it admits a
//! session.
//!
//! Both signatures are Ed25519 in the [`crate::signed`] envelope, each kind
//! with its own context, so neither can be replayed as a receipt or as the
//! other. Like the rest of this crate: no I/O, no clock (`now_ms` is passed in).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::receipt::decode_public_key;
use crate::signed::{self, Envelope, EnvelopeError, Kind};
use crate::ErrorCode;

/// A test point sends a heartbeat this often.
pub const HEARTBEAT_INTERVAL_S: u64 = 10;
/// A test point drops out of locate this long after its last heartbeat.
pub const LIVENESS_TIMEOUT_S: u64 = 30;
/// A heartbeat may be at most this old (or this far in the future) when it
/// arrives: clocks differ, but a captured heartbeat must not be replayable
/// for long.
pub const HEARTBEAT_MAX_SKEW_MS: u64 = 5 * 60_000;
/// Access tokens are valid this long after locate issues them.
pub const ACCESS_TOKEN_TTL_MS: u64 = 60_000;
/// Locate returns at most this many candidates.
pub const LOCATE_MAX_CANDIDATES: usize = 5;
/// Locate stops offering a test point whose reported load reaches this.
pub const LOCATE_MAX_LOAD: f64 = 0.9;
/// A client prefers an on-net test point of its own ISP when its RTT is
/// within this factor of the best candidate's.
pub const ON_NET_RTT_FACTOR: f64 = 1.2;
/// Total time a client spends measuring candidates' RTTs.
pub const SELECTION_PROBE_BUDGET_MS: u64 = 1000;
/// Longest operator, name and URL strings in a heartbeat.
pub const MAX_TEXT_LEN: usize = 200;

/// Heartbeat envelope: tag and signing context.
pub const HEARTBEAT_KIND: Kind = Kind {
    tag: "h1",
    context: b"ispeed-heartbeat-v1\n",
};
/// Access-token envelope: tag and signing context.
pub const TOKEN_KIND: Kind = Kind {
    tag: "t1",
    context: b"ispeed-access-token-v1\n",
};

/// HTTP paths of the registry API (collector side).
pub mod paths {
    pub const HEARTBEAT: &str = "/api/v1/test-points/heartbeat";
    pub const LOCATE: &str = "/api/v1/locate";
    pub const ADMIN_TEST_POINTS: &str = "/api/v1/admin/test-points";

    /// `/api/v1/admin/test-points/{id}/{action}` (approve, revoke).
    pub fn admin_action(id: &str, action: &str) -> String {
        format!("{ADMIN_TEST_POINTS}/{id}/{action}")
    }
}

/// Where a test point sits in the network; statistics can be split by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestPointClass {
    /// At the national exchange (VNIX): one hop from every domestic ISP.
    Vnix,
    /// Inside one ISP's network (its ASN): best for that ISP's customers.
    OnNet,
    /// In a domestic cloud or data centre.
    Cloud,
    /// Abroad: measures the international path.
    International,
}

impl TestPointClass {
    pub const ALL: [TestPointClass; 4] = [
        TestPointClass::Vnix,
        TestPointClass::OnNet,
        TestPointClass::Cloud,
        TestPointClass::International,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TestPointClass::Vnix => "vnix",
            TestPointClass::OnNet => "on_net",
            TestPointClass::Cloud => "cloud",
            TestPointClass::International => "international",
        }
    }

    pub fn parse(text: &str) -> Option<TestPointClass> {
        TestPointClass::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// Whether a test point admits sessions without a locate token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessMode {
    /// Anyone may test (self-hosting, a local test point).
    #[default]
    Open,
    /// A session needs a valid, unexpired, unused token for this test point.
    TokenRequired,
}

/// What a test point can take.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    pub max_sessions: u32,
    pub line_rate_mbps: f64,
}

/// What a test point is doing now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Load {
    pub active_sessions: u32,
    /// Payload moved in both directions over the last interval (Mbit/s).
    pub throughput_mbps: f64,
    /// Process CPU use over the last interval, in cores (1.0 = one core busy).
    pub cpu_cores: f64,
    /// Cores the machine has, to turn `cpu_cores` into a fraction.
    pub cores: u32,
}

impl Load {
    /// The busiest of sessions, line and CPU, as a fraction of capacity.
    pub fn fraction(&self, capacity: &Capacity) -> f64 {
        let sessions = f64::from(self.active_sessions) / f64::from(capacity.max_sessions.max(1));
        let line = if capacity.line_rate_mbps > 0.0 {
            self.throughput_mbps / capacity.line_rate_mbps
        } else {
            0.0
        };
        let cpu = if self.cores > 0 {
            self.cpu_cores / f64::from(self.cores)
        } else {
            0.0
        };
        let worst = sessions.max(line).max(cpu);
        if worst.is_finite() {
            worst.max(0.0)
        } else {
            1.0
        }
    }
}

/// The signed content of a heartbeat: who the test point is, how to reach
/// it, where it is, and how busy it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub v: u32,
    pub test_point_id: String,
    /// The key that signed this heartbeat and signs the test point's receipts.
    pub key: String,
    /// Unix ms when it was sent; each heartbeat's is larger than the last.
    pub sent_at_ms: u64,
    pub ipv4_url: Option<String>,
    pub ipv6_url: Option<String>,
    pub name: Option<String>,
    pub operator: String,
    /// The AS the test point's addresses belong to.
    pub asn: Option<u32>,
    pub class: TestPointClass,
    pub province_code: Option<String>,
    pub ward_code: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub access: AccessMode,
    pub capacity: Capacity,
    pub load: Load,
}

impl Heartbeat {
    /// Signs the heartbeat (compact `h1.<payload>.<signature>`).
    pub fn sign(&self, key: &SigningKey) -> String {
        let bytes = serde_json::to_vec(self).expect("heartbeat serialises");
        signed::sign(HEARTBEAT_KIND, &bytes, key)
    }

    /// Parses a heartbeat and checks that the key it names signed it: proof
    /// that the sender holds that key. Whether the key is *trusted* is the
    /// collector's decision, not this function's.
    pub fn verify_self_signed(compact: &str) -> Result<Heartbeat, Rejection> {
        let envelope = Envelope::parse(HEARTBEAT_KIND, compact).map_err(bad_envelope)?;
        let heartbeat: Heartbeat = serde_json::from_slice(envelope.payload_unverified())
            .map_err(|e| Rejection::new(ErrorCode::MalformedJson, format!("heartbeat: {e}")))?;
        let key = decode_public_key(&heartbeat.key)
            .map_err(|_| Rejection::new(ErrorCode::BadRequest, "heartbeat key is not Ed25519"))?;
        envelope.verify(HEARTBEAT_KIND, &key).map_err(|_| {
            Rejection::new(
                ErrorCode::BadSignature,
                "the heartbeat is not signed by the key it names",
            )
        })?;
        heartbeat.check_fields()?;
        Ok(heartbeat)
    }

    /// The URL clients use first: IPv4 when there is one, as most clients have it.
    pub fn primary_url(&self) -> Option<&str> {
        self.ipv4_url.as_deref().or(self.ipv6_url.as_deref())
    }

    fn check_fields(&self) -> Result<(), Rejection> {
        let bad = |m: &str| Err(Rejection::new(ErrorCode::BadRequest, m));
        if self.v != 1 {
            return bad("heartbeat version must be 1");
        }
        if !valid_id(&self.test_point_id) {
            return bad("test_point_id must be 1-64 characters of a-z, 0-9, '-', '_', '.'");
        }
        if self.primary_url().is_none() {
            return bad("a heartbeat needs ipv4_url or ipv6_url");
        }
        for url in [&self.ipv4_url, &self.ipv6_url].into_iter().flatten() {
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || url.len() > MAX_TEXT_LEN
            {
                return bad("URLs must be http:// or https:// and at most 200 characters");
            }
        }
        if self.operator.trim().is_empty()
            || self.operator.len() > MAX_TEXT_LEN
            || self.name.as_ref().is_some_and(|n| n.len() > MAX_TEXT_LEN)
        {
            return bad("operator must be 1-200 characters (name at most 200)");
        }
        match (self.lat, self.lon) {
            (None, None) => {}
            (Some(lat), Some(lon))
                if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) => {}
            _ => return bad("lat and lon must be given together and in range"),
        }
        let c = &self.capacity;
        if c.max_sessions == 0 || !(c.line_rate_mbps.is_finite() && c.line_rate_mbps > 0.0) {
            return bad("capacity needs max_sessions ≥ 1 and a positive line rate");
        }
        let l = &self.load;
        if !(l.throughput_mbps.is_finite()
            && l.throughput_mbps >= 0.0
            && l.cpu_cores.is_finite()
            && l.cpu_cores >= 0.0)
        {
            return bad("load figures must be finite and non-negative");
        }
        Ok(())
    }
}

/// `POST /api/v1/test-points/heartbeat` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The compact signed heartbeat.
    pub heartbeat: String,
}

/// Where a test point stands with the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationStatus {
    /// Known, waiting for an admin to approve its key; not offered, its
    /// receipts refused.
    Pending,
    /// Offered by locate while alive; its receipts accepted.
    Approved,
    /// Its key is no longer trusted: new receipts refused, earlier ones kept.
    Revoked,
}

impl RegistrationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationStatus::Pending => "pending",
            RegistrationStatus::Approved => "approved",
            RegistrationStatus::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<RegistrationStatus> {
        [
            RegistrationStatus::Pending,
            RegistrationStatus::Approved,
            RegistrationStatus::Revoked,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// The collector's answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    pub status: RegistrationStatus,
    /// The collector's token-signing key (unpadded base64url Ed25519).
    pub collector_key: String,
    /// When to send the next heartbeat.
    pub interval_s: u64,
}

/// What an access token grants: one session at one test point, soon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessClaims {
    pub v: u32,
    /// The test point id the token is for.
    pub aud: String,
    pub iat_ms: u64,
    pub exp_ms: u64,
    /// 128 random bits (base64url): a test point accepts each nonce once.
    pub nonce: String,
}

impl AccessClaims {
    /// Claims for `audience`, valid from `now_ms` for [`ACCESS_TOKEN_TTL_MS`].
    pub fn new(audience: &str, now_ms: u64, nonce: [u8; 16]) -> AccessClaims {
        AccessClaims {
            v: 1,
            aud: audience.to_owned(),
            iat_ms: now_ms,
            exp_ms: now_ms + ACCESS_TOKEN_TTL_MS,
            nonce: URL_SAFE_NO_PAD.encode(nonce),
        }
    }

    pub fn sign(&self, key: &SigningKey) -> String {
        let bytes = serde_json::to_vec(self).expect("claims serialise");
        signed::sign(TOKEN_KIND, &bytes, key)
    }

    /// Checks a token for test point `me` at `now_ms`: the collector's
    /// signature, the audience and the expiry. Whether its nonce was used
    /// before is the caller's to check (it holds the memory).
    pub fn verify(
        compact: &str,
        collector: &VerifyingKey,
        me: &str,
        now_ms: u64,
    ) -> Result<AccessClaims, Rejection> {
        let invalid = |m: String| Rejection::new(ErrorCode::TokenInvalid, m);
        let envelope =
            Envelope::parse(TOKEN_KIND, compact).map_err(|e| invalid(format!("token: {e}")))?;
        let bytes = envelope.verify(TOKEN_KIND, collector).map_err(|_| {
            invalid("the token is not signed by this test point's collector".into())
        })?;
        let claims: AccessClaims =
            serde_json::from_slice(bytes).map_err(|e| invalid(format!("token claims: {e}")))?;
        if claims.aud != me {
            return Err(Rejection::new(
                ErrorCode::TokenAudience,
                format!("the token is for test point {:?}, not this one", claims.aud),
            ));
        }
        if now_ms >= claims.exp_ms {
            return Err(Rejection::new(
                ErrorCode::TokenExpired,
                format!(
                    "the token expired {} s ago; ask the collector for a new one",
                    (now_ms - claims.exp_ms) / 1000
                ),
            ));
        }
        if claims.iat_ms > now_ms + HEARTBEAT_MAX_SKEW_MS {
            return Err(invalid("the token was issued in the future".into()));
        }
        Ok(claims)
    }
}

/// The client as the collector sees it in `locate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocateClient {
    /// ISP id from the client's address (`"other"` when unknown).
    pub isp: String,
    pub asn: Option<u32>,
    pub ip_version: u8,
}

/// One test point offered by `locate`, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub id: String,
    pub name: Option<String>,
    pub operator: String,
    pub class: TestPointClass,
    /// The URL to test against (IPv4 when it has one).
    pub url: String,
    pub ipv4_url: Option<String>,
    pub ipv6_url: Option<String>,
    /// The key its receipts must verify with.
    pub public_key: String,
    pub province_code: Option<String>,
    /// The ISP whose network it sits in (`on_net` class), if any.
    pub isp: Option<String>,
    /// Whether it is on-net in the client's own ISP.
    pub on_net: bool,
    /// Last reported load, as a fraction of capacity.
    pub load: f64,
    /// The collector's estimate of the RTT from the client (ms), used to rank.
    pub estimated_rtt_ms: f64,
    /// Access token for this test point only (send it when creating the session).
    pub token: String,
    pub token_expires_at_ms: u64,
}

/// Response of `GET /api/v1/locate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Located {
    pub client: LocateClient,
    pub candidates: Vec<Candidate>,
}

/// A test point as an admin sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminTestPoint {
    pub id: String,
    pub status: RegistrationStatus,
    pub public_key: String,
    pub url: String,
    pub name: Option<String>,
    pub operator: Option<String>,
    pub class: Option<TestPointClass>,
    pub asn: Option<u32>,
    pub province_code: Option<String>,
    pub registered_at_ms: Option<u64>,
    pub approved_at_ms: Option<u64>,
    pub revoked_at_ms: Option<u64>,
    /// Set from the config file (not by heartbeats).
    pub configured: bool,
    pub last_heartbeat_ms: Option<u64>,
    pub alive: bool,
    pub load: Option<f64>,
}

/// Response of `GET /api/v1/admin/test-points`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdminTestPoints {
    pub test_points: Vec<AdminTestPoint>,
}

/// A typed refusal (code and message), rendered by the caller as its API error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
}

impl Rejection {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Rejection {
        Rejection {
            code,
            message: message.into(),
        }
    }
}

fn bad_envelope(error: EnvelopeError) -> Rejection {
    match error {
        EnvelopeError::BadSignature => Rejection::new(ErrorCode::BadSignature, error.to_string()),
        _ => Rejection::new(ErrorCode::BadRequest, format!("heartbeat: {error}")),
    }
}

/// Test point ids: short, URL- and log-safe.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn heartbeat(key: &SigningKey) -> Heartbeat {
        Heartbeat {
            v: 1,
            test_point_id: "hn-vnpt-1".into(),
            key: crate::receipt::encode_public_key(&key.verifying_key()),
            sent_at_ms: 1_000,
            ipv4_url: Some("http://10.0.0.1:8080".into()),
            ipv6_url: None,
            name: None,
            operator: "VNPT".into(),
            asn: Some(45899),
            class: TestPointClass::OnNet,
            province_code: Some("01".into()),
            ward_code: None,
            lat: Some(21.0),
            lon: Some(105.8),
            access: AccessMode::TokenRequired,
            capacity: Capacity {
                max_sessions: 50,
                line_rate_mbps: 1000.0,
            },
            load: Load::default(),
        }
    }

    #[test]
    fn heartbeats_prove_possession_of_their_key() {
        let key = SigningKey::from_bytes(&[1u8; 32]);
        let hb = heartbeat(&key);
        assert_eq!(Heartbeat::verify_self_signed(&hb.sign(&key)).unwrap(), hb);
        // Signed by another key than the one named: refused.
        let other = SigningKey::from_bytes(&[2u8; 32]);
        let forged = hb.sign(&other);
        assert_eq!(
            Heartbeat::verify_self_signed(&forged).unwrap_err().code,
            ErrorCode::BadSignature
        );
        // A receipt-context signature over the same bytes is not a heartbeat.
        let bytes = serde_json::to_vec(&hb).unwrap();
        let as_receipt = signed::sign(
            Kind {
                tag: "h1",
                context: crate::consts::RECEIPT_SIGNING_CONTEXT,
            },
            &bytes,
            &key,
        );
        assert!(Heartbeat::verify_self_signed(&as_receipt).is_err());
    }

    #[test]
    fn heartbeat_fields_are_checked() {
        let key = SigningKey::from_bytes(&[1u8; 32]);
        let cases: [fn(&mut Heartbeat); 9] = [
            |h| h.test_point_id = "Bad Id".into(),
            |h| h.ipv4_url = None,
            |h| h.ipv4_url = Some("ftp://x".into()),
            |h| h.operator = " ".into(),
            |h| h.lat = None,
            |h| h.lat = Some(91.0),
            |h| h.capacity.max_sessions = 0,
            |h| h.capacity.line_rate_mbps = -1.0,
            |h| h.load.cpu_cores = -1.0,
        ];
        for (i, change) in cases.iter().enumerate() {
            let mut hb = heartbeat(&key);
            change(&mut hb);
            let err = Heartbeat::verify_self_signed(&hb.sign(&key)).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadRequest, "case {i}: {}", err.message);
        }
    }

    #[test]
    fn tokens_check_signature_audience_and_expiry() {
        let collector = SigningKey::from_bytes(&[5u8; 32]);
        let vk = collector.verifying_key();
        let claims = AccessClaims::new("tp-a", 10_000, [9u8; 16]);
        let token = claims.sign(&collector);
        assert_eq!(
            AccessClaims::verify(&token, &vk, "tp-a", 10_001).unwrap(),
            claims
        );
        let code = |r: Result<AccessClaims, Rejection>| r.unwrap_err().code;
        assert_eq!(
            code(AccessClaims::verify(&token, &vk, "tp-b", 10_001)),
            ErrorCode::TokenAudience
        );
        assert_eq!(
            code(AccessClaims::verify(
                &token,
                &vk,
                "tp-a",
                10_000 + ACCESS_TOKEN_TTL_MS
            )),
            ErrorCode::TokenExpired
        );
        let stranger = SigningKey::from_bytes(&[6u8; 32]);
        assert_eq!(
            code(AccessClaims::verify(
                &claims.sign(&stranger),
                &vk,
                "tp-a",
                10_001
            )),
            ErrorCode::TokenInvalid
        );
        assert_eq!(
            code(AccessClaims::verify("garbage", &vk, "tp-a", 10_001)),
            ErrorCode::TokenInvalid
        );
    }

    #[test]
    fn load_is_the_busiest_resource() {
        let cap = Capacity {
            max_sessions: 50,
            line_rate_mbps: 1000.0,
        };
        let load = Load {
            active_sessions: 10,
            throughput_mbps: 950.0,
            cpu_cores: 0.5,
            cores: 2,
        };
        assert!((load.fraction(&cap) - 0.95).abs() < 1e-9);
        assert_eq!(Load::default().fraction(&cap), 0.0);
    }
}
