//! The two catalogues of every word a page shows: Vietnamese (the default)
//! and English. A field missing from one catalogue is a compile error, so the
//! languages cannot drift apart. Numbers are formatted by the caller.

mod en;
mod vi;

/// The numbers the methodology page states, taken by the caller from the
/// constants and configuration the code runs with (never typed in here).
#[derive(Debug, Clone)]
pub struct MethodologyFacts {
    pub initial_streams: u32,
    pub max_streams: u32,
    pub max_seconds: f64,
    pub idle_probes: u32,
    pub sample_interval_ms: u64,
    pub loaded_probe_interval_ms: u64,
    pub sketch_accuracy_pct: f64,
    pub ci_level_pct: f64,
    pub heavy_tester_cap: u32,
    pub province_min: u64,
    pub ward_quota: u64,
    pub receipt_max_age_min: u64,
    pub exact_devices_up_to: u64,
    pub hll_precision: u32,
}

/// The methodology page's body (HTML) in `lang`.
pub fn methodology(lang: Lang, facts: &MethodologyFacts) -> String {
    match lang {
        Lang::Vi => vi::methodology(facts),
        Lang::En => en::methodology(facts),
    }
}

/// A page language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Vi,
    En,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::Vi, Lang::En];

    /// The BCP 47 tag, also the value of `?lang=` and of the `lang` cookie.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Vi => "vi",
            Lang::En => "en",
        }
    }

    /// Parses `vi` or `en` (case-insensitive); anything else is `None`.
    pub fn parse(text: &str) -> Option<Lang> {
        Lang::ALL
            .into_iter()
            .find(|lang| lang.code().eq_ignore_ascii_case(text.trim()))
    }

    /// The other language, for the switch link.
    pub fn other(self) -> Lang {
        match self {
            Lang::Vi => Lang::En,
            Lang::En => Lang::Vi,
        }
    }

    /// This language's catalogue.
    pub fn text(self) -> &'static Text {
        match self {
            Lang::Vi => &vi::TEXT,
            Lang::En => &en::TEXT,
        }
    }
}

/// Every string a page shows. `{}`-free: values are placed by the caller.
#[derive(Debug)]
pub struct Text {
    pub language_name: &'static str,
    pub switch_to: &'static str,
    pub site_name: &'static str,
    pub tagline: &'static str,
    pub nav_test: &'static str,
    pub nav_dashboard: &'static str,
    pub nav_methodology: &'static str,
    pub nav_embed: &'static str,
    pub footer: &'static str,
    pub skip_to_content: &'static str,

    // Speed test page.
    pub test_title: &'static str,
    pub start: &'static str,
    pub start_again: &'static str,
    pub running: &'static str,
    pub phase_latency: &'static str,
    pub phase_download: &'static str,
    pub phase_upload: &'static str,
    pub phase_submit: &'static str,
    pub phase_done: &'static str,
    pub choosing_test_point: &'static str,
    pub test_point: &'static str,
    pub download: &'static str,
    pub upload: &'static str,
    pub latency: &'static str,
    pub jitter: &'static str,
    pub loaded_latency: &'static str,
    pub loaded_latency_download: &'static str,
    pub loaded_latency_upload: &'static str,
    pub rpm: &'static str,
    pub rpm_help: &'static str,
    pub ipv6: &'static str,
    pub yes: &'static str,
    pub no: &'static str,
    pub unknown: &'static str,
    pub isp: &'static str,
    pub ward: &'static str,
    pub province: &'static str,
    pub mbps: &'static str,
    pub ms: &'static str,
    pub about_you: &'static str,
    pub access: &'static str,
    pub access_mobile: &'static str,
    pub access_fixed: &'static str,
    pub access_unknown: &'static str,
    pub access_prefilled: &'static str,
    pub place: &'static str,
    pub use_location: &'static str,
    pub location_why: &'static str,
    pub location_ok: &'static str,
    pub location_denied: &'static str,
    pub or_choose_ward: &'static str,
    pub choose_province: &'static str,
    pub search_ward: &'static str,
    pub place_optional: &'static str,
    pub result_title: &'static str,
    pub result_saved: &'static str,
    pub result_pending: &'static str,
    pub result_rejected: &'static str,
    pub result_not_counted: &'static str,
    pub share: &'static str,
    pub copy_link: &'static str,
    pub copied: &'static str,
    pub error_test: &'static str,
    pub error_busy: &'static str,
    /// Shown when a test point refuses the test and the next one is tried.
    pub failover: &'static str,
    // Officials' accounts.
    pub sign_in: &'static str,
    pub sign_out: &'static str,
    pub username: &'static str,
    pub password: &'static str,
    pub sign_in_failed: &'static str,
    pub account_title: &'static str,
    pub account_role: &'static str,
    pub account_exports: &'static str,
    pub account_reports: &'static str,
    pub api_tokens: &'static str,
    pub api_token_name: &'static str,
    pub api_token_create: &'static str,
    pub api_token_created: &'static str,
    pub api_token_revoke: &'static str,
    pub api_token_revoked: &'static str,
    pub measured_by_server: &'static str,
    pub no_javascript: &'static str,

    // Result page.
    pub result_page_title: &'static str,
    pub measured_at: &'static str,
    pub run_your_own: &'static str,

    // Dashboard.
    pub dashboard_title: &'static str,
    pub dashboard_intro: &'static str,
    pub period: &'static str,
    pub month: &'static str,
    pub quarter: &'static str,
    pub last_12_months: &'static str,
    pub metric: &'static str,
    pub all_access: &'static str,
    pub show: &'static str,
    pub map_title: &'static str,
    pub median: &'static str,
    pub samples: &'static str,
    pub devices: &'static str,
    pub ci95: &'static str,
    pub insufficient: &'static str,
    pub insufficient_help: &'static str,
    pub no_data: &'static str,
    pub isp_ranking: &'static str,
    pub rank: &'static str,
    pub trend_title: &'static str,
    pub provinces_table: &'static str,
    pub wards_table: &'static str,
    pub below_quota: &'static str,
    pub missing_samples: &'static str,
    pub sort_by_median: &'static str,
    pub sort_by_samples: &'static str,
    pub national: &'static str,
    pub back_to_nation: &'static str,
    pub wards_below_quota_summary: &'static str,
    pub download_json: &'static str,
    pub all_isps: &'static str,
    pub p10_p90: &'static str,

    // Methodology.
    pub methodology_title: &'static str,

    // Embedding.
    pub embed_title: &'static str,
    pub embed_intro: &'static str,
    pub embed_iframe: &'static str,
    pub embed_banner: &'static str,
    pub embed_qr: &'static str,
    pub embed_campaign: &'static str,
    pub embed_campaign_help: &'static str,
    pub embed_campaign_counts: &'static str,
    pub tests_brought: &'static str,
    pub banner_title: &'static str,
    pub banner_subtitle: &'static str,
    pub banner_cta: &'static str,
    pub open_full_test: &'static str,

    // Errors.
    pub not_found_title: &'static str,
    pub not_found_body: &'static str,
    pub bad_request_title: &'static str,
    pub bad_request_body: &'static str,
    pub unavailable_title: &'static str,
    pub unavailable_body: &'static str,
    pub go_home: &'static str,
}
