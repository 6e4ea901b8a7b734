//! Monthly reports for officials (`spec/reports.md`): per ward (or, for the
//! nation, per province) the samples by access type against the quota,
//! devices, median speeds overall and per ISP, the IPv6 share and the change
//! from the previous month; a province's summary against the nation and its
//! rank. Rendered as CSV, XLSX (one sheet per section, Vietnamese headers)
//! and printable A4 HTML.
//!
//! The collector assembles a [`Report`] from the functions that answer the
//! statistics API, so every number here is the API's. This crate must never
//! query a store, compute a statistic or read a clock: the same report
//! always renders to the same CSV bytes and the same XLSX cell values.

mod csv;
mod html;
mod xlsx;

pub use csv::to_csv;
pub use html::to_html;
pub use xlsx::{to_xlsx, XlsxError};

/// Which units a report covers.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    /// The 34 provinces.
    Nation,
    /// One province's wards.
    Province { code: String, name: String },
}

/// One report: a scope, a month, and its tables.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub scope: Scope,
    /// `YYYY-MM`.
    pub month: String,
    pub previous_month: String,
    /// The month is not over yet: its figures will still change.
    pub provisional: bool,
    /// The scope's own figures.
    pub summary: Summary,
    /// The nation's figures, for a province report.
    pub national: Option<Summary>,
    /// The province's rank by median download among the judged provinces,
    /// and how many were judged (province reports only).
    pub rank: Option<(u32, u32)>,
    /// Wards (province report) or provinces (national report), below quota first.
    pub units: Vec<UnitRow>,
    /// Each unit's figures per ISP (ISPs with samples only), in unit order.
    pub isps: Vec<IspRow>,
    pub rules: Rules,
}

/// The rules the figures were counted under, printed with them.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Results per device per day that count.
    pub heavy_tester_cap: u32,
    /// Samples per ward, month and access type (the default; overrides apply per unit).
    pub ward_quota: u64,
    /// Samples below which a province's month is not judged.
    pub province_min: u64,
}

/// Counted samples and medians of one unit (all ISPs together).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Results counted after the heavy-tester cap.
    pub n: u64,
    pub mobile_n: u64,
    pub fixed_n: u64,
    pub devices: u64,
    pub download_mbps: Option<f64>,
    pub upload_mbps: Option<f64>,
    pub latency_ms: Option<f64>,
    /// Share of the counted results made over IPv6 (0–1).
    pub ipv6_share: Option<f64>,
    /// The statistics API's flags (`insufficient`, `below_quota`).
    pub flags: Vec<String>,
}

/// One ward (or province) of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitRow {
    pub code: String,
    pub name: String,
    pub summary: Summary,
    /// Samples this unit should reach this month per access type (wards).
    pub quota: Option<Quota>,
    /// For a province in the national report: wards meeting their quota.
    pub wards_meeting: Option<WardsMeeting>,
    /// Rank by median download among judged units (national report).
    pub rank: Option<u32>,
    pub previous_n: u64,
    pub previous_download_mbps: Option<f64>,
}

/// A ward's monthly quota per access type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub mobile: u64,
    pub fixed: u64,
}

/// How many of a province's wards met their quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WardsMeeting {
    pub wards: u64,
    pub mobile: u64,
    pub fixed: u64,
}

/// One unit's figures for one ISP.
#[derive(Debug, Clone, PartialEq)]
pub struct IspRow {
    pub unit_code: String,
    pub isp: String,
    pub isp_name: String,
    pub n: u64,
    pub download_mbps: Option<f64>,
    pub upload_mbps: Option<f64>,
    pub latency_ms: Option<f64>,
}

impl UnitRow {
    /// Samples missing to the mobile and fixed quotas.
    pub fn shortfall(&self) -> Option<(u64, u64)> {
        self.quota.map(|q| {
            (
                q.mobile.saturating_sub(self.summary.mobile_n),
                q.fixed.saturating_sub(self.summary.fixed_n),
            )
        })
    }

    /// Mobile and fixed samples as a fraction of their quotas.
    pub fn attainment(&self) -> Option<(f64, f64)> {
        let ratio = |n: u64, q: u64| if q == 0 { 1.0 } else { n as f64 / q as f64 };
        self.quota.map(|q| {
            (
                ratio(self.summary.mobile_n, q.mobile),
                ratio(self.summary.fixed_n, q.fixed),
            )
        })
    }

