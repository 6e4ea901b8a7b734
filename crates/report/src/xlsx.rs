//! The report as an XLSX workbook: one sheet per section (summary, units,
//! units below quota, ISPs), Vietnamese headers, number formats, frozen
//! header rows. Cell values are the report's numbers unrounded; only their
//! display is formatted.

use rust_xlsxwriter::{DocProperties, ExcelDateTime, Format, FormatAlign, Workbook, Worksheet};

use crate::{flag_text, Report, Scope, UnitRow};

pub use rust_xlsxwriter::XlsxError;

/// Renders the workbook.
pub fn to_xlsx(report: &Report) -> Result<Vec<u8>, XlsxError> {
    let mut workbook = Workbook::new();
    // A fixed creation time (the first of the month) keeps the file's
    // metadata a function of the report alone.
    let (year, month) = year_month(&report.month);
    let properties = DocProperties::new()
        .set_title(report.title())
        .set_author("ispeed")
        .set_creation_datetime(&ExcelDateTime::from_ymd(year, month, 1)?);
    workbook.set_properties(&properties);
    let styles = Styles::new();

    summary_sheet(workbook.add_worksheet(), report, &styles)?;
    units_sheet(
        workbook.add_worksheet(),
        report,
        report.units.iter(),
        report.unit_kind(),
        &styles,
    )?;
    if matches!(report.scope, Scope::Province { .. }) {
        below_quota_sheet(workbook.add_worksheet(), report, &styles)?;
    }
    isp_sheet(workbook.add_worksheet(), report, &styles)?;
    workbook.save_to_buffer()
}

fn year_month(month: &str) -> (u16, u8) {
    let mut parts = month.split('-');
    let year = parts.next().and_then(|y| y.parse().ok()).unwrap_or(1970);
    let month = parts.next().and_then(|m| m.parse().ok()).unwrap_or(1);
    (year, month)
}

struct Styles {
    header: Format,
    title: Format,
    speed: Format,
    integer: Format,
    percent: Format,
    change: Format,
}

impl Styles {
    fn new() -> Styles {
        Styles {
            header: Format::new()
                .set_bold()
                .set_text_wrap()
                .set_align(FormatAlign::Center)
                .set_background_color("#DDE7F3"),
            title: Format::new().set_bold().set_font_size(14),
            speed: Format::new().set_num_format("0.0"),
            integer: Format::new().set_num_format("#,##0"),
            percent: Format::new().set_num_format("0.0%"),
            change: Format::new().set_num_format("+0.0;-0.0;0.0"),
        }
    }
}

/// A4 landscape, one page wide, the header row repeated on every page.
fn printable(sheet: &mut Worksheet, header_row: u32) -> Result<(), XlsxError> {
    sheet.set_paper_size(9);
    sheet.set_landscape();
    sheet.set_print_fit_to_pages(1, 0);
    sheet.set_repeat_rows(header_row, header_row)?;
    Ok(())
}

fn headers(
    sheet: &mut Worksheet,
    row: u32,
    names: &[&str],
    styles: &Styles,
) -> Result<(), XlsxError> {
    printable(sheet, row)?;
    for (col, name) in names.iter().enumerate() {
        sheet.write_string_with_format(row, col as u16, *name, &styles.header)?;
        sheet.set_column_width(col as u16, if col == 1 { 24 } else { 13 })?;
    }
    sheet.set_row_height(row, 45)?;
    sheet.set_freeze_panes(row + 1, 2)?;
    Ok(())
}

fn opt_number(
    sheet: &mut Worksheet,
    row: u32,
    col: u16,
    value: Option<f64>,
    format: &Format,
) -> Result<(), XlsxError> {
    if let Some(v) = value.filter(|v| v.is_finite()) {
        sheet.write_number_with_format(row, col, v, format)?;
    }
    Ok(())
}

/// How to read one figure of a summary.
type SummaryValue = fn(&crate::Summary) -> Option<f64>;

