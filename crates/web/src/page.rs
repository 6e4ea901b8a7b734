//! The page frame (head, navigation, language switch, footer), the speed
//! test page and the embedded assets. Everything that varies is escaped
//! here or by the caller's use of [`escape`]; JSON handed to scripts is
//! made safe to sit inside a `<script>` element.

use std::fmt::Write as _;

use crate::escape;
use crate::i18n::{Lang, Text};

/// The browser test engine and page behaviour.
pub const SCRIPT: &str = include_str!("../assets/ispeed.js");
/// The one style sheet.
pub const STYLE: &str = include_str!("../assets/ispeed.css");

/// An embedded asset: its path (with a content hash, so it can be cached
/// for a year), type and bytes.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

/// Every embedded asset.
pub const ASSETS: [Asset; 2] = [
    Asset {
        name: "ispeed.js",
        content_type: "text/javascript; charset=utf-8",
        body: SCRIPT,
    },
    Asset {
        name: "ispeed.css",
        content_type: "text/css; charset=utf-8",
        body: STYLE,
    },
];

/// FNV-1a of the asset, as a cache-busting version.
pub fn asset_version(body: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in body.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:012x}", hash >> 16)
}

/// `/assets/<name>?v=<hash>`.
pub fn asset_url(name: &str) -> String {
    let body = ASSETS
        .iter()
        .find(|asset| asset.name == name)
        .map_or("", |asset| asset.body);
    format!("/assets/{name}?v={}", asset_version(body))
}

/// Which navigation entry is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Test,
    Dashboard,
    Methodology,
    Embed,
    None,
}

/// What the frame needs to know about the page it wraps.
pub struct Frame<'a> {
    pub lang: Lang,
    pub title: &'a str,
    pub nav: Nav,
    /// The page's path and query, for the language switch (which adds `lang=`).
    pub path_and_query: &'a str,
    /// Whether the page has navigation links (the collector's pages), or is a
    /// bare test page (a stand-alone test point, `/embed`).
    pub navigation: bool,
    /// A one-line description for search engines and link previews.
    pub description: &'a str,
    /// Absolute or root-relative URL of an image for link previews.
    pub preview_image: Option<&'a str>,
}

/// Serialises a value as JSON that is safe inside `<script type="application/json">`.
pub fn script_json(value: &serde_json::Value) -> String {
    value
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// The same path with `lang=<lang>` set in its query (other parameters kept).
pub fn with_lang(path_and_query: &str, lang: Lang) -> String {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.starts_with("lang="))
        .collect();
    let lang_pair = format!("lang={}", lang.code());
    kept.push(&lang_pair);
    format!("{path}?{}", kept.join("&"))
}

/// A whole HTML document around `main` (already escaped HTML).
pub fn document(frame: &Frame<'_>, main: &str) -> String {
    let t = frame.lang.text();
    let mut html = String::with_capacity(main.len() + 4096);
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} · {site}</title>\n<meta name=\"description\" content=\"{description}\">\n\
         <meta property=\"og:title\" content=\"{title}\">\n\
         <meta property=\"og:description\" content=\"{description}\">\n",
        lang = frame.lang.code(),
        title = escape(frame.title),
        site = escape(t.site_name),
        description = escape(frame.description),
    );
    if let Some(image) = frame.preview_image {
        let _ = writeln!(
            html,
            "<meta property=\"og:image\" content=\"{}\">",
            escape(image)
        );
    }
    let _ = write!(
        html,
        "<link rel=\"stylesheet\" href=\"{css}\">\n<link rel=\"icon\" href=\"data:,\">\n</head>\n<body>\n",
        css = escape(&asset_url("ispeed.css")),
    );
    if frame.navigation {
        let _ = write!(
            html,
            "<a class=\"skip\" href=\"#main\">{skip}</a>\n<header class=\"top\"><div class=\"wrap\">\
             <a class=\"brand\" href=\"/\"><span class=\"logo\" aria-hidden=\"true\"></span>{site}\
             <small>{tagline}</small></a><nav aria-label=\"{site}\"><ul>",
            skip = escape(t.skip_to_content),
            site = escape(t.site_name),
            tagline = escape(t.tagline),
        );
        let links = [
            (Nav::Test, "/", t.nav_test),
            (Nav::Dashboard, "/thong-ke", t.nav_dashboard),
            (Nav::Methodology, "/phuong-phap", t.nav_methodology),
            (Nav::Embed, "/nhung", t.nav_embed),
        ];
        for (nav, href, label) in links {
            let current = if nav == frame.nav {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = write!(
                html,
                "<li><a href=\"{href}\"{current}>{}</a></li>",
                escape(label)
            );
        }
        let _ = writeln!(
            html,
            "</ul></nav>{}</div></header>",
            language_switch(frame.lang, frame.path_and_query)
        );
    } else {
        let _ = writeln!(
            html,
            "<div class=\"bare-lang\">{}</div>",
            language_switch(frame.lang, frame.path_and_query)
        );
    }
    let _ = write!(html, "<main id=\"main\" class=\"wrap\">\n{main}\n</main>\n");
    if frame.navigation {
        let _ = writeln!(
            html,
            "<footer class=\"wrap foot\"><p>{}</p></footer>",
            escape(t.footer)
        );
    }
    html.push_str("</body>\n</html>\n");
    html
}

