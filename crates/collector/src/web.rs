//! The pages `ispeed serve` shows a browser: the speed test (`/`, `/embed`),
//! shareable results (`/r/{id}`), the dashboard (`/thong-ke`), province pages
//! (`/tinh/{code}`), the methodology, the partner kit (`/nhung`: snippets,
//! banners, QR codes), and the handler of campaign counts
//! (`/api/v1/sources`, routed with the API in `api.rs`).
//!
//! Pages are rendered on the server from the same functions that answer the
//! statistics API (`api::stats_of` and siblings), so a map region
//! and its API row cannot disagree. Rendering itself is `ispeed_web`'s; this
//! module only gathers numbers and picks words. Bad input gets an HTML
//! 400/404 page, never a 500.

use std::fmt::Write as _;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ispeed_analytics::{Flag, Summary};
use ispeed_proto::ErrorCode;
use ispeed_server::web::{choose_lang, compressed, html_response, Framing};
use ispeed_web::banner::{banner_svg, BannerSize, BannerText};
use ispeed_web::chart::{trend_chart, ChartText, TrendPoint};
use ispeed_web::escape;
use ispeed_web::i18n::{Lang, Text};
use ispeed_web::map::{choropleth, Fill, MapText, Region, Scale};
use ispeed_web::page::{self, Frame, Nav, ProvinceChoice, TestPage, TestPointChoice};
use serde::{Deserialize, Serialize};

use crate::api::{children_of, now_ms, stats_of, timeseries_of, StatsParams};
use crate::error::ApiFailure;
use crate::period::{Month, Period};
use crate::state::CollectorState;
use crate::stats::{StatsRow, ALL_ISPS};

/// Routes of the web pages.
pub fn pages() -> Router<CollectorState> {
    Router::new()
        .route("/", get(home))
        .route("/embed", get(embed))
        .route("/r/{id}", get(result_page))
        .route("/r/{id}/card.svg", get(result_card))
        .route("/thong-ke", get(dashboard))
        .route("/statistics", get(dashboard))
        .route("/tinh/{code}", get(province_page))
        .route("/province/{code}", get(province_page))
        .route("/phuong-phap", get(methodology))
        .route("/methodology", get(methodology))
        .route("/nhung", get(partner_kit))
        .route("/partners", get(partner_kit))
        .route("/banner/{file}", get(banner))
        .route("/qr.svg", get(qr_svg))
        .route("/qr.png", get(qr_png))
}

// ---- request context ---------------------------------------------------------

/// What every page handler needs: language, headers and the query.
struct Ctx {
    lang: (Lang, bool),
    headers: HeaderMap,
    query: Option<String>,
    path: String,
}

impl Ctx {
    fn new(path: String, query: Option<String>, headers: HeaderMap) -> Ctx {
        Ctx {
            lang: choose_lang(query.as_deref(), &headers),
            headers,
            query,
            path,
        }
    }
    fn t(&self) -> &'static Text {
        self.lang.0.text()
    }
    fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) if !q.is_empty() => format!("{}?{q}", self.path),
            _ => self.path.clone(),
        }
    }
    /// The decoded value of a query parameter.
    fn param(&self, name: &str) -> Result<Option<String>, PageError> {
        let Some(query) = &self.query else {
            return Ok(None);
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if key == name {
                return percent_decode(value).map(Some).ok_or_else(|| {
                    PageError::bad(format!("{name}: not valid percent-encoded UTF-8"))
                });
            }
        }
        Ok(None)
    }
    fn page(&self, title: &str, nav: Nav, main: &str) -> Response {
        self.page_with(StatusCode::OK, title, nav, main, None, Framing::Deny, true)
    }
    #[allow(clippy::too_many_arguments)]
    fn page_with(
        &self,
        status: StatusCode,
        title: &str,
        nav: Nav,
        main: &str,
        preview_image: Option<&str>,
        framing: Framing,
        navigation: bool,
    ) -> Response {
        let t = self.t();
        let path_and_query = self.path_and_query();
        let body = page::document(
            &Frame {
                lang: self.lang.0,
                title,
                nav,
                path_and_query: &path_and_query,
                navigation,
                description: t.tagline,
                preview_image,
            },
            main,
        );
        html_response(status, &self.headers, self.lang, framing, body)
    }
    /// `scheme://host` of this request, for snippets meant for other sites
    /// (`https` behind a proxy that says so in `X-Forwarded-Proto`).
    fn origin(&self) -> String {
        let scheme = match self
            .headers
            .get("x-forwarded-proto")
            .and_then(|h| h.to_str().ok())
        {
            Some("https") => "https",
            _ => "http",
        };
        let host = self
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
            })
            .unwrap_or("localhost");
        format!("{scheme}://{host}")
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Why a page cannot be shown.
enum PageError {
    BadRequest(String),
    NotFound(String),
    Unavailable,
    Internal,
}

impl PageError {
    fn bad(message: impl Into<String>) -> PageError {
        PageError::BadRequest(message.into())
    }
}

impl From<ApiFailure> for PageError {
    fn from(failure: ApiFailure) -> PageError {
        match failure.code {
            ErrorCode::BadRequest | ErrorCode::MalformedJson => {
                PageError::BadRequest(failure.message)
            }
            ErrorCode::UnknownUnit | ErrorCode::NotFound => PageError::NotFound(failure.message),
            ErrorCode::StoreUnavailable => PageError::Unavailable,
            _ => PageError::Internal,
        }
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(error: crate::store::StoreError) -> PageError {
        PageError::from(ApiFailure::from(error))
    }
}

fn error_page(ctx: &Ctx, error: PageError) -> Response {
    let t = ctx.t();
    let (status, title, body, detail) = match &error {
        PageError::BadRequest(detail) => (
            StatusCode::BAD_REQUEST,
            t.bad_request_title,
            t.bad_request_body,
            Some(detail.as_str()),
        ),
        PageError::NotFound(detail) => (
            StatusCode::NOT_FOUND,
            t.not_found_title,
            t.not_found_body,
            Some(detail.as_str()),
        ),
        PageError::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            t.unavailable_title,
            t.unavailable_body,
            None,
        ),
        PageError::Internal => (
            StatusCode::INTERNAL_SERVER_ERROR,
            t.unavailable_title,
            t.unavailable_body,
            None,
        ),
    };
    let mut main = format!("<h1>{}</h1>\n<p>{}</p>\n", escape(title), escape(body));
    if let Some(detail) = detail {
        let _ = writeln!(
            main,
            "<p><code class=\"detail\">{}</code></p>",
            escape(detail)
        );
    }
    let _ = writeln!(main, "<p><a href=\"/\">{}</a></p>", escape(t.go_home));
    let mut response = ctx.page_with(status, title, Nav::None, &main, None, Framing::Deny, true);
    if matches!(error, PageError::Unavailable) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    response
}

