//! English catalogue.

use super::Text;

pub(super) const TEXT: Text = Text {
    language_name: "English",
    switch_to: "Tiếng Việt",
    site_name: "ispeed",
    tagline: "National internet speed test",
    nav_test: "Speed test",
    nav_dashboard: "Statistics",
    nav_methodology: "Methodology",
    nav_embed: "Embed on your site",
    footer: "Rates are counted by the test points (a device's own figures are never trusted). Open source; 2025 administrative units.",
    skip_to_content: "Skip to content",

    test_title: "Internet speed test",
    start: "Start test",
    start_again: "Test again",
    running: "Testing…",
    phase_latency: "Latency",
    phase_download: "Download",
    phase_upload: "Upload",
    phase_submit: "Submitting the result",
    phase_done: "Done",
    choosing_test_point: "Choosing the nearest test point",
    test_point: "Test point",
    download: "Download",
    upload: "Upload",
    latency: "Latency",
    jitter: "Jitter",
    loaded_latency: "Loaded latency",
    loaded_latency_download: "Latency while downloading",
    loaded_latency_upload: "Latency while uploading",
    rpm: "Responsiveness (RPM)",
    rpm_help: "Round trips per minute while the line is busy; higher is better.",
    ipv6: "IPv6 capable",
    yes: "Yes",
    no: "No",
    unknown: "Unknown",
    isp: "ISP",
    ward: "Ward / commune",
    province: "Province / city",
    mbps: "Mbit/s",
    ms: "ms",
    about_you: "About this test",
    access: "Connection type",
    access_mobile: "Mobile (3G/4G/5G)",
    access_fixed: "Fixed (Wi-Fi, cable)",
    access_unknown: "Not sure",
    access_prefilled: "Pre-filled from your browser's network information; correct it if it is wrong.",
    place: "Place",
    use_location: "Use my location",
    location_why: "Your location is used only to find the ward of this test for the statistics; coordinates are never published. You can choose your ward instead of sharing it.",
    location_ok: "Location received",
    location_denied: "Could not get your location; please choose your ward.",
    or_choose_ward: "or choose your ward",
    choose_province: "Choose a province",
    search_ward: "Type to search wards",
    place_optional: "Optional: without a place the result counts in the national figures only.",
    result_title: "Result",
    result_saved: "Saved and counted in the statistics.",
    result_pending: "Could not submit yet; it will be sent again when you are back online.",
    result_rejected: "The collector rejected this result.",
    result_not_counted: "Saved but not counted in the statistics.",
    share: "Share this result",
    copy_link: "Copy link",
    copied: "Copied",
    error_test: "The test did not complete",
    error_busy: "The test point is busy; try again in a few seconds.",
    failover: "The test point cannot take the test; trying the next one",
    sign_in: "Sign in",
    sign_out: "Sign out",
    username: "Username",
    password: "Password",
    sign_in_failed: "Wrong username or password.",
    account_title: "Account",
    account_role: "Role",
    account_exports: "Download test records (without device ids)",
    account_reports: "Monthly reports",
    api_tokens: "API tokens",
    api_token_name: "Token name",
    api_token_create: "Create token",
    api_token_created: "New token (shown once, keep it now):",
    api_token_revoke: "Revoke",
    api_token_revoked: "revoked",
    measured_by_server: "Rates counted and signed by the test point.",
    no_javascript: "The browser test needs JavaScript. The statistics work without it.",

    result_page_title: "Speed test result",
    measured_at: "Measured at",
    run_your_own: "Test your connection",

    dashboard_title: "Internet speed statistics",
    dashboard_intro: "Medians of verified tests by province, ISP and access type. The 95% confidence interval shows how certain each median is.",
    period: "Period",
    month: "Month",
    quarter: "Quarter",
    last_12_months: "Last 12 months",
    metric: "Metric",
    all_access: "All access types",
    show: "Show",
    map_title: "Map by province",
    median: "Median",
    samples: "Samples",
    devices: "Devices",
    ci95: "95% CI",
    insufficient: "Insufficient samples",
    insufficient_help: "Fewer samples than the minimum: not enough to judge.",
    no_data: "No data",
    isp_ranking: "ISP ranking",
    rank: "Rank",
    trend_title: "Monthly trend",
    provinces_table: "Provinces",
    wards_table: "Wards",
    below_quota: "Below the sample quota",
    missing_samples: "Missing",
    sort_by_median: "Sort by median",
    sort_by_samples: "Sort by samples",
    national: "Nationwide",
    back_to_nation: "Back to the national statistics",
    wards_below_quota_summary: "wards below this month's sample quota",
    download_json: "Download data (JSON)",
    all_isps: "All ISPs",
    p10_p90: "P10–P90",

    methodology_title: "How tests and statistics work",

    embed_title: "Put the speed test on your website",
    embed_intro: "Departments can place the test, a banner or a QR code on their websites and at public-service counters. A campaign tag tells a department how many tests its banners and posters brought.",
    embed_iframe: "Compact test (iframe)",
    embed_banner: "Banner",
    embed_qr: "QR code for posters",
    embed_campaign: "Campaign tag",
    embed_campaign_help: "Letters, digits, dot, hyphen, underscore; up to 64 characters, e.g. dept-hanoi.poster",
    embed_campaign_counts: "Tests by campaign tag",
    tests_brought: "Tests",
    banner_title: "Internet speed test",
    banner_subtitle: "Check your connection — free, 30 seconds",
    banner_cta: "Test now",
    open_full_test: "Open the full test",

    not_found_title: "Page not found",
    not_found_body: "There is no such page, or the province, ward or result code is wrong.",
    bad_request_title: "Bad request",
    bad_request_body: "A parameter in the address is not valid:",
    unavailable_title: "Temporarily unavailable",
    unavailable_body: "The server is overloaded; try again in a few seconds.",
    go_home: "Home",
};

