//! Ranking test points for a client (`GET /api/v1/locate`, spec/registry.md
//! §4). Pure: the caller passes what it knows of the client and of each
//! alive, approved test point; nothing here reads a clock or a store.
//!
//! The collector cannot measure the client's RTT, so it estimates one from
//! distance and the path between the client's ISP and the test point's
//! network, then adds a penalty that grows steeply with load. The client
//! measures real RTTs to the few candidates it gets and makes the final
//! choice; this ranking only has to put good candidates in the first five.

use ispeed_proto::registry::{TestPointClass, LOCATE_MAX_LOAD};

/// RTT of the access network and the two hosts, paid whatever the path.
pub const BASE_RTT_MS: f64 = 2.0;
/// Round-trip time per km of great-circle distance: light in fibre covers
/// 200 km per ms, paths are about 1.5× the great circle, and it is paid twice.
pub const RTT_MS_PER_KM: f64 = 2.0 * 1.5 / 200.0;
/// Distance assumed within Vietnam when either end's position is unknown.
pub const UNKNOWN_DOMESTIC_KM: f64 = 300.0;
/// Distance assumed to an international test point of unknown position
/// (about Vietnam to Singapore or Hong Kong).
pub const UNKNOWN_INTERNATIONAL_KM: f64 = 2500.0;
/// Extra RTT for leaving the client's ISP by each kind of path: none inside
/// it, one exchange (VNIX), a cloud's peering, or another ISP's network
/// (interconnects between domestic ISPs are where congestion usually is).
pub const VNIX_PENALTY_MS: f64 = 1.0;
pub const CLOUD_PENALTY_MS: f64 = 1.5;
pub const OTHER_ISP_PENALTY_MS: f64 = 3.0;
/// Score added for load `l` is `LOAD_WEIGHT_MS · l / (1 − l)`: 5 ms at half
/// load, 20 ms at 80 %; a test point at or above [`LOCATE_MAX_LOAD`] is not offered.
pub const LOAD_WEIGHT_MS: f64 = 5.0;

/// The client as far as the collector knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientView {
    /// ISP id from its address (`"other"` when unknown).
    pub isp: String,
    /// Its position (given, or its province's centre), if any.
    pub location: Option<(f64, f64)>,
}

/// One alive, approved test point.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateView {
    pub class: TestPointClass,
    /// The ISP whose network it is in (from its ASN), if a known one.
    pub isp: Option<String>,
    pub location: Option<(f64, f64)>,
    /// Reported load as a fraction of capacity.
    pub load: f64,
}

/// A candidate's place in the ranking.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// Index into the candidates given to [`rank`].
    pub index: usize,
    pub estimated_rtt_ms: f64,
    pub score: f64,
    /// On-net in the client's own ISP.
    pub on_net: bool,
}

/// Whether `candidate` sits inside the client's own ISP.
pub fn on_net(client: &ClientView, candidate: &CandidateView) -> bool {
    candidate.class == TestPointClass::OnNet
        && client.isp != ispeed_enrich::OTHER_ISP
        && candidate.isp.as_deref() == Some(client.isp.as_str())
}

/// Estimated RTT from the client to a candidate (ms).
pub fn estimated_rtt_ms(client: &ClientView, candidate: &CandidateView) -> f64 {
    let km = match (client.location, candidate.location) {
        (Some(a), Some(b)) => haversine_km(a, b),
        _ if candidate.class == TestPointClass::International => UNKNOWN_INTERNATIONAL_KM,
        _ => UNKNOWN_DOMESTIC_KM,
    };
    let path = match candidate.class {
        TestPointClass::OnNet if on_net(client, candidate) => 0.0,
        TestPointClass::OnNet => OTHER_ISP_PENALTY_MS,
        TestPointClass::Vnix => VNIX_PENALTY_MS,
        TestPointClass::Cloud => CLOUD_PENALTY_MS,
        // The distance already carries the international path.
        TestPointClass::International => VNIX_PENALTY_MS,
    };
    BASE_RTT_MS + km * RTT_MS_PER_KM + path
}

/// Ranks the candidates best first, leaving out those at or above
/// [`LOCATE_MAX_LOAD`]. Ties keep the input order (callers sort by id).
pub fn rank(client: &ClientView, candidates: &[CandidateView]) -> Vec<Ranked> {
    let mut ranked: Vec<Ranked> = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.load.is_finite() && c.load < LOCATE_MAX_LOAD)
        .map(|(index, c)| {
            let rtt = estimated_rtt_ms(client, c);
            let load = c.load.max(0.0);
            Ranked {
                index,
                estimated_rtt_ms: rtt,
                score: rtt + LOAD_WEIGHT_MS * load / (1.0 - load),
                on_net: on_net(client, c),
            }
        })
        .collect();
    ranked.sort_by(|a, b| a.score.total_cmp(&b.score).then(a.index.cmp(&b.index)));
    ranked
}