fn respond(ctx: &Ctx, result: Result<Response, PageError>) -> Response {
    result.unwrap_or_else(|error| error_page(ctx, error))
}

// ---- numbers -------------------------------------------------------------------

fn fmt_num(lang: Lang, value: f64) -> String {
    let digits = if value.abs() >= 100.0 {
        0
    } else if value.abs() >= 10.0 {
        1
    } else {
        2
    };
    let text = format!("{value:.digits$}");
    match lang {
        Lang::Vi => text.replace('.', ","),
        Lang::En => text,
    }
}

fn fmt_opt(lang: Lang, value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), |v| fmt_num(lang, v))
}

fn fmt_count(lang: Lang, n: u64) -> String {
    let digits = n.to_string();
    let separator = match lang {
        Lang::Vi => '.',
        Lang::En => ',',
    };
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(separator);
        }
        out.push(c);
    }
    out
}

/// The metric a dashboard shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metric {
    Download,
    Upload,
    Latency,
}

impl Metric {
    const ALL: [Metric; 3] = [Metric::Download, Metric::Upload, Metric::Latency];
    fn code(self) -> &'static str {
        match self {
            Metric::Download => "download",
            Metric::Upload => "upload",
            Metric::Latency => "latency",
        }
    }
    fn label(self, t: &Text) -> &'static str {
        match self {
            Metric::Download => t.download,
            Metric::Upload => t.upload,
            Metric::Latency => t.latency,
        }
    }
    fn unit(self, t: &Text) -> &'static str {
        match self {
            Metric::Latency => t.ms,
            _ => t.mbps,
        }
    }
    fn higher_is_better(self) -> bool {
        self != Metric::Latency
    }
    /// Orders two medians best first (highest rate, lowest latency).
    fn best_first(self, x: f64, y: f64) -> std::cmp::Ordering {
        let order = x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal);
        if self.higher_is_better() {
            order.reverse()
        } else {
            order
        }
    }
    fn of(self, row: &StatsRow) -> &Summary {
        match self {
            Metric::Download => &row.download_mbps,
            Metric::Upload => &row.upload_mbps,
            Metric::Latency => &row.latency_ms,
        }
    }
}

/// The dashboard's filters, checked.
struct Filters {
    period: String,
    access: Option<String>,
    metric: Metric,
}

impl Filters {
    fn parse(ctx: &Ctx) -> Result<Filters, PageError> {
        let period = match ctx.param("period")? {
            Some(p) if !p.is_empty() => {
                if Period::parse(&p, now_ms()).is_none() || !p.is_ascii() {
                    return Err(PageError::bad(format!(
                        "period must be YYYY-MM, YYYY-Qn or 12m, not {p:?}"
                    )));
                }
                p
            }
            _ => Month::of_unix_ms(now_ms()).to_string(),
        };
        let access = match ctx.param("access")?.as_deref() {
            None | Some("") | Some("all") => None,
            Some(a @ ("mobile" | "fixed" | "unknown")) => Some(a.to_owned()),
            Some(other) => {
                return Err(PageError::bad(format!(
                    "access must be all, mobile or fixed, not {other:?}"
                )))
            }
        };
        let metric = match ctx.param("metric")?.as_deref() {
            None | Some("") => Metric::Download,
            Some(m) => Metric::ALL
                .into_iter()
                .find(|x| x.code() == m)
                .ok_or_else(|| {
                    PageError::bad(format!(
                        "metric must be download, upload or latency, not {m:?}"
                    ))
                })?,
        };
        Ok(Filters {
            period,
            access,
            metric,
        })
    }
    fn params(&self, level: &str, code: Option<&str>) -> StatsParams {
        StatsParams {
            level: Some(level.to_owned()),
            code: code.map(str::to_owned),
            period: Some(self.period.clone()),
            isp: None,
            access: self.access.clone(),
            ip: None,
        }
    }
    /// The query string that keeps these filters (with `lang`).
    fn query(&self, lang: Lang) -> String {
        let mut q = format!(
            "period={}&metric={}",
            percent_encode(&self.period),
            self.metric.code()
        );
        if let Some(access) = &self.access {
            let _ = write!(q, "&access={access}");
        }
        let _ = write!(q, "&lang={}", lang.code());
        q
    }
}

/// The all-ISP row of a unit's rows.
pub(crate) fn all_row(rows: &[StatsRow]) -> Option<&StatsRow> {
    rows.iter().find(|r| r.isp == ALL_ISPS)
}

/// An ISP's display name (its id when unknown).
pub(crate) fn isp_name(state: &CollectorState, id: &str) -> String {
    state
        .enricher
        .isps
        .isps()
        .iter()
        .find(|isp| isp.id == id)
        .map_or_else(|| id.to_owned(), |isp| isp.name.clone())
}

fn ci_text(lang: Lang, summary: &Summary) -> String {
    match summary.median_ci95 {
        Some([low, high]) => format!("{}–{}", fmt_num(lang, low), fmt_num(lang, high)),
        None => "—".to_owned(),
    }
}

fn insufficient(row: &StatsRow) -> bool {
    row.flags.contains(&Flag::Insufficient)
}

fn flag_badges(t: &Text, flags: &[Flag]) -> String {
    let mut html = String::new();
    for flag in flags {
        let (label, help) = match flag {
            Flag::Insufficient => (t.insufficient, t.insufficient_help),
            Flag::BelowQuota => (t.below_quota, t.below_quota),
        };
        let _ = write!(
            html,
            " <span class=\"flag\" title=\"{}\">{}</span>",
            escape(help),
            escape(label)
        );
    }
    html
}

// ---- the speed test -------------------------------------------------------------

async fn test_points_for_page(state: &CollectorState) -> Vec<(String, String, String)> {
    let Ok(points) = state.store.test_points().await else {
        return Vec::new();
    };
    points
        .into_iter()
        .filter(|tp| tp.approved())
        .map(|tp| {
            let url = if tp.url == "/" {
                String::new()
            } else {
                tp.url.clone()
            };
            let name = tp.name.clone().unwrap_or_else(|| tp.id.clone());
            (tp.id, url, name)
        })
        .collect()
}

fn campaign(ctx: &Ctx) -> Result<Option<String>, PageError> {
    Ok(ctx
        .param("src")?
        .map(|s| {
            s.trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect::<String>()
        })
        .filter(|s| !s.is_empty()))
}

