//! Results that name a ward of the units before July 2025 are counted in
//! the 2025 ward that took it over: the ten wards of HCMC's former District
//! 1 in Sài Gòn, Tân Định, Bến Thành and Cầu Ông Lãnh, in the statistics
//! and in the monthly report alike.

mod common;

use std::collections::BTreeMap;

use common::{generator, get, get_json, post_json, start_on, synthetic_test_point, TestStore};
use ispeed_collector::api::now_ms;
use ispeed_collector::RawConfig;

/// Former District 1 (Quận 1): old ward code → the 2025 ward it counts in.
const DISTRICT_1: [(&str, &str); 10] = [
    ("26734", "Tân Định"),     // Tân Định
    ("26737", "Sài Gòn"),      // Đa Kao (split: Sài Gòn by default)
    ("26740", "Sài Gòn"),      // Bến Nghé
    ("26743", "Bến Thành"),    // Bến Thành
    ("26746", "Bến Thành"),    // Nguyễn Thái Bình
    ("26749", "Bến Thành"),    // Phạm Ngũ Lão
    ("26752", "Bến Thành"),    // Cầu Ông Lãnh (split: Bến Thành by default)
    ("26755", "Cầu Ông Lãnh"), // Cô Giang
    ("26758", "Cầu Ông Lãnh"), // Nguyễn Cư Trinh
    ("26761", "Cầu Ông Lãnh"), // Cầu Kho
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_in_former_district_1_wards_are_counted_in_the_four_new_wards() {
    for backend in common::backends() {
        results_in_former_district_1_wards_are_counted_in_the_four_new_wards_on(&backend).await;
    }
}

async fn results_in_former_district_1_wards_are_counted_in_the_four_new_wards_on(
    backend: &common::Backend,
) {
    let dir = TestStore::new("legacy", backend);
    let raw = RawConfig {
        test_points: vec![synthetic_test_point(41)],
        ..RawConfig::default()
    };
    let collector = start_on(&dir, raw, false).await;
    let generator = generator(41, 400);
    // Each old ward gets a different number of results (1..=10 × 3 devices).
    let mut expected: BTreeMap<&str, u64> = BTreeMap::new();
    let mut sent = 0u64;
    for (i, (old, new)) in DISTRICT_1.iter().enumerate() {
        for k in 0..(i as u64 + 1) * 3 {
            let mut submission = generator.sample(sent, Some(now_ms()));
            sent += 1;
            submission.location = None;
            submission.ward_code = None;
            submission.legacy_ward_code = Some((*old).to_owned());
            // One device per result: the daily cap must not hide any.
            submission.device_id = format!("legacy-device-{old}-{k}");
            let (status, body) = post_json(&collector.url, &submission).await;
            assert_eq!(status, 201, "{body}");
            assert_eq!(body["place_source"], "legacy");
            assert_eq!(body["province_code"], "79");
            if body["counted"] == true {
                *expected.entry(new).or_default() += 1;
            }
        }
    }
    assert!(expected.values().sum::<u64>() > 100);

    // The statistics of province 79 per ward.
    let month = {
        let payload = ispeed_proto::Receipt::parse(&generator.sample(0, Some(now_ms())).receipt)
            .unwrap()
            .payload_unverified()
            .unwrap();
        ispeed_collector::period::Month::of_unix_ms(payload.started_at_ms).to_string()
    };
    let children = get_json(
        &collector.url,
        &format!("/api/v1/stats/children?level=province&code=79&period={month}"),
    )
    .await;
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    for child in children["children"].as_array().unwrap() {
        let n = child["rows"][0]["n"].as_u64().unwrap();
        if n > 0 {
            counted.insert(child["name"].as_str().unwrap().to_owned(), n);
        }
    }
    let expected: BTreeMap<String, u64> = expected
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(counted, expected, "counted per 2025 ward");

    // The monthly report lists them under the same four wards.
    let (status, csv) = get(
        &collector.url,
        &format!("/api/v1/reports?month={month}&province=79&format=csv"),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let csv = String::from_utf8(csv).unwrap();
    for (name, n) in &counted {
        assert!(
            csv.lines()
                .any(|l| l.contains(&format!(",{name},Tất cả,{n},"))),
            "{name} with {n} samples in the report"
        );
    }

    // Unknown old codes and both codes at once are refused.
    let mut bad = generator.sample(sent, Some(now_ms()));
    bad.location = None;
    bad.ward_code = None;
    bad.legacy_ward_code = Some("99999".into());
    let (status, body) = post_json(&collector.url, &bad).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("unknown_unit"))
    );
    bad.legacy_ward_code = Some("26740".into());
    bad.ward_code = Some("26740".into());
    let (status, body) = post_json(&collector.url, &bad).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    collector.stop().await;
}