fn language_switch(lang: Lang, path_and_query: &str) -> String {
    let other = lang.other();
    format!(
        "<a class=\"lang\" href=\"{href}\" hreflang=\"{code}\" lang=\"{code}\">{label}</a>",
        href = escape(&with_lang(path_and_query, other)),
        code = other.code(),
        label = escape(lang.text().switch_to),
    )
}

/// A test point the page may test against.
pub struct TestPointChoice<'a> {
    pub id: &'a str,
    /// Base URL: `""` for the page's own origin, else absolute `http(s)://…`.
    pub url: &'a str,
    pub name: &'a str,
}

/// A province for the ward picker.
pub struct ProvinceChoice<'a> {
    pub code: &'a str,
    pub name: &'a str,
}

/// What the speed-test page runs against and where it sends its result.
pub struct TestPage<'a> {
    pub test_points: &'a [TestPointChoice<'a>],
    /// `POST` URL of the collector's results API; `None` on a bare test point.
    pub submit_url: Option<&'a str>,
    /// The collector's locate API (candidates with access tokens); `None`
    /// on a bare test point, which tests against itself.
    pub locate_url: Option<&'a str>,
    /// Units API for the ward picker; `None` without a collector.
    pub units_url: Option<&'a str>,
    pub provinces: &'a [ProvinceChoice<'a>],
    /// Campaign tag from `?src=` (already validated), stored with the result.
    pub source: Option<&'a str>,
    /// Compact layout for `/embed`.
    pub compact: bool,
    /// Start at once (benchmarks and `?autostart=1`).
    pub autostart: bool,
}

