//! Synthetic, realistic, signed results for tests, benchmarks and demos.
//!
//! Every sample is a pure function of `(seed, index)`: same seed, same data,
//! whatever the thread count. Wards are weighted unevenly (cities and
//! urban wards far above rural ones, many wards below quota), ISPs follow
//! market shares, speeds are log-normal by ISP and access type, a few
//! devices test many times a day (heavy testers), and about 1 % of results
//! carry client figures that disagree with their receipts (implausible).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ed25519_dalek::SigningKey;
use ispeed_enrich::PrefixTable;
use ispeed_proto::consts::PROTOCOL;
use ispeed_proto::receipt::{
    encode_public_key, Counting, DirectionReceipt, LatencyReceipt, Receipt, ReceiptPayload,
};
use ispeed_proto::results::{
    Access, ClientInfo, ClientKind, ClientMetrics, FixedMedium, Location, LocationSource,
    RadioTech, SubmitResult,
};
use ispeed_proto::wire::{ClientReport, TcpSummary};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::period::{Month, ICT_OFFSET_MS};
use crate::verify::Enricher;

/// Test point id of synthetic receipts.
pub const SYNTHETIC_TEST_POINT_ID: &str = "synthetic";
/// Line rate of the synthetic test point (Mbit/s).
pub const SYNTHETIC_LINE_RATE_MBPS: f64 = 10_000.0;

/// The synthetic test point's key, derived from the seed.
pub fn synthetic_key(seed: u64) -> SigningKey {
    let digest = Sha256::digest(format!("ispeed synthetic test point {seed}").as_bytes());
    SigningKey::from_bytes(&digest.into())
}

/// SplitMix64: tiny, fast, and good enough for synthetic data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-300);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    /// Log-normal with the given median and log-sd.
    pub fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }
}

/// An ISP's share and speed profile.
struct IspProfile {
    id: &'static str,
    share: f64,
    /// Fraction of its tests on mobile access.
    mobile: f64,
    /// Median download Mbit/s on fixed and on mobile access.
    fixed_down: f64,
    mobile_down: f64,
}

const PROFILES: &[IspProfile] = &[
    IspProfile {
        id: "viettel",
        share: 0.36,
        mobile: 0.55,
        fixed_down: 190.0,
        mobile_down: 85.0,
    },
    IspProfile {
        id: "vnpt",
        share: 0.28,
        mobile: 0.45,
        fixed_down: 170.0,
        mobile_down: 70.0,
    },
    IspProfile {
        id: "fpt",
        share: 0.17,
        mobile: 0.0,
        fixed_down: 210.0,
        mobile_down: 0.0,
    },
    IspProfile {
        id: "mobifone",
        share: 0.08,
        mobile: 1.0,
        fixed_down: 0.0,
        mobile_down: 55.0,
    },
    IspProfile {
        id: "cmc",
        share: 0.03,
        mobile: 0.0,
        fixed_down: 150.0,
        mobile_down: 0.0,
    },
    IspProfile {
        id: "sctv",
        share: 0.025,
        mobile: 0.0,
        fixed_down: 95.0,
        mobile_down: 0.0,
    },
    IspProfile {
        id: "vietnamobile",
        share: 0.02,
        mobile: 1.0,
        fixed_down: 0.0,
        mobile_down: 30.0,
    },
    IspProfile {
        id: "spt",
        share: 0.01,
        mobile: 0.0,
        fixed_down: 80.0,
        mobile_down: 0.0,
    },
    IspProfile {
        id: "netnam",
        share: 0.01,
        mobile: 0.0,
        fixed_down: 120.0,
        mobile_down: 0.0,
    },
    IspProfile {
        id: "vtvcab",
        share: 0.005,
        mobile: 0.0,
        fixed_down: 70.0,
        mobile_down: 0.0,
    },
];

/// Fraction of samples from heavy testers (few devices, many tests a day).
const HEAVY_SHARE: f64 = 0.03;
const IMPLAUSIBLE_SHARE: f64 = 0.01;

