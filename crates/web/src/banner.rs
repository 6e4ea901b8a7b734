//! Banners that partner websites (provincial departments, schools,
//! operators) put on their pages to send visitors to the speed test, in the
//! four common IAB sizes, as self-contained SVG.
//!
//! A banner has no links of its own: the webmaster wraps it in an `<a>`.
//! Text is fitted with a rough width estimate (0.55 em per glyph, a little
//! more for bold): fonts shrink, lines wrap, and the subtitle is left out
//! where it does not fit.

use std::fmt::{self, Write as _};

/// The banner sizes on offer, named after the IAB ad units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BannerSize {
    /// 728 × 90, across the top of a page.
    Leaderboard,
    /// 300 × 250, in a sidebar or between paragraphs.
    MediumRectangle,
    /// 160 × 600, a tall sidebar banner.
    Skyscraper,
    /// 320 × 50, for phones.
    MobileBanner,
}

impl BannerSize {
    /// Every size, largest area first.
    pub const ALL: [BannerSize; 4] = [
        BannerSize::Leaderboard,
        BannerSize::MediumRectangle,
        BannerSize::Skyscraper,
        BannerSize::MobileBanner,
    ];

    /// `"728x90"`, `"300x250"`, `"160x600"` or `"320x50"`, for URLs and
    /// file names.
    pub fn slug(self) -> &'static str {
        match self {
            BannerSize::Leaderboard => "728x90",
            BannerSize::MediumRectangle => "300x250",
            BannerSize::Skyscraper => "160x600",
            BannerSize::MobileBanner => "320x50",
        }
    }

    /// The size whose [`slug`](Self::slug) is `slug`, if any.
    pub fn from_slug(slug: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.slug() == slug)
    }

    /// Width and height in CSS pixels.
    pub fn dimensions(self) -> (u32, u32) {
        match self {
            BannerSize::Leaderboard => (728, 90),
            BannerSize::MediumRectangle => (300, 250),
            BannerSize::Skyscraper => (160, 600),
            BannerSize::MobileBanner => (320, 50),
        }
    }
}

impl fmt::Display for BannerSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}

/// The words on a banner, already translated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BannerText {
    /// Headline, e.g. `"Đo tốc độ Internet"`.
    pub title: String,
    /// One sentence under the headline, e.g.
    /// `"Kiểm tra mạng của bạn — miễn phí, 30 giây"`; left out on the
    /// smallest size and wherever it does not fit.
    pub subtitle: String,
    /// Button text, e.g. `"Đo ngay"`.
    pub call_to_action: String,
    /// Host name shown in small print, e.g. `"speedtest.example.vn"`.
    pub site: String,
}

const FONT: &str =
    "system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans','Helvetica Neue',Arial,sans-serif";
/// Darker end of the background gradient.
const BG_DARK: &str = "#0a3a8a";
/// Lighter end of the background gradient; white text on it is 6:1.
const BG_LIGHT: &str = "#0d5bd7";
/// Subtitle and small print: 4.7:1 on the lightest background.
const SOFT: &str = "#dce8ff";
/// Button and gauge accent.
const ACCENT: &str = "#ffc629";
/// Button text: 8.9:1 on the accent.
const ON_ACCENT: &str = "#102a5c";

