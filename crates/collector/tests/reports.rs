//! Monthly reports against the statistics API and against the raw results:
//! every number of the CSV and XLSX equals the API's number for the same
//! cell; the quota columns equal counts made directly from the stored
//! results with the heavy-tester cap applied here, independently.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::Arc;

use common::{get, get_json, start_on, TestStore};
use ispeed_collector::generate::{generate_into_store, Generator};
use ispeed_collector::period::Month;
use ispeed_collector::state::load_enricher;
use ispeed_collector::RawConfig;
use serde_json::Value;

const MONTH: &str = "2026-10";
const PREVIOUS: &str = "2026-09";
const PROVINCE: &str = "79";

/// A tiny RFC 4180 reader (quotes, doubled quotes, CRLF).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let text = text.trim_start_matches('\u{feff}');
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    rows
}

/// The cells of one worksheet of an XLSX: `(row, col) → text`, with shared
/// strings resolved (enough of SpreadsheetML for what rust_xlsxwriter writes).
fn xlsx_sheet(bytes: &[u8], sheet: usize) -> HashMap<(u32, u32), String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut read = |name: &str| {
        let mut text = String::new();
        zip.by_name(name)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    };
    let strings: Vec<String> = read("xl/sharedStrings.xml")
        .split("<si>")
        .skip(1)
        .map(|si| {
            let t = si.split("<t").nth(1).unwrap_or("");
            let t = &t[t.find('>').unwrap() + 1..];
            unescape(&t[..t.find("</t>").unwrap()])
        })
        .collect();
    let xml = read(&format!("xl/worksheets/sheet{sheet}.xml"));
    let mut cells = HashMap::new();
    for c in xml.split("<c ").skip(1) {
        let head = &c[..c.find('>').unwrap()];
        let reference = attr(head, "r").unwrap();
        let Some(start) = c.find("<v>") else { continue };
        let value = &c[start + 3..c.find("</v>").unwrap()];
        let text = if attr(head, "t").as_deref() == Some("s") {
            strings[value.parse::<usize>().unwrap()].clone()
        } else {
            value.to_owned()
        };
        cells.insert(position(&reference), text);
    }
    cells
}

fn attr(head: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let head = format!(" {head}");
    let start = head.find(&key)? + key.len();
    Some(head[start..start + head[start..].find('"')?].to_owned())
}

fn position(reference: &str) -> (u32, u32) {
    let letters: String = reference
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect();
    let col = letters
        .bytes()
        .fold(0u32, |acc, b| acc * 26 + u32::from(b - b'A' + 1))
        - 1;
    let row: u32 = reference[letters.len()..].parse().unwrap();
    (row - 1, col)
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

async fn fetch(url: &str, path: &str) -> (u16, Vec<u8>) {
    get(url, path).await.unwrap()
}

/// The all-ISP row of a child in a children answer, by code.
fn children_rows(answer: &Value) -> BTreeMap<String, Vec<Value>> {
    answer["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["code"].as_str().unwrap().to_owned(),
                c["rows"].as_array().unwrap().clone(),
            )
        })
        .collect()
}

fn all_row(rows: &[Value]) -> Option<&Value> {
    rows.iter().find(|r| r["isp"] == "all")
}

fn n(rows: Option<&Vec<Value>>) -> u64 {
    rows.and_then(|r| all_row(r))
        .map_or(0, |r| r["n"].as_u64().unwrap())
}

/// The API's number as the report prints it: same shortest text.
fn text(value: &Value) -> String {
    match value.as_f64() {
        Some(v) => format!("{v}"),
        None => String::new(),
    }
}

