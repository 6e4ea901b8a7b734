//! The report as one CSV table (RFC 4180, UTF-8 with a byte-order mark so
//! that spreadsheet programs read Vietnamese correctly): per unit a row for
//! all ISPs, with quotas and changes, then a row per ISP with its samples
//! and medians.

use std::fmt::Write as _;

use crate::{flag_text, number, Report, UnitRow};

/// The header row, in column order.
pub const HEADERS: [&str; 22] = [
    "Mã đơn vị",
    "Tên đơn vị",
    "Nhà mạng",
    "Số mẫu",
    "Số mẫu di động",
    "Số mẫu cố định",
    "Số thiết bị",
    "Chỉ tiêu di động",
    "Đạt chỉ tiêu di động (%)",
    "Thiếu di động",
    "Chỉ tiêu cố định",
    "Đạt chỉ tiêu cố định (%)",
    "Thiếu cố định",
    "Tải xuống trung vị (Mbit/s)",
    "Tải lên trung vị (Mbit/s)",
    "Độ trễ trung vị (ms)",
    "Tỷ lệ IPv6 (%)",
    "Số mẫu tháng trước",
    "Tải xuống trung vị tháng trước (Mbit/s)",
    "Thay đổi tải xuống (Mbit/s)",
    "Xếp hạng",
    "Ghi chú",
];

/// Renders the report's unit and ISP rows. Deterministic: the same report
/// gives the same bytes.
pub fn to_csv(report: &Report) -> String {
    let mut out = String::from("\u{feff}");
    row(&mut out, HEADERS.iter().map(|h| h.to_string()));
    for unit in &report.units {
        row(&mut out, unit_fields(unit));
        for isp in report.isp_rows_of(&unit.code) {
            let mut fields = vec![String::new(); HEADERS.len()];
            fields[0].clone_from(&unit.code);
            fields[1].clone_from(&unit.name);
            fields[2].clone_from(&isp.isp_name);
            fields[3] = isp.n.to_string();
            fields[13] = number(isp.download_mbps);
            fields[14] = number(isp.upload_mbps);
            fields[15] = number(isp.latency_ms);
            row(&mut out, fields);
        }
    }
    out
}

fn unit_fields(unit: &UnitRow) -> Vec<String> {
    let s = &unit.summary;
    // Derived shares, not API figures: two decimals are plenty.
    let percent = |v: Option<f64>| v.map_or_else(String::new, |x| format!("{:.2}", x * 100.0));
    let attainment = unit.attainment();
    let shortfall = unit.shortfall();
    let mut notes: Vec<&str> = s.flags.iter().map(|f| flag_text(f)).collect();
    notes.dedup();
    vec![
        unit.code.clone(),
        unit.name.clone(),
        "Tất cả".to_owned(),
        s.n.to_string(),
        s.mobile_n.to_string(),
        s.fixed_n.to_string(),
        s.devices.to_string(),
        unit.quota
            .map_or_else(String::new, |q| q.mobile.to_string()),
        percent(attainment.map(|a| a.0)),
        shortfall.map_or_else(String::new, |f| f.0.to_string()),
        unit.quota.map_or_else(String::new, |q| q.fixed.to_string()),
        percent(attainment.map(|a| a.1)),
        shortfall.map_or_else(String::new, |f| f.1.to_string()),
        number(s.download_mbps),
        number(s.upload_mbps),
        number(s.latency_ms),
        percent(s.ipv6_share),
        unit.previous_n.to_string(),
        number(unit.previous_download_mbps),
        number(unit.download_change()),
        unit.rank.map_or_else(String::new, |r| r.to_string()),
        notes.join("; "),
    ]
}

fn row(out: &mut String, fields: impl IntoIterator<Item = String>) {
    let mut first = true;
    for field in fields {
        if !first {
            out.push(',');
        }
        first = false;
        if field.contains([',', '"', '\n', '\r']) {
            let _ = write!(out, "\"{}\"", field.replace('"', "\"\""));
        } else {
            out.push_str(&field);
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_what_needs_quoting_and_is_deterministic() {
        let report = crate::tests::sample();
        let csv = to_csv(&report);
        assert!(csv.starts_with("\u{feff}Mã đơn vị,"));
        assert!(csv.contains("26740,\"Sài Gòn, \"\"trung tâm\"\"\",Tất cả,200,50,150,100,300,"));
        assert!(csv.contains(",Viettel,120,"));
        assert_eq!(csv, to_csv(&report));
        // Every row has the header's column count.
        for line in csv.lines().skip(1) {
            assert!(line.matches(',').count() >= HEADERS.len() - 1, "{line}");
        }
    }
}
