//! The 2025 administrative units: 34 provinces and 3,321 wards (xã, phường,
//! đặc khu), with names and a point inside each ward.

use crate::{csv, EnrichError};
use serde::Serialize;

const PROVINCES_CSV: &str = include_str!("../data/provinces.csv");
const UNITS_CSV: &str = include_str!("../data/units.csv");

/// A province or centrally-run city (tỉnh / thành phố).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Province {
    /// 2-digit GSO code with leading zero, e.g. `"01"` (Hà Nội).
    pub code: String,
    /// Short Vietnamese name (NFC), e.g. `"Hà Nội"`.
    pub name: String,
    /// ASCII/English name, e.g. `"Hanoi"`.
    pub name_en: String,
    /// `"tinh"` or `"thanh_pho"`.
    pub kind: String,
}

/// A commune-level unit (xã / phường / đặc khu).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ward {
    /// 5-digit GSO code, e.g. `"00070"` (Hoàn Kiếm).
    pub code: String,
    /// Short name without the unit word, e.g. `"Hoàn Kiếm"`.
    pub name: String,
    /// `"xa"`, `"phuong"` or `"dac_khu"`.
    pub kind: String,
    /// Code of the [`Province`] it belongs to.
    pub province_code: String,
    /// Latitude of a point inside the ward (not necessarily the centroid).
    pub centroid_lat: f64,
    /// Longitude of that point.
    pub centroid_lon: f64,
}

/// Lookup tables of provinces and wards by code.
#[derive(Debug, Clone)]
pub struct Units {
    provinces: Vec<Province>,
    wards: Vec<Ward>,
    /// Indices into `wards` ordered by (province_code, code), so a
    /// province's wards are one contiguous run.
    by_province: Vec<u32>,
}