async fn test_page_response(
    state: &CollectorState,
    ctx: &Ctx,
    compact: bool,
) -> Result<Response, PageError> {
    let t = ctx.t();
    let points = test_points_for_page(state).await;
    let choices: Vec<TestPointChoice<'_>> = points
        .iter()
        .map(|(id, url, name)| TestPointChoice { id, url, name })
        .collect();
    let provinces: Vec<ProvinceChoice<'_>> = state
        .enricher
        .units
        .provinces()
        .iter()
        .map(|p| ProvinceChoice {
            code: &p.code,
            name: if ctx.lang.0 == Lang::En {
                &p.name_en
            } else {
                &p.name
            },
        })
        .collect();
    let source = campaign(ctx)?;
    let main = page::test_page(
        ctx.lang.0,
        &TestPage {
            test_points: &choices,
            submit_url: Some(ispeed_proto::results::paths::RESULTS),
            locate_url: Some(ispeed_proto::registry::paths::LOCATE),
            units_url: Some(ispeed_proto::results::paths::UNITS),
            provinces: &provinces,
            source: source.as_deref(),
            compact,
            autostart: ctx.param("autostart")?.as_deref() == Some("1"),
        },
    );
    Ok(if compact {
        ctx.page_with(
            StatusCode::OK,
            t.test_title,
            Nav::Test,
            &main,
            None,
            Framing::Anyone,
            false,
        )
    } else {
        ctx.page(t.test_title, Nav::Test, &main)
    })
}

async fn home(
    State(state): State<CollectorState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let ctx = Ctx::new("/".into(), query, headers);
    let result = test_page_response(&state, &ctx, false).await;
    respond(&ctx, result)
}

async fn embed(
    State(state): State<CollectorState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let ctx = Ctx::new("/embed".into(), query, headers);
    let result = test_page_response(&state, &ctx, true).await;
    respond(&ctx, result)
}

// ---- a shared result -------------------------------------------------------------

async fn load_result(
    state: &CollectorState,
    id: &str,
) -> Result<crate::store::StoredRow, PageError> {
    let uuid =
        uuid::Uuid::parse_str(id).map_err(|_| PageError::NotFound(format!("no result {id:?}")))?;
    state
        .store
        .get(uuid)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("no result {id:?}")))
}

fn place_names(
    state: &CollectorState,
    lang: Lang,
    record: &ispeed_proto::results::StoredResult,
) -> (Option<String>, Option<String>) {
    let units = &state.enricher.units;
    let province = record
        .province_code
        .as_deref()
        .and_then(|c| units.province(c))
        .map(|p| {
            if lang == Lang::En {
                p.name_en.clone()
            } else {
                p.name.clone()
            }
        });
    let ward = record
        .ward_code
        .as_deref()
        .and_then(|c| units.ward(c))
        .map(|w| w.name.clone());
    (province, ward)
}

/// `YYYY-MM-DD HH:MM` in Vietnam's time (UTC+7).
fn ict_datetime(unix_ms: u64) -> String {
    let secs = (unix_ms / 1000) as i64 + 7 * 3600;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} (ICT)",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

async fn result_page(
    State(state): State<CollectorState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let ctx = Ctx::new(format!("/r/{}", percent_encode(&id)), query, headers);
    let result = async {
        let row = load_result(&state, &id).await?;
        let r = &row.record;
        let t = ctx.t();
        let lang = ctx.lang.0;
        let (province, ward) = place_names(&state, lang, r);
        let mut main = format!("<h1>{}</h1>\n<section class=\"card result\">\n<dl class=\"figures\">\n", escape(t.result_page_title));
        let figures = [
            (t.download, fmt_opt(lang, r.metrics.download_mbps), t.mbps),
            (t.upload, fmt_opt(lang, r.metrics.upload_mbps), t.mbps),
            (t.latency, fmt_opt(lang, r.metrics.latency_ms), t.ms),
            (t.jitter, fmt_opt(lang, r.metrics.jitter_ms), t.ms),
        ];
        for (label, value, unit) in figures {
            let _ = writeln!(main, "<div class=\"fig\"><dt>{}</dt><dd>{} <small>{}</small></dd></div>", escape(label), escape(&value), escape(unit));
        }
        let texts = [
            (t.isp, isp_name(&state, &r.isp)),
            (t.province, province.unwrap_or_else(|| "—".into())),
            (t.ward, ward.unwrap_or_else(|| "—".into())),
            (t.ipv6, match r.metrics.ipv6_capable { Some(true) => t.yes.into(), Some(false) => t.no.into(), None => t.unknown.into() }),
            (t.measured_at, ict_datetime(r.measured_at_ms.min(r.received_at_ms))),
            (t.test_point, r.test_point_id.clone()),
        ];
        for (label, value) in texts {
            let _ = writeln!(main, "<div class=\"fig fig-isp\"><dt>{}</dt><dd>{}</dd></div>", escape(label), escape(&value));
        }
        let _ = write!(
            main,
            "</dl>\n<p class=\"status\">{}</p>\n<p class=\"small\">{}</p>\n</section>\n\
             <p><img src=\"/r/{id}/card.svg\" alt=\"\" width=\"600\" height=\"315\" style=\"max-width:100%;height:auto\"></p>\n\
             <p><a class=\"start\" href=\"/\" style=\"text-decoration:none;display:inline-block\">{}</a></p>\n",
            escape(if r.counted { t.result_saved } else { t.result_not_counted }),
            escape(t.measured_by_server),
            escape(t.run_your_own),
            id = r.result_id,
        );
        let card = format!("/r/{}/card.svg", r.result_id);
        Ok(ctx.page_with(StatusCode::OK, t.result_page_title, Nav::None, &main, Some(&card), Framing::Deny, true))
    }
    .await;
    respond(&ctx, result)
}