/// Renders a banner as a standalone SVG document fragment (`<svg>` with
/// `xmlns`, fixed `width`/`height` and a matching `viewBox`), usable inline
/// or saved as an `.svg` file. It carries `role="img"` and an `aria-label`
/// made of the title, subtitle and site, so the link around it gets a
/// meaningful name. All text is escaped.
pub fn banner_svg(size: BannerSize, text: &BannerText) -> String {
    let (w, h) = size.dimensions();
    let (wf, hf) = (f64::from(w), f64::from(h));
    let slug = size.slug();
    let label = [&text.title, &text.subtitle, &text.site]
        .into_iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" — ");

    let mut s = String::with_capacity(4096);
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         role=\"img\" aria-label=\"{label}\" font-family=\"{FONT}\" class=\"ispeed-banner\">\
         <title>{label}</title>\
         <defs><linearGradient id=\"isb-bg-{slug}\" x1=\"0\" y1=\"0\" x2=\"1\" y2=\"1\">\
         <stop offset=\"0\" stop-color=\"{BG_DARK}\"/><stop offset=\"1\" stop-color=\"{BG_LIGHT}\"/>\
         </linearGradient></defs>\
         <rect width=\"{w}\" height=\"{h}\" fill=\"url(#isb-bg-{slug})\"/>",
        label = crate::escape(&label),
    );
    s.push_str(&decor(wf, hf));

    match size {
        BannerSize::Leaderboard => leaderboard(&mut s, text, wf, hf),
        BannerSize::MobileBanner => mobile(&mut s, text, wf, hf),
        BannerSize::MediumRectangle => stacked(&mut s, text, wf, hf, &MEDIUM_RECTANGLE),
        BannerSize::Skyscraper => stacked(&mut s, text, wf, hf, &SKYSCRAPER),
    }
    s.push_str("</svg>");
    s
}

/// Faint concentric arcs in the lower right, a quiet nod to radar and
/// speed without competing with the text.
fn decor(w: f64, h: f64) -> String {
    let m = w.max(h);
    let (cx, cy) = (w * 0.92, h * 1.08);
    let mut s = String::from("<g fill=\"none\" stroke=\"#fff\" stroke-opacity=\"0.07\">");
    for (i, k) in [0.28, 0.5, 0.72, 0.94].into_iter().enumerate() {
        let _ = write!(
            s,
            "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"{:.1}\" stroke-width=\"{:.1}\"/>",
            m * k,
            m * (0.05 - i as f64 * 0.008)
        );
    }
    s.push_str("</g>");
    s
}

/// A speedometer: a 240° track, the accent arc up to 72 %, ticks (on larger
/// glyphs), a tapered needle and its hub. It spans `cy - r` to `cy + r/2`
/// vertically, plus half the stroke width.
fn gauge(s: &mut String, cx: f64, cy: f64, r: f64) {
    const START: f64 = 150.0;
    const SWEEP: f64 = 240.0;
    const LEVEL: f64 = 0.72;
    let at = |deg: f64, rad: f64| {
        let t = deg.to_radians();
        (cx + rad * t.cos(), cy + rad * t.sin())
    };
    let arc = |from: f64, to: f64| {
        let (x0, y0) = at(from, r);
        let (x1, y1) = at(to, r);
        let large = u8::from(to - from > 180.0);
        format!("M{x0:.2} {y0:.2}A{r:.2} {r:.2} 0 {large} 1 {x1:.2} {y1:.2}")
    };
    let sw = r * 0.17;
    let _ = write!(
        s,
        "<g class=\"gauge\" fill=\"none\" stroke-linecap=\"round\">\
         <path d=\"{}\" stroke=\"#fff\" stroke-opacity=\"0.25\" stroke-width=\"{sw:.2}\"/>\
         <path d=\"{}\" stroke=\"{ACCENT}\" stroke-width=\"{sw:.2}\"/>",
        arc(START, START + SWEEP),
        arc(START, START + SWEEP * LEVEL),
    );
    if r >= 22.0 {
        for i in 0..=6 {
            let deg = START + SWEEP * f64::from(i) / 6.0;
            let (x0, y0) = at(deg, r * 0.62);
            let (x1, y1) = at(deg, r * 0.74);
            let _ = write!(
                s,
                "<line x1=\"{x0:.2}\" y1=\"{y0:.2}\" x2=\"{x1:.2}\" y2=\"{y1:.2}\" stroke=\"#fff\" \
                 stroke-opacity=\"0.75\" stroke-width=\"{:.2}\"/>",
                (r * 0.05).max(1.2)
            );
        }
    }
    // Needle: a thin triangle from the hub to the tip.
    let deg = START + SWEEP * LEVEL;
    let (tx, ty) = at(deg, r * 0.8);
    let (ax, ay) = at(deg + 90.0, r * 0.08);
    let (bx, by) = at(deg - 90.0, r * 0.08);
    let _ = write!(
        s,
        "</g><path d=\"M{ax:.2} {ay:.2}L{tx:.2} {ty:.2}L{bx:.2} {by:.2}Z\" fill=\"#fff\" \
         stroke=\"#fff\" stroke-width=\"{:.2}\" stroke-linejoin=\"round\"/>\
         <circle cx=\"{cx:.2}\" cy=\"{cy:.2}\" r=\"{:.2}\" fill=\"#fff\"/>\
         <circle cx=\"{cx:.2}\" cy=\"{cy:.2}\" r=\"{:.2}\" fill=\"{BG_DARK}\"/>",
        r * 0.03,
        r * 0.14,
        r * 0.055
    );
}

