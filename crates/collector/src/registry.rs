//! The collector's view of its test points: the durable records (mirrored
//! from the store), which of them are alive and how loaded (memory only,
//! refreshed by heartbeats), and the rules that turn a verified heartbeat
//! into a new or updated record or a typed refusal. No I/O and no clock:
//! [`crate::state::CollectorState`] does the store writes and passes `now_ms`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use ispeed_proto::registry::{
    AdminTestPoint, Capacity, Heartbeat, Load, RegistrationStatus, Rejection,
    HEARTBEAT_MAX_SKEW_MS, LIVENESS_TIMEOUT_S,
};
use ispeed_proto::ErrorCode;

use crate::store::{TestPointDetails, TestPointRecord};

/// What the collector last heard from a test point.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Liveness {
    pub received_at_ms: u64,
    /// The heartbeat's own time: each must be later than the last.
    pub sent_at_ms: u64,
    pub load: Load,
    pub capacity: Capacity,
}

impl Liveness {
    pub fn alive(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.received_at_ms) <= LIVENESS_TIMEOUT_S * 1000
    }

    pub fn load_fraction(&self) -> f64 {
        self.load.fraction(&self.capacity)
    }
}

/// What a heartbeat asks of the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A test point seen for the first time: stored as pending.
    New(TestPointRecord),
    /// A known test point whose declared details changed.
    Update(TestPointRecord),
    /// Nothing durable changed; only liveness and load.
    Unchanged,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct RegistryMetrics {
    pub heartbeats_accepted: AtomicU64,
    pub heartbeats_refused: AtomicU64,
    pub locate_answered: AtomicU64,
    pub locate_empty: AtomicU64,
    pub tokens_issued: AtomicU64,
}

impl RegistryMetrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Records and liveness. Records change only through the collector's
/// serialised registration path; liveness on every heartbeat.
#[derive(Debug, Default)]
pub struct Registry {
    records: RwLock<HashMap<String, TestPointRecord>>,
    live: Mutex<HashMap<String, Liveness>>,
    pub metrics: RegistryMetrics,
}

impl Registry {
    pub fn new(records: Vec<TestPointRecord>) -> Registry {
        Registry {
            records: RwLock::new(records.into_iter().map(|r| (r.id.clone(), r)).collect()),
            ..Registry::default()
        }
    }

    pub fn record(&self, id: &str) -> Option<TestPointRecord> {
        read(&self.records).get(id).cloned()
    }

