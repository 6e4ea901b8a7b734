//! HTTP handlers of the collector and the router that binds them.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ispeed_analytics::Level;
use ispeed_enrich::{Isp, Province, Ward};
use ispeed_proto::registry::{
    paths as registry_paths, AdminTestPoint, AdminTestPoints, HeartbeatAck, HeartbeatRequest,
    Located, LOCATE_MAX_CANDIDATES,
};
use ispeed_proto::results::{
    paths, AccessKind, StoredResult, SubmitResult, TestPointEntry, TestPoints, DEVICE_HEADER,
};
use ispeed_proto::ErrorCode;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiFailure;
use crate::period::{Month, Period};
use crate::rollup::NATION_CODE;
use crate::state::{CollectorState, LocateRequest};
use crate::stats::{self, Filters, StatsRow};
use crate::verify::device_hash;

/// The OpenAPI 3 description of this API, served verbatim.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// The collector's router. Unknown paths get a typed 404; `ispeed serve`
/// replaces that fallback with the local test point's router.
pub fn app(state: CollectorState) -> Router {
    routes(state).fallback(not_found)
}

/// The collector's routes without a fallback.
pub fn routes(state: CollectorState) -> Router {
    let body_limit = state.config.max_body_bytes;
    Router::new()
        .route(paths::RESULTS, post(submit_result))
        .route("/api/v1/results/{id}", get(get_result))
        .route(paths::TEST_POINTS, get(test_points))
        .route(paths::STATS, get(stats_handler))
        .route(paths::STATS_CHILDREN, get(children_handler))
        .route(paths::STATS_TIMESERIES, get(timeseries_handler))
        .route(paths::UNITS, get(units))
        .route(paths::ISPS, get(isps))
        .route(paths::OPENAPI, get(openapi))
        .route("/api/v1/sources", get(crate::web::sources))
        .route(registry_paths::HEARTBEAT, post(heartbeat))
        .route(registry_paths::LOCATE, get(locate))
        .route(registry_paths::ADMIN_TEST_POINTS, get(admin_list))
        .route(
            "/api/v1/admin/test-points/{id}/{action}",
            post(admin_action),
        )
        .route("/metrics", get(metrics))
        .route("/api/v1/reports", get(report))
        .route("/api/v1/exports/results", get(crate::auth::export_results))
        .route(
            "/api/v1/admin/users",
            get(crate::auth::list_users).post(crate::auth::create_user),
        )
        .route(
            "/api/v1/admin/users/{username}/disable",
            post(crate::auth::disable_user),
        )
        .route("/api/v1/admin/audit", get(crate::auth::audit_log))
        .route(
            "/api/v1/campaigns",
            get(crate::campaigns::list).post(crate::campaigns::create),
        )
        .route(
            "/api/v1/campaigns/{slug}",
            get(crate::campaigns::get_progress),
        )
        .merge(crate::campaigns::pages())
        .merge(crate::auth::routes())
        .merge(crate::web::pages())
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn not_found() -> ApiFailure {
    ApiFailure::new(ErrorCode::NotFound, "no such endpoint")
}

async fn method_not_allowed() -> ApiFailure {
    ApiFailure::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this endpoint",
    )
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI_JSON,
    )
        .into_response()
}

async fn submit_result(
    State(state): State<CollectorState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<StoredResult>), ApiFailure> {
    let body = read_body(&state, body)?;
    let submission: SubmitResult = serde_json::from_slice(&body)
        .map_err(|e| ApiFailure::new(ErrorCode::MalformedJson, format!("invalid result: {e}")))?;
    let (status, stored) = state.submit(submission, now_ms()).await?;
    Ok((status, Json(stored)))
}

/// A request body within the configured limit, or the typed refusal.
fn read_body(
    state: &CollectorState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiFailure> {
    body.map_err(|rejection| match rejection {
        BytesRejection::FailedToBufferBody(_)
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
        {
            ApiFailure::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "a request body must be at most {} bytes",
                    state.config.max_body_bytes
                ),
            )
        }
        other => ApiFailure::bad_request(format!("cannot read the body: {other}")),
    })
}