/// Great-circle distance between two (lat, lon) points in degrees.
pub fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0;
    let (lat1, lat2) = (a.0.to_radians(), b.0.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.1 - a.1).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HANOI: (f64, f64) = (21.03, 105.85);
    const HCMC: (f64, f64) = (10.78, 106.70);
    const SINGAPORE: (f64, f64) = (1.29, 103.85);

    fn client(isp: &str, location: Option<(f64, f64)>) -> ClientView {
        ClientView {
            isp: isp.into(),
            location,
        }
    }

    fn tp(class: TestPointClass, isp: Option<&str>, at: (f64, f64), load: f64) -> CandidateView {
        CandidateView {
            class,
            isp: isp.map(str::to_owned),
            location: Some(at),
            load,
        }
    }

    #[test]
    fn distance_is_right() {
        let km = haversine_km(HANOI, HCMC);
        assert!((1130.0..1160.0).contains(&km), "{km}");
        assert_eq!(haversine_km(HANOI, HANOI), 0.0);
    }

    #[test]
    fn nearest_wins_when_nothing_else_differs() {
        let cands = [
            tp(TestPointClass::Vnix, None, HCMC, 0.0),
            tp(TestPointClass::Vnix, None, HANOI, 0.0),
        ];
        let r = rank(&client("vnpt", Some(HANOI)), &cands);
        assert_eq!(r.iter().map(|r| r.index).collect::<Vec<_>>(), [1, 0]);
        assert!(r[1].estimated_rtt_ms - r[0].estimated_rtt_ms > 15.0);
    }

    #[test]
    fn own_isp_on_net_beats_vnix_in_the_same_city_and_other_isps_on_net_lose() {
        let cands = [
            tp(TestPointClass::OnNet, Some("fpt"), HANOI, 0.0),
            tp(TestPointClass::Vnix, None, HANOI, 0.0),
            tp(TestPointClass::OnNet, Some("viettel"), HANOI, 0.0),
        ];
        let r = rank(&client("viettel", Some(HANOI)), &cands);
        assert_eq!(r.iter().map(|r| r.index).collect::<Vec<_>>(), [2, 1, 0]);
        assert!(r[0].on_net && !r[1].on_net && !r[2].on_net);
        // A client of an unknown ISP is on-net nowhere.
        let r = rank(&client("other", Some(HANOI)), &cands);
        assert_eq!(r[0].index, 1);
        assert!(r.iter().all(|r| !r.on_net));
    }

    #[test]
    fn load_pushes_down_and_overload_drops_out() {
        let cands = [
            tp(TestPointClass::Vnix, None, HANOI, 0.85),
            tp(TestPointClass::Vnix, None, HANOI, 0.10),
            tp(TestPointClass::Vnix, None, HANOI, 0.90),
            tp(TestPointClass::Vnix, None, HANOI, f64::NAN),
        ];
        let r = rank(&client("vnpt", Some(HANOI)), &cands);
        assert_eq!(r.iter().map(|r| r.index).collect::<Vec<_>>(), [1, 0]);
        // Heavy load outweighs a city's distance: Hanoi at 85 % loses to
        // HCMC idle for a Hanoi client.
        let cands = [
            tp(TestPointClass::Vnix, None, HANOI, 0.85),
            tp(TestPointClass::Vnix, None, HCMC, 0.0),
        ];
        assert_eq!(rank(&client("vnpt", Some(HANOI)), &cands)[0].index, 1);
    }

    #[test]
    fn international_ranks_last_for_domestic_clients_even_without_positions() {
        let mut far = tp(TestPointClass::International, None, SINGAPORE, 0.0);
        let mut near = tp(TestPointClass::Cloud, None, HCMC, 0.5);
        let r = rank(&client("vnpt", Some(HCMC)), &[far.clone(), near.clone()]);
        assert_eq!(r[0].index, 1);
        far.location = None;
        near.location = None;
        let r = rank(&client("vnpt", None), &[far, near]);
        assert_eq!(r[0].index, 1);
        assert!(r[1].estimated_rtt_ms > 30.0);
    }

    #[test]
    fn ties_keep_input_order() {
        let cands = [
            tp(TestPointClass::Cloud, None, HANOI, 0.0),
            tp(TestPointClass::Cloud, None, HANOI, 0.0),
        ];
        let r = rank(&client("vnpt", None), &cands);
        assert_eq!(r.iter().map(|r| r.index).collect::<Vec<_>>(), [0, 1]);
    }
}
