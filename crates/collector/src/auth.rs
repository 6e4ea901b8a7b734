//! Who is asking, and may they (`spec/accounts.md`): web sign-in with
//! session cookies (HttpOnly, SameSite=Strict, Secure behind HTTPS) and a
//! CSRF token per session; API tokens and the bootstrap admin token as
//! bearer tokens; the account pages, the users and audit API, and province
//! record exports. Every change an admin or official makes is written to
//! the audit log.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ispeed_proto::ErrorCode;
use ispeed_server::web::{choose_lang, html_response, Framing};
use ispeed_web::escape;
use ispeed_web::page::{self, Frame, Nav};
use serde::Deserialize;

use crate::accounts::{
    check_new_user, hash_password, random_secret, same_secret, token_hash, verify_password, Actor,
    AuditEntry, Role, SessionRecord, User, UserView, API_TOKEN_PREFIX,
};
use crate::api::now_ms;
use crate::error::ApiFailure;
use crate::period::Month;
use crate::state::CollectorState;

/// The session cookie.
pub const SESSION_COOKIE: &str = "ispeed_session";
/// Double-submit cookie of the sign-in form (there is no session yet).
const LOGIN_COOKIE: &str = "ispeed_login";
/// Header carrying the CSRF token on JSON posts made with a session cookie.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// An argon2 hash of a random secret, verified when the username is
/// unknown, so that a wrong name takes as long as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&random_secret()))
}

