//! Campaigns: daily progress per ward equals the counted results of the
//! raw table (after the heavy-tester cap), the tags' contribution equals
//! the stored results carrying them, and the projection follows the rule.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use common::{get, get_json, request, start_on, TestStore};
use ispeed_collector::generate::{generate_into_store, Generator};
use ispeed_collector::period::{format_day, ict_day, Month};
use ispeed_collector::state::load_enricher;
use ispeed_collector::{RawConfig, Store};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_progress_matches_the_raw_results() {
    for backend in common::backends() {
        campaign_progress_matches_the_raw_results_on(&backend).await;
    }
}

async fn campaign_progress_matches_the_raw_results_on(backend: &common::Backend) {
    let dir = TestStore::new("campaigns", backend);
    let now = ispeed_collector::api::now_ms();
    let month = Month::of_unix_ms(now);
    {
        let config = dir.config();
        let enricher = Arc::new(load_enricher(&config).unwrap());
        let store: Arc<dyn Store> = dir.open().await;
        let generator = Arc::new(Generator::new(71, month, 20_000, &enricher));
        generate_into_store(store, enricher, generator, |_| {})
            .await
            .unwrap();
    }
    let collector = start_on(&dir, RawConfig::default(), false).await;
    let admin = format!(
        "Bearer {}",
        std::fs::read_to_string(dir.path().join("admin-token"))
            .unwrap()
            .trim()
    );
    // The six busiest wards of HCMC this month, and every tag seen there.
    let children = get_json(
        &collector.url,
        &format!("/api/v1/stats/children?level=province&code=79&period={month}"),
    )
    .await;
    let mut busiest: Vec<(u64, String)> = children["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["rows"][0]["n"].as_u64().unwrap(),
                c["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    busiest.sort_by(|a, b| b.cmp(a));
    let wards: Vec<String> = busiest.iter().take(6).map(|(_, c)| c.clone()).collect();
    let (first, last) = (month.first_day(), Month(month.0 + 1).first_day() - 1);
    let in_wards = format!("'{}'", wards.join("','"));
    let tags: BTreeSet<String> = dir
        .query(&format!(
            "SELECT DISTINCT source FROM results WHERE source IS NOT NULL AND ward_code IN ({in_wards})"
        ))
        .await
        .into_iter()
        .map(|r| r[0].as_str().unwrap().to_owned())
        .collect();
    assert!(!tags.is_empty(), "the generator tags some results");

    let body = serde_json::json!({
        "slug": "q1-thang-nay", "name": "Đo tốc độ <mỗi ngày>", "organisation": "UBND phường",
        "province_code": "79", "wards": wards, "first_day": format_day(first),
        "last_day": format_day(last), "target_per_ward": 40, "tags": tags,
    });
    let post = |body: Value, auth: Option<String>| {
        let url = collector.url.clone();
        async move {
            let headers: Vec<(&str, &str)> = match &auth {
                Some(a) => vec![("authorization", a.as_str())],
                None => vec![],
            };
            let (status, body) = request(
                &url,
                "POST",
                "/api/v1/campaigns",
                &headers,
                serde_json::to_vec(&body).unwrap(),
            )
            .await
            .unwrap();
            (
                status,
                serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
            )
        }
    };
    let (status, created) = post(body.clone(), Some(admin.clone())).await;
    assert_eq!(status, 201, "{created}");

    // ---- progress against the raw table ----------------------------------
    let progress = get_json(&collector.url, "/api/v1/campaigns/q1-thang-nay").await;
    let today = ict_day(now).min(last);
    let mut raw: HashMap<(String, i32), u64> = HashMap::new();
    for row in dir
        .query(&format!(
            "SELECT ward_code, day, count(*) FROM results WHERE counted AND ward_code IN ({in_wards})
             AND day BETWEEN {first} AND {today} GROUP BY ward_code, day"
        ))
        .await
    {
        raw.insert(
            (row[0].as_str().unwrap().to_owned(), row[1].as_i64().unwrap() as i32),
            row[2].as_u64().unwrap(),
        );
    }
    let days_left = i64::from(last - today);
    assert_eq!(progress["days_left"], days_left);
    for ward in progress["wards"].as_array().unwrap() {
        let code = ward["code"].as_str().unwrap().to_owned();
        let daily: Vec<u64> = ward["daily"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let expected: Vec<u64> = (first..=today)
            .map(|d| raw.get(&(code.clone(), d)).copied().unwrap_or(0))
            .collect();
        assert_eq!(daily, expected, "{code}: counted results per day");
        let n: u64 = daily.iter().sum();
        assert_eq!(ward["n"], n);
        assert_eq!(ward["shortfall"], 40u64.saturating_sub(n));
        let window = daily.len().min(7);
        let rate = daily[daily.len() - window..].iter().sum::<u64>() as f64 / window as f64;
        assert!((ward["rate_per_day"].as_f64().unwrap() - rate).abs() < 1e-9);
        let projected = n as f64 + rate * days_left as f64;
        assert!((ward["projected"].as_f64().unwrap() - projected).abs() < 1e-9);
        assert_eq!(ward["will_reach"], projected >= 40.0);
    }
    // Tags: results and counted ones per tag, from the raw table.
    let mut expected_tags: Vec<(String, u64, u64)> = dir
        .query(&format!(
            "SELECT source, count(*), sum(CASE WHEN counted THEN 1 ELSE 0 END) FROM results
             WHERE ward_code IN ({in_wards}) AND day BETWEEN {first} AND {last}
             AND source IS NOT NULL GROUP BY source"
        ))
        .await
        .into_iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_owned(),
                r[1].as_u64().unwrap(),
                r[2].as_u64().unwrap(),
            )
        })
        .collect();
    expected_tags.sort();
    let mut got: Vec<(String, u64, u64)> = progress["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["source"].as_str().unwrap().to_owned(),
                t["results"].as_u64().unwrap(),
                t["counted"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, expected_tags);

    // The page, escaped.
    let (status, page) = get(&collector.url, "/chien-dich/q1-thang-nay")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains("Đo tốc độ &lt;mỗi ngày&gt;") && !page.contains("<mỗi ngày>"));
    assert_eq!(page.matches("<tr data-code=").count(), 6);

    // ---- bad input and access ----------------------------------------------
    let with = |key: &str, value: Value| {
        let mut b = body.clone();
        b["slug"] = "another-one".into();
        b[key] = value;
        b
    };
    for (case, status, code) in [
        (
            with("wards", serde_json::json!(["99999"])),
            422,
            "unknown_unit",
        ),
        (
            with("wards", serde_json::json!(["00070"])),
            400,
            "bad_request",
        ),
        (
            with("last_day", format_day(first - 1).into()),
            400,
            "bad_request",
        ),
        (with("first_day", "2026-02-30".into()), 400, "bad_request"),
        (with("target_per_ward", 0.into()), 400, "bad_request"),
        (
            with("tags", serde_json::json!([" bad"])),
            400,
            "bad_request",
        ),
        (with("slug", "Bad Slug".into()), 400, "bad_request"),
        (body.clone(), 409, "result_conflict"),
    ] {
        let (got, answer) = post(case.clone(), Some(admin.clone())).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{case}"
        );
    }
    let (status, _) = post(with("slug", "no-auth".into()), None).await;
    assert_eq!(status, 401);
    let (status, _) = get(&collector.url, "/api/v1/campaigns/none-such")
        .await
        .unwrap();
    assert_eq!(status, 404);
    let list = get_json(&collector.url, "/api/v1/campaigns").await;
    assert_eq!(list["campaigns"].as_array().unwrap().len(), 1);
    collector.stop().await;
}