async fn get_result(
    State(state): State<CollectorState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Json<StoredResult>, ApiFailure> {
    let Path(id) = id.map_err(|e| ApiFailure::bad_request(e.to_string()))?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiFailure::bad_request("id must be a UUID"))?;
    let device = headers
        .get(DEVICE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiFailure::bad_request(format!(
                "the {DEVICE_HEADER} header names the submitting device"
            ))
        })?;
    let hidden = || {
        ApiFailure::new(
            ErrorCode::NotFound,
            "no result with this id for this device",
        )
    };
    let row = state.store.get(id).await?.ok_or_else(hidden)?;
    // Only the submitting device may read a result; others learn nothing,
    // not even that it exists.
    if row.device_hash != device_hash(state.device_key(), device) {
        return Err(hidden());
    }
    Ok(Json(row.record))
}

async fn test_points(State(state): State<CollectorState>) -> Result<Json<TestPoints>, ApiFailure> {
    let test_points = state
        .store
        .test_points()
        .await?
        .into_iter()
        .filter(|tp| tp.approved())
        .map(|tp| TestPointEntry {
            id: tp.id,
            url: tp.url,
            public_key: tp.public_key,
            name: tp.name,
            province_code: tp.province_code,
        })
        .collect();
    Ok(Json(TestPoints { test_points }))
}

/// Query string of the statistics endpoints; every field is checked by hand
/// so that each mistake gets its own typed message.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct StatsParams {
    pub level: Option<String>,
    pub code: Option<String>,
    pub period: Option<String>,
    pub isp: Option<String>,
    pub access: Option<String>,
    pub ip: Option<String>,
}

/// A checked statistics request.
struct Resolved {
    level: Level,
    code: String,
    /// The unit's parent key in the cell table.
    parent: String,
    name: String,
    period: Period,
    period_text: String,
    filters: Filters,
}

fn resolve(state: &CollectorState, params: StatsParams) -> Result<Resolved, ApiFailure> {
    let level = match params.level.as_deref() {
        Some("nation") | None => Level::Nation,
        Some("province") => Level::Province,
        Some("ward") => Level::Ward,
        Some(other) => {
            return Err(ApiFailure::bad_request(format!(
                "level must be nation, province or ward, not {other:?}"
            )))
        }
    };
    let period_text = params
        .period
        .unwrap_or_else(|| Month::of_unix_ms(now_ms()).to_string());
    let period = Period::parse(&period_text, now_ms()).ok_or_else(|| {
        ApiFailure::bad_request(format!(
            "period must be YYYY-MM, YYYY-Qn or 12m, not {period_text:?}"
        ))
    })?;
    // The units in force in the period's first month.
    let (units, _) = state.enricher.at_month(period.first);
    let (code, parent, name) = match level {
        Level::Nation => {
            if params.code.as_deref().is_some_and(|c| c != NATION_CODE) {
                return Err(ApiFailure::new(
                    ErrorCode::UnknownUnit,
                    format!("the nation's code is {NATION_CODE}"),
                ));
            }
            (NATION_CODE.to_owned(), String::new(), "Việt Nam".to_owned())
        }
        Level::Province => {
            let code = params
                .code
                .ok_or_else(|| ApiFailure::bad_request("code is required for level=province"))?;
            let province = units.province(&code).ok_or_else(|| {
                ApiFailure::new(
                    ErrorCode::UnknownUnit,
                    format!("no province with code {code:?}"),
                )
            })?;
            (code, String::new(), province.name.clone())
        }
        Level::Ward => {
            let code = params
                .code
                .ok_or_else(|| ApiFailure::bad_request("code is required for level=ward"))?;
            let ward = units.ward(&code).ok_or_else(|| {
                ApiFailure::new(
                    ErrorCode::UnknownUnit,
                    format!("no ward with code {code:?}"),
                )
            })?;
            (code, ward.province_code.clone(), ward.name.clone())
        }
    };

    let isp = match params.isp {
        Some(isp) if isp != stats::ALL_ISPS => {
            if !state
                .enricher
                .isps
                .isps()
                .iter()
                .any(|known| known.id == isp)
            {
                return Err(ApiFailure::new(
                    ErrorCode::UnknownUnit,
                    format!("no ISP with id {isp:?}; see {}", paths::ISPS),
                ));
            }
            Some(isp)
        }
        _ => None,
    };
    let access =
        match params.access {
            Some(text) => Some(AccessKind::parse(&text).ok_or_else(|| {
                ApiFailure::bad_request("access must be mobile, fixed or unknown")
            })?),
            None => None,
        };
    let ip = match params.ip.as_deref() {
        Some("4") => Some(4),
        Some("6") => Some(6),
        Some(_) => return Err(ApiFailure::bad_request("ip must be 4 or 6")),
        None => None,
    };
    Ok(Resolved {
        level,
        code,
        parent,
        name,
        period,
        period_text,
        filters: Filters { isp, access, ip },
    })
}