pub fn routes() -> Router<CollectorState> {
    Router::new()
        .route("/dang-nhap", get(login_page).post(login))
        .route("/login", get(login_page).post(login))
        .route("/dang-xuat", post(logout))
        .route("/quan-ly", get(account_page))
        .route("/account", get(account_page))
        .route("/quan-ly/khoa", post(create_token))
        .route("/quan-ly/khoa/{id}/thu-hoi", post(revoke_token))
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The actor behind a request: a bearer token (API token or the admin
/// token; a wrong one is `401`), else a live session cookie, else nobody.
pub async fn authenticate(
    state: &CollectorState,
    headers: &HeaderMap,
) -> Result<Option<Actor>, ApiFailure> {
    let now = now_ms();
    if let Some(token) = bearer(headers) {
        if state.admin.matches(token) {
            return Ok(Some(Actor {
                name: "admin-token".to_owned(),
                role: Role::Admin,
                province_code: None,
                user_id: None,
                csrf: None,
            }));
        }
        let unauthorized = || ApiFailure::new(ErrorCode::Unauthorized, "unknown or revoked token");
        if !token.starts_with(API_TOKEN_PREFIX) {
            return Err(unauthorized());
        }
        let record = state
            .store
            .api_token(token_hash(token))
            .await?
            .filter(|t| t.revoked_at_ms.is_none())
            .ok_or_else(unauthorized)?;
        let user = active_user(state, record.user_id)
            .await?
            .ok_or_else(unauthorized)?;
        return Ok(Some(actor_of(&user, None)));
    }
    let Some(cookie) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some(session) = state.store.session(token_hash(cookie)).await? else {
        return Ok(None);
    };
    if session.expires_at_ms <= now {
        return Ok(None);
    }
    Ok(active_user(state, session.user_id)
        .await?
        .map(|user| actor_of(&user, Some(session.csrf))))
}

async fn active_user(state: &CollectorState, id: i64) -> Result<Option<User>, ApiFailure> {
    Ok(state
        .store
        .user_by_id(id)
        .await?
        .filter(|u| u.disabled_at_ms.is_none()))
}

fn actor_of(user: &User, csrf: Option<String>) -> Actor {
    Actor {
        name: user.username.clone(),
        role: user.role,
        province_code: user.province_code.clone(),
        user_id: Some(user.id),
        csrf,
    }
}

/// `401` without an actor; `403` when `allowed` says no.
pub fn require(
    actor: Option<Actor>,
    allowed: impl FnOnce(&Actor) -> bool,
    what: &str,
) -> Result<Actor, ApiFailure> {
    let actor = actor.ok_or_else(|| {
        ApiFailure::new(
            ErrorCode::Unauthorized,
            format!("{what} needs a signed-in account or a token"),
        )
    })?;
    if allowed(&actor) {
        Ok(actor)
    } else {
        Err(ApiFailure::new(
            ErrorCode::Forbidden,
            format!("{} may not {what}", actor.name),
        ))
    }
}

/// A request changing something with a session cookie must carry the
/// session's CSRF token (form field or `x-csrf-token`); bearer requests
/// cannot be forged by another site and need none.
pub fn check_csrf(actor: &Actor, given: Option<&str>) -> Result<(), ApiFailure> {
    match &actor.csrf {
        None => Ok(()),
        Some(expected) if given.is_some_and(|g| same_secret(g, expected)) => Ok(()),
        Some(_) => Err(ApiFailure::new(
            ErrorCode::Forbidden,
            "this form post lacks its CSRF token; reload the page and try again",
        )),
    }
}

/// An admin, for the admin API (with the CSRF header when by session).
pub async fn require_admin(
    state: &CollectorState,
    headers: &HeaderMap,
    changes: bool,
) -> Result<Actor, ApiFailure> {
    let actor = require(
        authenticate(state, headers).await?,
        |a| a.role == Role::Admin,
        "use the admin API",
    )?;
    if changes {
        check_csrf(
            &actor,
            headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()),
        )?;
    }
    Ok(actor)
}

/// Writes an audit entry; a failure is logged, never hidden.
pub async fn audit(
    state: &CollectorState,
    actor: &str,
    action: &str,
    target: Option<&str>,
    details: Option<serde_json::Value>,
) {
    let entry = AuditEntry {
        at_ms: now_ms(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        target: target.map(str::to_owned),
        details: details.map(|d| d.to_string()),
    };
    tracing::info!(target: "audit", actor, action, target, "audit");
    if let Err(error) = state.store.audit(entry).await {
        tracing::error!(%error, action, "cannot write the audit log");
    }
}

// ---- the users and audit API ------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    pub username: String,
    pub password: String,
    pub role: Role,
    #[serde(default)]
    pub province_code: Option<String>,
}

/// `POST /api/v1/admin/users`.
pub async fn create_user(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<UserView>), ApiFailure> {
    let actor = require_admin(&state, &headers, true).await?;
    let request: NewUserRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiFailure::new(ErrorCode::MalformedJson, format!("invalid user: {e}")))?;
    check_new_user(
        &request.username,
        &request.password,
        request.role,
        request.province_code.as_deref(),
    )
    .map_err(|e| ApiFailure::bad_request(e.to_string()))?;
    if let Some(code) = &request.province_code {
        if state.enricher.units.province(code).is_none() {
            return Err(ApiFailure::new(
                ErrorCode::UnknownUnit,
                format!("no province with code {code:?}"),
            ));
        }
    }
    let password = request.password;
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiFailure::new(ErrorCode::Internal, e.to_string()))?;
    let user = User {
        id: 0,
        username: request.username.clone(),
        password_hash,
        role: request.role,
        province_code: request.province_code,
        created_at_ms: now_ms(),
        disabled_at_ms: None,
    };
    let view = UserView::from(&user);
    if state.store.create_user(user).await?.is_none() {
        return Err(ApiFailure::new(
            ErrorCode::ResultConflict,
            format!("a user {:?} exists already", request.username),
        ));
    }
    audit(
        &state,
        &actor.name,
        "user_create",
        Some(&view.username),
        Some(serde_json::json!({"role": view.role, "province_code": view.province_code})),
    )
    .await;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /api/v1/admin/users`.
pub async fn list_users(
    State(state): State<CollectorState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiFailure> {
    require_admin(&state, &headers, false).await?;
    let users: Vec<UserView> = state
        .store
        .users()
        .await?
        .iter()
        .map(UserView::from)
        .collect();
    Ok(Json(serde_json::json!({ "users": users })))
}

/// `POST /api/v1/admin/users/{username}/disable`.
pub async fn disable_user(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    Path(username): Path<String>,
) -> Result<Json<UserView>, ApiFailure> {
    let actor = require_admin(&state, &headers, true).await?;
    // `false` means unknown or already disabled; the read tells which.
    state.store.disable_user(&username, now_ms()).await?;
    let user = state
        .store
        .user_by_name(&username)
        .await?
        .ok_or_else(|| ApiFailure::new(ErrorCode::NotFound, format!("no user {username:?}")))?;
    audit(&state, &actor.name, "user_disable", Some(&username), None).await;
    Ok(Json(UserView::from(&user)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    pub limit: Option<u32>,
}

/// `GET /api/v1/admin/audit?limit=N` (newest first, at most 1 000).
pub async fn audit_log(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    query: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiFailure> {
    require_admin(&state, &headers, false).await?;
    let Query(query) = query.map_err(|e| ApiFailure::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiFailure::bad_request("limit must be 1 to 1000"));
    }
    let entries = state.store.audit_log(limit).await?;
    Ok(Json(serde_json::json!({ "entries": entries })))
}

// ---- province record exports -------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    pub province: Option<String>,
    pub month: Option<String>,
}

/// `GET /api/v1/exports/results?province=CODE&month=YYYY-MM`: a province's
/// stored results of a month as CSV, without device hashes, addresses or
/// positions; for its province users and admins.
pub async fn export_results(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    query: Result<Query<ExportParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiFailure> {
    let Query(query) = query.map_err(|e| ApiFailure::bad_request(e.body_text()))?;
    let province = query
        .province
        .ok_or_else(|| ApiFailure::bad_request("province is required"))?;
    let actor = require(
        authenticate(&state, &headers).await?,
        |a| a.may_manage_province(&province),
        &format!("export the records of province {province}"),
    )?;
    if state.enricher.units.province(&province).is_none() {
        return Err(ApiFailure::new(
            ErrorCode::UnknownUnit,
            format!("no province with code {province:?}"),
        ));
    }
    let month_text = query
        .month
        .ok_or_else(|| ApiFailure::bad_request("month is required (YYYY-MM)"))?;
    let (month, _) = crate::report::check_month(&month_text, now_ms())?;
    let (first, last) = month_days(month);
    let rows = state.store.export_results(&province, first, last).await?;
    let mut csv = String::from(
        "\u{feff}result_id,measured_at_ms,day,province_code,ward_code,place_source,isp,access,ip_version,download_mbps,upload_mbps,latency_ms,status,counted,source,test_point_id\r\n",
    );
    let opt = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v}"));
    let quoted = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    for r in &rows {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\r\n",
            r.result_id,
            r.measured_at_ms,
            r.day,
            r.province_code.as_deref().unwrap_or(""),
            r.ward_code.as_deref().unwrap_or(""),
            r.place_source,
            quoted(&r.isp),
            r.access,
            r.ip_version,
            opt(r.download_mbps),
            opt(r.upload_mbps),
            opt(r.latency_ms),
            r.status,
            r.counted,
            quoted(r.source.as_deref().unwrap_or("")),
            quoted(&r.test_point_id),
        ));
    }
    audit(
        &state,
        &actor.name,
        "export_results",
        Some(&province),
        Some(serde_json::json!({"month": month.to_string(), "rows": rows.len()})),
    )
    .await;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"ispeed-results-{month}-{province}.csv\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        csv,
    )
        .into_response())
}

/// First and last ICT day numbers of a month.
fn month_days(month: Month) -> (i32, i32) {
    let first = month.first_day();
    (first, Month(month.0 + 1).first_day() - 1)
}

// ---- the account pages -------------------------------------------------------

fn frame_page(headers: &HeaderMap, status: StatusCode, title: &str, main: &str) -> Response {
    let lang = choose_lang(None, headers);
    let body = page::document(
        &Frame {
            lang: lang.0,
            title,
            nav: Nav::None,
            path_and_query: "/quan-ly",
            navigation: true,
            description: lang.0.text().tagline,
            preview_image: None,
        },
        main,
    );
    let mut response = html_response(status, headers, lang, Framing::Deny, body);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `Secure` when the request came over HTTPS (a proxy says so), or always
/// when the collector is configured for it.
fn cookie_attributes(state: &CollectorState, headers: &HeaderMap, max_age_s: u64) -> String {
    let https = state.config.secure_cookies
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            == Some("https");
    format!(
        "Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{}",
        if https { "; Secure" } else { "" }
    )
}

fn login_form(headers: &HeaderMap, csrf: &str, error: Option<&str>) -> String {
    let t = choose_lang(None, headers).0.text();
    format!(
        "<section class=\"account\"><h1>{title}</h1>{error}\
         <form method=\"post\" action=\"/dang-nhap\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <p><label for=\"username\">{user}</label><br>\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required></p>\
         <p><label for=\"password\">{pass}</label><br>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required></p>\
         <p><button class=\"start\" type=\"submit\">{title}</button></p></form></section>",
        title = escape(t.sign_in),
        user = escape(t.username),
        pass = escape(t.password),
        csrf = escape(csrf),
        error = error.map_or_else(String::new, |e| format!("<p class=\"note warn\" role=\"alert\">{}</p>", escape(e))),
    )
}

async fn login_page(State(state): State<CollectorState>, headers: HeaderMap) -> Response {
    let csrf = random_secret();
    let title = choose_lang(None, &headers).0.text().sign_in;
    let mut response = frame_page(
        &headers,
        StatusCode::OK,
        title,
        &login_form(&headers, &csrf, None),
    );
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{LOGIN_COOKIE}={csrf}; {}",
        cookie_attributes(&state, &headers, 1800)
    )) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn login(State(state): State<CollectorState>, headers: HeaderMap, body: Bytes) -> Response {
    let t = choose_lang(None, &headers).0.text();
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&body) else {
        return ApiFailure::bad_request("username and password are required").into_response();
    };
    // The form's token must match its cookie: another site cannot read it.
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !same_secret(&form.csrf, expected) {
        return frame_page(
            &headers,
            StatusCode::FORBIDDEN,
            t.sign_in,
            &login_form(&headers, expected, Some("CSRF")),
        );
    }
    let user = match state.store.user_by_name(&form.username).await {
        Ok(user) => user.filter(|u| u.disabled_at_ms.is_none()),
        Err(error) => return ApiFailure::from(error).into_response(),
    };
    let hash = user
        .as_ref()
        .map_or_else(|| dummy_hash().to_owned(), |u| u.password_hash.clone());
    let password = form.password;
    let verified = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some(user) = user.filter(|_| verified) else {
        audit(&state, &form.username, "login_failed", None, None).await;
        return frame_page(
            &headers,
            StatusCode::UNAUTHORIZED,
            t.sign_in,
            &login_form(&headers, expected, Some(t.sign_in_failed)),
        );
    };
    let token = random_secret();
    let now = now_ms();
    let ttl = state.config.session_ttl;
    let session = SessionRecord {
        user_id: user.id,
        csrf: random_secret(),
        expires_at_ms: now + ttl.as_millis() as u64,
    };
    if let Err(error) = state
        .store
        .create_session(token_hash(&token), session, now)
        .await
    {
        return ApiFailure::from(error).into_response();
    }
    audit(&state, &user.username, "login", None, None).await;
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/quan-ly")]).into_response();
    let cookies = [
        format!(
            "{SESSION_COOKIE}={token}; {}",
            cookie_attributes(&state, &headers, ttl.as_secs())
        ),
        format!(
            "{LOGIN_COOKIE}=; {}",
            cookie_attributes(&state, &headers, 0)
        ),
    ];
    for c in cookies {
        if let Ok(value) = HeaderValue::from_str(&c) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

fn form(body: &Bytes) -> CsrfForm {
    serde_urlencoded::from_bytes(body).unwrap_or(CsrfForm {
        csrf: String::new(),
        name: String::new(),
    })
}

async fn signed_in(state: &CollectorState, headers: &HeaderMap) -> Result<Actor, Response> {
    match authenticate(state, headers).await {
        Ok(Some(actor)) if actor.csrf.is_some() => Ok(actor),
        Ok(_) => Err((StatusCode::SEE_OTHER, [(header::LOCATION, "/dang-nhap")]).into_response()),
        Err(failure) => Err(failure.into_response()),
    }
}

async fn logout(State(state): State<CollectorState>, headers: HeaderMap, body: Bytes) -> Response {
    let actor = match signed_in(&state, &headers).await {
        Ok(actor) => actor,
        Err(response) => return response,
    };
    if let Err(failure) = check_csrf(&actor, Some(&form(&body).csrf)) {
        return failure.into_response();
    }
    if let Some(cookie) = cookie(&headers, SESSION_COOKIE) {
        let _ = state.store.delete_session(token_hash(cookie)).await;
    }
    audit(&state, &actor.name, "logout", None, None).await;
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; {}",
        cookie_attributes(&state, &headers, 0)
    )) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

async fn account_page(State(state): State<CollectorState>, headers: HeaderMap) -> Response {
    let actor = match signed_in(&state, &headers).await {
        Ok(actor) => actor,
        Err(response) => return response,
    };
    render_account(&state, &headers, &actor, None).await
}

async fn render_account(
    state: &CollectorState,
    headers: &HeaderMap,
    actor: &Actor,
    new_token: Option<&str>,
) -> Response {
    let t = choose_lang(None, headers).0.text();
    let csrf = escape(actor.csrf.as_deref().unwrap_or(""));
    let month = Month(Month::of_unix_ms(now_ms()).0 - 1).to_string();
    let provinces: Vec<(String, String)> = state
        .enricher
        .units
        .provinces()
        .iter()
        .filter(|p| actor.may_manage_province(&p.code))
        .map(|p| (p.code.clone(), p.name.clone()))
        .collect();
    let mut main = format!(
        "<section class=\"account\"><h1>{title}: {name}</h1><p>{role_label}: {role}{province}</p>\
         <form method=\"post\" action=\"/dang-xuat\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\">{sign_out}</button></form>",
        title = escape(t.account_title),
        name = escape(&actor.name),
        role_label = escape(t.account_role),
        role = actor.role.as_str(),
        province = actor
            .province_code
            .as_deref()
            .map_or_else(String::new, |p| format!(" ({})", escape(p))),
        sign_out = escape(t.sign_out),
    );
    if !provinces.is_empty() {
        main.push_str(&format!("<h2>{}</h2><ul>", escape(t.account_exports)));
        for (code, name) in &provinces {
            main.push_str(&format!(
                "<li>{name}: <a href=\"/api/v1/exports/results?province={code}&amp;month={month}\">CSV {month}</a> · \
                 <a href=\"/api/v1/reports?province={code}&amp;month={month}&amp;format=xlsx\">{reports} (XLSX)</a></li>",
                name = escape(name),
                code = escape(code),
                reports = escape(t.account_reports),
            ));
        }
        main.push_str("</ul>");
    }
    main.push_str(&format!("<h2>{}</h2>", escape(t.api_tokens)));
    if let Some(token) = new_token {
        main.push_str(&format!(
            "<p class=\"note\" role=\"status\">{} <code id=\"new-token\">{}</code></p>",
            escape(t.api_token_created),
            escape(token)
        ));
    }
    if let Some(user_id) = actor.user_id {
        let tokens = state.store.api_tokens_of(user_id).await.unwrap_or_default();
        main.push_str("<ul id=\"tokens\">");
        for token in tokens {
            match token.revoked_at_ms {
                Some(_) => main.push_str(&format!(
                    "<li>{} — {}</li>",
                    escape(&token.name),
                    escape(t.api_token_revoked)
                )),
                None => main.push_str(&format!(
                    "<li>{} <form method=\"post\" action=\"/quan-ly/khoa/{}/thu-hoi\" style=\"display:inline\">\
                     <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button type=\"submit\">{}</button></form></li>",
                    escape(&token.name),
                    token.id,
                    escape(t.api_token_revoke)
                )),
            }
        }
        main.push_str("</ul>");
        main.push_str(&format!(
            "<form method=\"post\" action=\"/quan-ly/khoa\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label for=\"token-name\">{}</label> <input id=\"token-name\" name=\"name\" required maxlength=\"64\"> \
             <button type=\"submit\">{}</button></form>",
            escape(t.api_token_name),
            escape(t.api_token_create)
        ));
    }
    main.push_str("</section>");
    frame_page(headers, StatusCode::OK, t.account_title, &main)
}

async fn create_token(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let actor = match signed_in(&state, &headers).await {
        Ok(actor) => actor,
        Err(response) => return response,
    };
    let form = form(&body);
    if let Err(failure) = check_csrf(&actor, Some(&form.csrf)) {
        return failure.into_response();
    }
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return ApiFailure::bad_request("a token name is 1-64 characters").into_response();
    }
    let token = format!("{API_TOKEN_PREFIX}{}", random_secret());
    let Some(user_id) = actor.user_id else {
        return ApiFailure::new(ErrorCode::Forbidden, "only accounts hold API tokens")
            .into_response();
    };
    if let Err(error) = state
        .store
        .create_api_token(token_hash(&token), user_id, name, now_ms())
        .await
    {
        return ApiFailure::from(error).into_response();
    }
    audit(&state, &actor.name, "token_create", Some(name), None).await;
    render_account(&state, &headers, &actor, Some(&token)).await
}

async fn revoke_token(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    let actor = match signed_in(&state, &headers).await {
        Ok(actor) => actor,
        Err(response) => return response,
    };
    if let Err(failure) = check_csrf(&actor, Some(&form(&body).csrf)) {
        return failure.into_response();
    }
    // An admin may revoke anyone's token; others only their own.
    let owner = (actor.role != Role::Admin)
        .then_some(actor.user_id)
        .flatten();
    match state.store.revoke_api_token(id, owner, now_ms()).await {
        Ok(true) => {
            audit(
                &state,
                &actor.name,
                "token_revoke",
                Some(&id.to_string()),
                None,
            )
            .await;
            (StatusCode::SEE_OTHER, [(header::LOCATION, "/quan-ly")]).into_response()
        }
        Ok(false) => ApiFailure::new(ErrorCode::NotFound, "no such token of yours").into_response(),
        Err(error) => ApiFailure::from(error).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bearer_authorization_carries_a_token() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            bearer(&headers).map(str::to_owned)
        };
        assert_eq!(with("Bearer s3cret").as_deref(), Some("s3cret"));
        assert_eq!(with("Basic s3cret"), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