/// Text that has been fitted into a box.
struct Fitted {
    px: f64,
    lines: Vec<String>,
}

/// Rough rendered width of `s` at `px`: 0.55 em per glyph, 0.6 em in bold;
/// combining marks take no room.
fn est_width(s: &str, px: f64, bold: bool) -> f64 {
    let glyphs = s
        .chars()
        .filter(|c| !('\u{300}'..='\u{36f}').contains(c))
        .count();
    glyphs as f64 * px * if bold { 0.6 } else { 0.55 }
}

/// Words of `s`; a lone dash sticks to the word before it so that no line
/// starts with one.
fn words(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in s.split_whitespace() {
        match out.last_mut() {
            Some(prev) if matches!(w, "—" | "–" | "-") => {
                prev.push(' ');
                prev.push_str(w);
            }
            _ => out.push(w.to_string()),
        }
    }
    out
}

/// Greedy word wrap into lines no wider than `room`; `None` when a single
/// word is wider than `room`.
fn wrap(words: &[String], room: f64, px: f64, bold: bool) -> Option<Vec<String>> {
    let mut lines: Vec<String> = Vec::new();
    for w in words {
        if est_width(w, px, bold) > room {
            return None;
        }
        match lines.last_mut() {
            Some(line) if est_width(&format!("{line} {w}"), px, bold) <= room => {
                line.push(' ');
                line.push_str(w);
            }
            _ => lines.push(w.clone()),
        }
    }
    Some(lines)
}

/// Fits `s` into lines of width `room` at a font size in `min..=max`
/// (half-pixel steps), in at most `max_lines` balanced lines. Shrinking by
/// up to a fifth is preferred to wrapping, wrapping to shrinking further;
/// `None` if it cannot fit, or if `s` is blank.
fn fit(s: &str, room: f64, max: f64, min: f64, max_lines: usize, bold: bool) -> Option<Fitted> {
    let ws = words(s);
    if ws.is_empty() {
        return None;
    }
    let soft_min = (max * 0.8).max(min);
    let attempt = |lines: usize, floor: f64| {
        let mut px = max;
        while px >= floor {
            if let Some(found) = wrap(&ws, room, px, bold).filter(|l| l.len() <= lines) {
                return Some((px, found));
            }
            px -= 0.5;
        }
        None
    };
    let (px, lines) = (1..=max_lines)
        .find_map(|n| attempt(n, soft_min))
        .or_else(|| attempt(max_lines, min))?;
    // Balance: the narrowest room that still needs no more lines.
    let mut best = lines;
    let mut narrower = room - 2.0;
    while narrower > 0.0 {
        match wrap(&ws, narrower, px, bold) {
            Some(l) if l.len() <= best.len() => best = l,
            _ => break,
        }
        narrower -= 2.0;
    }
    Some(Fitted { px, lines: best })
}