/// The methodology, with numbers from the running code and configuration.
pub(super) fn methodology(f: &super::MethodologyFacts) -> String {
    format!(
        "<p>This page states how the running software measures and computes; every number below is \
         read from the system's constants and configuration.</p>\n\
         <h2>1. One test</h2>\n<dl>\n\
         <dt>Idle latency</dt><dd>{idle} sequential round trips before any payload; the median is published; \
         jitter is the mean difference between consecutive round trips.</dd>\n\
         <dt>Download, upload</dt><dd>{initial} parallel TCP streams, growing to {max} while the rate still grows; \
         a direction stops once the rate is stable and loaded latency has settled, or after at most {secs} s. \
         The payload is random and incompressible.</dd>\n\
         <dt>Counted by the server</dt><dd>The test point counts the bytes that actually reached the device (acknowledged by TCP) \
         or reached the server, samples every {sample} ms, excludes the slow-start ramp, and signs (Ed25519) a receipt. \
         A device's own figures are only compared with it, never published.</dd>\n\
         <dt>Loaded latency, RPM</dt><dd>Probed every {probe} ms during the transfer, read over each direction's last 1.5 s; \
         RPM = 60,000 / mean latency (after the IETF responsiveness draft).</dd>\n\
         <dt>IPv6</dt><dd>A device is IPv6 capable if the test ran over IPv6 or it reached the test point's IPv6 address within 2 s.</dd>\n</dl>\n\
         <h2>2. Checking results</h2>\n<p>The collector accepts only results with a valid receipt from an approved test point, \
         at most {age} minutes old and never reused; a result whose device figures disagree with the server's counts \
         is stored but not counted. The ISP comes from the address the test point saw; the ward from the coordinates \
         (or the user's choice).</p>\n\
         <h2>3. Statistics</h2>\n<dl>\n\
         <dt>Medians and percentiles</dt><dd>From DDSketch summaries with at most {acc} % relative error, \
         mergeable across months, quarters, years and administrative levels.</dd>\n\
         <dt>Confidence interval</dt><dd>The {ci} % confidence interval of the median by order statistics (binomial), distribution-free.</dd>\n\
         <dt>Heavy testers</dt><dd>At most {cap} tests per device per day count.</dd>\n\
         <dt>Devices</dt><dd>Counted exactly up to {exact} devices, then estimated with HyperLogLog (p = {p}, about 1.6 % error).</dd>\n\
         <dt>Sufficiency</dt><dd>A province, ward or ISP with fewer than {pmin} samples per month is flagged <em>insufficient</em>: \
         its figures are shown but must not be used to judge it. Every ward needs at least {quota} samples per month; \
         thresholds scale with the period's months (quarter ×3, 12 months ×12).</dd>\n</dl>\n",
        idle = f.idle_probes,
        initial = f.initial_streams,
        max = f.max_streams,
        secs = f.max_seconds,
        sample = f.sample_interval_ms,
        probe = f.loaded_probe_interval_ms,
        age = f.receipt_max_age_min,
        acc = f.sketch_accuracy_pct,
        ci = f.ci_level_pct,
        cap = f.heavy_tester_cap,
        exact = f.exact_devices_up_to,
        p = f.hll_precision,
        pmin = f.province_min,
        quota = f.ward_quota,
    )
}
