//! Versions of the administrative units: malformed files (missing codes,
//! duplicate codes, invalid polygons) are refused with a clear message and
//! change nothing; a valid version applies from its effective month on, to
//! where results are counted and to the units the statistics list, while
//! earlier months keep the units they were collected on.

mod common;

use std::io::Read;
use std::sync::Arc;

use common::{get_json, start_on, TestStore};
use ispeed_collector::generate::{generate_into_store, Generator};
use ispeed_collector::period::Month;
use ispeed_collector::state::load_enricher;
use ispeed_collector::units::{load, LoadError};
use ispeed_collector::{RawConfig, Store};
use serde_json::Value;

const UNITS_CSV: &str = include_str!("../../enrich/data/units.csv");
const WARDS_GZ: &[u8] = include_bytes!("../../enrich/data/wards.geojson.gz");

fn wards() -> Value {
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(WARDS_GZ)
        .read_to_end(&mut json)
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}

fn feature<'a>(fc: &'a mut Value, code: &str) -> &'a mut Value {
    fc["features"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["properties"]["code"] == code)
        .unwrap()
}

fn provinces() -> String {
    ispeed_enrich::Units::embedded_provinces_csv().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_unit_files_change_nothing_and_a_good_version_applies_from_its_month() {
    for backend in common::backends() {
        bad_unit_files_change_nothing_and_a_good_version_applies_from_its_month_on(&backend).await;
    }
}

async fn bad_unit_files_change_nothing_and_a_good_version_applies_from_its_month_on(
    backend: &common::Backend,
) {
    let dir = TestStore::new("units", backend);
    let store: Arc<dyn Store> = dir.open().await;
    let now = ispeed_collector::api::now_ms();
    let next = Month(Month::of_unix_ms(now).0 + 1);
    let geojson = serde_json::to_vec(&wards()).unwrap();

    // ---- malformed files: refused, with what is wrong, and nothing stored ----
    let first_row = UNITS_CSV.lines().nth(1).unwrap();
    let first_code = first_row.split(',').next().unwrap();
    let missing_code = UNITS_CSV.replacen(first_row, &first_row.replacen(first_code, "", 1), 1);
    let duplicate = format!("{UNITS_CSV}{first_row}\n");
    let mut broken = wards();
    {
        let ring = &mut feature(&mut broken, "26743")["geometry"]["coordinates"];
        // Drop the closing position of the first ring (Polygon or MultiPolygon).
        let ring = if ring[0][0][0].is_array() {
            &mut ring[0][0]
        } else {
            &mut ring[0]
        };
        ring.as_array_mut().unwrap().pop();
    }
    let mut no_geometry = wards();
    feature(&mut no_geometry, "00070")["geometry"] = Value::Null;
    let cases: Vec<(&str, String, Vec<u8>, &str)> = vec![
        (
            "missing ward code",
            missing_code,
            geojson.clone(),
            "missing ward code",
        ),
        (
            "duplicate ward code",
            duplicate,
            geojson.clone(),
            "listed twice",
        ),
        (
            "unclosed ring",
            UNITS_CSV.to_owned(),
            serde_json::to_vec(&broken).unwrap(),
            "ward 26743): invalid polygon: exterior ring is not closed",
        ),
        (
            "no geometry",
            UNITS_CSV.to_owned(),
            serde_json::to_vec(&no_geometry).unwrap(),
            "ward 00070): no geometry",
        ),
        (
            "not GeoJSON",
            UNITS_CSV.to_owned(),
            b"[1,2,3]".to_vec(),
            "not a FeatureCollection",
        ),
    ];
    for (what, units, geojson, expected) in cases {
        match load(
            store.as_ref(),
            "bad",
            next,
            provinces(),
            units,
            geojson,
            now,
        )
        .await
        {
            Err(LoadError::Invalid(problems)) => assert!(
                problems.0.iter().any(|p| p.contains(expected)),
                "{what}: expected {expected:?} in {problems}"
            ),
            other => panic!("{what}: {other:?}"),
        }
        assert!(
            store.unit_versions().await.unwrap().is_empty(),
            "{what} stored something"
        );
    }
    let past = load(
        store.as_ref(),
        "past",
        Month::of_unix_ms(now),
        provinces(),
        UNITS_CSV.to_owned(),
        geojson.clone(),
        now,
    )
    .await;
    assert!(matches!(past, Err(LoadError::Past(_))), "{past:?}");

    // ---- a good version from next month: Bến Thành merged into Sài Gòn ----
    let merged_csv: String = UNITS_CSV
        .lines()
        .filter(|l| !l.starts_with("26743,"))
        .map(|l| {
            if l.starts_with("26740,") {
                l.replacen("Sài Gòn", "Sài Gòn mới", 1)
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect();
    let mut merged = wards();
    let ben_thanh = feature(&mut merged, "26743")["geometry"].clone();
    let polygons = |g: &Value| -> Vec<Value> {
        match g["type"].as_str().unwrap() {
            "Polygon" => vec![g["coordinates"].clone()],
            _ => g["coordinates"].as_array().unwrap().clone(),
        }
    };
    let sai_gon = feature(&mut merged, "26740");
    let mut all = polygons(&sai_gon["geometry"]);
    all.extend(polygons(&ben_thanh));
    sai_gon["geometry"] = serde_json::json!({"type": "MultiPolygon", "coordinates": all});
    merged["features"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["properties"]["code"] != "26743");
    load(
        store.as_ref(),
        "merge-2026",
        next,
        provinces(),
        merged_csv,
        serde_json::to_vec(&merged).unwrap(),
        now,
    )
    .await
    .unwrap();
    let again = load(
        store.as_ref(),
        "again",
        next,
        provinces(),
        UNITS_CSV.to_owned(),
        geojson,
        now,
    )
    .await;
    assert!(matches!(again, Err(LoadError::Exists(_))));

    // Results of both months, placed by their coordinates.
    let config = dir.config();
    let mut enricher = load_enricher(&config).unwrap();
    enricher.versions = ispeed_collector::state::load_unit_versions(store.as_ref())
        .await
        .unwrap();
    let enricher = Arc::new(enricher);
    let this = Month::of_unix_ms(now);
    for (seed, month) in [(61, this), (62, next)] {
        let generator = Arc::new(Generator::new(seed, month, 20_000, &enricher));
        generate_into_store(store.clone(), enricher.clone(), generator, |_| {})
            .await
            .unwrap();
    }
    drop(store);

    let collector = start_on(&dir, RawConfig::default(), false).await;
    let children = |month: Month| {
        let url = collector.url.clone();
        async move {
            get_json(
                &url,
                &format!("/api/v1/stats/children?level=province&code=79&period={month}"),
            )
            .await
        }
    };
    let name_and_n = |answer: &Value, code: &str| {
        answer["children"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["code"] == code)
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_owned(),
                    c["rows"][0]["n"].as_u64().unwrap(),
                )
            })
    };
    let before = children(this).await;
    let after = children(next).await;
    // This month: the 2025 units, Bến Thành among them.
    assert_eq!(name_and_n(&before, "26740").unwrap().0, "Sài Gòn");
    assert!(name_and_n(&before, "26743").unwrap().1 > 0);
    // Next month: Bến Thành is gone, its results counted in the new Sài Gòn.
    assert!(name_and_n(&after, "26743").is_none());
    let (name, n) = name_and_n(&after, "26740").unwrap();
    assert_eq!(name, "Sài Gòn mới");
    assert!(
        n > name_and_n(&before, "26740").unwrap().1 / 2,
        "merged ward holds results"
    );
    assert_eq!(
        after["children"].as_array().unwrap().len() + 1,
        before["children"].as_array().unwrap().len()
    );
    collector.stop().await;
}
