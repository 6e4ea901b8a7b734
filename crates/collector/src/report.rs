//! Monthly reports (`spec/reports.md`): assembled from the very functions
//! that answer the statistics API (`stats_of`, `children_of`), so every
//! figure is the API's figure for the same cell; rendered by `ispeed-report`.

use std::collections::HashMap;

use ispeed_analytics::Flag;
use ispeed_proto::ErrorCode;
use ispeed_report::{IspRow, Quota, Report, Rules, Scope, Summary, UnitRow, WardsMeeting};

use crate::api::{children_of, now_ms, stats_of, ChildStats, StatsParams};
use crate::error::ApiFailure;
use crate::period::Month;
use crate::state::CollectorState;
use crate::stats::{StatsRow, ALL_ISPS};
use crate::web::{all_row, isp_name};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Xlsx,
    Html,
}

impl Format {
    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "csv" => Some(Format::Csv),
            "xlsx" => Some(Format::Xlsx),
            "html" => Some(Format::Html),
            _ => None,
        }
    }
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
            Format::Html => "html",
        }
    }
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            Format::Html => "text/html; charset=utf-8",
        }
    }
}

/// Checks a report month: `YYYY-MM`, not in the future. Returns it and
/// whether it is still running.
pub fn check_month(text: &str, now_ms: u64) -> Result<(Month, bool), ApiFailure> {
    let month = Month::parse(text).ok_or_else(|| {
        ApiFailure::bad_request(format!("month must be YYYY-MM, e.g. 2026-10, not {text:?}"))
    })?;
    let current = Month::of_unix_ms(now_ms);
    if month.0 > current.0 {
        return Err(ApiFailure::bad_request(format!(
            "month {month} has not begun (it is {current} in Vietnam)"
        )));
    }
    Ok((month, month == current))
}

fn params(level: &str, code: Option<&str>, month: Month) -> StatsParams {
    StatsParams {
        level: Some(level.to_owned()),
        code: code.map(str::to_owned),
        period: Some(month.to_string()),
        ..StatsParams::default()
    }
}

fn with_access(mut p: StatsParams, access: &str) -> StatsParams {
    p.access = Some(access.to_owned());
    p
}

fn with_ip6(mut p: StatsParams) -> StatsParams {
    p.ip = Some("6".to_owned());
    p
}

fn n_of(rows: &[StatsRow]) -> u64 {
    all_row(rows).map_or(0, |r| r.n)
}