/// `YYYY-MM`, `YYYY-Qn` (n in 1..=4) or `12m`, digits ASCII, as the OpenAPI
/// document promises: `Period::parse` alone also takes `+123-05` or `2026-Q01`,
/// which would then be echoed back in `period`.
fn query_params(
    params: Result<Query<StatsParams>, QueryRejection>,
) -> Result<StatsParams, ApiFailure> {
    params
        .map(|Query(p)| p)
        .map_err(|e| ApiFailure::bad_request(format!("invalid query: {}", e.body_text())))
}

/// Response of `GET /api/v1/stats`.
#[derive(Debug, Serialize)]
pub struct StatsResponse {
    pub level: Level,
    pub code: String,
    pub name: String,
    pub period: String,
    pub months: Vec<String>,
    pub filters: Filters,
    pub rows: Vec<StatsRow>,
}

async fn stats_handler(
    State(state): State<CollectorState>,
    params: Result<Query<StatsParams>, QueryRejection>,
) -> Result<Json<StatsResponse>, ApiFailure> {
    stats_of(&state, query_params(params)?).await.map(Json)
}

/// `GET /api/v1/stats`, for the API and the pages alike.
pub async fn stats_of(
    state: &CollectorState,
    params: StatsParams,
) -> Result<StatsResponse, ApiFailure> {
    let r = resolve(state, params)?;
    let cells = state
        .store
        .cells(stats::unit_query(
            r.level, &r.code, &r.parent, r.period, &r.filters,
        ))
        .await?;
    let rows = stats::rows(
        cells.iter(),
        &r.filters,
        r.level,
        r.period.months,
        &state.config.thresholds,
    );
    Ok(StatsResponse {
        level: r.level,
        code: r.code,
        name: r.name,
        period: r.period_text,
        months: r.period.months().map(|m| m.to_string()).collect(),
        filters: r.filters,
        rows,
    })
}

/// One child unit in `GET /api/v1/stats/children`.
#[derive(Debug, Serialize)]
pub struct ChildStats {
    pub code: String,
    pub name: String,
    pub rows: Vec<StatsRow>,
}

/// Response of `GET /api/v1/stats/children`: every child unit, with or without samples.
#[derive(Debug, Serialize)]
pub struct ChildrenResponse {
    pub level: Level,
    pub code: String,
    pub name: String,
    pub child_level: Level,
    pub period: String,
    pub months: Vec<String>,
    pub filters: Filters,
    pub children: Vec<ChildStats>,
}

async fn children_handler(
    State(state): State<CollectorState>,
    params: Result<Query<StatsParams>, QueryRejection>,
) -> Result<Json<ChildrenResponse>, ApiFailure> {
    children_of(&state, query_params(params)?).await.map(Json)
}