/// Like [`fit`], but text that cannot fit is cut with an ellipsis at `min`
/// size instead of being dropped.
fn fit_or_cut(
    s: &str,
    room: f64,
    max: f64,
    min: f64,
    max_lines: usize,
    bold: bool,
) -> Option<Fitted> {
    if let Some(f) = fit(s, room, max, min, max_lines, bold) {
        return Some(f);
    }
    let ws = words(s);
    if ws.is_empty() {
        return None;
    }
    // Fill lines character by character, breaking at spaces where possible.
    let mut lines: Vec<String> = Vec::new();
    let mut rest: Vec<char> = ws.join(" ").chars().collect();
    while !rest.is_empty() && lines.len() < max_lines {
        let last = lines.len() + 1 == max_lines;
        let mut take = rest.len();
        let fits = |n: usize, rest: &[char]| {
            let mut line: String = rest[..n].iter().collect();
            if last && n < rest.len() {
                line.push('…');
            }
            est_width(&line, min, bold) <= room
        };
        while take > 1 && !fits(take, &rest) {
            take -= 1;
        }
        if !last && take < rest.len() {
            if let Some(space) = rest[..=take.min(rest.len() - 1)]
                .iter()
                .rposition(|c| *c == ' ')
            {
                if space > 0 {
                    take = space;
                }
            }
        }
        let mut line: String = rest[..take].iter().collect();
        rest.drain(..take);
        while rest.first() == Some(&' ') {
            rest.remove(0);
        }
        if last && !rest.is_empty() {
            line = line.trim_end().to_string();
            line.push('…');
        }
        lines.push(line);
    }
    Some(Fitted { px: min, lines })
}

/// One line of text; `anchor` is `start`, `middle` or `end`.
#[allow(clippy::too_many_arguments)]
fn text_el(s: &mut String, x: f64, y: f64, px: f64, bold: bool, fill: &str, anchor: &str, t: &str) {
    let weight = if bold { " font-weight=\"700\"" } else { "" };
    let _ = write!(
        s,
        "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{px}\"{weight} fill=\"{fill}\" \
         text-anchor=\"{anchor}\">{}</text>",
        crate::escape(t)
    );
}

/// The call-to-action button with its label centred in it.
fn button(s: &mut String, x: f64, y: f64, w: f64, h: f64, label: &Fitted) {
    let _ = write!(
        s,
        "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"{:.1}\" fill=\"{ACCENT}\"/>",
        (h * 0.18).min(8.0)
    );
    let line = label.lines.first().map(String::as_str).unwrap_or("");
    text_el(
        s,
        x + w / 2.0,
        y + h / 2.0 + label.px * 0.35,
        label.px,
        true,
        ON_ACCENT,
        "middle",
        line,
    );
}

/// 728 × 90: gauge, title over subtitle, button with the site under it.
fn leaderboard(s: &mut String, t: &BannerText, w: f64, h: f64) {
    let pad = 20.0;
    let r = 29.0;
    let cx = pad + r + 4.0;
    gauge(s, cx, h / 2.0 + r * 0.25, r);

    let cta = fit_or_cut(&t.call_to_action, 190.0, 18.0, 13.0, 1, true);
    let site = fit(&t.site, 200.0, 11.5, 9.0, 1, false);
    let mut right = w - pad;
    if let Some(cta) = &cta {
        let bw = (est_width(&cta.lines[0], cta.px, true) + 44.0).clamp(112.0, 220.0);
        let bh = 40.0;
        let by = if site.is_some() { 16.0 } else { (h - bh) / 2.0 };
        button(s, w - pad - bw, by, bw, bh, cta);
        if let Some(site) = &site {
            // Centred under the button, but never past the right margin.
            let half = est_width(&site.lines[0], site.px, false) / 2.0;
            let x = (w - pad - bw / 2.0).min(w - pad - half);
            text_el(
                s,
                x,
                by + bh + 17.0,
                site.px,
                false,
                SOFT,
                "middle",
                &site.lines[0],
            );
        }
        right = w - pad - bw - 24.0;
    } else if let Some(site) = &site {
        text_el(
            s,
            w - pad,
            h / 2.0 + site.px * 0.35,
            site.px,
            false,
            SOFT,
            "end",
            &site.lines[0],
        );
        right = w - pad - est_width(&site.lines[0], site.px, false) - 24.0;
    }

    let x0 = cx + r + 22.0;
    let room = right - x0;
    // A long title may take two lines, and then the subtitle has to go.
    let (title, sub) = match fit(&t.title, room, 27.0, 18.0, 1, true) {
        Some(one_line) => (Some(one_line), fit(&t.subtitle, room, 15.5, 12.0, 1, false)),
        None => (fit_or_cut(&t.title, room, 21.0, 15.0, 2, true), None),
    };
    match (&title, &sub) {
        (Some(ti), _) if ti.lines.len() == 2 => {
            let lh = ti.px * 1.2;
            let base = h / 2.0 - lh / 2.0 + ti.px * 0.36;
            text_el(s, x0, base, ti.px, true, "#fff", "start", &ti.lines[0]);
            text_el(s, x0, base + lh, ti.px, true, "#fff", "start", &ti.lines[1]);
        }
        (Some(ti), Some(su)) => {
            let block = ti.px * 0.74 + 10.0 + su.px * 0.74;
            let base = (h - block) / 2.0 + ti.px * 0.74;
            text_el(s, x0, base, ti.px, true, "#fff", "start", &ti.lines[0]);
            text_el(
                s,
                x0,
                base + 10.0 + su.px * 0.74 + 2.0,
                su.px,
                false,
                SOFT,
                "start",
                &su.lines[0],
            );
        }
        (Some(one), None) | (None, Some(one)) => {
            let bold = title.is_some();
            let fill = if bold { "#fff" } else { SOFT };
            text_el(
                s,
                x0,
                h / 2.0 + one.px * 0.36,
                one.px,
                bold,
                fill,
                "start",
                &one.lines[0],
            );
        }
        (None, None) => {}
    }
}

