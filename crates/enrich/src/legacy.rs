//! Wards before the July 2025 reform and the 2025 wards that took them over
//! (embedded `data/legacy.csv.gz`, from the shared legacy table). A result
//! that names an old ward (an older app, an import of earlier data) is
//! counted in its successor; a ward that was split maps to its default
//! successor (the one the official conversion names first).

use std::collections::HashMap;
use std::io::Read;

use crate::{csv, EnrichError, Units};

const LEGACY_GZ: &[u8] = include_bytes!("../data/legacy.csv.gz");

/// One pre-2025 ward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyWard {
    pub code: String,
    /// Full name, e.g. `"Phường Bến Nghé"`.
    pub name: String,
    /// Its former district, e.g. `"Quận 1"`.
    pub district: String,
    pub province_code: String,
    /// The 2025 ward a bare reference to it is counted in.
    pub successor: String,
    /// Every 2025 ward that took over a part of it (the default first).
    pub successors: Vec<String>,
}

/// Old ward code → its record.
#[derive(Debug, Clone)]
pub struct LegacyWards {
    by_code: HashMap<String, LegacyWard>,
}

impl LegacyWards {
    /// The embedded table, checked against the 2025 units: every successor
    /// must exist and every old ward must have exactly one default.
    pub fn embedded(units: &Units) -> Result<LegacyWards, EnrichError> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(LEGACY_GZ)
            .read_to_string(&mut text)
            .map_err(|e| csv::err("legacy.csv.gz", 0, format!("cannot inflate: {e}")))?;
        let cols = [
            "old_ward_code",
            "old_ward_name",
            "old_district_name",
            "old_province_code",
            "new_ward_code",
            "is_default",
        ];
        let mut by_code: HashMap<String, LegacyWard> = HashMap::new();
        for r in csv::rows("legacy.csv", &text, &cols)? {
            let new = r.fields[4];
            if units.ward(new).is_none() {
                return Err(r.err(format!("successor {new} is not a 2025 ward")));
            }
            let default = match r.fields[5] {
                "1" => true,
                "0" => false,
                other => return Err(r.err(format!("bad is_default {other:?}"))),
            };
            let entry = by_code
                .entry(r.fields[0].to_owned())
                .or_insert_with(|| LegacyWard {
                    code: r.fields[0].to_owned(),
                    name: r.fields[1].to_owned(),
                    district: r.fields[2].to_owned(),
                    province_code: r.fields[3].to_owned(),
                    successor: String::new(),
                    successors: Vec::new(),
                });
            if default {
                if !entry.successor.is_empty() {
                    return Err(r.err("two default successors"));
                }
                entry.successor = new.to_owned();
                entry.successors.insert(0, new.to_owned());
            } else {
                entry.successors.push(new.to_owned());
            }
        }
        if let Some(orphan) = by_code.values().find(|w| w.successor.is_empty()) {
            return Err(csv::err(
                "legacy.csv",
                0,
                format!("old ward {} has no default successor", orphan.code),
            ));
        }
        Ok(LegacyWards { by_code })
    }

    pub fn get(&self, old_code: &str) -> Option<&LegacyWard> {
        self.by_code.get(old_code)
    }

    pub fn len(&self) -> usize {
        self.by_code.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_code.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ten_wards_of_former_district_1_go_to_four() {
        let units = Units::embedded().unwrap();
        let legacy = LegacyWards::embedded(&units).unwrap();
        assert!(legacy.len() > 10_000);
        let district_1 = [
            "26734", "26737", "26740", "26743", "26746", "26749", "26752", "26755", "26758",
            "26761",
        ];
        let mut successors: Vec<&str> = district_1
            .iter()
            .map(|code| {
                let ward = legacy.get(code).unwrap();
                assert_eq!(ward.district, "Quận 1");
                units.ward(&ward.successor).unwrap().name.as_str()
            })
            .collect();
        successors.sort_unstable();
        successors.dedup();
        assert_eq!(
            successors,
            ["Bến Thành", "Cầu Ông Lãnh", "Sài Gòn", "Tân Định"]
        );
        // A split ward lists every successor, the default first.
        let da_kao = legacy.get("26737").unwrap();
        assert_eq!(da_kao.successors, ["26740", "26737"]);
    }
}