/// `GET /api/v1/stats/children`, for the API and the pages alike.
pub async fn children_of(
    state: &CollectorState,
    params: StatsParams,
) -> Result<ChildrenResponse, ApiFailure> {
    let r = resolve(state, params)?;
    let query = stats::children_query(r.level, &r.code, r.period, &r.filters)
        .ok_or_else(|| ApiFailure::bad_request("a ward has no child units"))?;
    let child_level = query.level;
    let cells = state.store.cells(query).await?;
    let (units, _) = state.enricher.at_month(r.period.first);
    let children_units: Vec<(String, String)> = match r.level {
        Level::Nation => units
            .provinces()
            .iter()
            .map(|p| (p.code.clone(), p.name.clone()))
            .collect(),
        _ => units
            .wards_of(&r.code)
            .map(|w| (w.code.clone(), w.name.clone()))
            .collect(),
    };
    let units: Vec<stats::UnitCells> = {
        let mut groups = stats::by_code(&cells);
        children_units
            .into_iter()
            .map(|(code, name)| {
                let indexes = groups.remove(code.as_str()).unwrap_or_default();
                (code, name, indexes)
            })
            .collect()
    };
    let thresholds = state.config.thresholds;
    let months = r.period.months;
    let filters = r.filters.clone();
    // Thousands of cells to merge and summarise: CPU work, kept off the
    // async workers and spread over the cores.
    let children = tokio::task::spawn_blocking(move || {
        stats::children_rows(&cells, units, &filters, child_level, months, &thresholds)
    })
    .await
    .map_err(|e| ApiFailure::new(ErrorCode::Internal, format!("statistics task failed: {e}")))?
    .into_iter()
    .map(|(code, name, rows)| ChildStats { code, name, rows })
    .collect();
    Ok(ChildrenResponse {
        level: r.level,
        code: r.code,
        name: r.name,
        child_level,
        period: r.period_text,
        months: r.period.months().map(|m| m.to_string()).collect(),
        filters: r.filters,
        children,
    })
}

/// One month of a series.
#[derive(Debug, Serialize)]
pub struct SeriesPoint {
    pub month: String,
    pub row: StatsRow,
}

/// Response of `GET /api/v1/stats/timeseries`.
#[derive(Debug, Serialize)]
pub struct TimeseriesResponse {
    pub level: Level,
    pub code: String,
    pub name: String,
    pub period: String,
    pub filters: Filters,
    pub points: Vec<SeriesPoint>,
}

async fn timeseries_handler(
    State(state): State<CollectorState>,
    params: Result<Query<StatsParams>, QueryRejection>,
) -> Result<Json<TimeseriesResponse>, ApiFailure> {
    timeseries_of(&state, query_params(params)?).await.map(Json)
}

/// `GET /api/v1/stats/timeseries`, for the API and the pages alike.
pub(crate) async fn timeseries_of(
    state: &CollectorState,
    mut params: StatsParams,
) -> Result<TimeseriesResponse, ApiFailure> {
    params.period.get_or_insert_with(|| "12m".to_owned());
    let r = resolve(state, params)?;
    let cells = state
        .store
        .cells(stats::unit_query(
            r.level, &r.code, &r.parent, r.period, &r.filters,
        ))
        .await?;
    let points = stats::series(
        &cells,
        &r.filters,
        r.level,
        r.period,
        &state.config.thresholds,
    )
    .into_iter()
    .map(|(month, row)| SeriesPoint {
        month: month.to_string(),
        row,
    })
    .collect();
    Ok(TimeseriesResponse {
        level: r.level,
        code: r.code,
        name: r.name,
        period: r.period_text,
        filters: r.filters,
        points,
    })
}

#[derive(Debug, Default, Deserialize)]
struct UnitsParams {
    province: Option<String>,
}

/// Response of `GET /api/v1/units`.
#[derive(Debug, Serialize)]
pub struct UnitsResponse {
    pub provinces: Vec<Province>,
    pub wards: Vec<Ward>,
}

async fn units(
    State(state): State<CollectorState>,
    params: Result<Query<UnitsParams>, QueryRejection>,
) -> Result<Json<UnitsResponse>, ApiFailure> {
    let Query(params) =
        params.map_err(|e| ApiFailure::bad_request(format!("invalid query: {}", e.body_text())))?;
    let units = &state.enricher.units;
    let response = match params.province {
        Some(code) => {
            let province = units.province(&code).ok_or_else(|| {
                ApiFailure::new(
                    ErrorCode::UnknownUnit,
                    format!("no province with code {code:?}"),
                )
            })?;
            UnitsResponse {
                provinces: vec![province.clone()],
                wards: units.wards_of(&code).cloned().collect(),
            }
        }
        None => UnitsResponse {
            provinces: units.provinces().to_vec(),
            wards: units.wards().to_vec(),
        },
    };
    Ok(Json(response))
}

