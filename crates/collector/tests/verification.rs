//! Verification over HTTP against a real collector on each store: forged,
//! tampered, replayed, expired and unknown-key receipts are refused with
//! their codes; duplicates are stored once; bad input gets typed errors.

mod common;

use common::{generator, post_json, request, start_on, synthetic_test_point, TestStore};
use ispeed_client::submit::now_ms;
use ispeed_collector::RawConfig;
use ispeed_proto::receipt::{Receipt, ReceiptPayload};
use ispeed_proto::results::SubmitResult;
use ispeed_proto::SigningKey;

fn config(seed: u64) -> RawConfig {
    RawConfig {
        test_points: vec![synthetic_test_point(seed)],
        ..Default::default()
    }
}

fn code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

/// Re-signs an edited payload with `key`.
fn resign(
    submission: &SubmitResult,
    key: &SigningKey,
    edit: impl Fn(&mut ReceiptPayload),
) -> String {
    let mut payload = Receipt::parse(&submission.receipt)
        .unwrap()
        .payload_unverified()
        .unwrap();
    edit(&mut payload);
    Receipt::sign(&payload, key)
}

/// A sample whose client figures agree with its receipt.
fn plausible(generator: &ispeed_collector::generate::Generator, from: u64) -> SubmitResult {
    (from..)
        .map(|i| generator.sample(i, Some(now_ms())))
        .find(|s| {
            let payload = Receipt::parse(&s.receipt)
                .unwrap()
                .payload_unverified()
                .unwrap();
            payload.client_report.download_mbps == s.metrics.download_mbps
        })
        .unwrap()
}

#[tokio::test]
async fn receipts_are_verified_and_duplicates_stored_once() {
    for backend in common::backends() {
        receipts_are_verified_and_duplicates_stored_once_on(&backend).await;
    }
}

async fn receipts_are_verified_and_duplicates_stored_once_on(backend: &common::Backend) {
    let dir = TestStore::new("verify", backend);
    let seed = 7;
    let collector = start_on(&dir, config(seed), false).await;
    let url = &collector.url;
    let generator = generator(seed, 1000);

    // Accepted, then an idempotent retry: one row.
    let good = plausible(&generator, 0);
    let (status, first) = post_json(url, &good).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["status"], "accepted");
    assert_eq!(first["counted"], true);
    let (status, again) = post_json(url, &good).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(first, again);
    assert_eq!(dir.count("results").await, 1);

    // Same id, different content.
    let mut conflicting = good.clone();
    conflicting.device_id.push('x');
    let (status, body) = post_json(url, &conflicting).await;
    assert_eq!((status, code(&body)), (409, "result_conflict"));

    // Replayed receipt under a new result id.
    let mut replay = good.clone();
    replay.result_id = uuid::Uuid::new_v4();
    let (status, body) = post_json(url, &replay).await;
    assert_eq!((status, code(&body)), (409, "receipt_reused"));

    // Tampered: one character of the signed payload changed.
    let mut tampered = plausible(&generator, 100);
    let mut chars: Vec<char> = tampered.receipt.chars().collect();
    chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
    tampered.receipt = chars.into_iter().collect();
    let (status, body) = post_json(url, &tampered).await;
    assert_eq!((status, code(&body)), (422, "bad_signature"));

    // Tampered: a higher rate re-encoded without a valid signature.
    let mut inflated = plausible(&generator, 200);
    let mut payload = Receipt::parse(&inflated.receipt)
        .unwrap()
        .payload_unverified()
        .unwrap();
    payload.download.as_mut().unwrap().rate_bps *= 2.0;
    let signature = inflated.receipt.rsplit('.').next().unwrap().to_owned();
    let json = serde_json::to_vec(&payload).unwrap();
    use base64::Engine;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    inflated.receipt = format!("v1.{encoded}.{signature}");
    let (status, body) = post_json(url, &inflated).await;
    assert_eq!((status, code(&body)), (422, "bad_signature"));

    // Forged: signed by another key claiming the approved key.
    let rogue = SigningKey::from_bytes(&[9u8; 32]);
    let mut forged = plausible(&generator, 300);
    forged.receipt = resign(&forged, &rogue, |_| {});
    let (status, body) = post_json(url, &forged).await;
    assert_eq!((status, code(&body)), (422, "bad_signature"));

    // Unknown key: a test point the collector never approved.
    let mut unknown = plausible(&generator, 400);
    unknown.receipt = resign(&unknown, &rogue, |p| {
        p.key = ispeed_proto::receipt::encode_public_key(&rogue.verifying_key());
    });
    let (status, body) = post_json(url, &unknown).await;
    assert_eq!((status, code(&body)), (422, "unknown_test_point"));

    // Expired: finished 20 minutes ago (default limit 15).
    let old = generator.sample(500, Some(now_ms() - 20 * 60_000));
    let (status, body) = post_json(url, &old).await;
    assert_eq!((status, code(&body)), (422, "receipt_expired"), "{body}");

    // From the future.
    let future = generator.sample(501, Some(now_ms() + 60 * 60_000));
    let (status, body) = post_json(url, &future).await;
    assert_eq!((status, code(&body)), (422, "impossible_value"));

    assert_eq!(
        dir.count("results").await,
        1,
        "no refused result was stored"
    );
    collector.stop().await;
}