struct WardPick {
    code: String,
    lat: f64,
    lon: f64,
    /// Expected samples, for sizing the ward's device pool.
    expected: f64,
}

/// Produces synthetic submissions.
pub struct Generator {
    seed: u64,
    month: Month,
    samples: u64,
    key: SigningKey,
    public_key: String,
    wards: Vec<WardPick>,
    cumulative: Vec<f64>,
    ranges_v4: HashMap<&'static str, Vec<(u32, u32)>>,
    ranges_v6: HashMap<&'static str, Vec<(u128, u128)>>,
}

impl Generator {
    pub fn new(seed: u64, month: Month, samples: u64, enricher: &Enricher) -> Generator {
        let key = synthetic_key(seed);
        let public_key = encode_public_key(&key.verifying_key());
        // Ward weights: log-normal spread, cities and urban wards heavier.
        let mut rng = Rng::new(seed ^ 0x05EE_D0F3_A4D5);
        let mut weights = Vec::new();
        let mut wards = Vec::new();
        for ward in enricher.units.wards() {
            let mut weight = rng.log_normal(1.0, 1.2);
            if ward.kind == "phuong" {
                weight *= 3.0;
            }
            if matches!(ward.province_code.as_str(), "01" | "79") {
                weight *= 3.0;
            }
            weights.push(weight);
            wards.push(WardPick {
                code: ward.code.clone(),
                lat: ward.centroid_lat,
                lon: ward.centroid_lon,
                expected: 0.0,
            });
        }
        let total: f64 = weights.iter().sum();
        let mut cumulative = Vec::with_capacity(weights.len());
        let mut running = 0.0;
        for (ward, weight) in wards.iter_mut().zip(&weights) {
            running += weight / total;
            cumulative.push(running);
            ward.expected = weight / total * samples as f64;
        }
        let asn_to_isp: HashMap<u32, &'static str> = enricher
            .isps
            .asns()
            .iter()
            .filter_map(|a| {
                PROFILES
                    .iter()
                    .find(|p| p.id == a.isp_id)
                    .map(|p| (a.asn, p.id))
            })
            .collect();
        let table = PrefixTable::embedded().expect("embedded prefix table is valid");
        let mut ranges_v4: HashMap<&'static str, Vec<(u32, u32)>> = HashMap::new();
        for (start, end, asn) in table.ipv4_ranges() {
            if let Some(isp) = asn_to_isp.get(&asn) {
                ranges_v4
                    .entry(isp)
                    .or_default()
                    .push((start.into(), end.into()));
            }
        }
        let mut ranges_v6: HashMap<&'static str, Vec<(u128, u128)>> = HashMap::new();
        for (start, end, asn) in table.ipv6_ranges() {
            if let Some(isp) = asn_to_isp.get(&asn) {
                ranges_v6
                    .entry(isp)
                    .or_default()
                    .push((start.into(), end.into()));
            }
        }
        Generator {
            seed,
            month,
            samples,
            key,
            public_key,
            wards,
            cumulative,
            ranges_v4,
            ranges_v6,
        }
    }

    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Sample `index`. With `fresh_at_ms`, the test finishes then (for
    /// submission over HTTP, where receipts must be fresh); otherwise it
    /// falls in the generator's month.
    pub fn sample(&self, index: u64, fresh_at_ms: Option<u64>) -> SubmitResult {
        let mut rng = Rng::new(
            self.seed.wrapping_mul(0x2545_F491_4F6C_DD1D)
                ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let heavy = rng.unit() < HEAVY_SHARE;
        // Heavy testers: one device per 2 000 samples, each living in one
        // ward and testing about 20 times a day on 3 days of the month.
        let heavy_device = heavy.then(|| rng.below((self.samples / 2_000).max(1)));
        let ward_index = {
            let u = match heavy_device {
                Some(k) => Rng::new(self.seed ^ k.wrapping_mul(0xD6E8_FEB8_6659_FD93)).unit(),
                None => rng.unit(),
            };
            self.cumulative
                .partition_point(|c| *c < u)
                .min(self.wards.len() - 1)
        };
        let ward = &self.wards[ward_index];
        let profile = {
            let mut u = rng.unit() * PROFILES.iter().map(|p| p.share).sum::<f64>();
            PROFILES
                .iter()
                .find(|p| {
                    u -= p.share;
                    u < 0.0
                })
                .unwrap_or(&PROFILES[0])
        };
        let mobile = rng.unit() < profile.mobile;
        // Devices: a pool per ward about a quarter of its expected samples.
        let (device_id, day) = if let Some(k) = heavy_device {
            let day = ((k + rng.below(3) * 7) % 28) as i64;
            (format!("{:016x}-heavy-{k}", self.seed), day)
        } else {
            let pool = (ward.expected / 4.0).ceil().max(1.0) as u64;
            let k = rng.below(pool);
            (
                format!("{:016x}-{}-{k}", self.seed, ward.code),
                rng.below(28) as i64,
            )
        };
        let month_start_ms = self.month.first_day() as i64 * 86_400_000 - ICT_OFFSET_MS;
        let started_at_ms = match fresh_at_ms {
            Some(now) => now - 17_000,
            None => (month_start_ms + day * 86_400_000 + rng.below(86_400_000) as i64) as u64,
        };
        let finished_at_ms = started_at_ms + 16_000;

        let (down_median, sigma) = if mobile {
            (profile.mobile_down, 0.8)
        } else {
            (profile.fixed_down, 0.6)
        };
        let download = rng
            .log_normal(down_median, sigma)
            .min(SYNTHETIC_LINE_RATE_MBPS * 0.9);
        let upload_ratio = if mobile { 0.35 } else { 0.9 };
        let upload =
            (download * rng.log_normal(upload_ratio, 0.3)).min(SYNTHETIC_LINE_RATE_MBPS * 0.9);
        let latency_ms = rng.log_normal(if mobile { 28.0 } else { 9.0 }, 0.5);

        let ip = self.address(profile.id, &mut rng);
        let client_addr = SocketAddr::new(ip, 40_000 + rng.below(20_000) as u16);
        let client_download = download * (1.0 + 0.02 * rng.normal()).clamp(0.9, 1.1);
        let client_upload = upload * (1.0 + 0.05 * rng.unit());
        let client_latency = latency_ms * (1.1 + 0.2 * rng.unit()) + 0.3;
        let jitter = latency_ms * 0.1 * rng.unit();
        let report = ClientReport {
            download_mbps: Some(client_download),
            upload_mbps: Some(client_upload),
            latency_ms: Some(client_latency),
            jitter_ms: Some(jitter),
            loaded_latency_download_ms: Some(client_latency * 3.0),
            loaded_latency_upload_ms: Some(client_latency * 4.0),
            rpm: Some(60_000.0 / (client_latency * 3.5)),
            ipv6_capable: Some(ip.is_ipv6() || rng.unit() < 0.4),
        };
        let direction = |rate_mbps: f64, start_ms: u64, counting: Counting| {
            let duration_ms = 7_000;
            let window_ms = 4_000;
            DirectionReceipt {
                bytes: (rate_mbps * 1e6 / 8.0 * duration_ms as f64 / 1000.0) as u64,
                duration_ms,
                streams: 8,
                rate_bps: rate_mbps * 1e6,
                window_start_ms: start_ms + 3_000,
                window_end_ms: start_ms + 3_000 + window_ms,
                window_bytes: (rate_mbps * 1e6 / 8.0 * window_ms as f64 / 1000.0) as u64,
                stable: true,
                counting,
                tcp: TcpSummary::default(),
            }
        };
        let rtt_us = (latency_ms * 1000.0) as u32;
        let payload = ReceiptPayload {
            v: 1,
            protocol: PROTOCOL.to_owned(),
            session_id: Uuid::from_u128(
                u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()),
            )
            .to_string(),
            test_point_id: SYNTHETIC_TEST_POINT_ID.to_owned(),
            key: self.public_key.clone(),
            client_addr: client_addr.to_string(),
            ip_version: if ip.is_ipv4() { 4 } else { 6 },
            started_at_ms,
            finished_at_ms,
            download: Some(direction(download, 1_000, Counting::TcpAcked)),
            upload: Some(direction(upload, 8_500, Counting::TcpReceived)),
            latency: LatencyReceipt {
                idle_rtt_us: Some(rtt_us),
                min_rtt_us: Some(rtt_us.saturating_sub(rtt_us / 10)),
                loaded_download_rtt_us: Some(rtt_us * 3),
                loaded_upload_rtt_us: Some(rtt_us * 4),
            },
            client_report: report.clone(),
            checkpoint: false,
        };
        let receipt = Receipt::sign(&payload, &self.key);
        let mut metrics = ClientMetrics {
            download_mbps: report.download_mbps,
            upload_mbps: report.upload_mbps,
            latency_ms: report.latency_ms,
            jitter_ms: report.jitter_ms,
            loaded_latency_download_ms: report.loaded_latency_download_ms,
            loaded_latency_upload_ms: report.loaded_latency_upload_ms,
            ipv6_capable: report.ipv6_capable,
        };
        if rng.unit() < IMPLAUSIBLE_SHARE {
            // Edited after the test: inflated download.
            metrics.download_mbps = Some(client_download * 2.5 + 5.0);
        }
        let place = rng.unit();
        let (location, ward_code) = if place < 0.85 {
            let location = Location {
                lat: ward.lat + 0.002 * rng.normal(),
                lon: ward.lon + 0.002 * rng.normal(),
                accuracy_m: Some(rng.log_normal(30.0, 1.0)),
                source: if rng.unit() < 0.7 {
                    LocationSource::Gps
                } else {
                    LocationSource::Network
                },
            };
            (Some(location), None)
        } else if place < 0.95 {
            (None, Some(ward.code.clone()))
        } else {
            (None, None)
        };
        let access = if mobile {
            let tech = match rng.below(10) {
                0 => RadioTech::G3,
                1..=7 => RadioTech::G4,
                _ => RadioTech::G5,
            };
            Access::Mobile { tech: Some(tech) }
        } else {
            let medium = if rng.unit() < 0.8 {
                FixedMedium::Wifi
            } else {
                FixedMedium::Ethernet
            };
            Access::Fixed {
                medium: Some(medium),
            }
        };
        let kind = match rng.below(10) {
            0..=5 => ClientKind::App,
            6..=8 => ClientKind::Web,
            _ => ClientKind::Cli,
        };
        let result_id =
            Uuid::from_u128(u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()));
        // A third of web tests came through a province's banner or poster
        // (from the id's bits: the random sequence stays as it was).
        let source =
            (kind == ClientKind::Web && result_id.as_u128().is_multiple_of(3)).then(|| {
                let medium = if result_id.as_u128().is_multiple_of(2) {
                    "banner"
                } else {
                    "poster"
                };
                format!("so-{}.{medium}", &ward.code[..2])
            });
        SubmitResult {
            result_id,
            device_id,
            measured_at_ms: started_at_ms,
            client: ClientInfo {
                kind,
                version: "synthetic-1".to_owned(),
            },
            access,
            location,
            ward_code,
            legacy_ward_code: None,
            metrics,
            receipt,
            source,
            download_receipt: None,
        }
    }