/// Response of `GET /api/v1/isps`.
#[derive(Debug, Serialize)]
pub struct IspsResponse {
    pub isps: Vec<Isp>,
}

async fn isps(State(state): State<CollectorState>) -> Json<IspsResponse> {
    Json(IspsResponse {
        isps: state.enricher.isps.isps().to_vec(),
    })
}

// ---- the test-point network (spec/registry.md) -------------------------------

/// The address of the peer the request came from, however the collector is
/// served (inside `ispeed serve` with a local test point, or on its own).
pub struct PeerIp(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PeerIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let from_test_point = parts
            .extensions
            .get::<ispeed_server::ConnInfo>()
            .map(|c| c.peer.ip());
        let from_axum = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(PeerIp(
            from_test_point.or(from_axum).map(|ip| ip.to_canonical()),
        ))
    }
}

async fn heartbeat(
    State(state): State<CollectorState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<HeartbeatAck>, ApiFailure> {
    let body = read_body(&state, body)?;
    let request: HeartbeatRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiFailure::new(ErrorCode::MalformedJson, format!("invalid heartbeat: {e}"))
    })?;
    Ok(Json(state.heartbeat(&request.heartbeat, now_ms()).await?))
}

async fn locate(
    State(state): State<CollectorState>,
    PeerIp(peer): PeerIp,
    query: Result<Query<std::collections::BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Located>, ApiFailure> {
    let Query(query) = query.map_err(|e| ApiFailure::bad_request(e.body_text()))?;
    let request = locate_request(&query)?;
    if let Some(code) = &request.province {
        if state.enricher.units.province(code).is_none() {
            return Err(ApiFailure::new(
                ErrorCode::UnknownUnit,
                format!("province {code:?} is not a province of the 2025 unit list"),
            ));
        }
    }
    Ok(Json(state.locate(peer, &request, now_ms())?))
}

/// Checks `locate`'s query string: every parameter known, every value in range.
pub fn locate_request(
    query: &std::collections::BTreeMap<String, String>,
) -> Result<LocateRequest, ApiFailure> {
    const KNOWN: [&str; 5] = ["lat", "lon", "province", "family", "limit"];
    if let Some(unknown) = query.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiFailure::bad_request(format!(
            "unknown parameter {unknown:?}; locate takes lat, lon, province, family and limit"
        )));
    }
    let number =
        |name: &str, range: std::ops::RangeInclusive<f64>| -> Result<Option<f64>, ApiFailure> {
            query
                .get(name)
                .map(|v| match v.parse::<f64>() {
                    Ok(x) if x.is_finite() && range.contains(&x) => Ok(x),
                    _ => Err(ApiFailure::bad_request(format!(
                        "{name} must be a number from {} to {}",
                        range.start(),
                        range.end()
                    ))),
                })
                .transpose()
        };
    let location = match (number("lat", -90.0..=90.0)?, number("lon", -180.0..=180.0)?) {
        (Some(lat), Some(lon)) => Some((lat, lon)),
        (None, None) => None,
        _ => return Err(ApiFailure::bad_request("lat and lon go together")),
    };
    let province = query.get("province").cloned();
    if let Some(code) = &province {
        if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiFailure::bad_request(
                "province must be a 2-digit province code, e.g. 79",
            ));
        }
    }
    let family = match query.get("family").map(String::as_str) {
        None => None,
        Some("4") => Some(4),
        Some("6") => Some(6),
        Some(_) => return Err(ApiFailure::bad_request("family must be 4 or 6")),
    };
    let limit = match query.get("limit") {
        None => None,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=LOCATE_MAX_CANDIDATES).contains(&n) => Some(n),
            _ => {
                return Err(ApiFailure::bad_request(format!(
                    "limit must be 1 to {LOCATE_MAX_CANDIDATES}"
                )))
            }
        },
    };
    Ok(LocateRequest {
        location,
        province,
        family,
        limit,
    })
}