fn summary_of(
    all: &[StatsRow],
    mobile: &[StatsRow],
    fixed: &[StatsRow],
    ip6: &[StatsRow],
) -> Summary {
    let row = all_row(all);
    let n = n_of(all);
    Summary {
        n,
        mobile_n: n_of(mobile),
        fixed_n: n_of(fixed),
        devices: row.map_or(0, |r| r.devices),
        download_mbps: row.and_then(|r| r.download_mbps.median),
        upload_mbps: row.and_then(|r| r.upload_mbps.median),
        latency_ms: row.and_then(|r| r.latency_ms.median),
        ipv6_share: (n > 0).then(|| n_of(ip6) as f64 / n as f64),
        // Only the judgement flag: the report's quota columns are per access
        // type, which the API's `below_quota` (all access types) is not.
        flags: row
            .map(|r| {
                r.flags
                    .iter()
                    .filter(|f| **f == Flag::Insufficient)
                    .map(|_| "insufficient".to_owned())
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Children keyed by code.
fn by_code(children: Vec<ChildStats>) -> HashMap<String, Vec<StatsRow>> {
    children.into_iter().map(|c| (c.code, c.rows)).collect()
}

/// The scope's summary: all, mobile, fixed and IPv6 counts.
async fn unit_summary(
    state: &CollectorState,
    level: &str,
    code: Option<&str>,
    month: Month,
) -> Result<Summary, ApiFailure> {
    let p = params(level, code, month);
    let all = stats_of(state, p.clone()).await?.rows;
    let mobile = stats_of(state, with_access(p.clone(), "mobile"))
        .await?
        .rows;
    let fixed = stats_of(state, with_access(p.clone(), "fixed")).await?.rows;
    let ip6 = stats_of(state, with_ip6(p)).await?.rows;
    Ok(summary_of(&all, &mobile, &fixed, &ip6))
}

/// Per child unit: (all, mobile, fixed, ip6, previous month's all).
struct ChildTables {
    order: Vec<(String, String)>,
    all: HashMap<String, Vec<StatsRow>>,
    mobile: HashMap<String, Vec<StatsRow>>,
    fixed: HashMap<String, Vec<StatsRow>>,
    ip6: HashMap<String, Vec<StatsRow>>,
    previous: HashMap<String, Vec<StatsRow>>,
}

async fn child_tables(
    state: &CollectorState,
    level: &str,
    code: Option<&str>,
    month: Month,
) -> Result<ChildTables, ApiFailure> {
    let p = params(level, code, month);
    let all = children_of(state, p.clone()).await?.children;
    let order = all
        .iter()
        .map(|c| (c.code.clone(), c.name.clone()))
        .collect();
    let previous = children_of(state, params(level, code, Month(month.0 - 1)))
        .await?
        .children;
    Ok(ChildTables {
        order,
        all: by_code(all),
        mobile: by_code(
            children_of(state, with_access(p.clone(), "mobile"))
                .await?
                .children,
        ),
        fixed: by_code(
            children_of(state, with_access(p.clone(), "fixed"))
                .await?
                .children,
        ),
        ip6: by_code(children_of(state, with_ip6(p)).await?.children),
        previous: by_code(previous),
    })
}

impl ChildTables {
    fn rows<'a>(map: &'a HashMap<String, Vec<StatsRow>>, code: &str) -> &'a [StatsRow] {
        map.get(code).map_or(&[], Vec::as_slice)
    }

    fn unit(&self, code: &str, name: &str) -> UnitRow {
        let summary = summary_of(
            Self::rows(&self.all, code),
            Self::rows(&self.mobile, code),
            Self::rows(&self.fixed, code),
            Self::rows(&self.ip6, code),
        );
        let previous = all_row(Self::rows(&self.previous, code));
        UnitRow {
            code: code.to_owned(),
            name: name.to_owned(),
            summary,
            quota: None,
            wards_meeting: None,
            rank: None,
            previous_n: previous.map_or(0, |r| r.n),
            previous_download_mbps: previous.and_then(|r| r.download_mbps.median),
        }
    }

    fn isp_rows(&self, state: &CollectorState, code: &str) -> Vec<IspRow> {
        Self::rows(&self.all, code)
            .iter()
            .filter(|r| r.isp != ALL_ISPS && r.n > 0)
            .map(|r| IspRow {
                unit_code: code.to_owned(),
                isp: r.isp.clone(),
                isp_name: isp_name(state, &r.isp),
                n: r.n,
                download_mbps: r.download_mbps.median,
                upload_mbps: r.upload_mbps.median,
                latency_ms: r.latency_ms.median,
            })
            .collect()
    }
}

/// Ranks units by median download, best first, among the judged ones
/// (ties share the lower rank number); the rest get none.
fn ranks(units: &[UnitRow]) -> HashMap<String, u32> {
    let mut judged: Vec<(&str, f64)> = units
        .iter()
        .filter(|u| !u.summary.flags.iter().any(|f| f == "insufficient"))
        .filter_map(|u| Some((u.code.as_str(), u.summary.download_mbps?)))
        .collect();
    judged.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let mut out = HashMap::new();
    let mut rank = 0;
    let mut last = None;
    for (i, (code, value)) in judged.iter().enumerate() {
        if last != Some(*value) {
            rank = i as u32 + 1;
            last = Some(*value);
        }
        out.insert((*code).to_owned(), rank);
    }
    out
}

/// Builds the report of one province (`Some(code)`) or of the nation.
pub async fn build(
    state: &CollectorState,
    province: Option<&str>,
    month_text: &str,
) -> Result<Report, ApiFailure> {
    let (month, provisional) = check_month(month_text, now_ms())?;
    let thresholds = state.config.thresholds;
    let rules = Rules {
        heavy_tester_cap: state.config.heavy_tester_cap,
        ward_quota: state.config.quotas.default,
        province_min: thresholds.province_min,
    };
    let national = unit_summary(state, "nation", None, month).await?;
    let provinces = child_tables(state, "nation", None, month).await?;
    let province_rows: Vec<UnitRow> = provinces
        .order
        .iter()
        .map(|(code, name)| provinces.unit(code, name))
        .collect();
    let province_ranks = ranks(&province_rows);
    let judged = province_ranks.len() as u32;
    match province {
        Some(code) => {
            let Some(unit) = state.enricher.at_month(month).0.province(code) else {
                return Err(ApiFailure::new(
                    ErrorCode::UnknownUnit,
                    format!("no province with code {code:?}"),
                ));
            };
            let wards = child_tables(state, "province", Some(code), month).await?;
            let mut units: Vec<UnitRow> = wards
                .order
                .iter()
                .map(|(ward, name)| {
                    let mut row = wards.unit(ward, name);
                    let (mobile, fixed) = state.config.quotas.of_ward(ward, code);
                    row.quota = Some(Quota { mobile, fixed });
                    row
                })
                .collect();
            // Below quota first, most missing first; then by code.
            units.sort_by(|a, b| {
                let missing = |u: &UnitRow| u.shortfall().map_or(0, |(m, f)| m + f);
                b.below_quota()
                    .cmp(&a.below_quota())
                    .then(missing(b).cmp(&missing(a)))
                    .then(a.code.cmp(&b.code))
            });
            let isps = units
                .iter()
                .flat_map(|u| wards.isp_rows(state, &u.code))
                .collect();
            Ok(Report {
                scope: Scope::Province {
                    code: code.to_owned(),
                    name: unit.name.clone(),
                },
                month: month.to_string(),
                previous_month: Month(month.0 - 1).to_string(),
                provisional,
                summary: unit_summary(state, "province", Some(code), month).await?,
                national: Some(national),
                rank: province_ranks.get(code).map(|r| (*r, judged)),
                units,
                isps,
                rules,
            })
        }
        None => {
            let mut units = province_rows;
            for unit in &mut units {
                unit.rank = province_ranks.get(&unit.code).copied();
                let wards = child_tables(state, "province", Some(&unit.code), month).await?;
                let mut meeting = WardsMeeting {
                    wards: wards.order.len() as u64,
                    mobile: 0,
                    fixed: 0,
                };
                for (ward, _) in &wards.order {
                    let (mobile, fixed) = state.config.quotas.of_ward(ward, &unit.code);
                    meeting.mobile +=
                        u64::from(n_of(ChildTables::rows(&wards.mobile, ward)) >= mobile);
                    meeting.fixed +=
                        u64::from(n_of(ChildTables::rows(&wards.fixed, ward)) >= fixed);
                }
                unit.wards_meeting = Some(meeting);
            }
            // Judged provinces by rank, then the rest by code.
            units.sort_by(|a, b| match (a.rank, b.rank) {
                (Some(x), Some(y)) => x.cmp(&y).then(a.code.cmp(&b.code)),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => a.code.cmp(&b.code),
            });
            let isps = units
                .iter()
                .flat_map(|u| provinces.isp_rows(state, &u.code))
                .collect();
            Ok(Report {
                scope: Scope::Nation,
                month: month.to_string(),
                previous_month: Month(month.0 - 1).to_string(),
                provisional,
                summary: national,
                national: None,
                rank: None,
                units,
                isps,
                rules,
            })
        }
    }
}

/// Renders a report in a format; the HTML of a province carries its ward
/// map coloured by median download.
pub fn render(
    state: &CollectorState,
    report: &Report,
    format: Format,
) -> Result<Vec<u8>, ApiFailure> {
    match format {
        Format::Csv => Ok(ispeed_report::to_csv(report).into_bytes()),
        Format::Xlsx => ispeed_report::to_xlsx(report).map_err(|e| {
            ApiFailure::new(
                ErrorCode::Internal,
                format!("cannot write the workbook: {e}"),
            )
        }),
        Format::Html => {
            Ok(ispeed_report::to_html(report, map_of(state, report).as_deref()).into_bytes())
        }
    }
}

fn map_of(state: &CollectorState, report: &Report) -> Option<String> {
    use ispeed_web::map::{choropleth, Fill, MapText, Region, Scale};
    let layer = match &report.scope {
        Scope::Nation => state.maps.provinces(),
        Scope::Province { code, .. } => state.maps.wards_of(code)?,
    };
    let values: Vec<f64> = report
        .units
        .iter()
        .filter_map(|u| u.summary.download_mbps)
        .collect();
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        });
    let regions: Vec<Region> = report
        .units
        .iter()
        .map(|u| Region {
            code: &u.code,
            fill: match u.summary.download_mbps {
                None => Fill::NoData,
                Some(v) if u.summary.flags.iter().any(|f| f == "insufficient") => {
                    Fill::Insufficient(Some(v))
                }
                Some(v) => Fill::Value(v),
            },
            title: format!("{}: {} mẫu", u.name, u.summary.n),
            href: None,
        })
        .collect();
    Some(choropleth(
        layer,
        &regions,
        &Scale {
            min: if min.is_finite() { min } else { 0.0 },
            max: if max.is_finite() && max > min {
                max
            } else {
                min.max(0.0) + 1.0
            },
            higher_is_better: true,
            unit_label: "Mbit/s".to_owned(),
            title: "Tải xuống trung vị".to_owned(),
        },
        &MapText {
            insufficient: "Chưa đủ mẫu".to_owned(),
            no_data: "Chưa có dữ liệu".to_owned(),
            aria_label: report.title(),
        },
    ))
}

