//! Statistics against exact computations on generated data: sketch
//! quantiles within 1 %, the heavy-tester cap, sufficiency flags at their
//! thresholds, and `rebuild-rollups` giving the same answers.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use common::{get_json, start_on, TempDir, TestStore};
use ispeed_collector::generate::{generate_into_store, Generator};
use ispeed_collector::period::Month;
use ispeed_collector::state::load_enricher;
use ispeed_collector::store::{CountedValues, InsertOutcome, NewResult, Store};
use ispeed_collector::{RawConfig, SqliteOptions, SqliteStore};
use ispeed_proto::results::ResultStatus;

const MONTH: &str = "2026-10";

/// The API's answers to `questions`, in order.
async fn answers(url: &str, questions: &[String]) -> Vec<serde_json::Value> {
    let mut out = Vec::with_capacity(questions.len());
    for question in questions {
        out.push(get_json(url, question).await);
    }
    out
}

fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

fn open_sqlite(dir: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(dir, SqliteOptions::default()).unwrap())
}

/// Compares one API row with the exact figures of `values`.
fn check_row(what: &str, row: &serde_json::Value, values: &[&CountedValues]) -> f64 {
    assert_eq!(
        row["n"].as_u64().unwrap() as usize,
        values.len(),
        "{what}: n"
    );
    let devices: HashSet<_> = values.iter().map(|v| v.device_hash).collect();
    let estimate = row["devices"].as_u64().unwrap() as f64;
    if devices.len() <= 128 {
        assert_eq!(
            estimate as usize,
            devices.len(),
            "{what}: devices are exact up to 128"
        );
    } else {
        assert!(
            (estimate / devices.len() as f64 - 1.0).abs() < 0.05,
            "{what}: devices {estimate} vs {}",
            devices.len()
        );
    }
    let mut worst: f64 = 0.0;
    for (metric, pick) in [
        (
            "download_mbps",
            (|v: &CountedValues| v.download_mbps) as fn(&CountedValues) -> Option<f64>,
        ),
        ("upload_mbps", |v: &CountedValues| v.upload_mbps),
        ("latency_ms", |v: &CountedValues| v.latency_ms),
    ] {
        let mut sorted: Vec<f64> = values.iter().filter_map(|v| pick(v)).collect();
        sorted.sort_by(f64::total_cmp);
        let summary = &row[metric];
        if sorted.is_empty() {
            assert!(summary["median"].is_null());
            continue;
        }
        for (key, q) in [
            ("p10", 0.1),
            ("p25", 0.25),
            ("median", 0.5),
            ("p75", 0.75),
            ("p90", 0.9),
        ] {
            let got = summary[key].as_f64().unwrap();
            let exact = exact_quantile(&sorted, q);
            let error = (got / exact - 1.0).abs();
            assert!(
                error <= 0.01,
                "{what} {metric} {key}: {got} vs exact {exact}"
            );
            worst = worst.max(error);
        }
        let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
        let got = summary["mean"].as_f64().unwrap();
        assert!(
            (got / mean - 1.0).abs() < 1e-6,
            "{what} {metric} mean {got} vs {mean}"
        );
        if sorted.len() >= 6 {
            let [low, high] = [
                summary["median_ci95"][0].as_f64().unwrap(),
                summary["median_ci95"][1].as_f64().unwrap(),
            ];
            let median = summary["median"].as_f64().unwrap();
            assert!(
                low <= median && median <= high,
                "{what} {metric}: CI [{low}, {high}] around {median}"
            );
        }
    }
    worst
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollup_statistics_match_exact_computations_and_survive_a_rebuild() {
    for backend in common::backends() {
        rollup_statistics_match_exact_computations_and_survive_a_rebuild_on(&backend).await;
    }
}

async fn rollup_statistics_match_exact_computations_and_survive_a_rebuild_on(
    backend: &common::Backend,
) {
    let dir = TestStore::new("stats", backend);
    let month = Month::parse(MONTH).unwrap();
    let config = dir.config();
    let enricher = Arc::new(load_enricher(&config).unwrap());
    let generator = Arc::new(Generator::new(3, month, 40_000, &enricher));
    {
        let store = dir.open().await;
        let report = generate_into_store(store, enricher.clone(), generator, |_| {})
            .await
            .unwrap();
        assert_eq!(report.created, 40_000);
        assert!(report.implausible > 100, "{report:?}");
    }
    if let common::Backend::Postgres(_) = backend {
        // A bulk write ends as an operator's bulk load would, with planner
        // statistics gathered (reltuples is -1 until then) and a vacuum.
        let analyzed = dir
            .query(
                "SELECT relname, reltuples::float8 FROM pg_class
                 WHERE relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
                   AND relname IN ('results_2026_10', 'result_ids', 'cells', 'device_day')",
            )
            .await;
        assert_eq!(analyzed.len(), 4);
        for row in &analyzed {
            assert!(row[1].as_f64().unwrap() > 0.0, "not analyzed: {row:?}");
        }
    }
    let store = dir.open().await;
    let values = store
        .counted_values(month.first_day(), Month(month.0 + 1).first_day() - 1)
        .await
        .unwrap();
    drop(store);

    // Heavy-tester cap: at most 3 per device and day count, and the data
    // has devices far beyond that.
    let mut per_device_day: HashMap<(String, i64), (u64, u64)> = HashMap::new();
    for row in dir
        .query("SELECT device_hash, day, status, counted FROM results ORDER BY seq")
        .await
    {
        let key = (
            row[0].as_str().unwrap().to_owned(),
            row[1].as_i64().unwrap(),
        );
        let entry = per_device_day.entry(key).or_default();
        if row[2] == "accepted" {
            entry.0 += 1;
        }
        entry.1 += row[3].as_u64().unwrap();
    }
    assert!(
        per_device_day.values().any(|(accepted, _)| *accepted > 10),
        "heavy testers exist"
    );
    for (accepted, counted) in per_device_day.values() {
        assert_eq!(*counted, (*accepted).min(3));
    }
    assert_eq!(
        values.len() as u64,
        per_device_day.values().map(|v| v.1).sum::<u64>()
    );

    let collector = start_on(&dir, RawConfig::default(), false).await;
    let url = &collector.url;
    let mut worst: f64 = 0.0;
    let nation = get_json(url, &format!("/api/v1/stats?level=nation&period={MONTH}")).await;
    let all: Vec<&CountedValues> = values.iter().collect();
    worst = worst.max(check_row("nation", &nation["rows"][0], &all));
    for row in nation["rows"].as_array().unwrap().iter().skip(1) {
        let isp = row["isp"].as_str().unwrap();
        let subset: Vec<&CountedValues> = values.iter().filter(|v| v.isp == isp).collect();
        worst = worst.max(check_row(&format!("nation/{isp}"), row, &subset));
    }
    for province in ["01", "79", "48", "24"] {
        let stats = get_json(
            url,
            &format!("/api/v1/stats?level=province&code={province}&period={MONTH}&access=mobile"),
        )
        .await;
        let subset: Vec<&CountedValues> = values
            .iter()
            .filter(|v| v.province_code.as_deref() == Some(province) && v.access == "mobile")
            .collect();
        worst = worst.max(check_row(
            &format!("province {province} mobile"),
            &stats["rows"][0],
            &subset,
        ));
    }
    // The busiest wards, every ISP row.
    let mut ward_counts: HashMap<&str, usize> = HashMap::new();
    for v in &values {
        if let Some(ward) = v.ward_code.as_deref() {
            *ward_counts.entry(ward).or_default() += 1;
        }
    }
    let mut busiest: Vec<(&str, usize)> = ward_counts.into_iter().collect();
    busiest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (ward, _) in busiest.iter().take(5) {
        let stats = get_json(
            url,
            &format!("/api/v1/stats?level=ward&code={ward}&period={MONTH}"),
        )
        .await;
        for row in stats["rows"].as_array().unwrap() {
            let isp = row["isp"].as_str().unwrap();
            let subset: Vec<&CountedValues> = values
                .iter()
                .filter(|v| v.ward_code.as_deref() == Some(*ward) && (isp == "all" || v.isp == isp))
                .collect();
            worst = worst.max(check_row(&format!("ward {ward}/{isp}"), row, &subset));
        }
    }
    eprintln!(
        "worst relative quantile error against exact: {:.3} %",
        worst * 100.0
    );

    // Rebuilding the rollups from raw results gives the same answers.
    let questions = [
        format!("/api/v1/stats/children?level=nation&period={MONTH}"),
        format!("/api/v1/stats/children?level=province&code=01&period={MONTH}"),
        format!(
            "/api/v1/stats?level=ward&code={}&period={MONTH}",
            busiest[0].0
        ),
        "/api/v1/stats/timeseries?level=province&code=79&period=2026-Q4".to_owned(),
    ];
    let before = answers(url, &questions).await;
    collector.stop().await;
    {
        let store = dir.open().await;
        let report = store.rebuild_rollups().await.unwrap();
        assert_eq!(report.results, 40_000);
        assert_eq!(report.counted, values.len() as u64);
    }
    let collector = start_on(&dir, RawConfig::default(), false).await;
    assert_eq!(answers(&collector.url, &questions).await, before);
    collector.stop().await;
}

/// `n` accepted results in `ward`, each from its own device.
fn results_in(
    template: &NewResult,
    ward: &str,
    province: &str,
    n: usize,
    tag: u64,
) -> Vec<NewResult> {
    (0..n)
        .map(|i| {
            let mut r = template.clone();
            r.result_id = uuid::Uuid::from_u128((u128::from(tag) << 64) | i as u128);
            r.session_id = r.result_id.to_string();
            r.device_hash = r.result_id.into_bytes();
            r.ward_code = Some(ward.to_owned());
            r.province_code = Some(province.to_owned());
            r.status = ResultStatus::Accepted;
            r.reasons.clear();
            r
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sufficiency_flags_switch_exactly_at_the_thresholds() {
    for backend in common::backends() {
        sufficiency_flags_switch_exactly_at_the_thresholds_on(&backend).await;
    }
}

async fn sufficiency_flags_switch_exactly_at_the_thresholds_on(backend: &common::Backend) {
    let dir = TestStore::new("flags", backend);
    let month = Month::parse(MONTH).unwrap();
    let config = dir.config();
    let enricher = load_enricher(&config).unwrap();
    let generator = Generator::new(5, month, 10, &enricher);
    let submission = generator.sample(0, None);
    let payload = ispeed_proto::Receipt::parse(&submission.receipt)
        .unwrap()
        .payload_unverified()
        .unwrap();
    let trusted = ispeed_collector::verify::TrustedKey {
        test_point_id: "synthetic".into(),
        key: ispeed_collector::generate::synthetic_key(5).verifying_key(),
        line_rate_mbps: 10_000.0,
        class: None,
    };
    let template = ispeed_collector::verify::build_record(
        &submission,
        &payload,
        &trusted,
        &enricher,
        &[0; 32],
        &Default::default(),
        payload.finished_at_ms,
    )
    .unwrap();
    // Hà Nội's wards hold 299 + 300 + 1 (province 600); Huế (46) holds 99 in
    // one ward, Đà Nẵng (48) 100.
    let hanoi: Vec<String> = enricher
        .units
        .wards_of("01")
        .take(3)
        .map(|w| w.code.clone())
        .collect();
    let hue = enricher.units.wards_of("46").next().unwrap().code.clone();
    let danang = enricher.units.wards_of("48").next().unwrap().code.clone();
    let mut batch = Vec::new();
    batch.extend(results_in(&template, &hanoi[0], "01", 299, 1));
    batch.extend(results_in(&template, &hanoi[1], "01", 300, 2));
    batch.extend(results_in(&template, &hanoi[2], "01", 1, 3));
    batch.extend(results_in(&template, &hue, "46", 99, 4));
    batch.extend(results_in(&template, &danang, "48", 100, 5));
    {
        let store = dir.open().await;
        let outcomes = store.insert(batch).await.unwrap();
        assert!(outcomes
            .iter()
            .all(|o| matches!(o, InsertOutcome::Created(r) if r.counted)));
    }
    let collector = start_on(&dir, RawConfig::default(), false).await;
    let flags = |v: &serde_json::Value| -> Vec<String> {
        v["rows"][0]["flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_owned())
            .collect()
    };
    let ward = |code: &str| format!("/api/v1/stats?level=ward&code={code}&period={MONTH}");
    let province = |code: &str| format!("/api/v1/stats?level=province&code={code}&period={MONTH}");
    let w299 = get_json(&collector.url, &ward(&hanoi[0])).await;
    assert_eq!(w299["rows"][0]["n"], 299);
    assert_eq!(flags(&w299), ["below_quota"]);
    let w300 = get_json(&collector.url, &ward(&hanoi[1])).await;
    assert_eq!(flags(&w300), Vec::<String>::new());
    let w1 = get_json(&collector.url, &ward(&hanoi[2])).await;
    assert_eq!(flags(&w1), ["insufficient", "below_quota"]);
    let p99 = get_json(&collector.url, &province("46")).await;
    assert_eq!(p99["rows"][0]["n"], 99);
    assert_eq!(flags(&p99), ["insufficient"]);
    let p100 = get_json(&collector.url, &province("48")).await;
    assert_eq!(flags(&p100), Vec::<String>::new());
    let p600 = get_json(&collector.url, &province("01")).await;
    assert_eq!(p600["rows"][0]["n"], 600);
    // A quarter needs three months' worth.
    let quarter = get_json(
        &collector.url,
        "/api/v1/stats?level=province&code=48&period=2026-Q4",
    )
    .await;
    assert_eq!(flags(&quarter), ["insufficient"]);
    // Wards with no sample at all are listed, and flagged.
    let children = get_json(
        &collector.url,
        &format!("/api/v1/stats/children?level=province&code=46&period={MONTH}"),
    )
    .await;
    let empty = children["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["rows"][0]["n"] == 0)
        .unwrap();
    assert_eq!(
        empty["rows"][0]["flags"],
        serde_json::json!(["insufficient", "below_quota"])
    );
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_2_derives_the_aggregate_cells_of_an_older_store() {
    // SQLite only: the PostgreSQL schema starts at the current layout.
    let dir = TestStore::new("migration", &common::Backend::Sqlite);
    let month = Month::parse(MONTH).unwrap();
    let config = dir.config();
    let enricher = Arc::new(load_enricher(&config).unwrap());
    let generator = Arc::new(Generator::new(4, month, 5_000, &enricher));
    generate_into_store(open_sqlite(dir.path()), enricher, generator, |_| {})
        .await
        .unwrap();
    let questions = [
        format!("/api/v1/stats/children?level=nation&period={MONTH}"),
        format!("/api/v1/stats/children?level=province&code=79&period={MONTH}"),
        format!("/api/v1/stats?level=nation&period={MONTH}"),
    ];
    let collector = start_on(&dir, RawConfig::default(), false).await;
    let before = answers(&collector.url, &questions).await;
    collector.stop().await;

    // What a store written before aggregate cells existed looks like.
    let db = rusqlite::Connection::open(dir.path().join("ispeed.sqlite3")).unwrap();
    let removed = db
        .execute("DELETE FROM cells WHERE access = 'all'", [])
        .unwrap();
    assert!(removed > 100);
    // … and before migration 4's campaign tag.
    db.execute_batch("DROP INDEX results_source_day; ALTER TABLE results DROP COLUMN source;")
        .unwrap();
    // … and before migration 5's registration columns.
    db.execute_batch(
        "ALTER TABLE results DROP COLUMN test_point_class;
         ALTER TABLE test_points DROP COLUMN status;
         ALTER TABLE test_points DROP COLUMN configured;
         ALTER TABLE test_points DROP COLUMN details;
         ALTER TABLE test_points DROP COLUMN registered_at_ms;
         ALTER TABLE test_points DROP COLUMN approved_at_ms;
         ALTER TABLE test_points DROP COLUMN revoked_at_ms;
         DROP TABLE users; DROP TABLE sessions; DROP TABLE api_tokens; DROP TABLE audit_log;
         DROP TABLE unit_versions; DROP TABLE campaigns;
         DROP INDEX results_download_session;
         ALTER TABLE results DROP COLUMN download_test_point_id;
         ALTER TABLE results DROP COLUMN download_session_id;
         ALTER TABLE results DROP COLUMN download_receipt;",
    )
    .unwrap();
    db.pragma_update(None, "user_version", 1).unwrap();
    drop(db);

    let collector = start_on(&dir, RawConfig::default(), false).await;
    assert_eq!(answers(&collector.url, &questions).await, before);
    collector.stop().await;
}

#[test]
fn a_store_in_use_cannot_be_opened_a_second_time() {
    let dir = TempDir::new("lock");
    let _first = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    let second = SqliteStore::open(dir.path(), SqliteOptions::default());
    let error = second
        .err()
        .expect("a second writer is refused")
        .to_string();
    assert!(error.contains("in use by another process"), "{error}");
}