async fn admin_list(
    State(state): State<CollectorState>,
    headers: HeaderMap,
) -> Result<Json<AdminTestPoints>, ApiFailure> {
    crate::auth::require_admin(&state, &headers, false).await?;
    Ok(Json(AdminTestPoints {
        test_points: state.registry.admin_view(now_ms()),
    }))
}

async fn admin_action(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<AdminTestPoint>, ApiFailure> {
    let actor = crate::auth::require_admin(&state, &headers, true).await?;
    let Path((id, action)) = path.map_err(|e| ApiFailure::bad_request(e.to_string()))?;
    let done = match action.as_str() {
        "approve" => state.approve(&id, now_ms()).await?,
        "revoke" => state.revoke(&id, now_ms()).await?,
        _ => {
            return Err(ApiFailure::new(
                ErrorCode::NotFound,
                format!("no admin action {action:?}; use approve or revoke"),
            ))
        }
    };
    crate::auth::audit(
        &state,
        &actor.name,
        &format!("test_point_{action}"),
        Some(&id),
        Some(serde_json::json!({"public_key": done.public_key})),
    )
    .await;
    Ok(Json(done))
}

/// Collector counters, then the local test point's, in the Prometheus text format.
async fn metrics(State(state): State<CollectorState>) -> Response {
    use std::fmt::Write as _;
    use std::sync::atomic::Ordering::Relaxed;
    let now = now_ms();
    let (approved, pending, revoked, alive) = state.registry.counts(now);
    let m = &state.registry.metrics;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    metric(
        "ispeed_collector_test_points",
        "gauge",
        "Known test points by registration status.",
        &[
            ("{status=\"approved\"}", approved),
            ("{status=\"pending\"}", pending),
            ("{status=\"revoked\"}", revoked),
        ],
    );
    metric(
        "ispeed_collector_test_points_alive",
        "gauge",
        "Approved test points heard from within the liveness timeout.",
        &[("", alive)],
    );
    metric(
        "ispeed_collector_heartbeats_total",
        "counter",
        "Heartbeats by outcome.",
        &[
            (
                "{outcome=\"accepted\"}",
                m.heartbeats_accepted.load(Relaxed),
            ),
            ("{outcome=\"refused\"}", m.heartbeats_refused.load(Relaxed)),
        ],
    );
    metric(
        "ispeed_collector_locate_total",
        "counter",
        "Locate requests by outcome.",
        &[
            ("{outcome=\"answered\"}", m.locate_answered.load(Relaxed)),
            ("{outcome=\"none_available\"}", m.locate_empty.load(Relaxed)),
        ],
    );
    metric(
        "ispeed_collector_tokens_issued_total",
        "counter",
        "Access tokens issued by locate.",
        &[("", m.tokens_issued.load(Relaxed))],
    );
    if let Some(test_point) = state.local_test_point() {
        let (sessions, streams) = test_point.activity();
        out.push_str(&test_point.metrics.render(sessions, streams));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

// ---- monthly reports (spec/reports.md) ----------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    pub month: Option<String>,
    pub province: Option<String>,
    pub format: Option<String>,
}

/// `GET /api/v1/reports?month=YYYY-MM[&province=CODE][&format=csv|xlsx|html]`:
/// the month's report of a province, or of the nation, as a download.
async fn report(
    State(state): State<CollectorState>,
    query: Result<Query<ReportParams>, QueryRejection>,
) -> Result<Response, ApiFailure> {
    let Query(query) = query.map_err(|e| ApiFailure::bad_request(e.body_text()))?;
    let month = query
        .month
        .ok_or_else(|| ApiFailure::bad_request("month is required (YYYY-MM)"))?;
    let format = match query.format.as_deref() {
        None => crate::report::Format::Csv,
        Some(text) => crate::report::Format::parse(text)
            .ok_or_else(|| ApiFailure::bad_request("format must be csv, xlsx or html"))?,
    };
    let report = crate::report::build(&state, query.province.as_deref(), &month).await?;
    let name = crate::report::file_name(&report, format);
    let bytes = crate::report::render(&state, &report, format)?;
    let disposition = if format == crate::report::Format::Html {
        format!("inline; filename=\"{name}\"")
    } else {
        format!("attachment; filename=\"{name}\"")
    };
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        bytes,
    )
        .into_response())
}