/// An image card of a result for link previews and sharing.
async fn result_card(
    State(state): State<CollectorState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let ctx = Ctx::new(
        format!("/r/{}/card.svg", percent_encode(&id)),
        query,
        headers,
    );
    let result = async {
        let row = load_result(&state, &id).await?;
        let r = &row.record;
        let t = ctx.t();
        let lang = ctx.lang.0;
        let (province, _) = place_names(&state, lang, r);
        let place = province.unwrap_or_default();
        let svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"315\" viewBox=\"0 0 600 315\" role=\"img\" aria-label=\"{title}\">\
             <rect width=\"600\" height=\"315\" fill=\"#0b5cad\"/>\
             <text x=\"32\" y=\"52\" fill=\"#fff\" font-family=\"system-ui,sans-serif\" font-size=\"26\" font-weight=\"700\">ispeed · {title}</text>\
             <g font-family=\"system-ui,sans-serif\" fill=\"#fff\">\
             <text x=\"32\" y=\"110\" font-size=\"18\" opacity=\".85\">{dl}</text><text x=\"32\" y=\"165\" font-size=\"52\" font-weight=\"700\">{dv}</text><text x=\"32\" y=\"190\" font-size=\"16\" opacity=\".85\">{mbps}</text>\
             <text x=\"232\" y=\"110\" font-size=\"18\" opacity=\".85\">{ul}</text><text x=\"232\" y=\"165\" font-size=\"52\" font-weight=\"700\">{uv}</text><text x=\"232\" y=\"190\" font-size=\"16\" opacity=\".85\">{mbps}</text>\
             <text x=\"432\" y=\"110\" font-size=\"18\" opacity=\".85\">{lt}</text><text x=\"432\" y=\"165\" font-size=\"52\" font-weight=\"700\">{lv}</text><text x=\"432\" y=\"190\" font-size=\"16\" opacity=\".85\">{ms}</text>\
             <text x=\"32\" y=\"250\" font-size=\"18\">{isp} · {place}</text>\
             <text x=\"32\" y=\"282\" font-size=\"15\" opacity=\".85\">{when}</text></g></svg>",
            title = escape(t.result_page_title),
            dl = escape(t.download),
            ul = escape(t.upload),
            lt = escape(t.latency),
            dv = escape(&fmt_opt(lang, r.metrics.download_mbps)),
            uv = escape(&fmt_opt(lang, r.metrics.upload_mbps)),
            lv = escape(&fmt_opt(lang, r.metrics.latency_ms)),
            mbps = escape(t.mbps),
            ms = escape(t.ms),
            isp = escape(&isp_name(&state, &r.isp)),
            place = escape(&place),
            when = escape(&ict_datetime(r.measured_at_ms.min(r.received_at_ms))),
        );
        let mut response = compressed(&ctx.headers, "image/svg+xml", svg.into_bytes());
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
        Ok(response)
    }
    .await;
    respond(&ctx, result)
}

// ---- dashboard and province pages ----------------------------------------------

fn filters_form(ctx: &Ctx, f: &Filters, action: &str) -> String {
    let t = ctx.t();
    let lang = ctx.lang.0;
    let now = Month::of_unix_ms(now_ms());
    let mut periods: Vec<(String, String)> = Vec::new();
    for back in 0..12 {
        let m = Month(now.0 - back);
        periods.push((m.to_string(), format!("{} {}", t.month, m)));
    }
    let (year, quarter) = (now.year(), (now.month() - 1) / 3 + 1);
    for back in 0..4i32 {
        let index = (year * 4 + quarter as i32 - 1) - back;
        let (y, q) = (index.div_euclid(4), index.rem_euclid(4) + 1);
        periods.push((format!("{y}-Q{q}"), format!("{} {q}/{y}", t.quarter)));
    }
    periods.push(("12m".into(), t.last_12_months.into()));
    if !periods.iter().any(|(v, _)| *v == f.period) {
        periods.insert(0, (f.period.clone(), f.period.clone()));
    }
    let mut html = format!(
        "<form class=\"filters\" method=\"get\" action=\"{}\">\n",
        escape(action)
    );
    let _ = write!(html, "<label>{}<select name=\"period\">", escape(t.period));
    for (value, label) in &periods {
        let selected = if *value == f.period { " selected" } else { "" };
        let _ = write!(
            html,
            "<option value=\"{}\"{selected}>{}</option>",
            escape(value),
            escape(label)
        );
    }
    html.push_str("</select></label>\n");
    let _ = write!(html, "<label>{}<select name=\"access\">", escape(t.access));
    for (value, label) in [
        ("all", t.all_access),
        ("mobile", t.access_mobile),
        ("fixed", t.access_fixed),
    ] {
        let selected = if f.access.as_deref().unwrap_or("all") == value {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            html,
            "<option value=\"{value}\"{selected}>{}</option>",
            escape(label)
        );
    }
    html.push_str("</select></label>\n");
    let _ = write!(html, "<label>{}<select name=\"metric\">", escape(t.metric));
    for metric in Metric::ALL {
        let selected = if metric == f.metric { " selected" } else { "" };
        let _ = write!(
            html,
            "<option value=\"{}\"{selected}>{}</option>",
            metric.code(),
            escape(metric.label(t))
        );
    }
    html.push_str("</select></label>\n");
    let _ = write!(
        html,
        "<input type=\"hidden\" name=\"lang\" value=\"{}\"><button type=\"submit\">{}</button>\n</form>\n",
        lang.code(),
        escape(t.show)
    );
    html
}

fn kpis(ctx: &Ctx, row: Option<&StatsRow>) -> String {
    let t = ctx.t();
    let lang = ctx.lang.0;
    let mut html = String::from("<div class=\"kpis\">");
    let (n, devices) = row.map_or((0, 0), |r| (r.n, r.devices));
    for metric in Metric::ALL {
        let summary = row.map(|r| metric.of(r));
        let _ = write!(
            html,
            "<div class=\"kpi\"><span>{} ({})</span><b>{}</b><span>{}: {}</span></div>",
            escape(metric.label(t)),
            escape(t.median),
            escape(&format!(
                "{} {}",
                fmt_opt(lang, summary.and_then(|s| s.median)),
                metric.unit(t)
            )),
            escape(t.ci95),
            escape(&summary.map_or_else(|| "—".into(), |s| ci_text(lang, s))),
        );
    }
    let _ = writeln!(
        html,
        "<div class=\"kpi\"><span>{}</span><b>{}</b><span>{}: {}</span></div></div>",
        escape(t.samples),
        fmt_count(lang, n),
        escape(t.devices),
        fmt_count(lang, devices)
    );
    if let Some(row) = row.filter(|r| !r.flags.is_empty()) {
        let _ = writeln!(html, "<p>{}</p>", flag_badges(t, &row.flags));
    }
    html
}