#[tokio::test]
async fn impossible_and_malformed_input_gets_typed_errors() {
    for backend in common::backends() {
        impossible_and_malformed_input_gets_typed_errors_on(&backend).await;
    }
}

async fn impossible_and_malformed_input_gets_typed_errors_on(backend: &common::Backend) {
    let dir = TestStore::new("bad-input", backend);
    let seed = 8;
    let collector = start_on(&dir, config(seed), false).await;
    let url = &collector.url;
    let generator = generator(seed, 1000);

    let mut negative = plausible(&generator, 0);
    negative.metrics.download_mbps = Some(-1.0);
    let (status, body) = post_json(url, &negative).await;
    assert_eq!((status, code(&body)), (422, "impossible_value"));

    let mut above_line_rate = plausible(&generator, 0);
    above_line_rate.receipt = resign(
        &above_line_rate,
        &ispeed_collector::generate::synthetic_key(seed),
        |p| {
            p.download.as_mut().unwrap().rate_bps = 20e9;
        },
    );
    let (status, body) = post_json(url, &above_line_rate).await;
    assert_eq!((status, code(&body)), (422, "impossible_value"));

    let mut off_earth = plausible(&generator, 0);
    off_earth.location = Some(ispeed_proto::results::Location {
        lat: 200.0,
        lon: 105.0,
        accuracy_m: None,
        source: ispeed_proto::results::LocationSource::Gps,
    });
    let (status, body) = post_json(url, &off_earth).await;
    assert_eq!((status, code(&body)), (422, "impossible_value"));

    let mut no_such_ward = plausible(&generator, 0);
    no_such_ward.location = None;
    no_such_ward.ward_code = Some("99999".into());
    let (status, body) = post_json(url, &no_such_ward).await;
    assert_eq!((status, code(&body)), (422, "unknown_unit"));

    let (status, body) = request(
        url,
        "POST",
        "/api/v1/results",
        &[],
        b"{\"result_id\":".to_vec(),
    )
    .await
    .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, code(&body)), (400, "malformed_json"));

    let huge = vec![b' '; 70 * 1024];
    let (status, body) = request(url, "POST", "/api/v1/results", &[], huge)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, code(&body)), (413, "payload_too_large"));

    let (status, body) = request(
        url,
        "GET",
        "/api/v1/stats?level=ward&code=00070&period=2026-13",
        &[],
        vec![],
    )
    .await
    .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, code(&body)), (400, "bad_request"));

    let (status, body) = request(url, "DELETE", "/api/v1/results", &[], vec![])
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, code(&body)), (405, "method_not_allowed"));

    assert_eq!(dir.count("results").await, 0);
    collector.stop().await;
}

#[tokio::test]
async fn implausible_results_are_stored_flagged_and_not_counted() {
    for backend in common::backends() {
        implausible_results_are_stored_flagged_and_not_counted_on(&backend).await;
    }
}