fn summary_sheet(sheet: &mut Worksheet, report: &Report, styles: &Styles) -> Result<(), XlsxError> {
    sheet.set_name("Tóm tắt")?;
    sheet.set_column_width(0, 48)?;
    sheet.set_column_width(1, 16)?;
    sheet.set_column_width(2, 16)?;
    sheet.write_string_with_format(0, 0, report.title(), &styles.title)?;
    let mut row = 1;
    if report.provisional {
        sheet.write_string(row, 0, "Tháng chưa kết thúc: số liệu còn thay đổi.")?;
        row += 1;
    }
    row += 1;
    let national = report.national.as_ref();
    let columns: &[&str] = if national.is_some() {
        &["Chỉ số", "Đơn vị này", "Cả nước"]
    } else {
        &["Chỉ số", "Cả nước"]
    };
    for (col, name) in columns.iter().enumerate() {
        sheet.write_string_with_format(row, col as u16, *name, &styles.header)?;
    }
    sheet.set_freeze_panes(row + 1, 0)?;
    printable(sheet, row)?;
    row += 1;
    let s = &report.summary;
    let lines: [(&str, SummaryValue, &Format); 8] = [
        ("Số mẫu", |s| Some(s.n as f64), &styles.integer),
        (
            "Số mẫu di động",
            |s| Some(s.mobile_n as f64),
            &styles.integer,
        ),
        (
            "Số mẫu cố định",
            |s| Some(s.fixed_n as f64),
            &styles.integer,
        ),
        ("Số thiết bị", |s| Some(s.devices as f64), &styles.integer),
        (
            "Tải xuống trung vị (Mbit/s)",
            |s| s.download_mbps,
            &styles.speed,
        ),
        (
            "Tải lên trung vị (Mbit/s)",
            |s| s.upload_mbps,
            &styles.speed,
        ),
        ("Độ trễ trung vị (ms)", |s| s.latency_ms, &styles.speed),
        ("Tỷ lệ IPv6", |s| s.ipv6_share, &styles.percent),
    ];
    for (label, value, format) in &lines {
        sheet.write_string(row, 0, *label)?;
        opt_number(sheet, row, 1, value(s), format)?;
        if let Some(n) = national {
            opt_number(sheet, row, 2, value(n), format)?;
        }
        row += 1;
    }
    if let Some((rank, of)) = report.rank {
        sheet.write_string(row, 0, "Xếp hạng tải xuống trong các tỉnh được đánh giá")?;
        sheet.write_string(row, 1, format!("{rank}/{of}"))?;
        row += 1;
    }
    let below = report.units.iter().filter(|u| u.below_quota()).count();
    if matches!(report.scope, Scope::Province { .. }) {
        sheet.write_string(row, 0, "Xã, phường chưa đạt chỉ tiêu")?;
        sheet.write_string(row, 1, format!("{below}/{}", report.units.len()))?;
        row += 1;
    }
    if !s.flags.is_empty() {
        sheet.write_string(row, 0, "Ghi chú")?;
        let notes: Vec<&str> = s.flags.iter().map(|f| flag_text(f)).collect();
        sheet.write_string(row, 1, notes.join("; "))?;
        row += 1;
    }
    row += 1;
    for note in notes(report) {
        sheet.write_string(row, 0, note)?;
        row += 1;
    }
    Ok(())
}

/// How the figures were counted, printed under every report.
pub(crate) fn notes(report: &Report) -> Vec<String> {
    let r = &report.rules;
    vec![
        format!(
            "Số mẫu được tính sau giới hạn {} phép đo mỗi thiết bị mỗi ngày.",
            r.heavy_tester_cap
        ),
        format!(
            "Chỉ tiêu mặc định: {} mẫu mỗi xã, phường mỗi tháng, tính riêng di động và cố định.",
            r.ward_quota
        ),
        format!(
            "Tỉnh, thành phố có dưới {} mẫu trong tháng chưa đủ để đánh giá.",
            r.province_min
        ),
        "Tốc độ do máy chủ đo đếm và ký xác nhận; trung vị, không phải trung bình.".to_owned(),
    ]
}

const UNIT_HEADERS: [&str; 19] = [
    "Mã",
    "Tên",
    "Số mẫu",
    "Di động",
    "Cố định",
    "Thiết bị",
    "Chỉ tiêu di động",
    "Đạt di động",
    "Thiếu di động",
    "Chỉ tiêu cố định",
    "Đạt cố định",
    "Thiếu cố định",
    "Tải xuống (Mbit/s)",
    "Tải lên (Mbit/s)",
    "Độ trễ (ms)",
    "IPv6",
    "Tải xuống tháng trước",
    "Thay đổi tải xuống",
    "Ghi chú",
];

