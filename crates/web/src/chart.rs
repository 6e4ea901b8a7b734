//! Trend charts: a monthly (or any periodic) series of medians with their
//! confidence intervals, drawn as an accessible, responsive inline SVG line
//! chart for the public statistics pages.
//!
//! The chart only draws what it is given: the caller decides which periods
//! have too few samples and passes the finished numbers and all visible
//! text (already translated).

use std::fmt::Write as _;

/// One period of a trend series.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendPoint {
    /// Period label shown on the x axis and in the tooltip, e.g. `"2026-07"`.
    pub label: String,
    /// The median (or other headline value); `None` leaves a gap.
    pub value: Option<f64>,
    /// Lower end of the confidence interval, if known.
    pub low: Option<f64>,
    /// Upper end of the confidence interval, if known.
    pub high: Option<f64>,
    /// Too few samples for the value to be reliable: the dot is drawn hollow
    /// and the line to and from it dashed.
    pub insufficient: bool,
}

/// All text the chart shows or announces, already translated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChartText {
    /// Heading drawn at the top left of the chart, e.g. `"Tốc độ tải xuống"`.
    pub title: String,
    /// Unit of the values, e.g. `"Mbit/s"`; shown above the y axis and in
    /// every tooltip.
    pub unit: String,
    /// Accessible name of the whole chart (`aria-label`), ideally a one
    /// sentence summary of what it shows.
    pub aria_label: String,
    /// Legend and tooltip text for periods with too few samples, e.g.
    /// `"Chưa đủ mẫu"`.
    pub insufficient: String,
    /// Shown in the middle of the chart when there is nothing to plot,
    /// e.g. `"Chưa có dữ liệu"`.
    pub no_data: String,
}

const W: f64 = 600.0;
const H: f64 = 220.0;
const TOP: f64 = 46.0;
const BOTTOM: f64 = 188.0;
const RIGHT: f64 = 592.0;
const FONT: &str =
    "system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans','Helvetica Neue',Arial,sans-serif";
const INK: &str = "#1f2933";
const MUTED: &str = "#52606d";
const GRID: &str = "#e4e7eb";
const AXIS: &str = "#9aa5b1";
const LINE: &str = "#1565c0";
/// Most x labels drawn before they are thinned out.
const MAX_X_LABELS: usize = 12;

