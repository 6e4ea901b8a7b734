//! Loading a new version of the administrative units (`spec/units.md`):
//! the files are checked in full (`ispeed_enrich::UnitSet::load`), the
//! effective month must not have begun (months already collected stay on
//! the units they were collected on), and only then is the version stored,
//! in one write. A refused version changes nothing.

use std::io::{Read, Write};

use ispeed_enrich::{UnitProblems, UnitSet};
use sha2::{Digest, Sha256};

use crate::period::Month;
use crate::store::{Store, StoreError, StoredUnitVersion};

/// Why a unit version was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the files are not a valid unit version: {0}")]
    Invalid(#[from] UnitProblems),
    #[error("the effective month {0} has begun or passed; a new version starts next month at the earliest")]
    Past(Month),
    #[error("a unit version already starts in {0}")]
    Exists(Month),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The embedded 2025 units apply from this month (the July 2025 reform).
pub fn base_month() -> Month {
    Month::new(2025, 7).expect("valid month")
}

/// Checks and stores a version; returns the stored record.
pub async fn load(
    store: &dyn Store,
    name: &str,
    effective: Month,
    provinces_csv: String,
    units_csv: String,
    wards_geojson: Vec<u8>,
    now_ms: u64,
) -> Result<StoredUnitVersion, LoadError> {
    if effective <= Month::of_unix_ms(now_ms) {
        return Err(LoadError::Past(effective));
    }
    let (provinces, units, geojson) = (
        provinces_csv.clone(),
        units_csv.clone(),
        wards_geojson.clone(),
    );
    tokio::task::spawn_blocking(move || UnitSet::load(&provinces, &units, &geojson).map(drop))
        .await
        .map_err(|e| StoreError::Database(e.to_string()))??;
    let mut hash = Sha256::new();
    for part in [
        provinces_csv.as_bytes(),
        units_csv.as_bytes(),
        &wards_geojson,
    ] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&wards_geojson)
        .map_err(|e| StoreError::Database(e.to_string()))?;
    let version = StoredUnitVersion {
        effective_month: effective.0,
        name: name.to_owned(),
        loaded_at_ms: now_ms,
        provinces_csv,
        units_csv,
        wards_geojson_gz: gz
            .finish()
            .map_err(|e| StoreError::Database(e.to_string()))?,
        sha256: crate::admin::hex(&hash.finalize()),
    };
    if !store.add_unit_version(version.clone()).await? {
        return Err(LoadError::Exists(effective));
    }
    Ok(version)
}

/// Rebuilds a stored version (checked again, as it was when loaded).
pub fn decode(version: &StoredUnitVersion) -> Result<UnitSet, UnitProblems> {
    let mut geojson = Vec::new();
    flate2::read::GzDecoder::new(version.wards_geojson_gz.as_slice())
        .read_to_end(&mut geojson)
        .map_err(|e| UnitProblems(vec![format!("wards.geojson: cannot inflate: {e}")]))?;
    UnitSet::load(&version.provinces_csv, &version.units_csv, &geojson)
}
