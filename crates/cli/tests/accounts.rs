//! Officials' accounts against a real `ispeed serve` process: a province
//! account reads only its province's non-public data and no admin
//! endpoint, sessions expire, form posts without their CSRF token are
//! refused, API tokens can be revoked, and no password is ever stored or
//! logged in clear.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, request, wait_for_port, Dir, Process, BIN};
use serde_json::Value;

const PASSWORD_79: &str = "Mật-khẩu-của-Sở-79-rất-dài";
const PASSWORD_VIEWER: &str = "viewer-password-0042";

struct Serve {
    url: String,
    token: String,
    _process: Process,
}

async fn serve(dir: &std::path::Path) -> Serve {
    let port = free_port();
    std::fs::write(dir.join("serve.toml"), "[collector]\nsession_ttl_s = 3\n").unwrap();
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--no-test-point", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data")
        .arg(dir.join("data"))
        .arg("--config")
        .arg(dir.join("serve.toml"))
        // As verbose as it gets: nothing secret may show up even so.
        .env("ISPEED_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let process = Process(child);
    wait_for_port(port);
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..500 {
        if matches!(
            request(&url, "GET", "/api/v1/isps", &[], vec![]).await,
            Ok((200, _))
        ) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let token = std::fs::read_to_string(dir.join("data/admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    Serve {
        url,
        token,
        _process: process,
    }
}

/// A request returning status, headers and body (cookies matter here).
async fn call(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let (status, headers, body) =
        common::request_with_headers(url, method, path, headers, body.as_bytes().to_vec())
            .await
            .unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn set_cookie(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .find_map(|(_, v)| {
            let first = v.split(';').next()?;
            let (k, value) = first.split_once('=')?;
            (k == name && !value.is_empty()).then(|| value.to_owned())
        })
}

fn hidden_csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..at + html[at..].find('"').unwrap()].to_owned()
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Signs in through the form and returns the session cookie.
async fn sign_in(url: &str, username: &str, password: &str) -> Option<String> {
    let (status, headers, html) = call(url, "GET", "/dang-nhap", &[], "").await;
    assert_eq!(status, 200);
    let login_cookie = set_cookie(&headers, "ispeed_login").unwrap();
    let body = form(&[
        ("username", username),
        ("password", password),
        ("csrf", &hidden_csrf(&html)),
    ]);
    let cookie = format!("ispeed_login={login_cookie}");
    let (status, headers, _) = call(
        url,
        "POST",
        "/dang-nhap",
        &[
            ("cookie", &cookie),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        &body,
    )
    .await;
    if status != 303 {
        return None;
    }
    let session = set_cookie(&headers, "ispeed_session").unwrap();
    let attributes = headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("ispeed_session="))
        .unwrap()
        .1
        .clone();
    assert!(attributes.contains("HttpOnly") && attributes.contains("SameSite=Strict"));
    Some(session)
}

fn code(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn province_accounts_sessions_csrf_tokens_and_secrets() {
    let dir = Dir::new("accounts");
    let serve = serve(dir.path()).await;
    let url = &serve.url;
    let admin = format!("Bearer {}", serve.token);

    // Accounts: one with the CLI (password on stdin), two with the API.
    let mut cli = Command::new(BIN)
        .args(["admin", "--collector", url, "--token", &serve.token])
        .args([
            "users",
            "add",
            "so-tttt-79",
            "--role",
            "province",
            "--province",
            "79",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(cli.stdin.take().unwrap(), "{PASSWORD_79}").unwrap();
    assert!(cli.wait().unwrap().success());
    for (user, role, province) in [
        ("so-tttt-01", "province", Some("01")),
        ("viewer-1", "viewer", None),
    ] {
        let body = serde_json::json!({
            "username": user, "password": PASSWORD_VIEWER, "role": role, "province_code": province,
        })
        .to_string();
        let (status, _, body) = call(
            url,
            "POST",
            "/api/v1/admin/users",
            &[("authorization", &admin)],
            &body,
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    // Bad accounts are refused.
    for bad in [
        serde_json::json!({"username": "x", "password": PASSWORD_VIEWER, "role": "viewer"}),
        serde_json::json!({"username": "short-pw", "password": "short", "role": "viewer"}),
        serde_json::json!({"username": "no-province", "password": PASSWORD_VIEWER, "role": "province"}),
        serde_json::json!({"username": "so-tttt-79", "password": PASSWORD_VIEWER, "role": "viewer"}),
    ] {
        let (status, _, body) = call(
            url,
            "POST",
            "/api/v1/admin/users",
            &[("authorization", &admin)],
            &bad.to_string(),
        )
        .await;
        assert!(status == 400 || status == 409, "{bad}: {status} {body}");
    }

    // Signing in: a wrong password, and a form without its CSRF token, fail.
    assert!(sign_in(url, "so-tttt-79", "wrong password!!")
        .await
        .is_none());
    let (_, headers, html) = call(url, "GET", "/dang-nhap", &[], "").await;
    let login_cookie = format!(
        "ispeed_login={}",
        set_cookie(&headers, "ispeed_login").unwrap()
    );
    let no_csrf = form(&[("username", "so-tttt-79"), ("password", PASSWORD_79)]);
    let (status, headers, _) = call(
        url,
        "POST",
        "/dang-nhap",
        &[("cookie", &login_cookie)],
        &no_csrf,
    )
    .await;
    assert_eq!(status, 403);
    assert!(set_cookie(&headers, "ispeed_session").is_none());
    let _ = html;

    let session = sign_in(url, "so-tttt-79", PASSWORD_79)
        .await
        .expect("signed in");
    let cookie = format!("ispeed_session={session}");
    let month = {
        let (_, _, page) = call(url, "GET", "/quan-ly", &[("cookie", &cookie)], "").await;
        let at = page.find("month=").unwrap() + 6;
        page[at..at + 7].to_owned()
    };

    // Its own province's records: yes, without device ids; others': no.
    let (status, _, csv) = call(
        url,
        "GET",
        &format!("/api/v1/exports/results?province=79&month={month}"),
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(status, 200, "{csv}");
    let header = csv.lines().next().unwrap();
    assert!(
        header.contains("result_id") && !header.contains("device"),
        "{header}"
    );
    let (status, _, body) = call(
        url,
        "GET",
        &format!("/api/v1/exports/results?province=01&month={month}"),
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!((status, code(&body)), (403, "forbidden".to_owned()));
    for path in [
        "/api/v1/admin/test-points",
        "/api/v1/admin/users",
        "/api/v1/admin/audit",
    ] {
        let (status, _, body) = call(url, "GET", path, &[("cookie", &cookie)], "").await;
        assert_eq!(
            (status, code(&body)),
            (403, "forbidden".to_owned()),
            "{path}"
        );
    }
    let (status, _, _) = call(
        url,
        "POST",
        "/api/v1/admin/test-points/x/approve",
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(status, 403);
    // Nobody signed in: 401.
    let (status, _, _) = call(
        url,
        "GET",
        &format!("/api/v1/exports/results?province=79&month={month}"),
        &[],
        "",
    )
    .await;
    assert_eq!(status, 401);

    // CSRF: a token created without the session's CSRF field is refused.
    let (status, _, _) = call(
        url,
        "POST",
        "/quan-ly/khoa",
        &[
            ("cookie", &cookie),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        "name=script",
    )
    .await;
    assert_eq!(status, 403);
    let (_, _, page) = call(url, "GET", "/quan-ly", &[("cookie", &cookie)], "").await;
    let csrf = hidden_csrf(&page);
    let (status, _, page) = call(
        url,
        "POST",
        "/quan-ly/khoa",
        &[
            ("cookie", &cookie),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        &form(&[("name", "script"), ("csrf", &csrf)]),
    )
    .await;
    assert_eq!(status, 200);
    let at = page.find("id=\"new-token\">").unwrap() + 15;
    let api_token = page[at..at + page[at..].find('<').unwrap()].to_owned();
    assert!(api_token.starts_with("isp_"));
    let bearer = format!("Bearer {api_token}");
    let (status, _, _) = call(
        url,
        "GET",
        &format!("/api/v1/exports/results?province=79&month={month}"),
        &[("authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(status, 200, "the API token works");
    let (status, _, _) = call(
        url,
        "GET",
        &format!("/api/v1/exports/results?province=01&month={month}"),
        &[("authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(status, 403, "and only for its province");
    // Revoked, it stops working at once.
    let revoke_at = page.find("/quan-ly/khoa/").unwrap();
    let revoke_path = page[revoke_at..revoke_at + page[revoke_at..].find('"').unwrap()].to_owned();
    let (status, _, _) = call(
        url,
        "POST",
        &revoke_path,
        &[
            ("cookie", &cookie),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        &form(&[("csrf", &csrf)]),
    )
    .await;
    assert_eq!(status, 303);
    let (status, _, body) = call(
        url,
        "GET",
        &format!("/api/v1/exports/results?province=79&month={month}"),
        &[("authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!((status, code(&body)), (401, "unauthorized".to_owned()));

    // A viewer sees no province's records.
    let viewer = sign_in(url, "viewer-1", PASSWORD_VIEWER).await.unwrap();
    let (status, _, _) = call(
        url,
        "GET",
        &format!("/api/v1/exports/results?province=79&month={month}"),
        &[("cookie", &format!("ispeed_session={viewer}"))],
        "",
    )
    .await;
    assert_eq!(status, 403);

    // Sessions expire (3 s here).
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (status, headers, _) = call(url, "GET", "/quan-ly", &[("cookie", &cookie)], "").await;
    assert_eq!(status, 303);
    assert!(headers
        .iter()
        .any(|(k, v)| k == "location" && v == "/dang-nhap"));
    let (status, _, _) = call(
        url,
        "GET",
        &format!("/api/v1/exports/results?province=79&month={month}"),
        &[("cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(status, 401);

    // Disabling: the account answers disabled (again on a repeat), can no
    // longer sign in, and an unknown name is 404.
    for _ in 0..2 {
        let (status, _, body) = call(
            url,
            "POST",
            "/api/v1/admin/users/viewer-1/disable",
            &[("authorization", &admin)],
            "",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let view: Value = serde_json::from_str(&body).unwrap();
        assert!(view["disabled_at_ms"].is_u64(), "{body}");
    }
    assert!(sign_in(url, "viewer-1", PASSWORD_VIEWER).await.is_none());
    let (status, _, body) = call(
        url,
        "POST",
        "/api/v1/admin/users/nobody/disable",
        &[("authorization", &admin)],
        "",
    )
    .await;
    assert_eq!((status, code(&body).as_str()), (404, "not_found"), "{body}");

    // The audit log holds every change and sign-in, and no secret.
    let (status, _, audit) = call(
        url,
        "GET",
        "/api/v1/admin/audit?limit=1000",
        &[("authorization", &admin)],
        "",
    )
    .await;
    assert_eq!(status, 200);
    for action in [
        "user_create",
        "login_failed",
        "login",
        "export_results",
        "token_create",
        "token_revoke",
        "user_disable",
    ] {
        assert!(
            audit.contains(&format!("\"action\":\"{action}\"")),
            "{action} in {audit}"
        );
    }
    // No password in clear anywhere: the store's files and the trace log.
    let mut everything = audit.into_bytes();
    for file in [
        "data/ispeed.sqlite3",
        "data/ispeed.sqlite3-wal",
        "serve.log",
    ] {
        if let Ok(bytes) = std::fs::read(dir.path().join(file)) {
            everything.extend(bytes);
        }
    }
    for secret in [PASSWORD_79, PASSWORD_VIEWER, &api_token, &session] {
        let needle = secret.as_bytes();
        assert!(
            !everything.windows(needle.len()).any(|w| w == needle),
            "a secret is stored or logged in clear"
        );
    }
}