async fn implausible_results_are_stored_flagged_and_not_counted_on(backend: &common::Backend) {
    let dir = TestStore::new("implausible", backend);
    let seed = 9;
    let collector = start_on(&dir, config(seed), false).await;
    let url = &collector.url;
    let generator = generator(seed, 1000);

    let mut edited = plausible(&generator, 0);
    edited.metrics.download_mbps = edited.metrics.download_mbps.map(|d| d * 3.0 + 10.0);
    let (status, body) = post_json(url, &edited).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "implausible");
    assert_eq!(body["counted"], false);
    let reasons: Vec<&str> = body["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["report_mismatch"], "edited after the test");

    // A client that reported a different rate at `finish` than the test
    // point counted: the signed figures themselves disagree.
    let mut lied = plausible(&generator, 200);
    let key = ispeed_collector::generate::synthetic_key(seed);
    lied.receipt = resign(&lied, &key, |p| {
        let inflated = p.download_mbps().unwrap() * 3.0 + 10.0;
        p.client_report.download_mbps = Some(inflated);
    });
    let payload = Receipt::parse(&lied.receipt)
        .unwrap()
        .payload_unverified()
        .unwrap();
    lied.metrics.download_mbps = payload.client_report.download_mbps;
    let (status, body) = post_json(url, &lied).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["reasons"], serde_json::json!(["download_mismatch"]));

    // Leaving out a figure the test point signed is editing it too.
    let mut dropped = plausible(&generator, 300);
    dropped.metrics.download_mbps = None;
    let (status, body) = post_json(url, &dropped).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "implausible");
    assert_eq!(body["reasons"], serde_json::json!(["report_mismatch"]));

    // The published value is the receipt's, never the client's.
    let payload = Receipt::parse(&dropped.receipt)
        .unwrap()
        .payload_unverified()
        .unwrap();
    assert_eq!(
        body["metrics"]["download_mbps"].as_f64(),
        payload.download_mbps()
    );

    // Only its submitter may read it back.
    let path = format!("/api/v1/results/{}", edited.result_id);
    let (status, _) = request(
        url,
        "GET",
        &path,
        &[("x-ispeed-device", &edited.device_id)],
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let (status, _) = request(
        url,
        "GET",
        &path,
        &[("x-ispeed-device", "someone-else")],
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(status, 404);

    let month = ispeed_collector::period::Month::of_unix_ms(now_ms());
    let stats = common::get_json(url, &format!("/api/v1/stats?level=nation&period={month}")).await;
    assert_eq!(
        stats["rows"][0]["n"], 0,
        "implausible results are excluded: {stats}"
    );
    collector.stop().await;
}

#[tokio::test]
async fn a_retry_after_the_receipt_aged_out_still_succeeds() {
    for backend in common::backends() {
        a_retry_after_the_receipt_aged_out_still_succeeds_on(&backend).await;
    }
}

async fn a_retry_after_the_receipt_aged_out_still_succeeds_on(backend: &common::Backend) {
    let dir = TestStore::new("aged", backend);
    let seed = 10;
    let raw = RawConfig {
        receipt_max_age_s: Some(2),
        ..config(seed)
    };
    let collector = start_on(&dir, raw, false).await;
    let url = &collector.url;
    let generator = generator(seed, 1000);
    let stored = plausible(&generator, 0);
    let never_sent = plausible(&generator, 50);
    assert_eq!(post_json(url, &stored).await.0, 201);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    // The ack was lost, the client retries: same answer, no duplicate.
    assert_eq!(post_json(url, &stored).await.0, 200);
    let (status, body) = post_json(url, &never_sent).await;
    assert_eq!((status, code(&body)), (422, "receipt_expired"));
    assert_eq!(dir.count("results").await, 1);
    collector.stop().await;
}

#[tokio::test]
async fn a_test_point_removed_from_the_config_is_no_longer_trusted() {
    for backend in common::backends() {
        a_test_point_removed_from_the_config_is_no_longer_trusted_on(&backend).await;
    }
}

async fn a_test_point_removed_from_the_config_is_no_longer_trusted_on(backend: &common::Backend) {
    let dir = TestStore::new("revoke", backend);
    let seed = 12;
    let generator = generator(seed, 1000);
    let collector = start_on(&dir, config(seed), false).await;
    let stored = plausible(&generator, 0);
    assert_eq!(post_json(&collector.url, &stored).await.0, 201);
    collector.stop().await;

    let collector = start_on(&dir, RawConfig::default(), false).await;
    // A retry of what was stored before is still the same success.
    assert_eq!(post_json(&collector.url, &stored).await.0, 200);
    let (status, body) = post_json(&collector.url, &plausible(&generator, 100)).await;
    assert_eq!((status, code(&body)), (422, "unknown_test_point"));
    collector.stop().await;
}
