//! Turns a submission into a verified, enriched record, or a typed refusal.
//! No I/O and no clock: the caller passes `now_ms` and the trusted keys.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use ispeed_enrich::{truncate_ip, IspResolver, Units, WardIndex};
use ispeed_proto::receipt::{decode_public_key, Receipt, ReceiptError, ReceiptPayload};
use ispeed_proto::registry::{RegistrationStatus, TestPointClass};
use ispeed_proto::results::{
    valid_source, ClientMetrics, ImplausibleReason, PlaceSource, PublishedMetrics, ResultStatus,
    SubmitResult,
};
use ispeed_proto::{ErrorCode, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::period::ict_day;
use crate::store::{NewResult, TestPointRecord};

/// A receipt may claim to have finished at most this far in the collector's
/// future (clock differences between machines).
pub const MAX_CLOCK_AHEAD_MS: u64 = 5 * 60_000;
/// Longest accepted device id and client version strings.
const MAX_ID_LEN: usize = 128;

/// Tolerances between what the client reports and what the test point
/// counted. Client and test point run the same estimator over different
/// counts (received vs acknowledged, sent vs received), so honest results
/// agree closely; these bounds are several times wider than any honest
/// disagreement measured on shaped links.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Client download may differ from the receipt by this fraction of it…
    pub download_rel: f64,
    /// …plus this many Mbit/s (slow links, short windows).
    pub rate_abs_mbps: f64,
    /// Client upload (handed to sockets) may exceed the receipt by this factor…
    pub upload_over: f64,
    /// …and fall below it by this fraction (queued ≥ delivered, never much less).
    pub upload_under_rel: f64,
    /// Client latency (HTTP ping) may exceed the kernel RTT by this factor plus
    /// `latency_abs_ms`, and fall below it by half.
    pub latency_over: f64,
    pub latency_abs_ms: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            download_rel: 0.25,
            rate_abs_mbps: 1.0,
            upload_over: 3.0,
            upload_under_rel: 0.3,
            latency_over: 4.0,
            latency_abs_ms: 50.0,
        }
    }
}

/// Why a submission is refused (rendered as a typed error).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// A test point key the collector trusts.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub test_point_id: String,
    pub key: VerifyingKey,
    pub line_rate_mbps: f64,
    pub class: Option<TestPointClass>,
}

/// Everything verification needs besides the submission.
pub struct Verifier {
    keys: HashMap<String, TrustedKey>,
    /// Revoked keys (base64url) → their test point id: refused with their own code.
    revoked: HashMap<String, String>,
    pub receipt_max_age_ms: u64,
    pub tolerance: Tolerance,
}

impl Verifier {
    /// Trusts the approved test points among `records`; a record with an
    /// undecodable key is skipped with a warning. Revoked keys are remembered
    /// so their receipts get a clear refusal.
    pub fn new(records: &[TestPointRecord], receipt_max_age_ms: u64) -> Verifier {
        let mut keys = HashMap::new();
        let revoked = records
            .iter()
            .filter(|r| r.status == RegistrationStatus::Revoked)
            .map(|r| (r.public_key.clone(), r.id.clone()))
            .collect();
        for record in records.iter().filter(|r| r.approved()) {
            match decode_public_key(&record.public_key) {
                Ok(key) => {
                    keys.insert(
                        record.public_key.clone(),
                        TrustedKey {
                            test_point_id: record.id.clone(),
                            key,
                            line_rate_mbps: record.line_rate_mbps,
                            class: record.class(),
                        },
                    );
                }
                Err(error) => tracing::warn!(id = %record.id, %error, "test point key unusable"),
            }
        }
        Verifier {
            keys,
            revoked,
            receipt_max_age_ms,
            tolerance: Tolerance::default(),
        }
    }