/// Renders a trend chart as an inline SVG element (viewBox 600 × 220,
/// `width="100%"`, so it scales with its container).
///
/// The median is a line with a dot per period, the confidence interval a
/// light band behind it; `None` values leave gaps, and periods marked
/// [`TrendPoint::insufficient`] get a hollow dot, dashed line segments and a
/// legend entry. Each dot carries a `<title>` tooltip such as
/// `2026-07: 123.4 Mbit/s (CI 110–130)` and `data-label`/`data-value`
/// attributes. The y axis starts at zero for non-negative data and gets
/// 4–5 round ticks; x labels are thinned to at most 12. With nothing to
/// plot it draws the empty frame and [`ChartText::no_data`]. Non-finite
/// numbers count as missing; all text is escaped.
pub fn trend_chart(points: &[TrendPoint], text: &ChartText) -> String {
    let finite = |v: Option<f64>| v.filter(|v| v.is_finite());
    let all: Vec<f64> = points
        .iter()
        .flat_map(|p| [finite(p.value), finite(p.low), finite(p.high)])
        .flatten()
        .collect();

    let mut s = String::with_capacity(4096 + points.len() * 300);
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"100%\" \
         role=\"img\" aria-label=\"{}\" font-family=\"{FONT}\" class=\"trend-chart\">\
         <title>{}</title>",
        crate::escape(&text.aria_label),
        crate::escape(&text.title),
    );
    let title_px = fit_font(&text.title, 14.0, 11.0, RIGHT - 8.0);
    let _ = write!(
        s,
        "<text x=\"8\" y=\"18\" font-size=\"{title_px}\" font-weight=\"600\" fill=\"{INK}\">{}</text>",
        crate::escape(&text.title)
    );

    // Y scale.
    let (y0, step, intervals) = match (
        all.iter().copied().reduce(f64::min),
        all.iter().copied().reduce(f64::max),
    ) {
        (Some(lo), Some(hi)) => nice_ticks(lo.min(0.0), hi),
        _ => (0.0, 1.0, 4),
    };
    let y1 = y0 + step * intervals as f64;
    let decimals = decimals_for(step);
    let tick_labels: Vec<String> = (0..=intervals)
        .map(|i| format!("{:.*}", decimals, y0 + step * i as f64))
        .collect();
    let has_data = !all.is_empty();
    let widest = tick_labels.iter().map(|l| l.len()).max().unwrap_or(1);
    let left = if has_data {
        (14.0 + widest as f64 * 6.2).max(36.0).round()
    } else {
        12.0
    };
    let plot_w = RIGHT - left;
    let y_of = |v: f64| BOTTOM - (v - y0) / (y1 - y0) * (BOTTOM - TOP);

    // Unit above the y axis, legend on the same row at the right.
    if has_data && !text.unit.is_empty() {
        let _ = write!(
            s,
            "<text x=\"8\" y=\"35\" font-size=\"11\" fill=\"{MUTED}\">{}</text>",
            crate::escape(&text.unit)
        );
    }
    if has_data
        && points
            .iter()
            .any(|p| p.insufficient && finite(p.value).is_some())
    {
        // Generous width so that wide fonts do not run into the symbol.
        let tw = est_width(&text.insufficient, 11.0) * 1.15;
        let x = RIGHT - tw - 34.0;
        let _ = write!(
            s,
            "<g class=\"legend\"><line x1=\"{x:.1}\" y1=\"31\" x2=\"{:.1}\" y2=\"31\" stroke=\"{LINE}\" \
             stroke-width=\"1.5\" stroke-dasharray=\"3 3\"/><circle cx=\"{:.1}\" cy=\"31\" r=\"3.5\" \
             fill=\"#fff\" stroke=\"{LINE}\" stroke-width=\"1.5\"/><text x=\"{RIGHT}\" y=\"35\" \
             font-size=\"11\" fill=\"{MUTED}\" text-anchor=\"end\">{}</text></g>",
            x + 22.0,
            x + 11.0,
            crate::escape(&text.insufficient)
        );
    }

    // Grid and y tick labels.
    s.push_str("<g class=\"grid\">");
    if has_data {
        for (i, label) in tick_labels.iter().enumerate() {
            let y = y_of(y0 + step * i as f64);
            let stroke = if i == 0 { AXIS } else { GRID };
            let _ = write!(
                s,
                "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{RIGHT}\" y2=\"{y:.1}\" stroke=\"{stroke}\" \
                 shape-rendering=\"crispEdges\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" \
                 fill=\"{MUTED}\" text-anchor=\"end\">{label}</text>",
                left - 6.0,
                y + 3.5
            );
        }
    } else {
        let _ = write!(
            s,
            "<rect x=\"{left}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{}\" fill=\"#f7f9fb\" \
             stroke=\"{GRID}\"/><line x1=\"{left}\" y1=\"{BOTTOM}\" x2=\"{RIGHT}\" y2=\"{BOTTOM}\" \
             stroke=\"{AXIS}\" shape-rendering=\"crispEdges\"/>",
            BOTTOM - TOP
        );
    }
    s.push_str("</g>");

    // X positions: the centre of equal slots, so the first and last dots
    // stay clear of the edges.
    let n = points.len();
    let slot = if n > 0 { plot_w / n as f64 } else { plot_w };
    let x_of = |i: usize| left + (i as f64 + 0.5) * slot;

    // X labels, thinned so that at most MAX_X_LABELS show, always keeping
    // the latest period.
    if n > 0 {
        let every = if n <= MAX_X_LABELS {
            1
        } else {
            let widest = points
                .iter()
                .map(|p| est_width(&p.label, 10.0))
                .fold(0.0, f64::max);
            let need = n
                .div_ceil(MAX_X_LABELS)
                .max(((widest + 8.0) / slot).ceil() as usize);
            // Steps that divide a year read best for monthly series.
            [2, 3, 4, 6, 12, 24, 36, 48, 60, 120]
                .into_iter()
                .find(|&k| k >= need)
                .unwrap_or(need)
        };
        s.push_str("<g class=\"x-labels\">");
        let mut shown: Vec<usize> = (0..n).rev().step_by(every).collect();
        shown.reverse();
        for i in shown {
            let p = &points[i];
            let room = slot * every as f64 - 4.0;
            let px = fit_font(&p.label, 11.0, 8.0, room);
            // Keep the outermost labels inside the view box.
            let half = est_width(&p.label, px) / 2.0;
            let x = x_of(i).min(W - 2.0 - half).max(2.0 + half);
            let _ = write!(
                s,
                "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"{px}\" fill=\"{MUTED}\" \
                 text-anchor=\"middle\">{}</text>",
                BOTTOM + 16.0,
                crate::escape(&p.label)
            );
        }
        s.push_str("</g>");
    }

    if !has_data {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\" fill=\"{MUTED}\" text-anchor=\"middle\" \
             class=\"no-data\">{}</text></svg>",
            left + plot_w / 2.0,
            (TOP + BOTTOM) / 2.0 + 4.0,
            crate::escape(&text.no_data)
        );
        return s;
    }

    // Confidence band: one polygon per run of periods with both ends known;
    // a lone period gets a short vertical bar instead.
    let ci = |p: &TrendPoint| match (finite(p.low), finite(p.high)) {
        (Some(l), Some(h)) => Some((l.min(h), l.max(h))),
        _ => None,
    };
    s.push_str("<g class=\"ci\" fill=\"#1565c0\" fill-opacity=\"0.15\">");
    let mut i = 0;
    while i < n {
        if ci(&points[i]).is_none() {
            i += 1;
            continue;
        }
        let start = i;
        while i < n && ci(&points[i]).is_some() {
            i += 1;
        }
        if i - start == 1 {
            let (l, h) = ci(&points[start]).expect("checked above");
            let bw = (slot * 0.5).clamp(2.0, 10.0);
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" rx=\"1\"/>",
                x_of(start) - bw / 2.0,
                y_of(h),
                (y_of(l) - y_of(h)).max(0.5)
            );
            continue;
        }
        let run: Vec<(usize, (f64, f64))> = (start..i)
            .map(|j| (j, ci(&points[j]).expect("checked above")))
            .collect();
        let mut d = String::new();
        for &(j, (_, h)) in &run {
            let pen = if j == start { 'M' } else { 'L' };
            let _ = write!(d, "{pen}{:.1} {:.1}", x_of(j), y_of(h));
        }
        for &(j, (l, _)) in run.iter().rev() {
            let _ = write!(d, "L{:.1} {:.1}", x_of(j), y_of(l));
        }
        let _ = write!(s, "<path d=\"{d}Z\"/>");
    }
    s.push_str("</g>");

    // The line: solid between two sufficient periods, dashed otherwise,
    // broken wherever a value is missing.
    let mut solid = String::new();
    let mut dashed = String::new();
    let mut pen_at: Option<usize> = None;
    for i in 1..n {
        let (Some(a), Some(b)) = (finite(points[i - 1].value), finite(points[i].value)) else {
            continue;
        };
        let (xa, ya, xb, yb) = (x_of(i - 1), y_of(a), x_of(i), y_of(b));
        if points[i - 1].insufficient || points[i].insufficient {
            let _ = write!(dashed, "M{xa:.1} {ya:.1}L{xb:.1} {yb:.1}");
        } else {
            if pen_at != Some(i - 1) {
                let _ = write!(solid, "M{xa:.1} {ya:.1}");
            }
            let _ = write!(solid, "L{xb:.1} {yb:.1}");
            pen_at = Some(i);
        }
    }
    s.push_str("<g class=\"line\" fill=\"none\" stroke=\"#1565c0\" stroke-width=\"2\" stroke-linejoin=\"round\" stroke-linecap=\"round\">");
    if !solid.is_empty() {
        let _ = write!(s, "<path d=\"{solid}\"/>");
    }
    if !dashed.is_empty() {
        let _ = write!(
            s,
            "<path d=\"{dashed}\" stroke-dasharray=\"4 4\" stroke-opacity=\"0.8\"/>"
        );
    }
    s.push_str("</g>");

    // Dots, each with its tooltip.
    let r = if n <= 24 {
        3.5
    } else if n <= 60 {
        2.5
    } else {
        1.8
    };
    let unit = if text.unit.is_empty() {
        String::new()
    } else {
        format!(" {}", text.unit)
    };
    s.push_str("<g class=\"dots\">");
    for (i, p) in points.iter().enumerate() {
        let Some(v) = finite(p.value) else { continue };
        let mut tip = format!("{}: {}{unit}", p.label, human(v));
        if let Some((l, h)) = ci(p) {
            let _ = write!(tip, " (CI {}–{})", human(l), human(h));
        }
        if p.insufficient && !text.insufficient.is_empty() {
            let _ = write!(tip, " — {}", text.insufficient);
        }
        // Sparse dots get a white halo; dense ones none, lest the line
        // look dotted.
        let (fill, stroke, width, extra) = match (p.insufficient, n <= 24) {
            (true, _) => ("#fff", LINE, 1.5, " data-insufficient=\"true\""),
            (false, true) => (LINE, "#fff", 1.5, ""),
            (false, false) => (LINE, "none", 0.0, ""),
        };
        let _ = write!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{r}\" fill=\"{fill}\" stroke=\"{stroke}\" \
             stroke-width=\"{width}\" data-label=\"{}\" data-value=\"{v}\"{extra}><title>{}</title></circle>",
            x_of(i),
            y_of(v),
            crate::escape(&p.label),
            crate::escape(&tip),
        );
    }
    s.push_str("</g></svg>");
    s
}