/// 320 × 50: small gauge, title with the site under it, button; no subtitle.
fn mobile(s: &mut String, t: &BannerText, w: f64, h: f64) {
    let pad = 10.0;
    let r = 15.0;
    let cx = pad + r + 2.0;
    gauge(s, cx, h / 2.0 + r * 0.25, r);

    let mut right = w - pad;
    if let Some(cta) = fit_or_cut(&t.call_to_action, 104.0, 14.5, 11.0, 1, true) {
        let bw = (est_width(&cta.lines[0], cta.px, true) + 22.0).clamp(72.0, 126.0);
        let bh = 30.0;
        button(s, w - pad - bw, (h - bh) / 2.0, bw, bh, &cta);
        right = w - pad - bw - 10.0;
    }
    let x0 = cx + r + 11.0;
    let room = right - x0;
    // A long title may take two lines, and then the site has to go.
    let (title, site) = match fit(&t.title, room, 17.0, 13.0, 1, true) {
        Some(one_line) => (Some(one_line), fit(&t.site, room, 11.0, 9.0, 1, false)),
        None => (fit_or_cut(&t.title, room, 13.0, 11.0, 2, true), None),
    };
    match (&title, &site) {
        (Some(ti), _) if ti.lines.len() == 2 => {
            let lh = ti.px * 1.15;
            let base = h / 2.0 - lh / 2.0 + ti.px * 0.36;
            text_el(s, x0, base, ti.px, true, "#fff", "start", &ti.lines[0]);
            text_el(s, x0, base + lh, ti.px, true, "#fff", "start", &ti.lines[1]);
        }
        (Some(ti), Some(si)) => {
            text_el(s, x0, 23.0, ti.px, true, "#fff", "start", &ti.lines[0]);
            text_el(s, x0, 39.0, si.px, false, SOFT, "start", &si.lines[0]);
        }
        (Some(one), None) | (None, Some(one)) => {
            let bold = title.is_some();
            let fill = if bold { "#fff" } else { SOFT };
            text_el(
                s,
                x0,
                h / 2.0 + one.px * 0.36,
                one.px,
                bold,
                fill,
                "start",
                &one.lines[0],
            );
        }
        (None, None) => {}
    }
}

/// Parameters of the centred, stacked layout of the taller sizes.
struct Stack {
    pad: f64,
    gauge_r: f64,
    title: (f64, f64, usize),
    subtitle: (f64, f64, usize),
    cta: (f64, f64),
    button_h: f64,
    full_width_button: bool,
    max_gap: f64,
}

const MEDIUM_RECTANGLE: Stack = Stack {
    pad: 18.0,
    gauge_r: 28.0,
    title: (25.0, 16.0, 2),
    subtitle: (14.5, 12.0, 2),
    cta: (16.0, 12.0),
    button_h: 38.0,
    full_width_button: false,
    max_gap: 18.0,
};