    /// Checks a receipt's key (approved, not revoked) and signature.
    fn trusted_payload(&self, compact: &str) -> Result<(ReceiptPayload, &TrustedKey), Refusal> {
        let receipt = Receipt::parse(compact).map_err(receipt_refusal)?;
        let claimed = receipt.payload_unverified().map_err(receipt_refusal)?;
        if let Some(id) = self.revoked.get(&claimed.key) {
            return Err(refuse(
                ErrorCode::TestPointRevoked,
                format!("the receipt is signed by test point {id:?}, whose key was revoked"),
            ));
        }
        let trusted = self.keys.get(&claimed.key).ok_or_else(|| {
            refuse(
                ErrorCode::UnknownTestPoint,
                format!(
                    "the receipt is signed by test point {:?} whose key this collector has not approved",
                    claimed.test_point_id
                ),
            )
        })?;
        let payload = receipt.verify(&trusted.key).map_err(receipt_refusal)?;
        Ok((payload, trusted))
    }

    /// Checks the receipt (known key, signature), the download receipt of a
    /// failover if there is one, and the values. An expired receipt is
    /// returned in `expired` rather than refused at once, because a retry of
    /// a result stored before it expired must still succeed.
    pub fn verify(&self, submission: &SubmitResult, now_ms: u64) -> Result<Verified<'_>, Refusal> {
        let (own, trusted) = self.trusted_payload(&submission.receipt)?;
        if own.finished_at_ms > now_ms + MAX_CLOCK_AHEAD_MS {
            return Err(refuse(
                ErrorCode::ImpossibleValue,
                "the receipt finished in the future",
            ));
        }
        let (payload, download_from, line_rate) = match &submission.download_receipt {
            None => (own, None, trusted.line_rate_mbps),
            Some(compact) => {
                let (first, first_key) = self.trusted_payload(compact)?;
                check_failover(&first, &own, first_key.line_rate_mbps)?;
                let mut merged = own.clone();
                merged.download.clone_from(&first.download);
                let source = DownloadSource {
                    test_point_id: first_key.test_point_id.clone(),
                    session_id: first.session_id.clone(),
                    checkpoint: first,
                    receipt: own,
                };
                (
                    merged,
                    Some(source),
                    trusted.line_rate_mbps.max(first_key.line_rate_mbps),
                )
            }
        };
        check_values(submission, &payload, line_rate)?;
        let age_ms = now_ms.saturating_sub(payload.finished_at_ms);
        let expired = (age_ms > self.receipt_max_age_ms).then(|| {
            refuse(
                ErrorCode::ReceiptExpired,
                format!(
                    "the receipt is {} s old; this collector accepts receipts up to {} s old",
                    age_ms / 1000,
                    self.receipt_max_age_ms / 1000
                ),
            )
        });
        Ok(Verified {
            payload,
            trusted,
            expired,
            download_from,
        })
    }
}

/// A verified submission.
pub struct Verified<'a> {
    /// What the result publishes: the receipt's payload, with the download
    /// of `download_from`'s checkpoint when there is one.
    pub payload: ReceiptPayload,
    /// The test point whose receipt this is (and whose class it records).
    pub trusted: &'a TrustedKey,
    pub expired: Option<Refusal>,
    pub download_from: Option<DownloadSource>,
}

/// The download of a failover: measured and signed (at a checkpoint) by a
/// test point that went away during the upload.
#[derive(Debug, Clone)]
pub struct DownloadSource {
    pub test_point_id: String,
    pub session_id: String,
    /// The checkpoint receipt's payload, as signed.
    pub checkpoint: ReceiptPayload,
    /// The submission's own receipt payload, as signed.
    pub receipt: ReceiptPayload,
}

/// Longest time between the lost test point's checkpoint and the start of
/// the session that measured the upload instead.
pub const FAILOVER_MAX_GAP_MS: u64 = 5 * 60_000;