    /// An address inside one of the ISP's ranges (IPv6 for 20 % where it has some).
    fn address(&self, isp: &str, rng: &mut Rng) -> IpAddr {
        if let Some(ranges) = self.ranges_v6.get(isp).filter(|_| rng.unit() < 0.2) {
            let (start, end) = ranges[rng.below(ranges.len() as u64) as usize];
            let span = end - start;
            let offset = if span == u128::MAX {
                u128::from(rng.next_u64())
            } else {
                (u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())) % (span + 1)
            };
            return IpAddr::V6(Ipv6Addr::from(start + offset));
        }
        match self.ranges_v4.get(isp) {
            Some(ranges) => {
                let (start, end) = ranges[rng.below(ranges.len() as u64) as usize];
                let offset = rng.below(u64::from(end - start) + 1) as u32;
                IpAddr::V4(Ipv4Addr::from(start + offset))
            }
            None => IpAddr::V4(Ipv4Addr::new(203, 0, 113, rng.below(250) as u8 + 1)),
        }
    }
}

/// Counts after writing synthetic results into a store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenerateReport {
    pub created: u64,
    pub existing: u64,
    pub implausible: u64,
    pub counted: u64,
}

/// Results built per chunk; chunks are built on the blocking pool two at a
/// time and stored in index order, so the heavy-tester cap (which depends
/// on ingest order) is the same on every run.
const CHUNK: u64 = 10_000;

