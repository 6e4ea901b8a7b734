//! The report as one self-contained, printable HTML page (A4), with the
//! caller's map (inline SVG, already rendered) after the summary. Every
//! text goes through [`ispeed_web::escape`].

use std::fmt::Write as _;

use ispeed_web::escape;

use crate::{Report, Scope, Summary};

const STYLE: &str = "@page{size:A4;margin:14mm 12mm}\
body{font-family:'Noto Sans','DejaVu Sans',Arial,sans-serif;font-size:10pt;color:#1b1f24;margin:0 auto;max-width:190mm}\
h1{font-size:15pt;margin:0 0 2mm}h2{font-size:12pt;margin:6mm 0 2mm;break-after:avoid}\
p.meta{color:#555;margin:0 0 3mm}\
table{border-collapse:collapse;width:100%;font-size:8.5pt}\
th,td{border:0.2mm solid #c8cdd3;padding:1mm 1.5mm;text-align:right;vertical-align:top}\
th{background:#dde7f3;text-align:center}td.t{text-align:left}\
thead{display:table-header-group}tr{break-inside:avoid}\
tr.below td{background:#fff4e5}.warn{color:#9a3b00;font-weight:600}\
.map svg{width:100%;height:auto;max-height:150mm}\
ul.notes{color:#444;font-size:8.5pt;padding-left:5mm}";

/// Renders the page. `map_svg` is inline SVG (trusted: made by the caller
/// from [`ispeed_web::map`]) or `None`.
pub fn to_html(report: &Report, map_svg: Option<&str>) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let title = report.title();
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"vi\"><head><meta charset=\"utf-8\">\
         <title>{t}</title><style>{STYLE}</style></head><body>\n<h1>{t}</h1>\n",
        t = escape(&title)
    );
    let _ = writeln!(
        h,
        "<p class=\"meta\">Tháng {}{}. So sánh với tháng {}.</p>",
        escape(&report.month),
        if report.provisional {
            " (chưa kết thúc: số liệu còn thay đổi)"
        } else {
            ""
        },
        escape(&report.previous_month)
    );
    summary(&mut h, report);
    if let Some(svg) = map_svg {
        let _ = write!(
            h,
            "<h2>Bản đồ tốc độ tải xuống trung vị</h2>\n<div class=\"map\">{svg}</div>\n"
        );
    }
    units(&mut h, report);
    isps(&mut h, report);
    h.push_str("<h2>Cách tính</h2>\n<ul class=\"notes\">");
    for note in crate::xlsx::notes(report) {
        let _ = write!(h, "<li>{}</li>", escape(&note));
    }
    h.push_str("</ul>\n</body></html>\n");
    h
}

fn cell(value: Option<f64>, decimals: usize) -> String {
    value.filter(|v| v.is_finite()).map_or_else(
        || "—".to_owned(),
        |v| format!("{v:.decimals$}").replace('.', ","),
    )
}

fn percent(value: Option<f64>) -> String {
    value.filter(|v| v.is_finite()).map_or_else(
        || "—".to_owned(),
        |v| format!("{:.1}%", v * 100.0).replace('.', ","),
    )
}