/// Chooses round y ticks covering `lo..=hi`: returns the first tick, the
/// step and the number of intervals (3 or 4, so 4–5 ticks).
fn nice_ticks(lo: f64, hi: f64) -> (f64, f64, usize) {
    let (lo, hi) = if hi - lo < 1e-9 * hi.abs().max(1.0) {
        if lo == 0.0 {
            (0.0, 1.0)
        } else {
            (lo - lo.abs() * 0.1, hi + hi.abs() * 0.1)
        }
    } else {
        (lo, hi)
    };
    let magnitude = 10f64.powf(((hi - lo) / 4.0).log10().floor());
    let mut fallback = None;
    for scale in [0.1, 1.0, 10.0, 100.0] {
        for mantissa in [1.0, 2.0, 2.5, 5.0] {
            let step = magnitude * scale * mantissa;
            let first = (lo / step + 1e-9).floor();
            let last = (hi / step - 1e-9).ceil();
            let intervals = (last - first).max(1.0) as usize;
            if (3..=4).contains(&intervals) {
                return (first * step, step, intervals);
            }
            if intervals < 3 && fallback.is_none() {
                fallback = Some((first * step, step, intervals));
            }
        }
    }
    fallback.unwrap_or((lo, (hi - lo) / 4.0, 4))
}

