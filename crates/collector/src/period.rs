//! Calendar periods of the statistics, in Vietnam's time (UTC+7, no DST):
//! a test belongs to the day and month its receipt says it started, as the
//! ministry's monthly reporting counts them.

use std::fmt;

/// Vietnam's offset from UTC.
pub const ICT_OFFSET_MS: i64 = 7 * 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 in UTC+7.
pub fn ict_day(unix_ms: u64) -> i32 {
    (unix_ms as i64 + ICT_OFFSET_MS).div_euclid(DAY_MS) as i32
}

/// A calendar month, stored as `year * 12 + (month - 1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month(pub i32);

impl Month {
    pub fn new(year: i32, month: u32) -> Option<Month> {
        (1..=12)
            .contains(&month)
            .then_some(Month(year * 12 + month as i32 - 1))
    }
    pub fn year(self) -> i32 {
        self.0.div_euclid(12)
    }
    /// 1..=12
    pub fn month(self) -> u32 {
        self.0.rem_euclid(12) as u32 + 1
    }
    /// The month a day (from [`ict_day`]) falls in.
    pub fn of_day(day: i32) -> Month {
        let (year, month, _) = civil_from_days(day);
        Month::new(year, month).expect("civil_from_days yields 1..=12")
    }
    pub fn of_unix_ms(unix_ms: u64) -> Month {
        Month::of_day(ict_day(unix_ms))
    }
    /// `YYYY-MM`.
    pub fn parse(text: &str) -> Option<Month> {
        let (year, month) = text.split_once('-')?;
        if !digits(year, 4) || !digits(month, 2) {
            return None;
        }
        Month::new(year.parse().ok()?, month.parse().ok()?)
    }
    /// First day (as from [`ict_day`]) of the month.
    pub fn first_day(self) -> i32 {
        days_from_civil(self.year(), self.month(), 1)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year(), self.month())
    }
}

/// A period a statistic covers: consecutive months.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub first: Month,
    pub months: u32,
}

impl Period {
    /// `YYYY-MM`, `YYYY-Qn`, or `12m` (the twelve months up to and including
    /// the month of `now_ms`).
    pub fn parse(text: &str, now_ms: u64) -> Option<Period> {
        if text == "12m" {
            let last = Month::of_unix_ms(now_ms);
            return Some(Period {
                first: Month(last.0 - 11),
                months: 12,
            });
        }
        if let Some((year, quarter)) = text.split_once("-Q") {
            if !digits(year, 4) || !digits(quarter, 1) {
                return None;
            }
            let quarter: u32 = quarter.parse().ok().filter(|q| (1..=4).contains(q))?;
            let first = Month::new(year.parse().ok()?, quarter * 3 - 2)?;
            return Some(Period { first, months: 3 });
        }
        Month::parse(text).map(|first| Period { first, months: 1 })
    }
    pub fn months(self) -> impl Iterator<Item = Month> {
        (0..self.months as i32).map(move |i| Month(self.first.0 + i))
    }
}

/// Exactly `len` ASCII digits (`str::parse` would also take a sign).
fn digits(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_digit())
}

// Howard Hinnant's days_from_civil / civil_from_days.
/// `YYYY-MM-DD` as a day number (as from [`ict_day`]), checked.
pub fn parse_day(text: &str) -> Option<i32> {
    let mut parts = text.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !digits(y, 4) || !digits(m, 2) || !digits(d, 2) {
        return None;
    }
    let (y, m, d): (i32, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let day = days_from_civil(y, m, d);
    (civil_from_days(day) == (y, m, d)).then_some(day)
}

/// A day number as `YYYY-MM-DD`.
pub fn format_day(day: i32) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i32;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i32::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ict_boundaries() {
        // 2026-10-31T17:00:00Z is midnight of 1 November in Hà Nội.
        let nov_first_ict_ms = 1_793_466_000_000;
        assert_eq!(Month::of_unix_ms(nov_first_ict_ms).to_string(), "2026-11");
        assert_eq!(
            Month::of_unix_ms(nov_first_ict_ms - 1).to_string(),
            "2026-10"
        );
        for days in -1000..40_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn periods() {
        let now = 1_793_466_000_000; // November 2026
        let p = Period::parse("2026-Q3", now).unwrap();
        let months: Vec<String> = p.months().map(|m| m.to_string()).collect();
        assert_eq!(months, ["2026-07", "2026-08", "2026-09"]);
        let p = Period::parse("12m", now).unwrap();
        assert_eq!(p.first.to_string(), "2025-12");
        assert_eq!(p.months().last().unwrap().to_string(), "2026-11");
        for bad in [
            "2026-13", "2026-Q5", "26-10", "2026-1", "", "12", "2026-Q0", "+123-05", "2026-Q01",
            "2026-+5",
        ] {
            assert!(Period::parse(bad, now).is_none(), "{bad}");
        }
        assert_eq!(Month::parse("2026-10").unwrap().first_day() + 30, {
            let m = Month::parse("2026-10").unwrap();
            Month(m.0 + 1).first_day() - 1
        });
    }
}
