//! Browser pages of a test point: the speed test page at `/` and the
//! embedded assets, plus the helpers every HTML page of ispeed uses
//! (language choice, security headers, compression). The collector's pages
//! use the same helpers.

use axum::extract::{Path, RawQuery};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use flate2::write::GzEncoder;
use ispeed_web::i18n::Lang;
use ispeed_web::page::{self, Frame, Nav, TestPage, TestPointChoice, ASSETS};
use std::io::Write as _;

use crate::state::AppState;

/// Routes of the test point's page and assets.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(test_page))
        .route("/assets/{name}", get(asset))
}

/// The value of `name` in a raw query string (percent-decoding not needed
/// for the simple values looked up this way: language codes, flags).
pub fn query_value<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The page language: `?lang=` first, then the `lang` cookie, else
/// Vietnamese. The second value is true when `?lang=` chose it (the answer
/// then sets the cookie).
pub fn choose_lang(query: Option<&str>, headers: &HeaderMap) -> (Lang, bool) {
    if let Some(lang) = query_value(query, "lang").and_then(Lang::parse) {
        return (lang, true);
    }
    let from_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix("lang="))
        .find_map(Lang::parse);
    (from_cookie.unwrap_or_default(), false)
}

/// Whether a page may be shown inside another site's frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Deny,
    /// `/embed`: partner sites frame it.
    Anyone,
}

/// An HTML answer: security headers, the language cookie when chosen by
/// query, and gzip when the client accepts it.
pub fn html_response(
    status: StatusCode,
    request_headers: &HeaderMap,
    lang: (Lang, bool),
    framing: Framing,
    body: String,
) -> Response {
    let mut response = compressed(
        request_headers,
        "text/html; charset=utf-8",
        body.into_bytes(),
    );
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let ancestors = match framing {
        Framing::Deny => "'none'",
        Framing::Anyone => "*",
    };
    // Test points may live on other hosts and ports, over HTTP or WebSocket.
    let policy = format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self' http: https: ws: wss:; \
         frame-ancestors {ancestors}; base-uri 'none'; form-action 'self'"
    );
    if let Ok(value) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    if framing == Framing::Deny {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if lang.1 {
        let cookie = format!(
            "lang={}; Path=/; Max-Age=31536000; SameSite=Lax",
            lang.0.code()
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.insert(header::SET_COOKIE, value);
        }
    }
    response
}

/// A body with its type, gzip-compressed when the client accepts gzip and
/// the body is worth it.
pub fn compressed(request_headers: &HeaderMap, content_type: &str, body: Vec<u8>) -> Response {
    let accepts_gzip = request_headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| p.trim().replace(' ', "") == "q=0");
            name.eq_ignore_ascii_case("gzip") && !refused
        });
    let mut response = if accepts_gzip && body.len() > 512 {
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        let encoded = encoder.write_all(&body).and_then(|_| encoder.finish());
        match encoded {
            Ok(gz) => {
                let mut response = gz.into_response();
                response
                    .headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                response
            }
            Err(_) => body.into_response(),
        }
    } else {
        body.into_response()
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    response
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|asset| asset.name == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let mut response = compressed(&headers, asset.content_type, asset.body.as_bytes().to_vec());
    // URLs carry a content hash (`?v=`), so a year of caching is safe.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}

async fn test_page(RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let lang = choose_lang(query.as_deref(), &headers);
    let t = lang.0.text();
    let path_and_query = match &query {
        Some(q) => format!("/?{q}"),
        None => "/".to_owned(),
    };
    let points = [TestPointChoice {
        id: "",
        url: "",
        name: "",
    }];
    let main = page::test_page(
        lang.0,
        &TestPage {
            test_points: &points,
            submit_url: None,
            locate_url: None,
            units_url: None,
            provinces: &[],
            source: None,
            compact: false,
            autostart: query_value(query.as_deref(), "autostart") == Some("1"),
        },
    );
    let body = page::document(
        &Frame {
            lang: lang.0,
            title: t.test_title,
            nav: Nav::Test,
            path_and_query: &path_and_query,
            navigation: false,
            description: t.tagline,
            preview_image: None,
        },
        &main,
    );
    html_response(StatusCode::OK, &headers, lang, Framing::Deny, body)
}