/// A summary table row: its label and how to show a summary's value.
type SummaryLine = (&'static str, fn(&Summary) -> String);

fn summary(h: &mut String, report: &Report) {
    let national = report.national.as_ref();
    h.push_str("<h2>Tóm tắt</h2>\n<table><thead><tr><th>Chỉ số</th>");
    let own = match &report.scope {
        Scope::Nation => "Cả nước".to_owned(),
        Scope::Province { name, .. } => name.clone(),
    };
    let _ = write!(h, "<th>{}</th>", escape(&own));
    if national.is_some() {
        h.push_str("<th>Cả nước</th>");
    }
    h.push_str("</tr></thead><tbody>");
    let rows: [SummaryLine; 8] = [
        ("Số mẫu", |s| s.n.to_string()),
        ("Số mẫu di động", |s| s.mobile_n.to_string()),
        ("Số mẫu cố định", |s| s.fixed_n.to_string()),
        ("Số thiết bị", |s| s.devices.to_string()),
        ("Tải xuống trung vị (Mbit/s)", |s| {
            cell(s.download_mbps, 1)
        }),
        ("Tải lên trung vị (Mbit/s)", |s| cell(s.upload_mbps, 1)),
        ("Độ trễ trung vị (ms)", |s| cell(s.latency_ms, 1)),
        ("Tỷ lệ IPv6", |s| percent(s.ipv6_share)),
    ];
    for (label, value) in rows {
        let _ = write!(
            h,
            "<tr><td class=\"t\">{label}</td><td>{}</td>",
            value(&report.summary)
        );
        if let Some(n) = national {
            let _ = write!(h, "<td>{}</td>", value(n));
        }
        h.push_str("</tr>");
    }
    if let Some((rank, of)) = report.rank {
        let _ = write!(
            h,
            "<tr><td class=\"t\">Xếp hạng tải xuống</td><td>{rank}/{of}</td>{}</tr>",
            if national.is_some() { "<td></td>" } else { "" }
        );
    }
    h.push_str("</tbody></table>\n");
    if report.summary.flags.iter().any(|f| f == "insufficient") {
        let _ = writeln!(
            h,
            "<p class=\"warn\">{}: dưới {} mẫu, tháng này chưa đủ để đánh giá.</p>",
            escape(&own),
            report.rules.province_min
        );
    }
    if matches!(report.scope, Scope::Province { .. }) {
        let below = report.units.iter().filter(|u| u.below_quota()).count();
        let _ = writeln!(
            h,
            "<p>{below} trên {} xã, phường chưa đạt chỉ tiêu (liệt kê trước, kèm số mẫu còn thiếu).</p>",
            report.units.len()
        );
    }
}

fn units(h: &mut String, report: &Report) {
    let national = matches!(report.scope, Scope::Nation);
    let _ = write!(
        h,
        "<h2>{}</h2>\n<table><thead><tr><th>Mã</th><th>Tên</th><th>Số mẫu</th>\
         <th>Di động</th><th>Cố định</th><th>Thiết bị</th>{}\
         <th>Tải xuống</th><th>Tải lên</th><th>Độ trễ</th><th>IPv6</th><th>± tải xuống</th></tr></thead><tbody>",
        report.unit_kind(),
        if national {
            "<th>Hạng</th><th>Xã đạt chỉ tiêu (DĐ / CĐ)</th>"
        } else {
            "<th>Thiếu di động</th><th>Thiếu cố định</th>"
        }
    );
    for unit in &report.units {
        let s = &unit.summary;
        let class = if unit.below_quota() {
            " class=\"below\""
        } else {
            ""
        };
        let _ = write!(
            h,
            "<tr{class}><td class=\"t\">{}</td><td class=\"t\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            escape(&unit.code),
            escape(&unit.name),
            s.n,
            s.mobile_n,
            s.fixed_n,
            s.devices
        );
        if national {
            let _ = write!(
                h,
                "<td>{}</td><td>{}</td>",
                unit.rank.map_or_else(|| "—".to_owned(), |r| r.to_string()),
                unit.wards_meeting.map_or_else(
                    || "—".to_owned(),
                    |w| format!("{} / {} trên {}", w.mobile, w.fixed, w.wards)
                )
            );
        } else {
            let (m, f) = unit.shortfall().unwrap_or_default();
            let _ = write!(h, "<td>{m}</td><td>{f}</td>");
        }
        let change = unit
            .download_change()
            .filter(|v| v.is_finite())
            .map_or_else(|| "—".to_owned(), |v| format!("{v:+.1}").replace('.', ","));
        let _ = write!(
            h,
            "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{change}</td></tr>",
            cell(s.download_mbps, 1),
            cell(s.upload_mbps, 1),
            cell(s.latency_ms, 1),
            percent(s.ipv6_share),
        );
    }
    h.push_str("</tbody></table>\n");
}

fn isps(h: &mut String, report: &Report) {
    h.push_str(
        "<h2>Theo nhà mạng</h2>\n<table><thead><tr><th>Mã</th><th>Tên</th><th>Nhà mạng</th>\
         <th>Số mẫu</th><th>Tải xuống</th><th>Tải lên</th><th>Độ trễ</th></tr></thead><tbody>",
    );
    for unit in &report.units {
        for isp in report.isp_rows_of(&unit.code) {
            let _ = write!(
                h,
                "<tr><td class=\"t\">{}</td><td class=\"t\">{}</td><td class=\"t\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&unit.code),
                escape(&unit.name),
                escape(&isp.isp_name),
                isp.n,
                cell(isp.download_mbps, 1),
                cell(isp.upload_mbps, 1),
                cell(isp.latency_ms, 1),
            );
        }
    }
    h.push_str("</tbody></table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_the_page_is_printable() {
        let html = to_html(&crate::tests::sample(), Some("<svg></svg>"));
        assert!(html.contains("&lt;script&gt;Bến Thành&lt;/script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("size:A4"));
        assert!(html.contains("<svg></svg>"));
        assert!(html.contains("class=\"below\""));
    }
}