/// The rules for combining a checkpoint's download with another test
/// point's upload (spec/registry.md §6): the checkpoint backs a download,
/// the receipt carries none, both saw the same client address, and the
/// second session started after the checkpoint and soon after it.
fn check_failover(
    checkpoint: &ReceiptPayload,
    receipt: &ReceiptPayload,
    checkpoint_line_rate_mbps: f64,
) -> Result<(), Refusal> {
    let bad = |m: &str| Err(refuse(ErrorCode::ImpossibleValue, m));
    if !checkpoint.checkpoint || checkpoint.download.is_none() {
        return bad("download_receipt must be a checkpoint receipt with a download");
    }
    if receipt.download.is_some() {
        return bad("with download_receipt, the receipt must not carry a download of its own");
    }
    if parse_client_ip(&checkpoint.client_addr) != parse_client_ip(&receipt.client_addr) {
        return bad("the two receipts saw different client addresses");
    }
    if receipt.started_at_ms < checkpoint.finished_at_ms
        || receipt.started_at_ms - checkpoint.finished_at_ms > FAILOVER_MAX_GAP_MS
    {
        return bad("the upload's session must start after the checkpoint, within 5 minutes");
    }
    match checkpoint.download_mbps() {
        Some(v) if v.is_finite() && v >= 0.0 && v <= checkpoint_line_rate_mbps * 1.05 => Ok(()),
        Some(v) => Err(refuse(
            ErrorCode::ImpossibleValue,
            format!("checkpoint download = {v} is impossible"),
        )),
        None => bad("download_receipt must back a download"),
    }
}

fn receipt_refusal(error: ReceiptError) -> Refusal {
    refuse(
        ErrorCode::BadSignature,
        format!("receipt rejected: {error}"),
    )
}

fn check_values(
    submission: &SubmitResult,
    payload: &ReceiptPayload,
    line_rate_mbps: f64,
) -> Result<(), Refusal> {
    if submission.device_id.is_empty() || submission.device_id.len() > MAX_ID_LEN {
        return Err(refuse(
            ErrorCode::BadRequest,
            "device_id must be 1 to 128 characters",
        ));
    }
    if submission.client.version.len() > MAX_ID_LEN {
        return Err(refuse(
            ErrorCode::BadRequest,
            "client.version is longer than 128 characters",
        ));
    }
    let impossible = |what: &str, value: f64| {
        refuse(
            ErrorCode::ImpossibleValue,
            format!("{what} = {value} is impossible"),
        )
    };
    // Rates above the test point's line rate cannot have been measured.
    let rate_limit = line_rate_mbps * 1.05;
    for (what, value) in [
        ("receipt download", payload.download_mbps()),
        ("receipt upload", payload.upload_mbps()),
        ("metrics.download_mbps", submission.metrics.download_mbps),
        ("metrics.upload_mbps", submission.metrics.upload_mbps),
    ] {
        if let Some(v) = value {
            if !v.is_finite() || v < 0.0 || v > rate_limit {
                return Err(impossible(what, v));
            }
        }
    }
    let m = &submission.metrics;
    for (what, value) in [
        ("metrics.latency_ms", m.latency_ms),
        ("metrics.jitter_ms", m.jitter_ms),
        (
            "metrics.loaded_latency_download_ms",
            m.loaded_latency_download_ms,
        ),
        (
            "metrics.loaded_latency_upload_ms",
            m.loaded_latency_upload_ms,
        ),
    ] {
        if let Some(v) = value {
            if !v.is_finite() || !(0.0..=600_000.0).contains(&v) {
                return Err(impossible(what, v));
            }
        }
    }
    if let Some(location) = &submission.location {
        if !(-90.0..=90.0).contains(&location.lat) || !(-180.0..=180.0).contains(&location.lon) {
            return Err(refuse(
                ErrorCode::ImpossibleValue,
                "location must be WGS 84 latitude -90..90 and longitude -180..180",
            ));
        }
        if let Some(accuracy) = location.accuracy_m {
            if !accuracy.is_finite() || accuracy < 0.0 {
                return Err(impossible("location.accuracy_m", accuracy));
            }
        }
    }
    Ok(())
}