/// A choropleth of `children` (code, name, rows) over a layer.
fn unit_map(
    ctx: &Ctx,
    layer: &ispeed_web::map::MapLayer,
    children: &[(String, String, Vec<StatsRow>)],
    f: &Filters,
    href: impl Fn(&str) -> Option<String>,
) -> String {
    let t = ctx.t();
    let lang = ctx.lang.0;
    let metric = f.metric;
    let values: Vec<f64> = children
        .iter()
        .filter_map(|(_, _, rows)| all_row(rows))
        .filter(|r| !insufficient(r))
        .filter_map(|r| metric.of(r).median)
        .collect();
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        });
    let (min, max) = if min.is_finite() {
        (min, max.max(min + 1e-9))
    } else {
        (0.0, 1.0)
    };
    let regions: Vec<Region<'_>> = children
        .iter()
        .map(|(code, name, rows)| {
            let row = all_row(rows);
            let median = row.and_then(|r| metric.of(r).median);
            let fill = match row {
                Some(r) if r.n > 0 && insufficient(r) => Fill::Insufficient(median),
                Some(r) if r.n > 0 => median.map_or(Fill::NoData, Fill::Value),
                _ => Fill::NoData,
            };
            let title = match row.filter(|r| r.n > 0) {
                Some(r) => {
                    let s = metric.of(r);
                    let mut title = format!(
                        "{name}: {} {} · n = {} · {} {} · {} {}",
                        fmt_opt(lang, s.median),
                        metric.unit(t),
                        fmt_count(lang, r.n),
                        fmt_count(lang, r.devices),
                        t.devices.to_lowercase(),
                        t.ci95,
                        ci_text(lang, s)
                    );
                    if insufficient(r) {
                        let _ = write!(title, " · {}", t.insufficient);
                    }
                    title
                }
                None => format!("{name}: {}", t.no_data),
            };
            Region {
                code,
                fill,
                title,
                href: href(code),
            }
        })
        .collect();
    choropleth(
        layer,
        &regions,
        &Scale {
            min,
            max,
            higher_is_better: metric.higher_is_better(),
            unit_label: metric.unit(t).to_owned(),
            title: format!(
                "{} ({}), {}",
                metric.label(t),
                t.median.to_lowercase(),
                metric.unit(t)
            ),
        },
        &MapText {
            insufficient: t.insufficient.to_owned(),
            no_data: t.no_data.to_owned(),
            aria_label: format!("{} — {}", t.map_title, metric.label(t)),
        },
    )
}

fn isp_table(ctx: &Ctx, state: &CollectorState, rows: &[StatsRow], metric: Metric) -> String {
    let t = ctx.t();
    let lang = ctx.lang.0;
    let mut isps: Vec<&StatsRow> = rows
        .iter()
        .filter(|r| r.isp != ALL_ISPS && r.n > 0)
        .collect();
    // Judged ISPs first, ranked by median; insufficient ones after, unranked.
    isps.sort_by(|a, b| {
        let key = |r: &StatsRow| metric.of(r).median.unwrap_or(f64::NAN);
        insufficient(a)
            .cmp(&insufficient(b))
            .then_with(|| metric.best_first(key(a), key(b)))
    });
    let mut html = format!(
        "<div class=\"table-wrap\"><table class=\"data\" id=\"isp-table\"><caption class=\"sr-only\">{}</caption><thead><tr>\
         <th>{}</th><th class=\"name\">{}</th><th>{} ({})</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>\n",
        escape(t.isp_ranking),
        escape(t.rank),
        escape(t.isp),
        escape(t.median),
        escape(metric.unit(t)),
        escape(t.ci95),
        escape(t.p10_p90),
        escape(t.samples),
        escape(t.devices),
    );
    let mut rank = 0;
    for row in isps {
        let s = metric.of(row);
        let rank_text = if insufficient(row) {
            "—".to_owned()
        } else {
            rank += 1;
            rank.to_string()
        };
        let class = if insufficient(row) {
            " class=\"insufficient\""
        } else {
            ""
        };
        let _ = writeln!(
            html,
            "<tr{class} data-isp=\"{id}\" data-n=\"{n}\" data-median=\"{median}\"><td>{rank_text}</td><td class=\"name\">{name}{flags}</td><td>{}</td><td>{}</td><td>{}–{}</td><td>{}</td><td>{}</td></tr>",
            escape(&fmt_opt(lang, s.median)),
            escape(&ci_text(lang, s)),
            escape(&fmt_opt(lang, s.p10)),
            escape(&fmt_opt(lang, s.p90)),
            fmt_count(lang, row.n),
            fmt_count(lang, row.devices),
            id = escape(&row.isp),
            n = row.n,
            median = s.median.map_or_else(String::new, |m| format!("{m:.1}")),
            name = escape(&isp_name(state, &row.isp)),
            flags = flag_badges(t, &row.flags),
        );
    }
    html.push_str("</tbody></table></div>\n");
    html
}

async fn trend(
    ctx: &Ctx,
    state: &CollectorState,
    f: &Filters,
    level: &str,
    code: Option<&str>,
) -> Result<String, PageError> {
    let t = ctx.t();
    let mut params = f.params(level, code);
    params.period = Some("12m".into());
    let series = timeseries_of(state, params).await?;
    let points: Vec<TrendPoint> = series
        .points
        .iter()
        .map(|p| {
            let s = f.metric.of(&p.row);
            TrendPoint {
                label: p.month.clone(),
                value: s.median,
                low: s.median_ci95.map(|c| c[0]),
                high: s.median_ci95.map(|c| c[1]),
                insufficient: p.row.flags.contains(&Flag::Insufficient),
            }
        })
        .collect();
    Ok(trend_chart(
        &points,
        &ChartText {
            title: format!("{} — {}", t.trend_title, f.metric.label(t)),
            unit: f.metric.unit(t).to_owned(),
            aria_label: format!("{} — {}", t.trend_title, f.metric.label(t)),
            insufficient: t.insufficient.to_owned(),
            no_data: t.no_data.to_owned(),
        },
    ))
}

