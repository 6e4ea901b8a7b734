//! `ispeed servers` (what a collector's locate offers, with measured RTTs)
//! and `ispeed admin` (approving and revoking test points): glue over the
//! collector's HTTP API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use http::Method;
use ispeed_client::select::rank_candidates;
use ispeed_client::Family;
use ispeed_proto::registry::{paths, AdminTestPoint, AdminTestPoints, SELECTION_PROBE_BUDGET_MS};

#[derive(Args)]
pub struct ServersArgs {
    /// Collector URL, e.g. http://127.0.0.1:8080
    #[arg(long, value_name = "URL")]
    collector: String,
    /// Your position, to rank test points by distance.
    #[arg(long, value_name = "LAT,LON", allow_hyphen_values = true)]
    location: Option<String>,
    /// IPv4 only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    ipv4: bool,
    /// IPv6 only.
    #[arg(short = '6')]
    ipv6: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Lists candidates in the order `ispeed test` would try them.
pub async fn servers(args: ServersArgs) -> anyhow::Result<ExitCode> {
    let family = if args.ipv4 {
        Some(Family::V4)
    } else if args.ipv6 {
        Some(Family::V6)
    } else {
        None
    };
    let mut query = Vec::new();
    if let Some(location) = &args.location {
        let (lat, lon) = location.split_once(',').context("--location is LAT,LON")?;
        query.push(format!("lat={}&lon={}", lat.trim(), lon.trim()));
    }
    match family {
        Some(Family::V4) => query.push("family=4".into()),
        Some(Family::V6) => query.push("family=6".into()),
        None => {}
    }
    let collector = args.collector.trim_end_matches('/');
    let located = match ispeed_client::submit::locate(collector, &query.join("&")).await {
        Ok(located) => located,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::from(3));
        }
    };
    let (order, rtts) = rank_candidates(
        &located,
        family,
        Duration::from_millis(SELECTION_PROBE_BUDGET_MS),
    )
    .await;
    if args.json {
        let rows: Vec<serde_json::Value> = order
            .iter()
            .map(|&i| {
                let c = &located.candidates[i];
                serde_json::json!({
                    "id": c.id, "url": c.url, "class": c.class, "operator": c.operator,
                    "on_net": c.on_net, "load": c.load, "estimated_rtt_ms": c.estimated_rtt_ms,
                    "rtt_ms": rtts[i],
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "client": located.client, "candidates": rows })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "client ISP {} (AS{}), IPv{}",
        located.client.isp,
        located
            .client
            .asn
            .map_or_else(|| "?".to_owned(), |a| a.to_string()),
        located.client.ip_version
    );
    println!(
        "{:<3} {:<20} {:<13} {:>9} {:>9} {:>5}  {:<7} url",
        "#", "test point", "class", "RTT ms", "est. ms", "load", "on-net"
    );
    for (rank, &i) in order.iter().enumerate() {
        let c = &located.candidates[i];
        println!(
            "{:<3} {:<20} {:<13} {:>9} {:>9.1} {:>4.0}%  {:<7} {}",
            rank + 1,
            c.id,
            c.class.as_str(),
            rtts[i].map_or_else(|| "no answer".to_owned(), |r| format!("{r:.2}")),
            c.estimated_rtt_ms,
            c.load * 100.0,
            if c.on_net { "yes" } else { "" },
            c.url
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct AdminArgs {
    /// Collector URL.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    collector: String,
    /// The admin token file `ispeed serve` created (default
    /// ./ispeed-data/admin-token), unless --token or ISPEED_ADMIN_TOKEN is given.
    #[arg(long, value_name = "FILE", global = true)]
    token_file: Option<PathBuf>,
    /// The admin token itself.
    #[arg(
        long,
        env = "ISPEED_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Test points: list, approve, revoke.
    #[command(subcommand)]
    TestPoints(TestPointCommand),
    /// Officials' accounts: add, list, disable.
    #[command(subcommand)]
    Users(UserCommand),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add an account; the password is read from the first line of standard input.
    Add {
        username: String,
        /// admin, province or viewer.
        #[arg(long, value_parser = ["admin", "province", "viewer"])]
        role: String,
        /// The province of a `province` account (2-digit code).
        #[arg(long, value_name = "CODE")]
        province: Option<String>,
    },
    /// Every account.
    List,
    /// Disable an account and end its sessions.
    Disable { username: String },
}

#[derive(Subcommand)]
enum TestPointCommand {
    /// Every known test point with its status, liveness and load.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Trust a registered test point's key: its receipts count, locate offers it.
    Approve { id: String },
    /// Stop trusting a test point's key from now on (earlier results stay).
    Revoke { id: String },
}

pub async fn run(args: AdminArgs) -> anyhow::Result<ExitCode> {
    let token = match (&args.token, &args.token_file) {
        (Some(token), _) => token.trim().to_owned(),
        (None, file) => {
            let path = file
                .clone()
                .unwrap_or_else(|| PathBuf::from("ispeed-data/admin-token"));
            std::fs::read_to_string(&path)
                .with_context(|| {
                    format!(
                        "cannot read the admin token {} (give --token-file or --token)",
                        path.display()
                    )
                })?
                .trim()
                .to_owned()
        }
    };
    let collector = args.collector.trim_end_matches('/');
    let command = match args.command {
        AdminCommand::TestPoints(command) => command,
        AdminCommand::Users(command) => return users(collector, &token, command).await,
    };
    let (method, path) = match &command {
        TestPointCommand::List { .. } => (Method::GET, paths::ADMIN_TEST_POINTS.to_owned()),
        TestPointCommand::Approve { id } => (Method::POST, paths::admin_action(id, "approve")),
        TestPointCommand::Revoke { id } => (Method::POST, paths::admin_action(id, "revoke")),
    };
    let body = match ispeed_client::submit::admin_request(collector, method, &path, &token).await {
        Ok(body) => body,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::FAILURE);
        }
    };
    match command {
        TestPointCommand::List { json: true } => {
            println!("{}", String::from_utf8_lossy(&body));
        }
        TestPointCommand::List { json: false } => {
            let list: AdminTestPoints =
                serde_json::from_slice(&body).context("unexpected answer")?;
            println!(
                "{:<20} {:<9} {:<13} {:<6} {:>5}  {:<24} key",
                "id", "status", "class", "alive", "load", "url"
            );
            for tp in &list.test_points {
                row(tp);
            }
        }
        TestPointCommand::Approve { .. } | TestPointCommand::Revoke { .. } => {
            let tp: AdminTestPoint = serde_json::from_slice(&body).context("unexpected answer")?;
            println!("{}: {}", tp.id, tp.status.as_str());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn row(tp: &AdminTestPoint) {
    println!(
        "{:<20} {:<9} {:<13} {:<6} {:>5}  {:<24} {}",
        tp.id,
        tp.status.as_str(),
        tp.class.map_or("-", |c| c.as_str()),
        if tp.alive { "yes" } else { "no" },
        tp.load
            .map_or_else(|| "-".to_owned(), |l| format!("{:.0}%", l * 100.0)),
        tp.url,
        tp.public_key
    );
}

async fn users(collector: &str, token: &str, command: UserCommand) -> anyhow::Result<ExitCode> {
    use ispeed_client::submit::admin_request_with_body;
    let outcome = match &command {
        UserCommand::Add {
            username,
            role,
            province,
        } => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("cannot read the password from standard input")?;
            let body = serde_json::json!({
                "username": username,
                "password": password.trim_end_matches(['\r', '\n']),
                "role": role,
                "province_code": province,
            });
            admin_request_with_body(
                collector,
                Method::POST,
                "/api/v1/admin/users",
                token,
                Some(serde_json::to_vec(&body)?),
            )
            .await
        }
        UserCommand::List => {
            admin_request_with_body(collector, Method::GET, "/api/v1/admin/users", token, None)
                .await
        }
        UserCommand::Disable { username } => {
            admin_request_with_body(
                collector,
                Method::POST,
                &format!("/api/v1/admin/users/{username}/disable"),
                token,
                None,
            )
            .await
        }
    };
    match outcome {
        Ok(body) => {
            println!("{}", String::from_utf8_lossy(&body));
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("error: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}