/// The speed test: a start button, gauge, live graph, the optional form
/// about the test, and the result card, driven by [`SCRIPT`].
pub fn test_page(lang: Lang, page: &TestPage<'_>) -> String {
    let t = lang.text();
    let config = serde_json::json!({
        "lang": lang.code(),
        "testPoints": page.test_points.iter().map(|p| serde_json::json!({
            "id": p.id, "url": p.url, "name": p.name,
        })).collect::<Vec<_>>(),
        "submitUrl": page.submit_url,
        "locateUrl": page.locate_url,
        "unitsUrl": page.units_url,
        "source": page.source,
        "autostart": page.autostart,
        "compact": page.compact,
        "text": script_text(t),
    });
    let mut html = String::with_capacity(8192);
    let class = if page.compact { "test compact" } else { "test" };
    let _ = write!(
        html,
        "<section class=\"{class}\" aria-labelledby=\"test-title\">\n\
         <h1 id=\"test-title\" class=\"{h1class}\">{title}</h1>\n\
         <noscript><p class=\"note\">{nojs}</p></noscript>\n\
         <div class=\"runner\">\n\
         <div class=\"gauge\" aria-hidden=\"true\">{gauge}</div>\n\
         <p class=\"live-value\"><span id=\"live-mbps\">—</span> <small>{mbps}</small></p>\n\
         <p id=\"phase\" class=\"phase\" aria-live=\"polite\"></p>\n\
         <button id=\"start\" class=\"start\" type=\"button\">{start}</button>\n\
         <svg id=\"graph\" class=\"graph\" viewBox=\"0 0 300 60\" preserveAspectRatio=\"none\" aria-hidden=\"true\">\
         <polyline id=\"graph-down\" class=\"down\" points=\"\"/><polyline id=\"graph-up\" class=\"up\" points=\"\"/></svg>\n\
         </div>\n",
        h1class = if page.compact { "sr-only" } else { "" },
        title = escape(t.test_title),
        nojs = escape(t.no_javascript),
        gauge = gauge_svg(),
        mbps = escape(t.mbps),
        start = escape(t.start),
    );
    let _ = write!(
        html,
        "<section id=\"result\" class=\"card result\" hidden aria-labelledby=\"result-title\">\n\
         <h2 id=\"result-title\">{result}</h2>\n<dl class=\"figures\">\n{figures}</dl>\n\
         <p id=\"result-status\" class=\"status\" role=\"status\"></p>\n\
         <p id=\"share\" class=\"share\" hidden><a id=\"share-link\" href=\"#\">{share}</a> \
         <button id=\"copy\" type=\"button\" class=\"link\">{copy}</button></p>\n\
         <p class=\"small\">{server}</p>\n</section>\n",
        result = escape(t.result_title),
        figures = result_figures(t, page.submit_url.is_some()),
        share = escape(t.share),
        copy = escape(t.copy_link),
        server = escape(t.measured_by_server),
    );
    // The form comes after the card, so a result shows right under the
    // gauge; in an iframe it folds away.
    if page.submit_url.is_some() {
        if page.compact {
            let _ = write!(
                html,
                "<details class=\"more\"><summary>{}</summary>\n{}</details>\n",
                escape(t.about_you),
                details_form(t, page)
            );
        } else {
            html.push_str(&details_form(t, page));
        }
    }
    if page.compact {
        let _ = writeln!(
            html,
            "<p class=\"small\"><a href=\"/\" target=\"_blank\" rel=\"noopener\">{}</a></p>",
            escape(t.open_full_test)
        );
    }
    let _ = write!(
        html,
        "<script type=\"application/json\" id=\"ispeed-config\">{}</script>\n\
         <script src=\"{}\" defer></script>\n</section>\n",
        script_json(&config),
        escape(&asset_url("ispeed.js")),
    );
    html
}

/// The figures of the result card; the script fills `data-field` elements.
/// ISP and ward come from the collector, so a bare test point leaves them out.
fn result_figures(t: &Text, with_collector: bool) -> String {
    let rows = [
        ("download", t.download, t.mbps),
        ("upload", t.upload, t.mbps),
        ("latency", t.latency, t.ms),
        ("jitter", t.jitter, t.ms),
        ("loaded_download", t.loaded_latency_download, t.ms),
        ("loaded_upload", t.loaded_latency_upload, t.ms),
        ("rpm", t.rpm, ""),
        ("ipv6", t.ipv6, ""),
        ("isp", t.isp, ""),
        ("ward", t.ward, ""),
        ("test_point", t.test_point, ""),
    ];
    let mut html = String::new();
    for (field, label, unit) in rows {
        if !with_collector && matches!(field, "isp" | "ward") {
            continue;
        }
        let _ = writeln!(
            html,
            "<div class=\"fig fig-{field}\"><dt>{}</dt><dd><span data-field=\"{field}\">—</span> <small>{}</small></dd></div>",
            escape(label),
            escape(unit)
        );
    }
    html
}

