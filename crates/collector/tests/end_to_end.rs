//! Acceptance 1 in-process: `serve` (collector + local test point on one
//! address), a real test found through the collector, submitted with a
//! location in Hoàn Kiếm, and shown by the ward's statistics.

mod common;

use common::{get_json, request, start_on, TestStore};
use ispeed_client::submit::{build_submission, discover, submit};
use ispeed_client::TestOptions;
use ispeed_collector::RawConfig;
use ispeed_proto::results::{Access, ClientKind, FixedMedium, Location, LocationSource};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_through_the_collector_shows_in_the_ward_statistics() {
    for backend in common::backends() {
        a_test_through_the_collector_shows_in_the_ward_statistics_on(&backend).await;
    }
}

async fn a_test_through_the_collector_shows_in_the_ward_statistics_on(backend: &common::Backend) {
    let dir = TestStore::new("e2e", backend);
    let collector = start_on(&dir, RawConfig::default(), true).await;
    let url = &collector.url;

    let points = discover(url).await.unwrap();
    assert_eq!(points.len(), 1);
    assert_eq!(
        points[0].url, *url,
        "the local test point shares the collector's address"
    );

    // Asked before the result exists: the answer may be cached, and must not
    // hide the result once it is stored.
    let month = ispeed_collector::period::Month::of_unix_ms(ispeed_client::submit::now_ms());
    let before = get_json(
        url,
        &format!("/api/v1/stats/children?level=province&code=01&period={month}"),
    )
    .await;
    assert!(before["children"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["rows"][0]["n"] == 0));
    let before = get_json(
        url,
        &format!("/api/v1/stats?level=ward&code=00070&period={month}"),
    )
    .await;
    assert_eq!(before["rows"][0]["n"], 0);

    let mut options = TestOptions::new(points[0].url.clone());
    options.max_seconds = 1.0;
    let result = ispeed_client::run_test(&options, None).await.unwrap();
    assert_eq!(result.server.public_key, points[0].public_key);

    let location = Location {
        lat: 21.0288,
        lon: 105.8522,
        accuracy_m: Some(15.0),
        source: LocationSource::Gps,
    };
    let submission = build_submission(
        &result,
        "device-under-test",
        Access::Fixed {
            medium: Some(FixedMedium::Ethernet),
        },
        Some(location),
        None,
        ClientKind::Cli,
    );
    let submitted = submit(url, &submission).await.unwrap();
    assert!(submitted.created);
    let record = &submitted.record;
    assert_eq!(record.ward_code.as_deref(), Some("00070"));
    assert_eq!(record.province_code.as_deref(), Some("01"));
    assert_eq!(
        record.isp, "other",
        "127.0.0.1 belongs to no Vietnamese ISP"
    );
    assert_eq!(record.metrics.download_mbps, result.download_mbps);
    assert!(record.counted, "{record:?}");

    let stats = get_json(
        url,
        &format!("/api/v1/stats?level=ward&code=00070&period={month}"),
    )
    .await;
    assert_eq!(stats["name"], "Hoàn Kiếm");
    let all = &stats["rows"][0];
    assert_eq!(all["isp"], "all");
    assert_eq!(all["n"], 1);
    assert_eq!(all["devices"], 1);
    let median = all["download_mbps"]["median"].as_f64().unwrap();
    let published = result.download_mbps.unwrap();
    assert!(
        (median / published - 1.0).abs() < 0.01,
        "{median} vs {published}"
    );
    let flags: Vec<&str> = all["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(flags.contains(&"below_quota"), "{flags:?}");

    // The province and the nation count it too; a neighbouring ward does not.
    let province = get_json(
        url,
        &format!("/api/v1/stats?level=province&code=01&period={month}"),
    )
    .await;
    assert_eq!(province["rows"][0]["n"], 1);
    let children = get_json(
        url,
        &format!("/api/v1/stats/children?level=province&code=01&period={month}"),
    )
    .await;
    let wards = children["children"].as_array().unwrap();
    assert!(wards.len() > 100, "every ward of Hà Nội is listed");
    let counted: Vec<&str> = wards
        .iter()
        .filter(|w| w["rows"][0]["n"].as_u64() == Some(1))
        .map(|w| w["code"].as_str().unwrap())
        .collect();
    assert_eq!(counted, ["00070"]);

    // The device reads its own record back.
    let path = format!("/api/v1/results/{}", submission.result_id);
    let (status, _) = request(
        url,
        "GET",
        &path,
        &[("x-ispeed-device", "device-under-test")],
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    collector.stop().await;
}

/// A collector reading statistics from a replica (here the primary itself,
/// through a second pool; CI has no standby) answers from the replica
/// without applying the rollup queue, and catches up within the
/// background applier's interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_from_a_read_replica_trail_by_at_most_the_applier_interval() {
    let Some(common::Backend::Postgres(base)) = common::backends().pop() else {
        return;
    };
    let dir = TestStore::new("replica", &common::Backend::Postgres(base.clone()));
    let seed = 41;
    let raw = RawConfig {
        test_points: vec![common::synthetic_test_point(seed)],
        store_replica: Some(base),
        ..Default::default()
    };
    let collector = start_on(&dir, raw, false).await;
    let generator = common::generator(seed, 200);
    // Receipts dated now: the results fall in this month.
    let month = ispeed_collector::period::Month::of_unix_ms(ispeed_client::submit::now_ms());
    let mut accepted = 0;
    for i in 0..200 {
        let sample = generator.sample(i, Some(ispeed_client::submit::now_ms()));
        let (status, body) = common::post_json(&collector.url, &sample).await;
        assert_eq!(status, 201, "{body}");
        accepted += u64::from(body["counted"] == true);
    }
    let started = std::time::Instant::now();
    loop {
        let nation = get_json(
            &collector.url,
            &format!("/api/v1/stats?level=nation&period={month}"),
        )
        .await;
        let n = nation["rows"][0]["n"].as_u64().unwrap();
        if n == accepted {
            break;
        }
        assert!(n < accepted, "never more than was counted");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "the replica's statistics are stuck at {n} of {accepted}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    eprintln!(
        "replica caught up with {accepted} results in {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    collector.stop().await;
}

/// Every statistics read on the primary first looks into the rollup queue,
/// and a scan reads dead rows too; so the applier vacuums the queue rows it
/// deleted rather than leaving them to autovacuum (which may be slow, or
/// off, as on this project's machines).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollup_queue_is_vacuumed_after_it_is_applied() {
    let Some(common::Backend::Postgres(base)) = common::backends().pop() else {
        return;
    };
    let dir = TestStore::new("queue_vacuum", &common::Backend::Postgres(base));
    let seed = 43;
    let raw = RawConfig {
        test_points: vec![common::synthetic_test_point(seed)],
        ..Default::default()
    };
    let collector = start_on(&dir, raw, false).await;
    let generator = common::generator(seed, 300);
    for i in 0..300 {
        let sample = generator.sample(i, Some(ispeed_client::submit::now_ms()));
        let (status, body) = common::post_json(&collector.url, &sample).await;
        assert_eq!(status, 201, "{body}");
    }
    let month = ispeed_collector::period::Month::of_unix_ms(ispeed_client::submit::now_ms());
    get_json(
        &collector.url,
        &format!("/api/v1/stats?level=nation&period={month}"),
    )
    .await;
    let size = || async {
        dir.query("SELECT pg_relation_size('rollup_queue')").await[0][0]
            .as_i64()
            .unwrap()
    };
    let started = std::time::Instant::now();
    while size().await > 0 {
        assert!(
            // Generous: a long transaction elsewhere in the database (a
            // bulk load in another schema) holds the rows back meanwhile.
            started.elapsed() < std::time::Duration::from_secs(20),
            "the applied queue still takes {} bytes after 20 s",
            size().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(dir.count("rollup_queue").await, 0);
    collector.stop().await;
}