/// Decimal places needed to print multiples of `step` exactly.
fn decimals_for(step: f64) -> usize {
    (0..6)
        .find(|&d| {
            let scaled = step * 10f64.powi(d as i32);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.abs().max(1.0)
        })
        .unwrap_or(6)
}

/// A value for people: one decimal (two below 10), trailing zeros dropped.
fn human(v: f64) -> String {
    let decimals = if v.abs() < 10.0 { 2 } else { 1 };
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" {
        "0".to_string()
    } else {
        s
    }
}

/// Rough rendered width of `s` at `px`, with the usual 0.55 em average
/// glyph width (combining marks take no room).
fn est_width(s: &str, px: f64) -> f64 {
    let glyphs = s
        .chars()
        .filter(|c| !('\u{300}'..='\u{36f}').contains(c))
        .count();
    glyphs as f64 * 0.55 * px
}

/// The largest font size from `max` down to `min` at which `s` fits `room`.
fn fit_font(s: &str, max: f64, min: f64, room: f64) -> f64 {
    let mut px = max;
    while px > min && est_width(s, px) > room {
        px -= 0.5;
    }
    px
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::assert_balanced;

    fn text() -> ChartText {
        ChartText {
            title: "Tốc độ tải xuống trung vị".into(),
            unit: "Mbit/s".into(),
            aria_label: "Tốc độ tải xuống trung vị theo tháng".into(),
            insufficient: "Chưa đủ mẫu".into(),
            no_data: "Chưa có dữ liệu".into(),
        }
    }

    fn pt(label: &str, value: Option<f64>, insufficient: bool) -> TrendPoint {
        TrendPoint {
            label: label.into(),
            value,
            low: value.map(|v| v * 0.9),
            high: value.map(|v| v * 1.08),
            insufficient,
        }
    }

    fn series(n: usize) -> Vec<TrendPoint> {
        (0..n)
            .map(|i| {
                let label = format!("{}-{:02}", 2024 + i / 12, i % 12 + 1);
                let v = 80.0 + 3.7 * i as f64 + (i as f64 * 1.3).sin() * 6.0;
                pt(&label, Some(v), i % 7 == 3)
            })
            .collect()
    }

    fn dots(svg: &str) -> Vec<(String, f64, f64)> {
        svg.split("<circle ")
            .skip(1)
            .filter(|c| c.contains("data-label"))
            .map(|c| {
                let get = |k: &str| {
                    let key = format!("{k}=\"");
                    let at = c.find(&key).unwrap() + key.len();
                    c[at..at + c[at..].find('"').unwrap()].to_string()
                };
                (
                    get("data-label"),
                    get("data-value").parse().unwrap(),
                    get("cy").parse().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn draws_every_value_with_tooltip() {
        let pts = vec![
            TrendPoint {
                label: "2026-07".into(),
                value: Some(123.4),
                low: Some(110.0),
                high: Some(130.0),
                insufficient: false,
            },
            pt("2026-08", Some(131.0), false),
            pt("2026-09", None, false),
            TrendPoint {
                label: "2026-10".into(),
                value: Some(90.5),
                low: Some(70.3),
                high: Some(104.0),
                insufficient: true,
            },
        ];
        let svg = trend_chart(&pts, &text());
        assert_balanced(&svg);
        assert!(svg.starts_with(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 600 220\" width=\"100%\""
        ));
        assert!(svg.contains("role=\"img\" aria-label=\"Tốc độ tải xuống trung vị theo tháng\""));
        assert!(svg.contains("<title>2026-07: 123.4 Mbit/s (CI 110–130)</title>"));
        assert!(svg.contains("2026-10: 90.5 Mbit/s (CI 70.3–104) — Chưa đủ mẫu</title>"));
        let d = dots(&svg);
        assert_eq!(d.len(), 3);
        assert_eq!((d[0].0.as_str(), d[0].1), ("2026-07", 123.4));
        assert_eq!(d[2].0, "2026-10");
        // Higher values sit higher up.
        assert!(d[1].2 < d[0].2 && d[0].2 < d[2].2);
        assert_eq!(svg.matches("data-insufficient").count(), 1);
        assert!(
            !svg.contains("stroke-dasharray=\"4 4\""),
            "2026-09 is a gap, so no dashes"
        );
        assert!(svg.contains("class=\"legend\""));
        for label in ["2026-07", "2026-08", "2026-09", "2026-10"] {
            assert!(svg.contains(&format!(">{label}</text>")));
        }
    }

    #[test]
    fn gaps_break_the_line() {
        let pts = vec![
            pt("a", Some(10.0), false),
            pt("b", Some(12.0), false),
            pt("c", None, false),
            pt("d", Some(11.0), false),
            pt("e", Some(13.0), false),
        ];
        let svg = trend_chart(&pts, &text());
        let line = svg.split("class=\"line\"").nth(1).unwrap();
        let d = line
            .split("d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert_eq!(d.matches('L').count(), 2, "{d}");
        assert!(!svg.contains("stroke-dasharray=\"4 4\""));
        assert!(!svg.contains("class=\"legend\""));
    }

    #[test]
    fn y_axis_has_four_or_five_round_ticks() {
        for (lo, hi) in [
            (0.0, 1.0),
            (0.0, 7.3),
            (0.0, 123.4),
            (0.0, 999.0),
            (0.0, 1000.0),
            (0.0, 0.042),
            (0.0, 31.0),
            (-12.0, 40.0),
            (0.0, 251.0),
            (0.0, 401.0),
            (0.0, 49.0),
            (0.0, 3.01),
            (0.0, 15.0),
        ] {
            let (first, step, intervals) = nice_ticks(lo, hi);
            assert!((3..=4).contains(&intervals), "{lo}..{hi}: {intervals}");
            assert!(
                first <= lo + 1e-9 && first + step * intervals as f64 >= hi - 1e-9,
                "{lo}..{hi}"
            );
            let mantissa = step / 10f64.powf(step.log10().floor());
            assert!(
                [1.0, 2.0, 2.5, 5.0]
                    .iter()
                    .any(|m| (m - mantissa).abs() < 1e-9),
                "{step}"
            );
        }
        assert_eq!(nice_ticks(0.0, 123.4), (0.0, 50.0, 3));
        let svg = trend_chart(&series(5), &text());
        let ticks = svg
            .split("class=\"grid\"")
            .nth(1)
            .unwrap()
            .split("</g>")
            .next()
            .unwrap();
        assert!((4..=5).contains(&ticks.matches("<line").count()));
    }

    #[test]
    fn many_points_thin_the_labels() {
        for n in [1, 12, 13, 24, 36, 100] {
            let svg = trend_chart(&series(n), &text());
            assert_balanced(&svg);
            let xl = svg
                .split("class=\"x-labels\"")
                .nth(1)
                .unwrap()
                .split("</g>")
                .next()
                .unwrap();
            let shown = xl.matches("<text").count();
            assert!(shown <= 12 && shown >= n.min(12) / 2, "{n}: {shown}");
            if n <= 12 {
                assert_eq!(shown, n);
            }
            let last = &series(n)[n - 1].label;
            assert!(xl.contains(&format!(">{last}</text>")), "latest label kept");
            assert_eq!(dots(&svg).len(), n);
        }
    }

    #[test]
    fn no_data_draws_the_frame() {
        let empty = trend_chart(&[], &text());
        assert_balanced(&empty);
        assert!(empty.contains(">Chưa có dữ liệu</text>"));
        let nones = vec![
            pt("2026-01", None, true),
            pt("2026-02", Some(f64::NAN), false),
        ];
        let svg = trend_chart(&nones, &text());
        assert_balanced(&svg);
        assert!(svg.contains("class=\"no-data\""));
        assert!(svg.contains(">2026-01</text>"));
        assert!(dots(&svg).is_empty());
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn escapes_all_text() {
        let evil = "<script>alert('x')</script> & \"q\"";
        let t = ChartText {
            title: evil.into(),
            unit: evil.into(),
            aria_label: evil.into(),
            insufficient: evil.into(),
            no_data: evil.into(),
        };
        let mut pts = vec![pt(evil, Some(5.0), true)];
        for svg in [trend_chart(&pts, &t), trend_chart(&[], &t)] {
            assert_balanced(&svg);
            assert!(!svg.contains("<script") && !svg.contains("'x'"));
            assert!(
                svg.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;")
            );
        }
        pts[0].value = None;
        assert!(!trend_chart(&pts, &t).contains("<script"));
    }

    #[test]
    fn single_and_constant_values() {
        let one = trend_chart(&[pt("2026-07", Some(50.0), false)], &text());
        assert_balanced(&one);
        assert_eq!(dots(&one).len(), 1);
        let zeros = trend_chart(
            &[
                TrendPoint {
                    label: "a".into(),
                    value: Some(0.0),
                    low: None,
                    high: None,
                    insufficient: false,
                },
                TrendPoint {
                    label: "b".into(),
                    value: Some(0.0),
                    low: None,
                    high: None,
                    insufficient: false,
                },
            ],
            &text(),
        );
        assert_balanced(&zeros);
        assert!(!zeros.contains("NaN"));
    }

    #[test]
    fn human_numbers() {
        assert_eq!(human(123.4), "123.4");
        assert_eq!(human(110.0), "110");
        assert_eq!(human(4.256), "4.26");
        assert_eq!(human(-0.001), "0");
        assert_eq!(decimals_for(2.5), 1);
        assert_eq!(decimals_for(0.25), 2);
        assert_eq!(decimals_for(50.0), 0);
    }
}