async fn seeded(dir: &TestStore) {
    let enricher = Arc::new(load_enricher(&dir.config()).unwrap());
    let store = dir.open().await;
    for (seed, month, samples) in [(21, PREVIOUS, 8_000), (22, MONTH, 30_000)] {
        let generator = Arc::new(Generator::new(
            seed,
            Month::parse(month).unwrap(),
            samples,
            &enricher,
        ));
        generate_into_store(store.clone(), enricher.clone(), generator, |_| {})
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_report_number_is_the_apis_and_quotas_match_the_raw_results() {
    for backend in common::backends() {
        every_report_number_is_the_apis_and_quotas_match_the_raw_results_on(&backend).await;
    }
}

async fn every_report_number_is_the_apis_and_quotas_match_the_raw_results_on(
    backend: &common::Backend,
) {
    let dir = TestStore::new("reports", backend);
    seeded(&dir).await;
    let collector = start_on(&dir, RawConfig::default(), false).await;
    let url = &collector.url;
    let api = |query: String| async move {
        children_rows(&get_json(url, &format!("/api/v1/stats/children?{query}")).await)
    };
    let base = format!("level=province&code={PROVINCE}&period={MONTH}");
    let all = api(base.clone()).await;
    let mobile = api(format!("{base}&access=mobile")).await;
    let fixed = api(format!("{base}&access=fixed")).await;
    let ip6 = api(format!("{base}&ip=6")).await;
    let previous = api(format!("level=province&code={PROVINCE}&period={PREVIOUS}")).await;

    // ---- CSV: every unit row and ISP row against the API -----------------
    let (status, csv) = fetch(
        url,
        &format!("/api/v1/reports?month={MONTH}&province={PROVINCE}&format=csv"),
    )
    .await;
    assert_eq!(status, 200);
    let (_, again) = fetch(
        url,
        &format!("/api/v1/reports?month={MONTH}&province={PROVINCE}&format=csv"),
    )
    .await;
    assert_eq!(csv, again, "the same input gives the same bytes");
    let rows = parse_csv(std::str::from_utf8(&csv).unwrap());
    let header = &rows[0];
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (c_code, c_isp, c_n) = (col("Mã đơn vị"), col("Nhà mạng"), col("Số mẫu"));
    let (c_mobile, c_fixed, c_devices) = (
        col("Số mẫu di động"),
        col("Số mẫu cố định"),
        col("Số thiết bị"),
    );
    let (c_down, c_up, c_lat) = (
        col("Tải xuống trung vị (Mbit/s)"),
        col("Tải lên trung vị (Mbit/s)"),
        col("Độ trễ trung vị (ms)"),
    );
    let (c_prev_n, c_prev_down) = (
        col("Số mẫu tháng trước"),
        col("Tải xuống trung vị tháng trước (Mbit/s)"),
    );
    let (c_short_m, c_short_f) = (col("Thiếu di động"), col("Thiếu cố định"));
    let names = isp_names();
    let mut checked = 0;
    let mut wards_seen = Vec::new();
    for row in &rows[1..] {
        let code = &row[c_code];
        let api_rows = &all[code];
        if row[c_isp] == "Tất cả" {
            wards_seen.push(code.clone());
            let a = all_row(api_rows).unwrap();
            assert_eq!(row[c_n], a["n"].to_string(), "{code} n");
            assert_eq!(row[c_devices], a["devices"].to_string(), "{code} devices");
            assert_eq!(
                row[c_down],
                text(&a["download_mbps"]["median"]),
                "{code} download"
            );
            assert_eq!(
                row[c_up],
                text(&a["upload_mbps"]["median"]),
                "{code} upload"
            );
            assert_eq!(
                row[c_lat],
                text(&a["latency_ms"]["median"]),
                "{code} latency"
            );
            assert_eq!(
                row[c_mobile],
                n(mobile.get(code)).to_string(),
                "{code} mobile"
            );
            assert_eq!(row[c_fixed], n(fixed.get(code)).to_string(), "{code} fixed");
            assert_eq!(
                row[c_prev_n],
                n(previous.get(code)).to_string(),
                "{code} previous n"
            );
            let prev = previous.get(code).and_then(|r| all_row(r));
            assert_eq!(
                row[c_prev_down],
                prev.map_or(String::new(), |p| text(&p["download_mbps"]["median"])),
                "{code} previous download"
            );
            let n_all = n(Some(api_rows));
            if n_all > 0 {
                let share = n(ip6.get(code)) as f64 / n_all as f64 * 100.0;
                assert_eq!(
                    row[col("Tỷ lệ IPv6 (%)")],
                    format!("{share:.2}"),
                    "{code} IPv6"
                );
            }
        } else {
            let a = api_rows
                .iter()
                .find(|r| r["isp"] != "all" && row[c_isp] == names[r["isp"].as_str().unwrap()])
                .unwrap_or_else(|| panic!("{code} {}", row[c_isp]));
            assert_eq!(row[c_n], a["n"].to_string());
            assert_eq!(row[c_down], text(&a["download_mbps"]["median"]));
            assert_eq!(row[c_up], text(&a["upload_mbps"]["median"]));
            assert_eq!(row[c_lat], text(&a["latency_ms"]["median"]));
        }
        checked += 1;
    }
    assert_eq!(wards_seen.len(), all.len(), "every ward is reported");
    assert!(checked > all.len(), "ISP rows too");

    // Below quota first, most missing first.
    let missing: Vec<u64> = rows[1..]
        .iter()
        .filter(|r| r[c_isp] == "Tất cả")
        .map(|r| r[c_short_m].parse::<u64>().unwrap() + r[c_short_f].parse::<u64>().unwrap())
        .collect();
    let below = missing.iter().take_while(|m| **m > 0).count();
    assert!(missing[below..].iter().all(|m| *m == 0));
    assert!(missing[..below].windows(2).all(|w| w[0] >= w[1]));

    // ---- quotas against the raw results, cap applied here -------------------
    let raw = raw_counts(&dir, MONTH, 3).await;
    for row in rows[1..].iter().filter(|r| r[c_isp] == "Tất cả") {
        let code = &row[c_code];
        let (m, f) = raw.get(code).copied().unwrap_or_default();
        assert_eq!(row[c_mobile], m.to_string(), "{code}: raw mobile count");
        assert_eq!(row[c_fixed], f.to_string(), "{code}: raw fixed count");
        assert_eq!(row[c_short_m], 300u64.saturating_sub(m).to_string());
        assert_eq!(row[c_short_f], 300u64.saturating_sub(f).to_string());
    }

    // ---- XLSX: the units sheet, cell by cell ----------------------------------
    let (status, xlsx) = fetch(
        url,
        &format!("/api/v1/reports?month={MONTH}&province={PROVINCE}&format=xlsx"),
    )
    .await;
    assert_eq!(status, 200);
    let sheet = xlsx_sheet(&xlsx, 2);
    assert_eq!(sheet[&(0, 0)], "Mã");
    let mut xlsx_rows = 0;
    for r in 1.. {
        let Some(code) = sheet.get(&(r, 0)) else {
            break;
        };
        let a = all_row(&all[code]).unwrap();
        let cell = |c: u32| sheet.get(&(r, c)).cloned().unwrap_or_default();
        assert_eq!(cell(2), a["n"].to_string(), "xlsx {code} n");
        assert_eq!(
            cell(3),
            n(mobile.get(code)).to_string(),
            "xlsx {code} mobile"
        );
        assert_eq!(cell(4), n(fixed.get(code)).to_string(), "xlsx {code} fixed");
        assert_eq!(cell(5), a["devices"].to_string(), "xlsx {code} devices");
        for (c, metric) in [
            (12, "download_mbps"),
            (13, "upload_mbps"),
            (14, "latency_ms"),
        ] {
            let expected = a[metric]["median"].as_f64();
            let got = (!cell(c).is_empty()).then(|| cell(c).parse::<f64>().unwrap());
            assert_eq!(got, expected, "xlsx {code} {metric}");
        }
        xlsx_rows += 1;
    }
    assert_eq!(xlsx_rows, all.len());

    // ---- the national report: provinces against the API ---------------------
    let (status, national) = fetch(url, &format!("/api/v1/reports?month={MONTH}&format=csv")).await;
    assert_eq!(status, 200);
    let provinces = api(format!("level=nation&period={MONTH}")).await;
    let rows = parse_csv(std::str::from_utf8(&national).unwrap());
    let units: Vec<&Vec<String>> = rows[1..].iter().filter(|r| r[c_isp] == "Tất cả").collect();
    assert_eq!(units.len(), 34);
    let mut last_rank = 0;
    for row in units {
        let a = all_row(&provinces[&row[c_code]]).unwrap();
        assert_eq!(row[c_n], a["n"].to_string());
        assert_eq!(row[c_down], text(&a["download_mbps"]["median"]));
        if let Ok(rank) = row[col("Xếp hạng")].parse::<u32>() {
            assert!(rank >= last_rank, "ranked order");
            last_rank = rank;
        }
    }

    // ---- the printable page ---------------------------------------------------
    let (status, html) = fetch(
        url,
        &format!("/api/v1/reports?month={MONTH}&province={PROVINCE}&format=html"),
    )
    .await;
    assert_eq!(status, 200);
    let html = String::from_utf8(html).unwrap();
    assert!(html.contains("size:A4") && html.contains("<svg"));
    collector.stop().await;
}

/// ISP display names by id, as the report prints them.
fn isp_names() -> HashMap<String, String> {
    ispeed_enrich::IspResolver::embedded()
        .unwrap()
        .isps()
        .iter()
        .map(|i| (i.id.clone(), i.name.clone()))
        .collect()
}

/// Mobile and fixed counts per ward of the month straight from the results
/// table: accepted results, at most `cap` per device and day in ingest order.
async fn raw_counts(dir: &TestStore, month: &str, cap: usize) -> HashMap<String, (u64, u64)> {
    let month = Month::parse(month).unwrap();
    let rows = dir
        .query("SELECT day, device_hash, ward_code, access_kind, status FROM results ORDER BY seq")
        .await;
    let mut per_device_day: HashMap<(Vec<u8>, i32), usize> = HashMap::new();
    let mut counts: HashMap<String, (u64, u64)> = HashMap::new();
    for row in rows {
        let day = row[0].as_i64().unwrap() as i32;
        if row[4] != "accepted" {
            continue;
        }
        let device = row[1].as_str().unwrap().as_bytes().to_vec();
        let seen = per_device_day.entry((device, day)).or_default();
        *seen += 1;
        if *seen > cap || Month::of_day(day) != month {
            continue;
        }
        let Some(ward) = row[2].as_str() else {
            continue;
        };
        let entry = counts.entry(ward.to_owned()).or_default();
        match row[3].as_str().unwrap() {
            "mobile" => entry.0 += 1,
            "fixed" => entry.1 += 1,
            _ => {}
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_report_requests_are_refused_with_a_clear_message() {
    for backend in common::backends() {
        bad_report_requests_are_refused_with_a_clear_message_on(&backend).await;
    }
}

async fn bad_report_requests_are_refused_with_a_clear_message_on(backend: &common::Backend) {
    let dir = TestStore::new("report-input", backend);
    let collector = start_on(&dir, RawConfig::default(), false).await;
    for (query, status, code) in [
        ("month=2026-13", 400, "bad_request"),
        ("month=26-10", 400, "bad_request"),
        ("month=2099-01", 400, "bad_request"),
        ("", 400, "bad_request"),
        ("month=2026-10&province=99", 422, "unknown_unit"),
        ("month=2026-10&format=pdf", 400, "bad_request"),
        ("month=2026-10&ward=1", 400, "bad_request"),
    ] {
        let (got, body) = fetch(&collector.url, &format!("/api/v1/reports?{query}")).await;
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{query}: {body}"
        );
    }
    collector.stop().await;
}