/// The file name of a report: `ispeed-2026-10-79.xlsx`, `ispeed-2026-10-VN.csv`.
pub fn file_name(report: &Report, format: Format) -> String {
    let scope = match &report.scope {
        Scope::Nation => "VN",
        Scope::Province { code, .. } => code.as_str(),
    };
    format!("ispeed-{}-{scope}.{}", report.month, format.extension())
}

/// Where the reports of a closed month are kept: `<data>/reports/YYYY-MM/`.
pub fn archive_dir(state: &CollectorState, month: Month) -> std::path::PathBuf {
    state.config.data.join("reports").join(month.to_string())
}

/// Writes every report of the last closed month (the nation and each
/// province, in each format) unless they are already there; a `complete`
/// file marks a finished set. Returns the month written, if any.
pub async fn archive_last_month(
    state: &CollectorState,
    now_ms: u64,
) -> Result<Option<Month>, ApiFailure> {
    let month = Month(Month::of_unix_ms(now_ms).0 - 1);
    let dir = archive_dir(state, month);
    if dir.join("complete").exists() {
        return Ok(None);
    }
    std::fs::create_dir_all(&dir).map_err(io_failure)?;
    let mut scopes: Vec<Option<String>> = vec![None];
    scopes.extend(
        state
            .enricher
            .units
            .provinces()
            .iter()
            .map(|p| Some(p.code.clone())),
    );
    for scope in scopes {
        let report = build(state, scope.as_deref(), &month.to_string()).await?;
        for format in [Format::Csv, Format::Xlsx, Format::Html] {
            let bytes = render(state, &report, format)?;
            let path = dir.join(file_name(&report, format));
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, bytes).map_err(io_failure)?;
            std::fs::rename(&tmp, &path).map_err(io_failure)?;
        }
    }
    std::fs::write(dir.join("complete"), b"").map_err(io_failure)?;
    Ok(Some(month))
}

fn io_failure(error: std::io::Error) -> ApiFailure {
    ApiFailure::new(
        ErrorCode::Internal,
        format!("cannot write the report archive: {error}"),
    )
}
