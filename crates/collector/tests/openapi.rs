//! `openapi.json` cannot drift from the code: every route of `api.rs` is
//! documented (and nothing else), the error-code enum is `ErrorCode::ALL`,
//! each error response lists only codes sent with its status, the enums of
//! the query parameters are the embedded tables, and serialised values of
//! the Rust types validate against their schemas (a small validator for the
//! JSON Schema subset the document uses). `bench/schemathesis.sh` fuzzes the
//! running server against the same document.

use std::collections::BTreeSet;

use ispeed_analytics::{Flag, Level, Summary};
use ispeed_collector::api::{
    ChildStats, ChildrenResponse, IspsResponse, SeriesPoint, StatsResponse, TimeseriesResponse,
    UnitsResponse, OPENAPI_JSON,
};
use ispeed_collector::stats::{Filters, StatsRow};
use ispeed_enrich::{IspResolver, Units};
use ispeed_proto::registry::paths as registry_paths;
use ispeed_proto::results::{
    paths, Access, AccessKind, ClientInfo, ClientKind, ClientMetrics, FixedMedium,
    ImplausibleReason, Location, LocationSource, PlaceSource, PublishedMetrics, RadioTech,
    ResultStatus, StoredResult, SubmitResult, TestPointEntry, TestPoints,
};
use ispeed_proto::{ErrorBody, ErrorCode};
use serde::Serialize;
use serde_json::{json, Value};

const API_RS: &str = include_str!("../src/api.rs");

fn doc() -> Value {
    serde_json::from_str(OPENAPI_JSON).expect("openapi.json is JSON")
}

/// `(METHOD, path)` of every `.route(PATH, method(handler))` in api.rs.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let constants = [
        ("paths::RESULTS", paths::RESULTS),
        ("paths::TEST_POINTS", paths::TEST_POINTS),
        ("paths::STATS", paths::STATS),
        ("paths::STATS_CHILDREN", paths::STATS_CHILDREN),
        ("paths::STATS_TIMESERIES", paths::STATS_TIMESERIES),
        ("paths::UNITS", paths::UNITS),
        ("paths::ISPS", paths::ISPS),
        ("paths::OPENAPI", paths::OPENAPI),
        ("registry_paths::HEARTBEAT", registry_paths::HEARTBEAT),
        ("registry_paths::LOCATE", registry_paths::LOCATE),
        (
            "registry_paths::ADMIN_TEST_POINTS",
            registry_paths::ADMIN_TEST_POINTS,
        ),
    ];
    let mut routes = BTreeSet::new();
    for chunk in API_RS.split(".route(").skip(1) {
        let (path, rest) = chunk.split_once(',').expect("route(path, handler)");
        let path = path.trim();
        let path = match path.strip_prefix('"') {
            Some(literal) => literal.trim_end_matches('"').to_owned(),
            None => constants
                .iter()
                .find(|(name, _)| *name == path)
                .unwrap_or_else(|| panic!("unknown path constant {path} in api.rs"))
                .1
                .to_owned(),
        };
        // `get(a)` or `get(a).post(b)`, up to the end of the line.
        let line = rest.trim_start().lines().next().unwrap_or_default();
        let before = routes.len();
        for part in line.split('.') {
            let name = part.trim().split('(').next().unwrap_or_default();
            if ["get", "post", "put", "delete", "patch"].contains(&name) {
                routes.insert((name.to_ascii_uppercase(), path.clone()));
            }
        }
        assert!(
            routes.len() > before,
            "no method router found for {path}: {line}"
        );
    }
    assert!(routes.len() >= 9, "api.rs parsing found only {routes:?}");
    routes
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let doc = doc();
    assert_eq!(doc["openapi"], "3.0.3");
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    assert_eq!(documented, routes_in_source());
}