impl Units {
    /// The embedded provinces table (`code,name,name_en,kind`), for a unit
    /// version that changes only wards.
    pub fn embedded_provinces_csv() -> &'static str {
        PROVINCES_CSV
    }

    /// Parses the embedded `provinces.csv` and `units.csv`.
    pub fn embedded() -> Result<Units, EnrichError> {
        Self::from_csv_text(PROVINCES_CSV, UNITS_CSV)
    }

    /// Parses provinces (`code,name,name_en,kind`) and wards (the columns of
    /// the shared `units.csv`) from text.
    pub fn from_csv_text(provinces_csv: &str, units_csv: &str) -> Result<Units, EnrichError> {
        let mut provinces = csv::rows(
            "provinces.csv",
            provinces_csv,
            &["code", "name", "name_en", "kind"],
        )?
        .into_iter()
        .map(|r| Province {
            code: r.fields[0].to_owned(),
            name: r.fields[1].to_owned(),
            name_en: r.fields[2].to_owned(),
            kind: r.fields[3].to_owned(),
        })
        .collect::<Vec<_>>();
        provinces.sort_by(|a, b| a.code.cmp(&b.code));

        let cols = [
            "code",
            "name",
            "kind",
            "province_code",
            "centroid_lat",
            "centroid_lon",
        ];
        let mut wards = Vec::new();
        for r in csv::rows("units.csv", units_csv, &cols)? {
            let (lat, lon): (f64, f64) = (r.parse(4, "latitude")?, r.parse(5, "longitude")?);
            if !(lat.abs() <= 90.0 && lon.abs() <= 180.0) {
                return Err(r.err(format!("coordinates out of range: {lat},{lon}")));
            }
            // A dangling province code would make the collector serve a ward
            // without a province, so refuse the table instead.
            if provinces
                .binary_search_by(|p| p.code.as_str().cmp(r.fields[3]))
                .is_err()
            {
                return Err(r.err(format!("unknown province_code {}", r.fields[3])));
            }
            wards.push(Ward {
                code: r.fields[0].to_owned(),
                name: r.fields[1].to_owned(),
                kind: r.fields[2].to_owned(),
                province_code: r.fields[3].to_owned(),
                centroid_lat: lat,
                centroid_lon: lon,
            });
        }
        wards.sort_by(|a, b| a.code.cmp(&b.code));
        let mut by_province: Vec<u32> = (0..wards.len() as u32).collect();
        // Stable sort: ties keep code order.
        by_province.sort_by(|&a, &b| {
            wards[a as usize]
                .province_code
                .cmp(&wards[b as usize].province_code)
        });
        Ok(Units {
            provinces,
            wards,
            by_province,
        })
    }

    /// All provinces, sorted by code.
    pub fn provinces(&self) -> &[Province] {
        &self.provinces
    }

    /// All wards, sorted by code.
    pub fn wards(&self) -> &[Ward] {
        &self.wards
    }

    /// The province with this 2-digit code.
    pub fn province(&self, code: &str) -> Option<&Province> {
        let i = self
            .provinces
            .binary_search_by(|p| p.code.as_str().cmp(code))
            .ok()?;
        Some(&self.provinces[i])
    }

    /// The ward with this 5-digit code (2025 codes only; a pre-2025 code that
    /// was not reused is simply not found).
    pub fn ward(&self, code: &str) -> Option<&Ward> {
        let i = self
            .wards
            .binary_search_by(|w| w.code.as_str().cmp(code))
            .ok()?;
        Some(&self.wards[i])
    }

    /// The wards of one province, in code order.
    pub fn wards_of(&self, province_code: &str) -> impl Iterator<Item = &Ward> + '_ {
        let code = |&i: &u32| self.wards[i as usize].province_code.as_str();
        let start = self
            .by_province
            .partition_point(|i| code(i) < province_code);
        let end = self
            .by_province
            .partition_point(|i| code(i) <= province_code);
        self.by_province[start..end]
            .iter()
            .map(|&i| &self.wards[i as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_counts_and_lookups() {
        let u = Units::embedded().unwrap();
        assert_eq!(u.provinces().len(), 34);
        assert_eq!(u.wards().len(), 3321);
        assert!(u.provinces().windows(2).all(|w| w[0].code < w[1].code));
        assert!(u.wards().windows(2).all(|w| w[0].code < w[1].code));
        let hn = u.province("01").unwrap();
        assert_eq!(
            (hn.name.as_str(), hn.name_en.as_str(), hn.kind.as_str()),
            ("Hà Nội", "Hanoi", "thanh_pho")
        );
        let hk = u.ward("00070").unwrap();
        assert_eq!(
            (
                hk.name.as_str(),
                hk.kind.as_str(),
                hk.province_code.as_str()
            ),
            ("Hoàn Kiếm", "phuong", "01")
        );
        assert_eq!(u.ward("22736").unwrap().kind, "dac_khu");
        assert!(u.province("00").is_none() && u.ward("").is_none() && u.ward("0007").is_none());
        let total: usize = u
            .provinces()
            .iter()
            .map(|p| u.wards_of(&p.code).count())
            .sum();
        assert_eq!(total, 3321);
        assert!(u.wards_of("79").all(|w| w.province_code == "79"));
        assert_eq!(
            u.wards_of("79").count(),
            u.wards().iter().filter(|w| w.province_code == "79").count()
        );
        let hn: Vec<&str> = u
            .wards_of(&String::from("01"))
            .map(|w| w.code.as_str())
            .collect();
        assert!(hn.windows(2).all(|w| w[0] < w[1]) && hn.contains(&"00070"));
        assert_eq!(u.wards_of("zz").count(), 0);
    }

    #[test]
    fn bad_tables_are_errors() {
        let p = "code,name,name_en,kind\n01,Hà Nội,Hanoi,thanh_pho\n";
        let h = "code,name,kind,province_code,centroid_lat,centroid_lon\n";
        let ok = format!("{h}00070,Hoàn Kiếm,phuong,01,21.0288,105.8522\n");
        assert_eq!(Units::from_csv_text(p, &ok).unwrap().wards().len(), 1);
        for bad in [
            format!("{h}00070,Hoàn Kiếm,phuong,02,21.0,105.8\n"), // unknown province
            format!("{h}00070,Hoàn Kiếm,phuong,01,north,105.8\n"), // not a number
            format!("{h}00070,Hoàn Kiếm,phuong,01,91.0,105.8\n"), // out of range
            format!("{h}00070,Hoàn Kiếm,phuong,01,21.0\n"),       // short row
            format!("{h}00070,\"Hoàn, Kiếm\",phuong,01,21.0,105.8\n"), // quoted
            "code,name\n".to_owned(),                             // missing columns
        ] {
            assert!(
                matches!(Units::from_csv_text(p, &bad), Err(EnrichError::Csv { .. })),
                "{bad}"
            );
        }
    }
}