    pub fn below_quota(&self) -> bool {
        self.shortfall().is_some_and(|(m, f)| m + f > 0)
    }

    /// This month's median download minus the previous month's.
    pub fn download_change(&self) -> Option<f64> {
        Some(self.summary.download_mbps? - self.previous_download_mbps?)
    }
}

impl Report {
    /// "Xã, phường" or "Tỉnh, thành phố": what the units are.
    pub fn unit_kind(&self) -> &'static str {
        match self.scope {
            Scope::Nation => "Tỉnh, thành phố",
            Scope::Province { .. } => "Xã, phường",
        }
    }

    pub fn title(&self) -> String {
        match &self.scope {
            Scope::Nation => format!("Báo cáo tốc độ Internet tháng {} — Cả nước", self.month),
            Scope::Province { name, .. } => {
                format!("Báo cáo tốc độ Internet tháng {} — {name}", self.month)
            }
        }
    }

    pub fn isp_rows_of<'a>(&'a self, code: &'a str) -> impl Iterator<Item = &'a IspRow> + 'a {
        self.isps.iter().filter(move |r| r.unit_code == code)
    }
}

/// A number as the statistics API writes it (shortest text that reads back
/// to the same `f64`), or empty.
pub(crate) fn number(value: Option<f64>) -> String {
    value.map_or_else(String::new, |v| format!("{v}"))
}

/// Vietnamese display of the flags.
pub(crate) fn flag_text(flag: &str) -> &'static str {
    match flag {
        "insufficient" => "chưa đủ mẫu để đánh giá",
        "below_quota" => "chưa đạt chỉ tiêu",
        _ => "khác",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small province report with one ward below quota and one above.
    pub fn sample() -> Report {
        let summary = |n, mobile_n, fixed_n, down: f64| Summary {
            n,
            mobile_n,
            fixed_n,
            devices: n / 2,
            download_mbps: Some(down),
            upload_mbps: Some(down / 2.0),
            latency_ms: Some(12.5),
            ipv6_share: Some(0.25),
            flags: vec![],
        };
        Report {
            scope: Scope::Province {
                code: "79".into(),
                name: "Hồ Chí Minh".into(),
            },
            month: "2026-10".into(),
            previous_month: "2026-09".into(),
            provisional: false,
            summary: summary(900, 400, 500, 120.25),
            national: Some(summary(9000, 4000, 5000, 100.0)),
            rank: Some((3, 34)),
            units: vec![
                UnitRow {
                    code: "26740".into(),
                    name: "Sài Gòn, \"trung tâm\"".into(),
                    summary: Summary {
                        flags: vec!["below_quota".into()],
                        ..summary(200, 50, 150, 95.5)
                    },
                    quota: Some(Quota {
                        mobile: 300,
                        fixed: 300,
                    }),
                    wards_meeting: None,
                    rank: None,
                    previous_n: 100,
                    previous_download_mbps: Some(90.0),
                },
                UnitRow {
                    code: "26743".into(),
                    name: "<script>Bến Thành</script>".into(),
                    summary: summary(700, 350, 350, 130.0),
                    quota: Some(Quota {
                        mobile: 300,
                        fixed: 300,
                    }),
                    wards_meeting: None,
                    rank: None,
                    previous_n: 0,
                    previous_download_mbps: None,
                },
            ],
            isps: vec![IspRow {
                unit_code: "26740".into(),
                isp: "viettel".into(),
                isp_name: "Viettel".into(),
                n: 120,
                download_mbps: Some(101.5),
                upload_mbps: Some(50.0),
                latency_ms: Some(9.0),
            }],
            rules: Rules {
                heavy_tester_cap: 3,
                ward_quota: 300,
                province_min: 100,
            },
        }
    }

    #[test]
    fn shortfall_and_attainment() {
        let report = sample();
        let ward = &report.units[0];
        assert_eq!(ward.shortfall(), Some((250, 150)));
        assert_eq!(ward.attainment(), Some((50.0 / 300.0, 0.5)));
        assert!(ward.below_quota());
        assert!(!report.units[1].below_quota());
        assert_eq!(ward.download_change(), Some(5.5));
        assert_eq!(report.units[1].download_change(), None);
    }

    #[test]
    fn numbers_read_back_exactly() {
        for v in [0.1 + 0.2, 1e-7, 123456.789, 95.5] {
            assert_eq!(number(Some(v)).parse::<f64>().unwrap(), v);
        }
        assert_eq!(number(None), "");
    }
}
