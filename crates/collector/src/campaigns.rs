//! Campaigns (`spec/campaigns.md`): an organisation (a ward or province
//! people's committee, a department) pushes a set of wards to a target of
//! samples over a period, with campaign tags on its banners, posters and QR
//! codes. Progress is read from the day rollup cells — samples counted after
//! the heavy-tester cap, like every statistic — and the tags' contribution
//! from the stored results. [`progress`] is pure.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ispeed_analytics::Level;
use ispeed_proto::results::valid_source;
use ispeed_proto::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::api::now_ms;
use crate::auth::{audit, authenticate, check_csrf, require, CSRF_HEADER};
use crate::error::ApiFailure;
use crate::period::{format_day, ict_day, parse_day};
use crate::rollup::Grain;
use crate::state::CollectorState;
use crate::store::{CellQuery, SourceCount};

/// Longest campaign, in days.
pub const MAX_DAYS: i32 = 366;
/// Largest target per ward.
pub const MAX_TARGET: u64 = 1_000_000;
/// The current rate is the mean of this many latest days.
pub const RATE_WINDOW_DAYS: i32 = 7;

/// A stored campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    pub slug: String,
    pub name: String,
    pub organisation: String,
    pub province_code: String,
    pub wards: Vec<String>,
    /// ICT day numbers, inclusive.
    pub first_day: i32,
    pub last_day: i32,
    /// Samples each ward should reach over the campaign.
    pub target_per_ward: u64,
    pub tags: Vec<String>,
    pub created_by: String,
    pub created_at_ms: u64,
}

/// `POST /api/v1/campaigns` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCampaign {
    pub slug: String,
    pub name: String,
    pub organisation: String,
    pub province_code: String,
    /// Ward codes; all the province's wards when empty or absent.
    #[serde(default)]
    pub wards: Vec<String>,
    /// `YYYY-MM-DD`, inclusive.
    pub first_day: String,
    pub last_day: String,
    pub target_per_ward: u64,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// One ward's progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WardProgress {
    pub code: String,
    pub name: String,
    /// Counted samples so far in the campaign.
    pub n: u64,
    pub target: u64,
    pub shortfall: u64,
    /// Counted samples per day, from the first day to today (or the last).
    pub daily: Vec<u64>,
    /// Mean samples per day over the latest days (up to 7).
    pub rate_per_day: f64,
    /// `n` plus the current rate over the days left.
    pub projected: f64,
    pub will_reach: bool,
}

/// What a campaign page and its API show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    pub slug: String,
    pub name: String,
    pub organisation: String,
    pub province_code: String,
    pub first_day: String,
    pub last_day: String,
    /// The day the figures run to (today, or the last day once it is over).
    pub as_of: String,
    pub days_left: i32,
    pub target_per_ward: u64,
    pub wards: Vec<WardProgress>,
    /// Results each campaign tag brought from the campaign's wards.
    pub tags: Vec<SourceCount>,
}

/// Progress from counted samples per (ward, day) on `today`. Wards keep the
/// campaign's order; names come from `names`.
pub fn progress(
    campaign: &Campaign,
    counts: &HashMap<(String, i32), u64>,
    names: &HashMap<String, String>,
    tags: Vec<SourceCount>,
    today: i32,
) -> Progress {
    let as_of = today.clamp(campaign.first_day - 1, campaign.last_day);
    let days_left = (campaign.last_day - as_of).max(0);
    let wards = campaign
        .wards
        .iter()
        .map(|code| {
            let daily: Vec<u64> = (campaign.first_day..=as_of)
                .map(|day| counts.get(&(code.clone(), day)).copied().unwrap_or(0))
                .collect();
            let n: u64 = daily.iter().sum();
            let window = daily.len().min(RATE_WINDOW_DAYS as usize);
            let rate_per_day = if window == 0 {
                0.0
            } else {
                daily[daily.len() - window..].iter().sum::<u64>() as f64 / window as f64
            };
            let projected = n as f64 + rate_per_day * f64::from(days_left);
            WardProgress {
                code: code.clone(),
                name: names.get(code).cloned().unwrap_or_default(),
                n,
                target: campaign.target_per_ward,
                shortfall: campaign.target_per_ward.saturating_sub(n),
                daily,
                rate_per_day,
                projected,
                will_reach: projected >= campaign.target_per_ward as f64,
            }
        })
        .collect();
    Progress {
        slug: campaign.slug.clone(),
        name: campaign.name.clone(),
        organisation: campaign.organisation.clone(),
        province_code: campaign.province_code.clone(),
        first_day: format_day(campaign.first_day),
        last_day: format_day(campaign.last_day),
        as_of: format_day(as_of),
        days_left,
        target_per_ward: campaign.target_per_ward,
        wards,
        tags,
    }
}