/// Compares what the client says with what the test point counted and
/// signed; each disagreement beyond tolerance is a reason.
pub fn plausibility(
    metrics: &ClientMetrics,
    payload: &ReceiptPayload,
    tolerance: &Tolerance,
) -> Vec<ImplausibleReason> {
    let mut reasons = Vec::new();
    // The figures the test point signed at `finish` are the client's word;
    // what the submission says is checked against them below.
    let signed = &payload.client_report;
    if let (Some(client), Some(server)) = (
        signed.download_mbps.or(metrics.download_mbps),
        payload.download_mbps(),
    ) {
        if (client - server).abs() > tolerance.download_rel * server + tolerance.rate_abs_mbps {
            reasons.push(ImplausibleReason::DownloadMismatch);
        }
    }
    if let (Some(client), Some(server)) = (
        signed.upload_mbps.or(metrics.upload_mbps),
        payload.upload_mbps(),
    ) {
        let high = tolerance.upload_over * server + tolerance.rate_abs_mbps;
        let low = (1.0 - tolerance.upload_under_rel) * server - tolerance.rate_abs_mbps;
        if client > high || client < low {
            reasons.push(ImplausibleReason::UploadMismatch);
        }
    }
    if let (Some(client), Some(server)) = (
        signed.latency_ms.or(metrics.latency_ms),
        server_latency_ms(payload),
    ) {
        let high = tolerance.latency_over * server + tolerance.latency_abs_ms;
        if client > high || client < 0.5 * server - 1.0 {
            reasons.push(ImplausibleReason::LatencyMismatch);
        }
    }
    // The test point signed what the client reported at the end of the test;
    // a submission that says otherwise was edited afterwards.
    // (submitted, signed). Dropping a signed figure is editing it too; a
    // figure the test point did not sign (the client's upload is only what
    // it handed its sockets) has nothing to be compared with.
    let differs = |submitted: Option<f64>, signed: Option<f64>| match (submitted, signed) {
        (Some(a), Some(b)) => (a - b).abs() > 1e-6 * a.abs().max(b.abs()).max(1.0),
        (None, Some(_)) => true,
        (_, None) => false,
    };
    if differs(metrics.download_mbps, signed.download_mbps)
        || differs(metrics.upload_mbps, signed.upload_mbps)
        || differs(metrics.latency_ms, signed.latency_ms)
    {
        reasons.push(ImplausibleReason::ReportMismatch);
    }
    reasons
}

/// The published latency: the test point's kernel RTT on the idle control
/// connection (its minimum when no idle sample exists).
pub fn server_latency_ms(payload: &ReceiptPayload) -> Option<f64> {
    payload
        .latency
        .idle_rtt_us
        .or(payload.latency.min_rtt_us)
        .map(|us| f64::from(us) / 1000.0)
}

/// Lookup tables for enrichment, loaded once.
pub struct Enricher {
    pub units: Units,
    pub wards: WardIndex,
    pub isps: IspResolver,
    /// Pre-2025 wards and their 2025 successors.
    pub legacy: ispeed_enrich::LegacyWards,
    /// Unit versions loaded after the embedded 2025 one, by effective month
    /// (spec/units.md); `units` and `wards` apply before the first.
    pub versions: Vec<(crate::period::Month, std::sync::Arc<ispeed_enrich::UnitSet>)>,
}

impl Enricher {
    /// The units and boundaries in force in `month`.
    pub fn at_month(&self, month: crate::period::Month) -> (&Units, &WardIndex) {
        match self.versions.iter().rev().find(|(from, _)| *from <= month) {
            Some((_, set)) => (&set.units, &set.wards),
            None => (&self.units, &self.wards),
        }
    }
}