    pub fn records(&self) -> Vec<TestPointRecord> {
        let mut all: Vec<TestPointRecord> = read(&self.records).values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Mirrors a record the store has durably written.
    pub fn put(&self, record: TestPointRecord) {
        let mut records = write(&self.records);
        // The store keeps one id per key: a renamed test point replaces its old row.
        records.retain(|id, r| r.public_key != record.public_key || *id == record.id);
        records.insert(record.id.clone(), record);
    }

    pub fn liveness(&self, id: &str) -> Option<Liveness> {
        lock(&self.live).get(id).copied()
    }

    pub fn forget_liveness(&self, id: &str) {
        lock(&self.live).remove(id);
    }

    /// Records that `id` is alive with this load.
    pub fn mark_alive(&self, id: &str, liveness: Liveness) {
        lock(&self.live).insert(id.to_owned(), liveness);
    }

    /// Takes what another instance heard, unless this one heard later.
    pub fn merge_liveness(&self, id: &str, liveness: Liveness) {
        let mut live = lock(&self.live);
        match live.get(id) {
            Some(known) if known.received_at_ms >= liveness.received_at_ms => {}
            _ => {
                live.insert(id.to_owned(), liveness);
            }
        }
    }

    /// Decides what a heartbeat (already verified as signed by the key it
    /// names) means, refusing replays, clock skew, key changes, revoked test
    /// points and undeclared identity changes of approved ones.
    pub fn decide(&self, hb: &Heartbeat, now_ms: u64) -> Result<Change, Rejection> {
        if hb.sent_at_ms.abs_diff(now_ms) > HEARTBEAT_MAX_SKEW_MS {
            return Err(Rejection::new(
                ErrorCode::StaleHeartbeat,
                format!(
                    "the heartbeat's time is {} s from the collector's clock (at most {} s allowed); check the test point's clock",
                    hb.sent_at_ms.abs_diff(now_ms) / 1000,
                    HEARTBEAT_MAX_SKEW_MS / 1000
                ),
            ));
        }
        if let Some(last) = self.liveness(&hb.test_point_id) {
            if hb.sent_at_ms <= last.sent_at_ms {
                return Err(Rejection::new(
                    ErrorCode::StaleHeartbeat,
                    "the heartbeat is not newer than the last one (a replay?)",
                ));
            }
        }
        let records = read(&self.records);
        if let Some(other) = records
            .values()
            .find(|r| r.public_key == hb.key && r.id != hb.test_point_id)
        {
            return Err(Rejection::new(
                ErrorCode::KeyMismatch,
                format!(
                    "this key is registered to test point {:?}; one key, one test point",
                    other.id
                ),
            ));
        }
        let declared = details_of(hb);
        let Some(known) = records.get(&hb.test_point_id) else {
            return Ok(Change::New(TestPointRecord {
                id: hb.test_point_id.clone(),
                public_key: hb.key.clone(),
                url: hb.primary_url().unwrap_or_default().to_owned(),
                name: hb.name.clone(),
                province_code: hb.province_code.clone(),
                line_rate_mbps: hb.capacity.line_rate_mbps,
                status: RegistrationStatus::Pending,
                configured: false,
                details: Some(declared),
                registered_at_ms: Some(now_ms),
                approved_at_ms: None,
                revoked_at_ms: None,
            }));
        };
        if known.public_key != hb.key {
            return Err(Rejection::new(
                ErrorCode::KeyMismatch,
                format!(
                    "test point {:?} is registered with another key; a new key needs a new id \
                     (or an admin revokes the old registration)",
                    hb.test_point_id
                ),
            ));
        }
        if known.status == RegistrationStatus::Revoked {
            return Err(Rejection::new(
                ErrorCode::TestPointRevoked,
                format!("test point {:?} was revoked", hb.test_point_id),
            ));
        }
        if known.approved() {
            if let Some(before) = &known.details {
                if (before.class, &before.operator, before.asn)
                    != (declared.class, &declared.operator, declared.asn)
                {
                    return Err(Rejection::new(
                        ErrorCode::RegistrationChanged,
                        format!(
                            "test point {:?} was approved as {} of {:?} (AS{:?}); a change of class, \
                             operator or ASN must be approved again",
                            hb.test_point_id,
                            before.class.as_str(),
                            before.operator,
                            before.asn
                        ),
                    ));
                }
            }
        }
        let url = if known.configured && known.details.is_none() {
            // A config-file entry's URL is the operator's word until it heartbeats.
            hb.primary_url().unwrap_or(&known.url).to_owned()
        } else {
            hb.primary_url().unwrap_or_default().to_owned()
        };
        let updated = TestPointRecord {
            url,
            name: hb.name.clone().or_else(|| known.name.clone()),
            province_code: hb.province_code.clone(),
            line_rate_mbps: hb.capacity.line_rate_mbps,
            details: Some(declared),
            registered_at_ms: known.registered_at_ms.or(Some(now_ms)),
            ..known.clone()
        };
        Ok(if updated == *known {
            Change::Unchanged
        } else {
            Change::Update(updated)
        })
    }

    /// Every record as an admin sees it.
    pub fn admin_view(&self, now_ms: u64) -> Vec<AdminTestPoint> {
        self.records()
            .into_iter()
            .map(|r| self.admin_entry(&r, now_ms))
            .collect()
    }

    pub fn admin_entry(&self, r: &TestPointRecord, now_ms: u64) -> AdminTestPoint {
        let live = self.liveness(&r.id);
        AdminTestPoint {
            id: r.id.clone(),
            status: r.status,
            public_key: r.public_key.clone(),
            url: r.url.clone(),
            name: r.name.clone(),
            operator: r.details.as_ref().map(|d| d.operator.clone()),
            class: r.class(),
            asn: r.details.as_ref().and_then(|d| d.asn),
            province_code: r.province_code.clone(),
            registered_at_ms: r.registered_at_ms,
            approved_at_ms: r.approved_at_ms,
            revoked_at_ms: r.revoked_at_ms,
            configured: r.configured,
            last_heartbeat_ms: live.map(|l| l.received_at_ms),
            alive: live.is_some_and(|l| l.alive(now_ms)),
            load: live.map(|l| l.load_fraction()),
        }
    }

    /// Gauges for `/metrics`: (approved, pending, revoked, alive approved).
    pub fn counts(&self, now_ms: u64) -> (u64, u64, u64, u64) {
        let records = self.records();
        let count = |s| records.iter().filter(|r| r.status == s).count() as u64;
        let alive = records
            .iter()
            .filter(|r| r.approved() && self.liveness(&r.id).is_some_and(|l| l.alive(now_ms)))
            .count() as u64;
        (
            count(RegistrationStatus::Approved),
            count(RegistrationStatus::Pending),
            count(RegistrationStatus::Revoked),
            alive,
        )
    }
}

fn details_of(hb: &Heartbeat) -> TestPointDetails {
    TestPointDetails {
        class: hb.class,
        operator: hb.operator.clone(),
        asn: hb.asn,
        ipv4_url: hb.ipv4_url.clone(),
        ipv6_url: hb.ipv6_url.clone(),
        ward_code: hb.ward_code.clone(),
        lat: hb.lat,
        lon: hb.lon,
        access: hb.access,
        max_sessions: hb.capacity.max_sessions,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}
fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ispeed_proto::registry::{AccessMode, TestPointClass};

    const NOW: u64 = 1_800_000_000_000;

    fn heartbeat(id: &str, key: &str, sent_at_ms: u64) -> Heartbeat {
        Heartbeat {
            v: 1,
            test_point_id: id.into(),
            key: key.into(),
            sent_at_ms,
            ipv4_url: Some("http://10.0.0.1:8080".into()),
            ipv6_url: None,
            name: None,
            operator: "VNPT".into(),
            asn: Some(45899),
            class: TestPointClass::OnNet,
            province_code: Some("01".into()),
            ward_code: None,
            lat: None,
            lon: None,
            access: AccessMode::TokenRequired,
            capacity: Capacity {
                max_sessions: 50,
                line_rate_mbps: 1000.0,
            },
            load: Load::default(),
        }
    }

    fn registered(registry: &Registry, hb: &Heartbeat, status: RegistrationStatus) {
        let Change::New(mut record) = registry.decide(hb, NOW).unwrap() else {
            panic!("expected a new record");
        };
        record.status = status;
        registry.put(record);
        registry.mark_alive(
            &hb.test_point_id,
            Liveness {
                received_at_ms: NOW,
                sent_at_ms: hb.sent_at_ms,
                load: hb.load,
                capacity: hb.capacity,
            },
        );
    }

    #[test]
    fn first_heartbeat_registers_as_pending_and_repeats_change_nothing() {
        let registry = Registry::default();
        let hb = heartbeat("a", "KEY-A", NOW);
        let Change::New(record) = registry.decide(&hb, NOW).unwrap() else {
            panic!()
        };
        assert_eq!(record.status, RegistrationStatus::Pending);
        assert_eq!(record.url, "http://10.0.0.1:8080");
        registry.put(record);
        let mut next = hb.clone();
        next.sent_at_ms += 10_000;
        next.load.active_sessions = 7;
        assert_eq!(registry.decide(&next, NOW + 10_000), Ok(Change::Unchanged));
        next.ipv4_url = Some("http://10.0.0.2:8080".into());
        assert!(matches!(
            registry.decide(&next, NOW + 10_000),
            Ok(Change::Update(r)) if r.url == "http://10.0.0.2:8080"
        ));
    }

    #[test]
    fn replays_skew_key_changes_and_revocation_are_refused() {
        let registry = Registry::default();
        let hb = heartbeat("a", "KEY-A", NOW);
        registered(&registry, &hb, RegistrationStatus::Approved);
        let code = |r: Result<Change, Rejection>| r.unwrap_err().code;
        // The same heartbeat again, or an older one.
        assert_eq!(
            code(registry.decide(&hb, NOW + 1)),
            ErrorCode::StaleHeartbeat
        );
        // Ten minutes off the collector's clock.
        let late = heartbeat("a", "KEY-A", NOW - 600_000);
        assert_eq!(code(registry.decide(&late, NOW)), ErrorCode::StaleHeartbeat);
        // The same id with another key, and the same key under another id.
        let rekeyed = heartbeat("a", "KEY-B", NOW + 10_000);
        assert_eq!(
            code(registry.decide(&rekeyed, NOW + 10_000)),
            ErrorCode::KeyMismatch
        );
        let renamed = heartbeat("b", "KEY-A", NOW + 10_000);
        assert_eq!(
            code(registry.decide(&renamed, NOW + 10_000)),
            ErrorCode::KeyMismatch
        );
        // An approved test point may not change its class on its own.
        let mut reclassed = heartbeat("a", "KEY-A", NOW + 10_000);
        reclassed.class = TestPointClass::Vnix;
        assert_eq!(
            code(registry.decide(&reclassed, NOW + 10_000)),
            ErrorCode::RegistrationChanged
        );
        // Revoked: refused for good.
        let mut record = registry.record("a").unwrap();
        record.status = RegistrationStatus::Revoked;
        registry.put(record);
        let later = heartbeat("a", "KEY-A", NOW + 20_000);
        assert_eq!(
            code(registry.decide(&later, NOW + 20_000)),
            ErrorCode::TestPointRevoked
        );
    }

    #[test]
    fn liveness_ends_after_the_timeout() {
        let registry = Registry::default();
        registered(
            &registry,
            &heartbeat("a", "K", NOW),
            RegistrationStatus::Approved,
        );
        let live = registry.liveness("a").unwrap();
        assert!(live.alive(NOW + LIVENESS_TIMEOUT_S * 1000));
        assert!(!live.alive(NOW + LIVENESS_TIMEOUT_S * 1000 + 1));
        assert_eq!(registry.counts(NOW), (1, 0, 0, 1));
        assert_eq!(registry.counts(NOW + 31_000), (1, 0, 0, 0));
    }
}