const SKYSCRAPER: Stack = Stack {
    pad: 14.0,
    gauge_r: 52.0,
    title: (26.0, 15.0, 4),
    subtitle: (16.0, 12.0, 5),
    cta: (17.0, 12.0),
    button_h: 46.0,
    full_width_button: true,
    max_gap: 36.0,
};

/// What goes into a stacked banner, and how big.
struct Plan {
    r: f64,
    title: Option<Fitted>,
    sub: Option<Fitted>,
    cta: Option<Fitted>,
    button_h: f64,
    /// Heights of the items present, top to bottom.
    heights: Vec<f64>,
}

/// Smallest gap between stacked items.
const MIN_GAP: f64 = 12.0;

impl Plan {
    /// Fits the text at scale `k` (1 = full size), with or without the
    /// subtitle; `None` if the result is taller than `avail` (unless
    /// `force`).
    fn make(
        t: &BannerText,
        p: &Stack,
        room: f64,
        avail: f64,
        k: f64,
        with_sub: bool,
        force: bool,
    ) -> Option<Plan> {
        let r = p.gauge_r * k;
        let title = fit_or_cut(
            &t.title,
            room,
            (p.title.0 * k).max(p.title.1),
            p.title.1,
            p.title.2,
            true,
        );
        let sub = if with_sub {
            fit(
                &t.subtitle,
                room,
                p.subtitle.0,
                p.subtitle.1,
                p.subtitle.2,
                false,
            )
        } else {
            None
        };
        let cta = fit_or_cut(&t.call_to_action, room - 16.0, p.cta.0, p.cta.1, 1, true);
        let button_h = p.button_h * k.max(0.9);
        let lines = |f: &Fitted, lh: f64| f.lines.len() as f64 * f.px * lh;
        let heights: Vec<f64> = [
            Some(r * 1.67),
            title.as_ref().map(|f| lines(f, 1.18)),
            sub.as_ref().map(|f| lines(f, 1.38)),
            cta.as_ref().map(|_| button_h),
        ]
        .into_iter()
        .flatten()
        .collect();
        let plan = Plan {
            r,
            title,
            sub,
            cta,
            button_h,
            heights,
        };
        (force || plan.min_height() <= avail).then_some(plan)
    }

    fn min_height(&self) -> f64 {
        self.heights.iter().sum::<f64>() + MIN_GAP * self.heights.len().saturating_sub(1) as f64
    }
}

/// A host name in one line, or broken after a dot into two.
fn fit_host(host: &str, room: f64, max: f64, min: f64) -> Option<Fitted> {
    if let Some(f) = fit(host, room, max, min, 1, false) {
        return Some(f);
    }
    let host = host.trim();
    let (a, b) = host
        .match_indices('.')
        .map(|(i, _)| (&host[..=i], &host[i + 1..]))
        .filter(|(_, b)| !b.is_empty())
        .min_by_key(|(a, b)| a.chars().count().max(b.chars().count()))?;
    let longer = if a.chars().count() >= b.chars().count() {
        a
    } else {
        b
    };
    let mut px = max;
    while px >= min {
        if est_width(longer, px, false) <= room {
            return Some(Fitted {
                px,
                lines: vec![a.to_string(), b.to_string()],
            });
        }
        px -= 0.5;
    }
    None
}

