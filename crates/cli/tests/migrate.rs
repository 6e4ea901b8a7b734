//! `ispeed migrate` as a process: an embedded deployment (results of two
//! months, an official's account) copied into PostgreSQL answers every
//! statistics, report and account question exactly as before; a second
//! run into the same schema is refused. Needs `ISPEED_TEST_POSTGRES`.
//! (`bench/migrate.sh` does the same at 1 M samples.)

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{free_port, spawn, Dir, PgSchema, Process, BIN};

fn serve(data: &Path, store: Option<&str>) -> (Process, String) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "serve",
        "--no-test-point",
        "--data",
        data.to_str().unwrap(),
        "--listen",
        &listen,
    ];
    if let Some(store) = store {
        args.extend(["--store", store]);
    }
    let process = spawn(&args, port);
    (process, format!("http://{listen}"))
}

fn ispeed(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("ISPEED_LOG", "warn")
        .output()
        .unwrap()
}

fn answers(url: &str, admin_token: &str) -> Vec<String> {
    let questions = [
        "/api/v1/stats?level=nation&period=2026-10",
        "/api/v1/stats?level=nation&period=2026-Q3&access=mobile",
        "/api/v1/stats/children?level=nation&period=2026-10",
        "/api/v1/stats/children?level=province&code=79&period=2026-10",
        "/api/v1/stats/children?level=province&code=01&period=2026-09&access=fixed",
        "/api/v1/stats/timeseries?level=province&code=79&period=2026-Q4",
        "/api/v1/reports?month=2026-10&province=79&format=csv",
        "/api/v1/reports?month=2026-09&format=csv",
        "/api/v1/admin/users",
    ];
    let bearer = format!("Bearer {admin_token}");
    common::get_all(url, &questions, &[("authorization", &bearer)])
}

#[test]
fn a_migrated_store_answers_exactly_as_the_embedded_one() {
    let Some(pg) = PgSchema::new("migrate") else {
        return;
    };
    let dir = Dir::new("migrate");
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();
    for (month, samples, seed) in [("2026-09", "6000", "5"), ("2026-10", "24000", "6")] {
        let out = ispeed(&[
            "generate",
            "--month",
            month,
            "--samples",
            samples,
            "--seed",
            seed,
            "--data",
            data_arg,
        ]);
        assert!(out.status.success(), "{out:?}");
    }
    // An official's account, made through the admin API (and so audited).
    let (embedded, url) = serve(&data, None);
    let token_file = data.join("admin-token");
    // The port opens before the collector has written its token.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !token_file.exists()
        || ispeed(&[
            "admin",
            "users",
            "list",
            "--collector",
            &url,
            "--token-file",
            token_file.to_str().unwrap(),
        ])
        .status
        .code()
            != Some(0)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the collector never came up"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut add = Command::new(BIN)
        .args(["admin", "users", "add", "tan-dinh", "--role", "province"])
        .args(["--province", "79", "--collector", &url, "--token-file"])
        .arg(&token_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(b"a long enough passphrase\n")
        .unwrap();
    assert!(add.wait().unwrap().success());
    let admin_token = std::fs::read_to_string(&token_file).unwrap();
    let before = answers(&url, admin_token.trim());
    drop(embedded);

    let out = ispeed(&[
        "migrate",
        "--from",
        &format!("sqlite:{data_arg}"),
        "--to",
        &pg.url,
    ]);
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["results"], 30_000, "{report}");
    assert_eq!(report["users"], 1, "{report}");
    assert_eq!(report["months"], 2, "{report}");
    assert_eq!(report["verified"], true, "{report}");

    let (migrated, url) = serve(&data, Some(&pg.url));
    let after = answers(&url, admin_token.trim());
    drop(migrated);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a, "the migrated store answers alike");
    }
    let copied = pg.query("SELECT count(*) FROM audit_log");
    assert_eq!(
        copied[0][0].as_deref(),
        Some("1"),
        "the audit log came along"
    );

    // Never into a store that holds data.
    let again = ispeed(&[
        "migrate",
        "--from",
        &format!("sqlite:{data_arg}"),
        "--to",
        &pg.url,
    ]);
    assert_eq!(again.status.code(), Some(2));
    let message = String::from_utf8_lossy(&again.stderr);
    assert!(message.contains("already holds data"), "{message}");
    eprintln!("migrate: {report}");
}