fn valid_slug(slug: &str) -> bool {
    (3..=64).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn text_ok(s: &str) -> bool {
    let n = s.trim().chars().count();
    (1..=200).contains(&n) && !s.chars().any(char::is_control)
}

/// `POST /api/v1/campaigns`: a province account for its province, or an admin.
pub async fn create(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Campaign>), ApiFailure> {
    // Credentials first: an anonymous body is not even read.
    let actor = require(
        authenticate(&state, &headers).await?,
        |_| true,
        "create campaigns",
    )?;
    let request: NewCampaign = serde_json::from_slice(&body)
        .map_err(|e| ApiFailure::new(ErrorCode::MalformedJson, format!("invalid campaign: {e}")))?;
    let actor = require(
        Some(actor),
        |a| a.may_manage_province(&request.province_code),
        &format!("create campaigns in province {}", request.province_code),
    )?;
    check_csrf(
        &actor,
        headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()),
    )?;
    let bad = |m: String| Err(ApiFailure::bad_request(m));
    if !valid_slug(&request.slug) {
        return bad("slug must be 3-64 characters of a-z, 0-9 and '-'".into());
    }
    if !text_ok(&request.name) || !text_ok(&request.organisation) {
        return bad("name and organisation must be 1-200 characters".into());
    }
    let (Some(first), Some(last)) = (parse_day(&request.first_day), parse_day(&request.last_day))
    else {
        return bad("first_day and last_day must be dates, YYYY-MM-DD".into());
    };
    if last < first || last - first >= MAX_DAYS {
        return bad(format!(
            "the period must run forward and last at most {MAX_DAYS} days"
        ));
    }
    if !(1..=MAX_TARGET).contains(&request.target_per_ward) {
        return bad(format!("target_per_ward must be 1 to {MAX_TARGET}"));
    }
    if let Some(tag) = request.tags.iter().find(|t| !valid_source(t)) {
        return bad(format!(
            "campaign tag {tag:?} must be 1-64 characters without control characters"
        ));
    }
    let month = crate::period::Month::of_day(first);
    let (units, _) = state.enricher.at_month(month);
    if units.province(&request.province_code).is_none() {
        return Err(ApiFailure::new(
            ErrorCode::UnknownUnit,
            format!("no province with code {:?}", request.province_code),
        ));
    }
    let wards: Vec<String> = if request.wards.is_empty() {
        units
            .wards_of(&request.province_code)
            .map(|w| w.code.clone())
            .collect()
    } else {
        for code in &request.wards {
            match units.ward(code) {
                Some(w) if w.province_code == request.province_code => {}
                Some(_) => {
                    return bad(format!(
                        "ward {code} is not in province {}",
                        request.province_code
                    ))
                }
                None => {
                    return Err(ApiFailure::new(
                        ErrorCode::UnknownUnit,
                        format!("no ward with code {code:?}"),
                    ))
                }
            }
        }
        let mut wards = request.wards.clone();
        wards.dedup();
        wards
    };
    let campaign = Campaign {
        slug: request.slug,
        name: request.name.trim().to_owned(),
        organisation: request.organisation.trim().to_owned(),
        province_code: request.province_code,
        wards,
        first_day: first,
        last_day: last,
        target_per_ward: request.target_per_ward,
        tags: request.tags,
        created_by: actor.name.clone(),
        created_at_ms: now_ms(),
    };
    if !state.store.create_campaign(campaign.clone()).await? {
        return Err(ApiFailure::new(
            ErrorCode::ResultConflict,
            format!("a campaign {:?} exists already", campaign.slug),
        ));
    }
    audit(
        &state,
        &actor.name,
        "campaign_create",
        Some(&campaign.slug),
        Some(serde_json::json!({"province_code": campaign.province_code, "wards": campaign.wards.len()})),
    )
    .await;
    Ok((StatusCode::CREATED, Json(campaign)))
}