async fn dashboard(
    State(state): State<CollectorState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let ctx = Ctx::new("/thong-ke".into(), query, headers);
    let result = async {
        let t = ctx.t();
        let lang = ctx.lang.0;
        let f = Filters::parse(&ctx)?;
        let nation = stats_of(&state, f.params("nation", None)).await?;
        let children = children_of(&state, f.params("nation", None)).await?;
        let children: Vec<(String, String, Vec<StatsRow>)> = children
            .children
            .into_iter()
            .map(|c| {
                let name = match (lang, state.enricher.units.province(&c.code)) {
                    (Lang::En, Some(p)) => p.name_en.clone(),
                    _ => c.name,
                };
                (c.code, name, c.rows)
            })
            .collect();
        let keep = f.query(lang);
        let map = unit_map(&ctx, state.maps.provinces(), &children, &f, |code| Some(format!("/tinh/{code}?{keep}")));
        let trend = trend(&ctx, &state, &f, "nation", None).await?;
        let mut main = format!(
            "<h1>{}</h1>\n<p>{}</p>\n{}",
            escape(t.dashboard_title),
            escape(t.dashboard_intro),
            filters_form(&ctx, &f, "/thong-ke")
        );
        let _ = write!(main, "<h2>{} — {}</h2>\n{}", escape(t.national), escape(&nation.period), kpis(&ctx, all_row(&nation.rows)));
        let _ = writeln!(
            main,
            "<div class=\"grid2\"><section><h2>{}</h2><div class=\"map\" id=\"map\">{map}</div><p class=\"small\">{}</p></section>\
             <section><h2>{}</h2>{}</section></div>",
            escape(t.map_title),
            escape("Boundaries: Vietnamese Provinces Database © Thang Le Quoc (MIT), from sapnhap.bando.com.vn."),
            escape(t.isp_ranking),
            isp_table(&ctx, &state, &nation.rows, f.metric),
        );
        let _ = writeln!(main, "<section><h2>{}</h2><div class=\"chart\">{trend}</div></section>", escape(t.trend_title));
        let quota = state.config.thresholds.ward_quota;
        main.push_str(&unit_table(&ctx, &children, &f, Level::Province, None, quota, |code| format!("/tinh/{code}?{keep}")));
        let _ = writeln!(
            main,
            "<p class=\"small\"><a href=\"/api/v1/stats/children?level=nation&amp;period={}\">{}</a></p>",
            escape(&percent_encode(&f.period)),
            escape(t.download_json)
        );
        Ok(ctx.page(t.dashboard_title, Nav::Dashboard, &main))
    }
    .await;
    respond(&ctx, result)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Province,
    Ward,
}