/// Builds samples `0..generator.samples()` through the same record builder
/// as the HTTP path and stores them. The synthetic test point is recorded
/// but not approved: its receipts are accepted over HTTP only if a config
/// file approves its key.
pub async fn generate_into_store(
    store: std::sync::Arc<dyn crate::store::Store>,
    enricher: std::sync::Arc<Enricher>,
    generator: std::sync::Arc<Generator>,
    progress: impl Fn(u64),
) -> Result<GenerateReport, crate::store::StoreError> {
    use crate::store::{InsertOutcome, TestPointRecord};
    use crate::verify::{build_record, Tolerance, TrustedKey};
    use std::collections::VecDeque;

    let public_key = generator.public_key().to_owned();
    if !store
        .test_points()
        .await?
        .iter()
        .any(|tp| tp.public_key == public_key)
    {
        store
            .upsert_test_point(TestPointRecord {
                name: Some("synthetic data".to_owned()),
                status: ispeed_proto::registry::RegistrationStatus::Pending,
                configured: false,
                ..TestPointRecord::configured(
                    SYNTHETIC_TEST_POINT_ID.to_owned(),
                    public_key.clone(),
                    "synthetic:".to_owned(),
                    SYNTHETIC_LINE_RATE_MBPS,
                )
            })
            .await?;
    }
    let device_key = store.device_hash_key().await?;
    let trusted = std::sync::Arc::new(TrustedKey {
        test_point_id: SYNTHETIC_TEST_POINT_ID.to_owned(),
        key: generator.key.verifying_key(),
        line_rate_mbps: SYNTHETIC_LINE_RATE_MBPS,
        class: None,
    });
    let total = generator.samples();
    let build = |chunk: u64| {
        let (generator, enricher, trusted) = (generator.clone(), enricher.clone(), trusted.clone());
        tokio::task::spawn_blocking(move || {
            let tolerance = Tolerance::default();
            let first = chunk * CHUNK;
            (first..(first + CHUNK).min(total))
                .filter_map(|index| {
                    let submission = generator.sample(index, None);
                    let payload = ispeed_proto::Receipt::parse(&submission.receipt)
                        .and_then(|r| r.payload_unverified())
                        .expect("own receipt parses");
                    let received = payload.finished_at_ms + 2_000;
                    build_record(
                        &submission,
                        &payload,
                        &trusted,
                        &enricher,
                        &device_key,
                        &tolerance,
                        received,
                    )
                    .ok()
                })
                .collect::<Vec<_>>()
        })
    };
    let chunks = total.div_ceil(CHUNK);
    let mut in_flight = VecDeque::new();
    let mut next = 0;
    let mut report = GenerateReport::default();
    let mut done = 0;
    while next < chunks || !in_flight.is_empty() {
        while next < chunks && in_flight.len() < 3 {
            in_flight.push_back(build(next));
            next += 1;
        }
        let records = in_flight
            .pop_front()
            .expect("non-empty")
            .await
            .map_err(|e| {
                crate::store::StoreError::Database(format!("generator task failed: {e}"))
            })?;
        done += records.len() as u64;
        for outcome in store.insert(records).await? {
            match outcome {
                InsertOutcome::Created(stored) => {
                    report.created += 1;
                    report.counted += u64::from(stored.counted);
                    report.implausible += u64::from(
                        stored.status == ispeed_proto::results::ResultStatus::Implausible,
                    );
                }
                _ => report.existing += 1,
            }
        }
        progress(done);
    }
    store.after_bulk_load().await?;
    Ok(report)
}