/// `GET /api/v1/campaigns`: every campaign (public, like the statistics).
pub async fn list(
    State(state): State<CollectorState>,
) -> Result<Json<serde_json::Value>, ApiFailure> {
    let campaigns = state.store.campaigns().await?;
    Ok(Json(serde_json::json!({ "campaigns": campaigns })))
}

/// The progress of one campaign now.
pub async fn progress_of(state: &CollectorState, slug: &str) -> Result<Progress, ApiFailure> {
    let campaign = state
        .store
        .campaign(slug)
        .await?
        .ok_or_else(|| ApiFailure::new(ErrorCode::NotFound, format!("no campaign {slug:?}")))?;
    let today = ict_day(now_ms());
    let last = today.min(campaign.last_day);
    let mut counts: HashMap<(String, i32), u64> = HashMap::new();
    if last >= campaign.first_day {
        let cells = state
            .store
            .cells(CellQuery {
                grain: Grain::Day,
                periods: (campaign.first_day..=last).collect(),
                level: Level::Ward,
                parent: Some(campaign.province_code.clone()),
                code: None,
                aggregate: false,
            })
            .await?;
        for (key, cell) in cells.iter() {
            *counts.entry((key.code.clone(), key.period)).or_default() += cell.n;
        }
    }
    let (units, _) = state
        .enricher
        .at_month(crate::period::Month::of_day(campaign.first_day));
    let names = campaign
        .wards
        .iter()
        .filter_map(|c| units.ward(c).map(|w| (c.clone(), w.name.clone())))
        .collect();
    let tags = state
        .store
        .campaign_tag_counts(
            &campaign.wards,
            campaign.first_day,
            campaign.last_day,
            &campaign.tags,
        )
        .await?;
    Ok(progress(&campaign, &counts, &names, tags, today))
}

/// `GET /api/v1/campaigns/{slug}`.
pub async fn get_progress(
    State(state): State<CollectorState>,
    Path(slug): Path<String>,
) -> Result<Json<Progress>, ApiFailure> {
    Ok(Json(progress_of(&state, &slug).await?))
}

/// The campaign pages.
pub fn pages() -> axum::Router<CollectorState> {
    axum::Router::new()
        .route("/chien-dich/{slug}", axum::routing::get(page))
        .route("/campaign/{slug}", axum::routing::get(page))
}