/// Gauge, title, subtitle and button centred one under another, the site
/// pinned to the bottom edge. Tries full size, then a more compact size,
/// before it gives up the subtitle.
fn stacked(s: &mut String, t: &BannerText, w: f64, h: f64, p: &Stack) {
    let room = w - 2.0 * p.pad;
    let mut bottom = h - p.pad;
    if let Some(si) = fit_host(&t.site, room, 11.5, 9.0) {
        let lh = si.px * 1.3;
        let last = h - p.pad * 0.8;
        let first = last - (si.lines.len() - 1) as f64 * lh;
        for (i, line) in si.lines.iter().enumerate() {
            text_el(
                s,
                w / 2.0,
                first + i as f64 * lh,
                si.px,
                false,
                SOFT,
                "middle",
                line,
            );
        }
        bottom = first - si.px - 10.0;
    }
    let avail = bottom - p.pad;
    let plan = [(1.0, true), (0.82, true), (1.0, false), (0.82, false)]
        .into_iter()
        .find_map(|(k, with_sub)| Plan::make(t, p, room, avail, k, with_sub, false))
        .or_else(|| Plan::make(t, p, room, avail, 0.82, false, true))
        .expect("a forced plan always exists");

    let n = plan.heights.len();
    let extra = (avail - plan.min_height()).max(0.0);
    let gap_extra = if n > 1 {
        (extra * 0.6 / (n - 1) as f64).clamp(0.0, p.max_gap - MIN_GAP)
    } else {
        0.0
    };
    let gap = MIN_GAP + gap_extra;
    let used = plan.min_height() + gap_extra * (n - 1) as f64;
    let mut y = p.pad + (avail - used).max(0.0) / 2.0;

    let r = plan.r;
    gauge(s, w / 2.0, y + r + r * 0.085, r);
    y += r * 1.67 + gap;
    if let Some(ti) = &plan.title {
        for line in &ti.lines {
            text_el(
                s,
                w / 2.0,
                y + ti.px * 0.95,
                ti.px,
                true,
                "#fff",
                "middle",
                line,
            );
            y += ti.px * 1.18;
        }
        y += gap;
    }
    if let Some(su) = &plan.sub {
        for line in &su.lines {
            text_el(
                s,
                w / 2.0,
                y + su.px * 1.05,
                su.px,
                false,
                SOFT,
                "middle",
                line,
            );
            y += su.px * 1.38;
        }
        y += gap;
    }
    if let Some(cta) = &plan.cta {
        let bw = if p.full_width_button {
            room
        } else {
            (est_width(&cta.lines[0], cta.px, true) + 56.0).clamp(140.0, room)
        };
        button(s, (w - bw) / 2.0, y, bw, plan.button_h, cta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::assert_balanced;

    fn vi() -> BannerText {
        BannerText {
            title: "Đo tốc độ Internet".into(),
            subtitle: "Kiểm tra mạng của bạn — miễn phí, 30 giây".into(),
            call_to_action: "Đo ngay".into(),
            site: "speedtest.example.vn".into(),
        }
    }

    fn root_attr<'a>(svg: &'a str, name: &str) -> &'a str {
        let root = &svg[..svg.find('>').unwrap()];
        let key = format!(" {name}=\"");
        let at = root.find(&key).unwrap() + key.len();
        &root[at..at + root[at..].find('"').unwrap()]
    }

    /// Every `<text>` with its x, y, size, anchor and content.
    fn texts(svg: &str) -> Vec<(f64, f64, f64, String, String)> {
        svg.split("<text ")
            .skip(1)
            .map(|t| {
                let get = |k: &str| {
                    let key = format!("{k}=\"");
                    let at = t.find(&key).unwrap() + key.len();
                    t[at..at + t[at..].find('"').unwrap()].to_string()
                };
                let body = &t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()];
                (
                    get("x").parse().unwrap(),
                    get("y").parse().unwrap(),
                    get("font-size").parse().unwrap(),
                    get("text-anchor"),
                    body.to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn slugs_round_trip() {
        for size in BannerSize::ALL {
            assert_eq!(BannerSize::from_slug(size.slug()), Some(size));
            let (w, h) = size.dimensions();
            assert_eq!(size.slug(), format!("{w}x{h}"));
            assert_eq!(size.to_string(), size.slug());
        }
        assert_eq!(BannerSize::from_slug("728X90"), None);
        assert_eq!(BannerSize::from_slug(""), None);
    }

    #[test]
    fn every_size_is_well_formed_and_sized() {
        for size in BannerSize::ALL {
            let svg = banner_svg(size, &vi());
            assert_balanced(&svg);
            let (w, h) = size.dimensions();
            assert_eq!(root_attr(&svg, "width"), w.to_string());
            assert_eq!(root_attr(&svg, "height"), h.to_string());
            assert_eq!(root_attr(&svg, "viewBox"), format!("0 0 {w} {h}"));
            assert_eq!(root_attr(&svg, "xmlns"), "http://www.w3.org/2000/svg");
            assert!(
                !svg.contains("<a") && !svg.contains("href"),
                "no links inside"
            );
            assert!(svg.contains(">Đo ngay</text>"), "{size}");
            assert!(svg.contains("class=\"gauge\""));
            assert!(!svg.contains("NaN"));
        }
    }

    #[test]
    fn text_stays_inside() {
        let long = BannerText {
            title: "Kiểm tra tốc độ Internet cố định và di động của bạn ngay hôm nay".into(),
            subtitle: "Một phép đo độc lập của cơ quan quản lý — miễn phí, không quảng cáo, chỉ mất khoảng 30 giây".into(),
            call_to_action: "Bắt đầu đo tốc độ ngay bây giờ".into(),
            site: "speedtest.sotttt.tinh-example.gov.vn".into(),
        };
        for t in [vi(), long] {
            for size in BannerSize::ALL {
                let svg = banner_svg(size, &t);
                assert_balanced(&svg);
                let (w, h) = size.dimensions();
                for (x, y, px, anchor, body) in texts(&svg) {
                    let tw = est_width(&body, px, true);
                    let (x0, x1) = match anchor.as_str() {
                        "start" => (x, x + tw),
                        "middle" => (x - tw / 2.0, x + tw / 2.0),
                        _ => (x - tw, x),
                    };
                    // Bold estimate for all text: a margin for regular text.
                    assert!(
                        x0 >= 4.0 && x1 <= f64::from(w) - 4.0,
                        "{size} {body:?} {x0}..{x1}"
                    );
                    assert!(
                        y - px >= 0.0 && y + px * 0.25 <= f64::from(h),
                        "{size} {body:?} y={y}"
                    );
                }
            }
        }
    }

    #[test]
    fn subtitle_only_where_it_fits() {
        let has_sub = |size| {
            texts(&banner_svg(size, &vi()))
                .iter()
                .any(|t| t.4.contains("Kiểm tra"))
        };
        assert!(has_sub(BannerSize::Leaderboard));
        assert!(has_sub(BannerSize::MediumRectangle));
        assert!(has_sub(BannerSize::Skyscraper));
        assert!(!has_sub(BannerSize::MobileBanner));
    }

    #[test]
    fn escapes_text() {
        let evil = BannerText {
            title: "<script>alert('x')</script>".into(),
            subtitle: "a & b \"c\"".into(),
            call_to_action: "<b>".into(),
            site: "x.vn'><script>".into(),
        };
        for size in BannerSize::ALL {
            let svg = banner_svg(size, &evil);
            assert_balanced(&svg);
            assert!(!svg.contains("<script") && !svg.contains("<b>"), "{size}");
            assert!(svg.contains("&lt;script&gt;"), "{size}");
        }
    }

    #[test]
    fn empty_text_still_draws() {
        for size in BannerSize::ALL {
            let svg = banner_svg(size, &BannerText::default());
            assert_balanced(&svg);
            assert!(!svg.contains("<text"));
            assert!(svg.contains("class=\"gauge\""));
        }
    }

    #[test]
    fn fitting_wraps_and_cuts() {
        let f = fit(
            "Kiểm tra mạng của bạn — miễn phí, 30 giây",
            132.0,
            16.0,
            12.0,
            5,
            false,
        )
        .unwrap();
        assert!(f.lines.len() > 1);
        assert!(f.lines.iter().all(|l| !l.starts_with('—')));
        assert!(f.lines.iter().all(|l| est_width(l, f.px, false) <= 132.0));
        let cut = fit_or_cut(&"rất dài ".repeat(30), 100.0, 14.0, 12.0, 2, true).unwrap();
        assert_eq!(cut.lines.len(), 2);
        assert!(cut.lines[1].ends_with('…'));
        assert!(cut.lines.iter().all(|l| est_width(l, 12.0, true) <= 100.0));
        let word = fit_or_cut(
            "supercalifragilisticexpialidocious",
            60.0,
            14.0,
            12.0,
            1,
            true,
        )
        .unwrap();
        assert!(word.lines[0].ends_with('…') && est_width(&word.lines[0], 12.0, true) <= 60.0);
    }
}