fn details_form(t: &Text, page: &TestPage<'_>) -> String {
    let mut options = String::new();
    for province in page.provinces {
        let _ = write!(
            options,
            "<option value=\"{}\">{}</option>",
            escape(province.code),
            escape(province.name)
        );
    }
    format!(
        "<form id=\"details\" class=\"card details\" aria-labelledby=\"details-title\">\n\
         <h2 id=\"details-title\">{about}</h2>\n\
         <fieldset><legend>{access}</legend>\n\
         <label><input type=\"radio\" name=\"access\" value=\"mobile\"> {mobile}</label>\n\
         <label><input type=\"radio\" name=\"access\" value=\"fixed\"> {fixed}</label>\n\
         <label><input type=\"radio\" name=\"access\" value=\"unknown\" checked> {unknown}</label>\n\
         <p id=\"access-hint\" class=\"small\" hidden>{prefilled}</p></fieldset>\n\
         <fieldset><legend>{place}</legend>\n\
         <p class=\"small\">{why}</p>\n\
         <button id=\"locate\" type=\"button\" class=\"secondary\">{use_location}</button> \
         <span id=\"locate-status\" class=\"small\" role=\"status\"></span>\n\
         <p class=\"or\">{or}</p>\n\
         <label for=\"province\">{province}</label>\n\
         <select id=\"province\"><option value=\"\">{choose}</option>{options}</select>\n\
         <label for=\"ward\">{ward}</label>\n\
         <input id=\"ward\" list=\"ward-list\" autocomplete=\"off\" placeholder=\"{search}\" disabled>\n\
         <datalist id=\"ward-list\"></datalist>\n\
         <p class=\"small\">{optional}</p></fieldset>\n</form>\n",
        about = escape(t.about_you),
        access = escape(t.access),
        mobile = escape(t.access_mobile),
        fixed = escape(t.access_fixed),
        unknown = escape(t.access_unknown),
        prefilled = escape(t.access_prefilled),
        place = escape(t.place),
        why = escape(t.location_why),
        use_location = escape(t.use_location),
        or = escape(t.or_choose_ward),
        province = escape(t.province),
        choose = escape(t.choose_province),
        ward = escape(t.ward),
        search = escape(t.search_ward),
        optional = escape(t.place_optional),
    )
}

/// Strings the script shows.
fn script_text(t: &Text) -> serde_json::Value {
    serde_json::json!({
        "start": t.start, "startAgain": t.start_again, "running": t.running,
        "latency": t.phase_latency, "download": t.phase_download, "upload": t.phase_upload,
        "submit": t.phase_submit, "done": t.phase_done, "choosing": t.choosing_test_point,
        "yes": t.yes, "no": t.no, "unknown": t.unknown,
        "saved": t.result_saved, "pending": t.result_pending, "rejected": t.result_rejected,
        "notCounted": t.result_not_counted, "copied": t.copied,
        "error": t.error_test, "busy": t.error_busy, "failover": t.failover,
        "locationOk": t.location_ok, "locationDenied": t.location_denied,
    })
}

/// The gauge: an arc the script fills as a fraction of a log scale.
fn gauge_svg() -> &'static str {
    "<svg viewBox=\"0 0 200 120\"><path class=\"track\" d=\"M20 110 A80 80 0 0 1 180 110\"/>\
     <path id=\"gauge-fill\" class=\"fill\" d=\"M20 110 A80 80 0 0 1 180 110\" pathLength=\"100\" \
     stroke-dasharray=\"0 100\"/></svg>"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_json_cannot_close_its_element() {
        let json = script_json(&serde_json::json!({"x": "</script><!--"}));
        assert!(!json.contains("</"));
        assert!(!json.contains("<!--"));
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["x"], "</script><!--");
    }

    #[test]
    fn language_switch_keeps_the_query() {
        assert_eq!(
            with_lang("/thong-ke?period=2026-11&lang=vi", Lang::En),
            "/thong-ke?period=2026-11&lang=en"
        );
        assert_eq!(with_lang("/", Lang::Vi), "/?lang=vi");
    }

    #[test]
    fn test_page_escapes_the_campaign_tag() {
        let page = TestPage {
            test_points: &[],
            submit_url: Some("/api/v1/results"),
            locate_url: Some("/api/v1/locate"),
            units_url: Some("/api/v1/units"),
            provinces: &[ProvinceChoice {
                code: "01",
                name: "<script>alert(1)</script>",
            }],
            source: Some("</script><script>alert(1)</script>"),
            compact: false,
            autostart: false,
        };
        let html = test_page(Lang::Vi, &page);
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }

    #[test]
    fn every_asset_has_a_versioned_url() {
        for asset in &ASSETS {
            let url = asset_url(asset.name);
            assert!(url.starts_with("/assets/") && url.contains("?v="), "{url}");
        }
    }
}