/// `/chien-dich/{slug}`: the campaign page (public).
pub async fn page(
    State(state): State<CollectorState>,
    Path(slug): Path<String>,
    headers: HeaderMap,
) -> Response {
    let p = match progress_of(&state, &slug).await {
        Ok(p) => p,
        Err(failure) => return failure.into_response(),
    };
    let e = ispeed_web::escape;
    let mut main = format!(
        "<section class=\"campaign\"><h1>{}</h1><p>{} · {} → {} · tính đến {} ({} ngày còn lại) · \
         chỉ tiêu {} mẫu mỗi xã, phường</p>\
         <p class=\"note\">Số mẫu được tính sau giới hạn {} phép đo mỗi thiết bị mỗi ngày; \
         dự báo theo tốc độ trung bình {} ngày gần nhất.</p>",
        e(&p.name),
        e(&p.organisation),
        e(&p.first_day),
        e(&p.last_day),
        e(&p.as_of),
        p.days_left,
        p.target_per_ward,
        state.config.heavy_tester_cap,
        RATE_WINDOW_DAYS,
    );
    main.push_str(
        "<div class=\"table-wrap\"><table class=\"data\" id=\"campaign-wards\"><thead><tr><th>Xã, phường</th>\
         <th>Số mẫu</th><th>Còn thiếu</th><th>Mẫu/ngày</th><th>Dự báo</th><th>Đạt chỉ tiêu?</th><th>Theo ngày</th></tr></thead><tbody>",
    );
    for w in &p.wards {
        let peak = w.daily.iter().copied().max().unwrap_or(0).max(1) as f64;
        let bars: String = w
            .daily
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let h = (*n as f64 / peak * 20.0).round();
                format!(
                    "<rect x=\"{}\" y=\"{}\" width=\"3\" height=\"{h}\" fill=\"#1c6cc4\"/>",
                    i * 4,
                    20.0 - h
                )
            })
            .collect();
        main.push_str(&format!(
            "<tr data-code=\"{code}\" data-n=\"{n}\"><td class=\"name\">{name}</td><td>{n}</td><td>{short}</td>\
             <td>{rate:.1}</td><td>{proj:.0}</td><td>{reach}</td>\
             <td><svg width=\"{width}\" height=\"20\" role=\"img\" aria-label=\"{label}\">{bars}</svg></td></tr>",
            code = e(&w.code),
            name = e(&w.name),
            n = w.n,
            short = w.shortfall,
            rate = w.rate_per_day,
            proj = w.projected,
            reach = if w.will_reach { "Có" } else { "<strong>Không</strong>" },
            width = (w.daily.len() * 4).max(4),
            label = e(&format!("{} mẫu theo ngày", w.name)),
        ));
    }
    main.push_str("</tbody></table></div><h2>Đóng góp của các mã chiến dịch</h2><table class=\"data\" id=\"campaign-tags\"><thead><tr><th>Mã</th><th>Kết quả</th><th>Được tính</th></tr></thead><tbody>");
    for t in &p.tags {
        main.push_str(&format!(
            "<tr><td class=\"name\">{}</td><td>{}</td><td>{}</td></tr>",
            e(&t.source),
            t.results,
            t.counted
        ));
    }
    main.push_str("</tbody></table></section>");
    let lang = ispeed_server::web::choose_lang(None, &headers);
    let body = ispeed_web::page::document(
        &ispeed_web::page::Frame {
            lang: lang.0,
            title: &p.name,
            nav: ispeed_web::page::Nav::None,
            path_and_query: &format!("/chien-dich/{}", p.slug),
            navigation: true,
            description: lang.0.text().tagline,
            preview_image: None,
        },
        &main,
    );
    ispeed_server::web::html_response(
        StatusCode::OK,
        &headers,
        lang,
        ispeed_server::web::Framing::Deny,
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign() -> Campaign {
        Campaign {
            slug: "d1".into(),
            name: "n".into(),
            organisation: "o".into(),
            province_code: "79".into(),
            wards: vec!["26740".into(), "26743".into()],
            first_day: 100,
            last_day: 129,
            target_per_ward: 300,
            tags: vec![],
            created_by: "u".into(),
            created_at_ms: 0,
        }
    }

    #[test]
    fn projection_uses_the_latest_week() {
        let mut counts = HashMap::new();
        // Ward A: 5 a day for 10 days, then 20 a day for the last 7.
        for day in 100..110 {
            counts.insert(("26740".to_owned(), day), 5);
        }
        for day in 110..117 {
            counts.insert(("26740".to_owned(), day), 20);
        }
        let p = progress(&campaign(), &counts, &HashMap::new(), vec![], 116);
        let a = &p.wards[0];
        assert_eq!(a.n, 50 + 140);
        assert_eq!(a.daily.len(), 17);
        assert_eq!(a.rate_per_day, 20.0);
        assert_eq!(p.days_left, 13);
        assert_eq!(a.projected, 190.0 + 20.0 * 13.0);
        assert!(a.will_reach);
        // Ward B: nothing yet: no rate, short of target.
        let b = &p.wards[1];
        assert_eq!((b.n, b.shortfall, b.will_reach), (0, 300, false));
        // Before it starts and after it ends.
        let before = progress(&campaign(), &counts, &HashMap::new(), vec![], 90);
        assert!(before.wards[0].daily.is_empty() && before.days_left == 30);
        let after = progress(&campaign(), &counts, &HashMap::new(), vec![], 200);
        assert_eq!((after.days_left, after.wards[0].daily.len()), (0, 30));
    }
}