/// The table of a unit's children, sortable (by links, no script) by
/// median or by samples. Wards below quota show how many samples they miss.
fn unit_table(
    ctx: &Ctx,
    children: &[(String, String, Vec<StatsRow>)],
    f: &Filters,
    level: Level,
    sort: Option<&str>,
    ward_quota: u64,
    href: impl Fn(&str) -> String,
) -> String {
    let t = ctx.t();
    let lang = ctx.lang.0;
    let metric = f.metric;
    let months = Period::parse(&f.period, now_ms()).map_or(1, |p| p.months) as u64;
    let mut rows: Vec<(&str, &str, Option<&StatsRow>)> = children
        .iter()
        .map(|(code, name, rows)| (code.as_str(), name.as_str(), all_row(rows)))
        .collect();
    let median = |r: &Option<&StatsRow>| r.and_then(|r| metric.of(r).median);
    match sort {
        Some("samples") => rows.sort_by_key(|r| std::cmp::Reverse(r.2.map_or(0, |r| r.n))),
        // Judged units first, ranked by median; then the insufficient ones
        // (a median of a handful of samples is no rank); then units without data.
        _ => rows.sort_by(|a, b| {
            let tier = |r: &Option<&StatsRow>| match r {
                Some(r) if r.n > 0 && !insufficient(r) => 0,
                Some(r) if r.n > 0 => 1,
                _ => 2,
            };
            tier(&a.2)
                .cmp(&tier(&b.2))
                .then_with(|| match (median(&a.2), median(&b.2)) {
                    (Some(x), Some(y)) => metric.best_first(x, y),
                    _ => a.1.cmp(b.1),
                })
        }),
    }
    let title = match level {
        Level::Province => t.provinces_table,
        Level::Ward => t.wards_table,
    };
    let mut html = format!("<section><h2 id=\"units\">{}</h2>\n", escape(title));
    if level == Level::Ward {
        let below = rows
            .iter()
            .filter(|r| r.2.is_none_or(|r| r.flags.contains(&Flag::BelowQuota)))
            .count();
        let _ = writeln!(
            html,
            "<p class=\"summary\"><b>{}</b> / {} {}</p>",
            fmt_count(lang, below as u64),
            fmt_count(lang, rows.len() as u64),
            escape(t.wards_below_quota_summary)
        );
        let base = format!("{}?{}", ctx.path, f.query(lang));
        let _ = writeln!(
            html,
            "<p class=\"small\"><a href=\"{}&amp;sort=median#units\">{}</a> · <a href=\"{}&amp;sort=samples#units\">{}</a></p>",
            escape(&base),
            escape(t.sort_by_median),
            escape(&base),
            escape(t.sort_by_samples)
        );
    }
    let _ = write!(
        html,
        "<div class=\"table-wrap\"><table class=\"data\" id=\"unit-table\"><thead><tr><th class=\"name\">{}</th><th>{} ({})</th><th>{}</th><th>{}</th><th>{}</th>",
        escape(match level { Level::Province => t.province, Level::Ward => t.ward }),
        escape(t.median),
        escape(metric.unit(t)),
        escape(t.ci95),
        escape(t.samples),
        escape(t.devices),
    );
    if level == Level::Ward {
        let _ = write!(html, "<th>{}</th>", escape(t.missing_samples));
    }
    html.push_str("</tr></thead><tbody>\n");
    for (code, name, row) in rows {
        let n = row.map_or(0, |r| r.n);
        let flags = row.map_or(&[][..], |r| &r.flags[..]);
        let below = level == Level::Ward && (row.is_none() || flags.contains(&Flag::BelowQuota));
        let mut classes = Vec::new();
        if row.is_none_or(insufficient) {
            classes.push("insufficient");
        }
        if below {
            classes.push("below-quota");
        }
        let s = row.map(|r| metric.of(r));
        let name_cell = match level {
            Level::Province => format!("<a href=\"{}\">{}</a>", escape(&href(code)), escape(name)),
            Level::Ward => escape(name),
        };
        let _ = write!(
            html,
            "<tr class=\"{}\" data-code=\"{}\" data-n=\"{n}\" data-median=\"{}\" data-judged=\"{}\"><td class=\"name\">{name_cell}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            classes.join(" "),
            escape(code),
            s.and_then(|s| s.median).map_or_else(String::new, |m| format!("{m:.1}")),
            row.is_some_and(|r| r.n > 0 && !insufficient(r)),
            // An insufficient ward is below quota too; one badge says it
            // (the missing column gives the number).
            flag_badges(
                t,
                if flags.contains(&Flag::Insufficient) {
                    &[Flag::Insufficient]
                } else {
                    flags
                }
            ),
            escape(&fmt_opt(lang, s.and_then(|s| s.median))),
            escape(&s.map_or_else(|| "—".into(), |s| ci_text(lang, s))),
            fmt_count(lang, n),
            fmt_count(lang, row.map_or(0, |r| r.devices)),
        );
        if level == Level::Ward {
            let quota = ward_quota * months;
            let missing = quota.saturating_sub(n);
            let _ = write!(
                html,
                "<td class=\"missing\" data-missing=\"{missing}\">{}</td>",
                if missing > 0 {
                    fmt_count(lang, missing)
                } else {
                    "—".into()
                }
            );
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody></table></div></section>\n");
    html
}

async fn province_page(
    State(state): State<CollectorState>,
    Path(code): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let ctx = Ctx::new(format!("/tinh/{}", percent_encode(&code)), query, headers);
    let result = async {
        let t = ctx.t();
        let lang = ctx.lang.0;
        let province = state
            .enricher
            .units
            .province(&code)
            .ok_or_else(|| PageError::NotFound(format!("no province with code {code:?}")))?;
        let f = Filters::parse(&ctx)?;
        let sort = ctx.param("sort")?;
        if let Some(s) = sort.as_deref().filter(|s| !matches!(*s, "median" | "samples")) {
            return Err(PageError::bad(format!("sort must be median or samples, not {s:?}")));
        }
        let name = if lang == Lang::En { province.name_en.clone() } else { province.name.clone() };
        let stats = stats_of(&state, f.params("province", Some(&code))).await?;
        let children = children_of(&state, f.params("province", Some(&code))).await?;
        let children: Vec<(String, String, Vec<StatsRow>)> = children.children.into_iter().map(|c| (c.code, c.name, c.rows)).collect();
        let map = match state.maps.wards_of(&code) {
            Some(layer) => unit_map(&ctx, layer, &children, &f, |_| None),
            None => String::new(),
        };
        let trend = trend(&ctx, &state, &f, "province", Some(&code)).await?;
        let mut main = format!(
            "<p class=\"small\"><a href=\"/thong-ke?{}\">← {}</a></p>\n<h1>{}</h1>\n{}",
            escape(&f.query(lang)),
            escape(t.back_to_nation),
            escape(&name),
            filters_form(&ctx, &f, &ctx.path)
        );
        let _ = write!(main, "<h2>{}</h2>\n{}", escape(&stats.period), kpis(&ctx, all_row(&stats.rows)));
        let _ = write!(
            main,
            "<div class=\"grid2\"><section><h2>{}</h2><div class=\"map\" id=\"map\">{map}</div></section>\
             <section><h2>{}</h2>{}</section></div>\n<section><h2>{}</h2><div class=\"chart\">{trend}</div></section>\n",
            escape(t.wards_table),
            escape(t.isp_ranking),
            isp_table(&ctx, &state, &stats.rows, f.metric),
            escape(t.trend_title),
        );
        let quota = state.config.thresholds.ward_quota;
        main.push_str(&unit_table(&ctx, &children, &f, Level::Ward, sort.as_deref(), quota, |_| String::new()));
        // The month's report for officials (a single month only).
        if crate::period::Month::parse(&f.period).is_some() {
            let _ = writeln!(
                main,
                "<p class=\"small\" id=\"report-links\">{}: \
                 <a href=\"/api/v1/reports?province={code}&amp;month={m}&amp;format=xlsx\">XLSX</a> · \
                 <a href=\"/api/v1/reports?province={code}&amp;month={m}&amp;format=csv\">CSV</a> · \
                 <a href=\"/api/v1/reports?province={code}&amp;month={m}&amp;format=html\">HTML (A4)</a></p>",
                escape(t.account_reports),
                code = escape(&percent_encode(&code)),
                m = escape(&percent_encode(&f.period)),
            );
        }
        Ok(ctx.page(&name, Nav::Dashboard, &main))
    }
    .await;
    respond(&ctx, result)
}

// ---- methodology ------------------------------------------------------------------

async fn methodology(
    State(state): State<CollectorState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    use ispeed_proto::consts;
    let ctx = Ctx::new("/phuong-phap".into(), query, headers);
    let t = ctx.t();
    let c = &state.config;
    let facts = ispeed_web::i18n::MethodologyFacts {
        initial_streams: consts::INITIAL_STREAMS,
        max_streams: consts::MAX_STREAMS,
        max_seconds: consts::DEFAULT_MAX_SECONDS,
        idle_probes: consts::IDLE_PROBES as u32,
        sample_interval_ms: consts::SAMPLE_INTERVAL_MS,
        loaded_probe_interval_ms: consts::LOADED_PROBE_INTERVAL_MS,
        sketch_accuracy_pct: ispeed_analytics::RELATIVE_ACCURACY * 100.0,
        ci_level_pct: 95.0,
        heavy_tester_cap: c.heavy_tester_cap,
        province_min: c.thresholds.province_min,
        ward_quota: c.thresholds.ward_quota,
        receipt_max_age_min: c.receipt_max_age.as_secs() / 60,
        exact_devices_up_to: ispeed_analytics::EXACT_LIMIT as u64,
        hll_precision: ispeed_analytics::HLL_PRECISION,
    };
    let main = format!(
        "<article class=\"method\">\n<h1>{}</h1>\n{}</article>\n",
        escape(t.methodology_title),
        ispeed_web::i18n::methodology(ctx.lang.0, &facts)
    );
    ctx.page(t.methodology_title, Nav::Methodology, &main)
}

// ---- partner kit ------------------------------------------------------------------

async fn partner_kit(
    State(state): State<CollectorState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let ctx = Ctx::new("/nhung".into(), query, headers);
    let result = async {
        let t = ctx.t();
        let lang = ctx.lang.0;
        let source = campaign(&ctx)?;
        let origin = ctx.origin();
        let tag = source.as_deref().map(|s| format!("src={}", percent_encode(s)));
        let with_tag = |path: &str| match &tag {
            Some(tag) => format!("{origin}{path}?{tag}"),
            None => format!("{origin}{path}"),
        };
        let test_url = with_tag("/");
        let embed_url = with_tag("/embed");
        let iframe = format!(
            "<iframe src=\"{}\" title=\"{}\" width=\"100%\" height=\"620\" style=\"border:0;max-width:480px\" loading=\"lazy\" allow=\"geolocation; clipboard-write\"></iframe>",
            escape(&embed_url),
            escape(t.test_title)
        );
        let mut main = format!("<h1>{}</h1>\n<p>{}</p>\n", escape(t.embed_title), escape(t.embed_intro));
        let _ = write!(
            main,
            "<form class=\"filters\" method=\"get\" action=\"/nhung\"><label>{}<input name=\"src\" value=\"{}\" maxlength=\"64\" size=\"32\"></label>\
             <input type=\"hidden\" name=\"lang\" value=\"{}\"><button type=\"submit\">{}</button></form>\n<p class=\"small\">{}</p>\n",
            escape(t.embed_campaign),
            escape(source.as_deref().unwrap_or("")),
            lang.code(),
            escape(t.show),
            escape(t.embed_campaign_help),
        );
        if let Some(source) = &source {
            let _ = writeln!(main, "<p>{}: <code id=\"campaign\">{}</code></p>", escape(t.embed_campaign), escape(source));
        }
        let _ = write!(main, "<h2>{}</h2>\n<pre class=\"snippet\"><code>{}</code></pre>\n", escape(t.embed_iframe), escape(&iframe));
        let _ = write!(main, "<h2>{}</h2>\n<div class=\"banners\">", escape(t.embed_banner));
        for size in BannerSize::ALL {
            let (w, h) = size.dimensions();
            let image = format!("{origin}/banner/{}.svg?lang={}", size.slug(), lang.code());
            let snippet = format!(
                "<a href=\"{}\"><img src=\"{}\" width=\"{w}\" height=\"{h}\" alt=\"{}\"></a>",
                escape(&test_url),
                escape(&image),
                escape(t.banner_title)
            );
            let _ = write!(
                main,
                "<figure><img src=\"/banner/{}.svg?lang={}\" width=\"{w}\" height=\"{h}\" alt=\"{}\"><figcaption class=\"small\">{w}×{h}</figcaption>\
                 <pre class=\"snippet\"><code>{}</code></pre></figure>",
                size.slug(),
                lang.code(),
                escape(t.banner_title),
                escape(&snippet)
            );
        }
        main.push_str("</div>\n");
        let qr_query = tag.as_ref().map_or_else(String::new, |tag| format!("?{tag}"));
        let _ = write!(
            main,
            "<h2>{}</h2>\n<p><img id=\"qr\" src=\"/qr.svg{q}\" width=\"240\" height=\"240\" alt=\"QR: {}\"></p>\n<p><code>{}</code></p>\n\
             <p><a href=\"/qr.svg{q}\" download>SVG</a> · <a href=\"/qr.png{q}\" download>PNG</a></p>\n",
            escape(t.embed_qr),
            escape(&test_url),
            escape(&test_url),
            q = escape(&qr_query),
        );
        // Tests each campaign tag brought this month.
        let month = Month::of_unix_ms(now_ms());
        let counts = state.store.source_counts(month.first_day(), Month(month.0 + 1).first_day() - 1, 100).await?;
        let _ = write!(
            main,
            "<h2>{} — {}</h2>\n<div class=\"table-wrap\"><table class=\"data\" id=\"campaigns\"><thead><tr><th class=\"name\">{}</th><th>{}</th><th>{}</th></tr></thead><tbody>\n",
            escape(t.embed_campaign_counts),
            month,
            escape(t.embed_campaign),
            escape(t.tests_brought),
            escape(t.result_saved),
        );
        for count in &counts {
            let _ = writeln!(
                main,
                "<tr><td class=\"name\">{}</td><td>{}</td><td>{}</td></tr>",
                escape(&count.source),
                fmt_count(lang, count.results),
                fmt_count(lang, count.counted)
            );
        }
        if counts.is_empty() {
            let _ = writeln!(main, "<tr><td colspan=\"3\">{}</td></tr>", escape(t.no_data));
        }
        main.push_str("</tbody></table></div>\n");
        Ok(ctx.page(t.embed_title, Nav::Embed, &main))
    }
    .await;
    respond(&ctx, result)
}

async fn banner(
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let ctx = Ctx::new(format!("/banner/{}", percent_encode(&file)), query, headers);
    let Some(size) = file.strip_suffix(".svg").and_then(BannerSize::from_slug) else {
        return error_page(
            &ctx,
            PageError::NotFound(format!(
                "no banner {file:?}; sizes: 728x90, 300x250, 160x600, 320x50"
            )),
        );
    };
    let t = ctx.t();
    let svg = banner_svg(
        size,
        &BannerText {
            title: t.banner_title.into(),
            subtitle: t.banner_subtitle.into(),
            call_to_action: t.banner_cta.into(),
            site: ctx
                .origin()
                .split_once("://")
                .map_or_else(String::new, |(_, host)| host.to_owned()),
        },
    );
    let mut response = compressed(&ctx.headers, "image/svg+xml", svg.into_bytes());
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    response
}

fn qr_target(ctx: &Ctx) -> Result<String, PageError> {
    let source = campaign(ctx)?;
    Ok(match source {
        Some(s) => format!("{}/?src={}", ctx.origin(), percent_encode(&s)),
        None => format!("{}/", ctx.origin()),
    })
}

async fn qr_svg(RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let ctx = Ctx::new("/qr.svg".into(), query, headers);
    let result = qr_target(&ctx).and_then(|target| {
        let svg = ispeed_web::qr::qr_svg(&target, 8).map_err(|e| PageError::bad(e.to_string()))?;
        Ok(compressed(&ctx.headers, "image/svg+xml", svg.into_bytes()))
    });
    respond(&ctx, result)
}

async fn qr_png(RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let ctx = Ctx::new("/qr.png".into(), query, headers);
    let result = qr_target(&ctx).and_then(|target| {
        let png = ispeed_web::qr::qr_png(&target, 10).map_err(|e| PageError::bad(e.to_string()))?;
        let mut response = png.into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
        Ok(response)
    });
    respond(&ctx, result)
}

// ---- campaign counts API ----------------------------------------------------------

#[derive(Debug, Deserialize)]
pub(crate) struct SourcesParams {
    period: Option<String>,
}

/// Response of `GET /api/v1/sources`.
#[derive(Debug, Serialize)]
pub struct SourcesResponse {
    pub period: String,
    pub months: Vec<String>,
    pub sources: Vec<crate::store::SourceCount>,
}

pub(crate) async fn sources(
    State(state): State<CollectorState>,
    params: Result<axum::extract::Query<SourcesParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SourcesResponse>, ApiFailure> {
    let axum::extract::Query(params) =
        params.map_err(|e| ApiFailure::bad_request(format!("invalid query: {}", e.body_text())))?;
    let text = params
        .period
        .unwrap_or_else(|| Month::of_unix_ms(now_ms()).to_string());
    let period = Period::parse(&text, now_ms())
        .filter(|_| text.is_ascii())
        .ok_or_else(|| {
            ApiFailure::bad_request(format!(
                "period must be YYYY-MM, YYYY-Qn or 12m, not {text:?}"
            ))
        })?;
    let months: Vec<Month> = period.months().collect();
    let first = months.first().map_or(0, |m| m.first_day());
    let last = months.last().map_or(0, |m| Month(m.0 + 1).first_day() - 1);
    let sources = state.store.source_counts(first, last, 1000).await?;
    Ok(Json(SourcesResponse {
        period: text,
        months: months.iter().map(|m| m.to_string()).collect(),
        sources,
    }))
}