fn units_sheet<'a>(
    sheet: &mut Worksheet,
    report: &Report,
    units: impl Iterator<Item = &'a UnitRow>,
    name: &str,
    styles: &Styles,
) -> Result<(), XlsxError> {
    sheet.set_name(name.replace(',', ""))?;
    let national = matches!(report.scope, Scope::Nation);
    let mut names = UNIT_HEADERS.to_vec();
    if national {
        // Provinces: rank and wards meeting quota instead of their own quota.
        names[6] = "Xếp hạng";
        names[7] = "Số xã, phường";
        names[8] = "Đạt chỉ tiêu di động";
        names[9] = "Đạt chỉ tiêu cố định";
        names[10] = "";
        names[11] = "";
    }
    headers(sheet, 0, &names, styles)?;
    let mut row = 1;
    for unit in units {
        let s = &unit.summary;
        sheet.write_string(row, 0, &unit.code)?;
        sheet.write_string(row, 1, &unit.name)?;
        for (col, v) in [(2, s.n), (3, s.mobile_n), (4, s.fixed_n), (5, s.devices)] {
            sheet.write_number_with_format(row, col, v as f64, &styles.integer)?;
        }
        if let (Some(q), Some((am, af)), Some((sm, sf))) =
            (unit.quota, unit.attainment(), unit.shortfall())
        {
            sheet.write_number_with_format(row, 6, q.mobile as f64, &styles.integer)?;
            sheet.write_number_with_format(row, 7, am, &styles.percent)?;
            sheet.write_number_with_format(row, 8, sm as f64, &styles.integer)?;
            sheet.write_number_with_format(row, 9, q.fixed as f64, &styles.integer)?;
            sheet.write_number_with_format(row, 10, af, &styles.percent)?;
            sheet.write_number_with_format(row, 11, sf as f64, &styles.integer)?;
        }
        if national {
            if let Some(rank) = unit.rank {
                sheet.write_number(row, 6, f64::from(rank))?;
            }
            if let Some(w) = unit.wards_meeting {
                sheet.write_number_with_format(row, 7, w.wards as f64, &styles.integer)?;
                sheet.write_number_with_format(row, 8, w.mobile as f64, &styles.integer)?;
                sheet.write_number_with_format(row, 9, w.fixed as f64, &styles.integer)?;
            }
        }
        opt_number(sheet, row, 12, s.download_mbps, &styles.speed)?;
        opt_number(sheet, row, 13, s.upload_mbps, &styles.speed)?;
        opt_number(sheet, row, 14, s.latency_ms, &styles.speed)?;
        opt_number(sheet, row, 15, s.ipv6_share, &styles.percent)?;
        opt_number(sheet, row, 16, unit.previous_download_mbps, &styles.speed)?;
        opt_number(sheet, row, 17, unit.download_change(), &styles.change)?;
        let mut notes: Vec<&str> = s.flags.iter().map(|f| flag_text(f)).collect();
        notes.dedup();
        if !notes.is_empty() {
            sheet.write_string(row, 18, notes.join("; "))?;
        }
        row += 1;
    }
    if row > 1 {
        sheet.autofilter(0, 0, row - 1, (names.len() - 1) as u16)?;
    }
    Ok(())
}

fn below_quota_sheet(
    sheet: &mut Worksheet,
    report: &Report,
    styles: &Styles,
) -> Result<(), XlsxError> {
    sheet.set_name("Chưa đạt chỉ tiêu")?;
    let names = [
        "Mã",
        "Tên",
        "Di động",
        "Thiếu di động",
        "Cố định",
        "Thiếu cố định",
        "Tổng số mẫu còn thiếu",
    ];
    headers(sheet, 0, &names, styles)?;
    for (row, unit) in (1..).zip(report.units.iter().filter(|u| u.below_quota())) {
        let (sm, sf) = unit.shortfall().unwrap_or_default();
        sheet.write_string(row, 0, &unit.code)?;
        sheet.write_string(row, 1, &unit.name)?;
        let s = &unit.summary;
        for (col, v) in [
            (2, s.mobile_n),
            (3, sm),
            (4, s.fixed_n),
            (5, sf),
            (6, sm + sf),
        ] {
            sheet.write_number_with_format(row, col, v as f64, &styles.integer)?;
        }
    }
    Ok(())
}

fn isp_sheet(sheet: &mut Worksheet, report: &Report, styles: &Styles) -> Result<(), XlsxError> {
    sheet.set_name("Theo nhà mạng")?;
    let names = [
        "Mã",
        "Tên",
        "Nhà mạng",
        "Số mẫu",
        "Tải xuống (Mbit/s)",
        "Tải lên (Mbit/s)",
        "Độ trễ (ms)",
    ];
    headers(sheet, 0, &names, styles)?;
    let mut row = 1;
    for unit in &report.units {
        for isp in report.isp_rows_of(&unit.code) {
            sheet.write_string(row, 0, &unit.code)?;
            sheet.write_string(row, 1, &unit.name)?;
            sheet.write_string(row, 2, &isp.isp_name)?;
            sheet.write_number_with_format(row, 3, isp.n as f64, &styles.integer)?;
            opt_number(sheet, row, 4, isp.download_mbps, &styles.speed)?;
            opt_number(sheet, row, 5, isp.upload_mbps, &styles.speed)?;
            opt_number(sheet, row, 6, isp.latency_ms, &styles.speed)?;
            row += 1;
        }
    }
    if row > 1 {
        sheet.autofilter(0, 0, row - 1, (names.len() - 1) as u16)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workbook_is_written() {
        let bytes = to_xlsx(&crate::tests::sample()).unwrap();
        assert_eq!(&bytes[..2], b"PK", "a zip container");
        assert!(bytes.len() > 4000);
    }
}