#[test]
fn error_codes_are_error_code_all_and_match_their_status() {
    let doc = doc();
    let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let documented: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(documented, all);

    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                let schema = &response["content"]["application/json"]["schema"];
                let status: u16 = status.parse().unwrap();
                if status < 400 {
                    continue;
                }
                // allOf [Error, {error: {code: {enum: [...]}}}]
                assert_eq!(
                    schema["allOf"][0]["$ref"], "#/components/schemas/Error",
                    "{method} {path} {status} must use the Error schema"
                );
                let codes = schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{method} {path} {status} lists no codes"));
                for code in codes {
                    let code = ErrorCode::ALL
                        .into_iter()
                        .find(|c| c.as_str() == code)
                        .unwrap_or_else(|| panic!("{method} {path}: unknown code {code}"));
                    assert_eq!(
                        code.http_status(),
                        status,
                        "{method} {path}: {} is sent with {}",
                        code.as_str(),
                        code.http_status()
                    );
                }
            }
        }
    }
}

fn param_enum<'a>(doc: &'a Value, path: &str, name: &str) -> BTreeSet<&'a str> {
    let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
    let param = params
        .iter()
        .map(|p| match p["$ref"].as_str() {
            Some(r) => &doc["components"]["parameters"][r.rsplit('/').next().unwrap()],
            None => p,
        })
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{path} has no parameter {name}"));
    param["schema"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

#[test]
fn parameter_enums_are_the_embedded_tables() {
    let doc = doc();
    let resolver = IspResolver::embedded().unwrap();
    let mut isps: BTreeSet<&str> = resolver.isps().iter().map(|i| i.id.as_str()).collect();
    isps.insert(ispeed_collector::stats::ALL_ISPS);
    for path in [paths::STATS, paths::STATS_CHILDREN, paths::STATS_TIMESERIES] {
        assert_eq!(param_enum(&doc, path, "isp"), isps, "{path}");
        let access: BTreeSet<&str> = AccessKind::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(param_enum(&doc, path, "access"), access, "{path}");
    }
    let units = Units::embedded().unwrap();
    let provinces: BTreeSet<&str> = units.provinces().iter().map(|p| p.code.as_str()).collect();
    assert_eq!(param_enum(&doc, paths::UNITS, "province"), provinces);
}

// ---- a validator for the JSON Schema subset openapi.json uses ----

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").expect("local ref");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

fn validate(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    let fail = |why: String| Err(format!("{at}: {why} (value {value})"));
    if value.is_null() {
        return if schema["nullable"] == true || schema.as_object().is_some_and(|o| o.is_empty()) {
            Ok(())
        } else {
            fail("null where not nullable".into())
        };
    }
    if let Some(all) = schema["allOf"].as_array() {
        for s in all {
            validate(doc, s, value, at)?;
        }
    }
    if let Some(one) = schema["oneOf"].as_array() {
        let matching = one
            .iter()
            .filter(|s| validate(doc, s, value, at).is_ok())
            .count();
        if matching != 1 {
            return fail(format!("{matching} oneOf branches match"));
        }
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            return fail("not in enum".into());
        }
    }
    let type_ok = match schema["type"].as_str() {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_u64() || value.is_i64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some(other) => return fail(format!("unsupported type {other}")),
    };
    if !type_ok {
        return fail(format!("not of type {}", schema["type"]));
    }
    if let Some(n) = value.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|m| n < m)
            || schema["maximum"].as_f64().is_some_and(|m| n > m)
        {
            return fail("out of range".into());
        }
    }
    if let Some(object) = value.as_object() {
        let props = schema["properties"].as_object();
        for key in schema["required"].as_array().into_iter().flatten() {
            if !object.contains_key(key.as_str().unwrap()) {
                return fail(format!("missing required {key}"));
            }
        }
        for (key, v) in object {
            match props.and_then(|p| p.get(key)) {
                Some(s) => validate(doc, s, v, &format!("{at}.{key}"))?,
                None if schema["additionalProperties"] == false => {
                    return fail(format!("undocumented member {key}"))
                }
                None => {}
            }
        }
    }
    if let Some(items) = value.as_array() {
        let len = items.len() as u64;
        if schema["minItems"].as_u64().is_some_and(|m| len < m)
            || schema["maxItems"].as_u64().is_some_and(|m| len > m)
        {
            return fail("wrong number of items".into());
        }
        for (i, item) in items.iter().enumerate() {
            validate(doc, &schema["items"], item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

fn assert_valid(doc: &Value, schema: &str, value: &impl Serialize) {
    let value = serde_json::to_value(value).unwrap();
    let schema = json!({ "$ref": format!("#/components/schemas/{schema}") });
    if let Err(e) = validate(doc, &schema, &value, schema_name(&schema)) {
        panic!("{e}");
    }
}

fn schema_name(schema: &Value) -> &str {
    schema["$ref"].as_str().unwrap().rsplit('/').next().unwrap()
}

fn summary(n: u64) -> Summary {
    Summary {
        n,
        devices: n / 2,
        median: (n > 0).then_some(50.5),
        p10: (n > 0).then_some(10.0),
        p25: (n > 0).then_some(25.0),
        p75: (n > 0).then_some(75.0),
        p90: (n > 0).then_some(90.0),
        mean: (n > 0).then_some(52.0),
        median_ci95: (n >= 6).then_some([48.0, 53.0]),
    }
}

fn row(isp: &str, n: u64, flags: Vec<Flag>) -> StatsRow {
    StatsRow {
        isp: isp.to_owned(),
        n,
        devices: n / 2,
        download_mbps: summary(n),
        upload_mbps: summary(n),
        latency_ms: summary(n),
        flags,
    }
}

#[test]
fn serialised_responses_match_their_schemas() {
    let doc = doc();
    for code in ErrorCode::ALL {
        assert_valid(&doc, "Error", &ErrorBody::new(code, "why"));
    }

    let accesses = [
        Access::Mobile {
            tech: Some(RadioTech::G4),
        },
        Access::Mobile { tech: None },
        Access::Fixed {
            medium: Some(FixedMedium::Wifi),
        },
        Access::Fixed { medium: None },
        Access::Unknown,
    ];
    for (i, access) in accesses.into_iter().enumerate() {
        let full = i % 2 == 0;
        let stored = StoredResult {
            result_id: uuid::Uuid::from_u128(0x1234_5678_9abc_4def_8123_4567_89ab_cdef),
            received_at_ms: 1_790_000_000_000,
            measured_at_ms: u64::MAX,
            client: ClientInfo {
                kind: ClientKind::Agent,
                version: "1.0.0".into(),
            },
            access,
            test_point_id: "local".into(),
            ip_version: if full { 4 } else { 6 },
            asn: full.then_some(7552),
            isp: "viettel".into(),
            province_code: full.then(|| "01".into()),
            ward_code: full.then(|| "00070".into()),
            place_source: if full {
                PlaceSource::Location
            } else {
                PlaceSource::None
            },
            metrics: PublishedMetrics {
                download_mbps: full.then_some(100.0),
                upload_mbps: full.then_some(50.0),
                latency_ms: full.then_some(12.5),
                jitter_ms: full.then_some(1.0),
                ipv6_capable: full.then_some(true),
            },
            status: if full {
                ResultStatus::Accepted
            } else {
                ResultStatus::Implausible
            },
            reasons: if full {
                vec![]
            } else {
                vec![ImplausibleReason::ReportMismatch]
            },
            counted: full,
            source: Some("so-01.banner".to_owned()),
            test_point_class: full.then_some(ispeed_proto::registry::TestPointClass::Vnix),
            download_test_point_id: full.then(|| "hn-1".to_owned()),
        };
        assert_valid(&doc, "StoredResult", &stored);

        let submit = SubmitResult {
            result_id: stored.result_id,
            device_id: "device".into(),
            measured_at_ms: 1_790_000_000_000,
            client: ClientInfo {
                kind: ClientKind::Cli,
                version: "1".into(),
            },
            access,
            location: full.then_some(Location {
                lat: 21.0,
                lon: 105.8,
                accuracy_m: Some(10.0),
                source: LocationSource::Gps,
            }),
            ward_code: full.then(|| "00070".into()),
            legacy_ward_code: None,
            metrics: ClientMetrics {
                download_mbps: full.then_some(99.0),
                ..Default::default()
            },
            receipt: "v1.a.b".into(),
            source: None,
            download_receipt: full.then(|| "v1.c.d".into()),
        };
        assert_valid(&doc, "SubmitResult", &submit);
    }

    assert_valid(
        &doc,
        "TestPoints",
        &TestPoints {
            test_points: vec![
                TestPointEntry {
                    id: "local".into(),
                    url: "/".into(),
                    public_key: "key".into(),
                    name: Some("local test point".into()),
                    province_code: None,
                },
                TestPointEntry {
                    id: "hn".into(),
                    url: "https://tp.example".into(),
                    public_key: "key".into(),
                    name: None,
                    province_code: Some("01".into()),
                },
            ],
        },
    );

    let filters = [
        Filters::default(),
        Filters {
            isp: Some("vnpt".into()),
            access: Some(AccessKind::Fixed),
            ip: Some(6),
        },
    ];
    for filters in filters {
        let rows = vec![
            row("all", 0, vec![Flag::Insufficient, Flag::BelowQuota]),
            row("viettel", 5, vec![Flag::Insufficient]),
            row("vnpt", 1000, vec![]),
        ];
        assert_valid(
            &doc,
            "StatsResponse",
            &StatsResponse {
                level: Level::Province,
                code: "01".into(),
                name: "Hà Nội".into(),
                period: "2026-Q4".into(),
                months: vec!["2026-10".into(), "2026-11".into(), "2026-12".into()],
                filters: filters.clone(),
                rows: rows.clone(),
            },
        );
        assert_valid(
            &doc,
            "ChildrenResponse",
            &ChildrenResponse {
                level: Level::Nation,
                code: "VN".into(),
                name: "Việt Nam".into(),
                child_level: Level::Province,
                period: "12m".into(),
                months: vec!["2026-10".into()],
                filters: filters.clone(),
                children: vec![ChildStats {
                    code: "01".into(),
                    name: "Hà Nội".into(),
                    rows,
                }],
            },
        );
        assert_valid(
            &doc,
            "TimeseriesResponse",
            &TimeseriesResponse {
                level: Level::Ward,
                code: "00070".into(),
                name: "Hoàn Kiếm".into(),
                period: "2026-10".into(),
                filters,
                points: vec![SeriesPoint {
                    month: "2026-10".into(),
                    row: row("all", 7, vec![]),
                }],
            },
        );
    }

    let units = Units::embedded().unwrap();
    assert_valid(
        &doc,
        "UnitsResponse",
        &UnitsResponse {
            provinces: units.provinces().to_vec(),
            wards: units.wards().to_vec(),
        },
    );
    let resolver = IspResolver::embedded().unwrap();
    assert_valid(
        &doc,
        "IspsResponse",
        &IspsResponse {
            isps: resolver.isps().to_vec(),
        },
    );
}

#[test]
fn the_validator_rejects_what_it_should() {
    let doc = doc();
    let mut value = serde_json::to_value(ErrorBody::new(ErrorCode::NotFound, "x")).unwrap();
    let schema = json!({ "$ref": "#/components/schemas/Error" });
    value["error"]["extra"] = json!(1);
    assert!(validate(&doc, &schema, &value, "").is_err());
    let value = json!({ "error": { "code": "nope", "message": "x" } });
    assert!(validate(&doc, &schema, &value, "").is_err());
    let schema = json!({ "$ref": "#/components/schemas/Summary" });
    let mut value = serde_json::to_value(summary(10)).unwrap();
    value["median_ci95"] = json!([1.0]);
    assert!(validate(&doc, &schema, &value, "").is_err());
    value["median_ci95"] = Value::Null;
    value["n"] = json!(1.5);
    assert!(validate(&doc, &schema, &value, "").is_err());
}