/// Builds the record to store from a verified submission.
pub fn build_record(
    submission: &SubmitResult,
    payload: &ReceiptPayload,
    trusted: &TrustedKey,
    enricher: &Enricher,
    device_key: &[u8; 32],
    tolerance: &Tolerance,
    now_ms: u64,
) -> Result<NewResult, Refusal> {
    let client_ip = parse_client_ip(&payload.client_addr).ok_or_else(|| {
        refuse(
            ErrorCode::BadSignature,
            "the receipt's client address is unreadable",
        )
    })?;
    let isp = enricher.isps.lookup(client_ip);
    // The units in force when the test ran.
    let (units, wards) =
        enricher.at_month(crate::period::Month::of_day(ict_day(payload.started_at_ms)));
    if let Some(code) = &submission.ward_code {
        if units.ward(code).is_none() {
            return Err(refuse(
                ErrorCode::UnknownUnit,
                format!("ward_code {code:?} is not a ward of the 2025 unit list"),
            ));
        }
    }
    if let Some(source) = &submission.source {
        if !valid_source(source) {
            return Err(refuse(
                ErrorCode::BadRequest,
                "source (campaign tag) must be 1-64 characters without control characters or surrounding spaces",
            ));
        }
    }
    let located = submission.location.and_then(|l| wards.locate(l.lat, l.lon));
    if submission.ward_code.is_some() && submission.legacy_ward_code.is_some() {
        return Err(refuse(
            ErrorCode::BadRequest,
            "give ward_code (2025 units) or legacy_ward_code (before July 2025), not both",
        ));
    }
    let legacy = match &submission.legacy_ward_code {
        None => None,
        Some(code) => Some(enricher.legacy.get(code).ok_or_else(|| {
            refuse(
                ErrorCode::UnknownUnit,
                format!("legacy_ward_code {code:?} is not a ward of the units before July 2025"),
            )
        })?),
    };
    let (ward_code, place_source) = match (located, &submission.ward_code, legacy) {
        (Some(ward), _, _) => (Some(ward.to_owned()), PlaceSource::Location),
        (None, Some(chosen), _) => (Some(chosen.clone()), PlaceSource::Manual),
        (None, None, Some(old)) => (Some(old.successor.clone()), PlaceSource::Legacy),
        (None, None, None) => (None, PlaceSource::None),
    };
    let province_code = ward_code
        .as_deref()
        .and_then(|w| units.ward(w))
        .map(|w| w.province_code.clone());
    let reasons = plausibility(&submission.metrics, payload, tolerance);
    let status = if reasons.is_empty() {
        ResultStatus::Accepted
    } else {
        ResultStatus::Implausible
    };
    Ok(NewResult {
        result_id: submission.result_id,
        body_hash: body_hash(submission),
        received_at_ms: now_ms,
        measured_at_ms: submission.measured_at_ms,
        day: ict_day(payload.started_at_ms),
        device_hash: device_hash(device_key, &submission.device_id),
        client: submission.client.clone(),
        access: submission.access,
        test_point_id: trusted.test_point_id.clone(),
        session_id: payload.session_id.clone(),
        ip_version: payload.ip_version,
        client_net: truncate_ip(client_ip).to_string(),
        asn: isp.asn,
        isp: isp.isp_id,
        location: submission.location,
        // The unit as named: a 2025 ward, or `legacy:` and an old one.
        ward_chosen: submission.ward_code.clone().or_else(|| {
            submission
                .legacy_ward_code
                .as_ref()
                .map(|c| format!("legacy:{c}"))
        }),
        province_code,
        ward_code,
        place_source,
        metrics: PublishedMetrics {
            download_mbps: payload.download_mbps(),
            upload_mbps: payload.upload_mbps(),
            latency_ms: server_latency_ms(payload),
            jitter_ms: submission.metrics.jitter_ms,
            ipv6_capable: submission.metrics.ipv6_capable,
        },
        client_metrics: submission.metrics,
        status,
        reasons,
        receipt: redacted_payload(payload, client_ip),
        source: submission.source.clone(),
        test_point_class: trusted.class,
        download_test_point_id: None,
        download_session_id: None,
        download_receipt: None,
    })
}

/// SHA-256 of the submission as parsed and re-serialised: equal for an
/// idempotent retry, different for another result reusing the id.
pub fn body_hash(submission: &SubmitResult) -> [u8; 32] {
    let body = serde_json::to_vec(submission).expect("plain data serialises");
    Sha256::digest(&body).into()
}

/// The receipt's payload as stored: the client address truncated like
/// `client_net`, and no signature (with it, the full address could be
/// recovered by trying every one). The submission's `body_hash` still lets
/// an auditor holding the client's copy prove which receipt it was.
pub fn redacted_payload(payload: &ReceiptPayload, client_ip: IpAddr) -> String {
    let mut redacted = payload.clone();
    redacted.client_addr = truncate_ip(client_ip).to_string();
    serde_json::to_string(&redacted).expect("plain data serialises")
}

fn parse_client_ip(text: &str) -> Option<IpAddr> {
    text.parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| text.parse::<IpAddr>())
        .ok()
}

/// HMAC-SHA256 of the device id under the collector's secret, truncated to
/// 128 bits: stable per device, useless without the key.
pub fn device_hash(key: &[u8; 32], device_id: &str) -> [u8; 16] {
    use hmac::{Mac, SimpleHmac};
    let mut mac = SimpleHmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(device_id.as_bytes());
    let full = mac.finalize().into_bytes();
    full[..16].try_into().expect("32-byte digest")
}
