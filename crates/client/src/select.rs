//! Choosing a test point (spec/registry.md §5): ask the collector's locate
//! for ranked candidates with access tokens, measure the RTT to each in
//! parallel, pick the lowest — or an on-net test point of the client's own
//! ISP when it is within [`ON_NET_RTT_FACTOR`] of the best — and move on to
//! the next candidate when one cannot take the test.
//!
//! [`choose_order`] is pure, so the rule is tested with injected RTTs.

use std::time::{Duration, Instant};

use ispeed_proto::registry::{Candidate, Located, TestPointClass, ON_NET_RTT_FACTOR};
use ispeed_proto::ErrorCode;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::engine::{run_test_resuming, Event, Partial, TestOptions};
use crate::http::connect_tcp;
use crate::submit::{locate, SubmitError};
use crate::target::{Family, Target};
use crate::{ClientError, TestResult};

/// TCP handshakes per candidate; the smallest is its RTT.
const PROBES_PER_CANDIDATE: usize = 3;
/// Wait between attempts when every candidate was full and the collector
/// gave no `Retry-After`.
const DEFAULT_RETRY_WAIT: Duration = Duration::from_secs(5);

/// The order to try candidates in (indices into the inputs). Reachable
/// candidates by RTT, lowest first (ties keep locate's order); an on-net
/// candidate of the client's own ISP goes first when its RTT is within
/// [`ON_NET_RTT_FACTOR`] of the best; candidates that did not answer come
/// last, in locate's order, as a last resort.
pub fn choose_order(rtts_ms: &[Option<f64>], on_net: &[bool]) -> Vec<usize> {
    let mut reachable: Vec<usize> = (0..rtts_ms.len())
        .filter(|&i| rtts_ms[i].is_some_and(f64::is_finite))
        .collect();
    reachable.sort_by(|&a, &b| {
        let (x, y) = (
            rtts_ms[a].unwrap_or(f64::INFINITY),
            rtts_ms[b].unwrap_or(f64::INFINITY),
        );
        x.total_cmp(&y).then(a.cmp(&b))
    });
    if let Some(&best) = reachable.first() {
        let limit = rtts_ms[best].unwrap_or(f64::INFINITY) * ON_NET_RTT_FACTOR;
        if let Some(position) = reachable.iter().position(|&i| {
            on_net.get(i).copied().unwrap_or(false) && rtts_ms[i].is_some_and(|r| r <= limit)
        }) {
            let preferred = reachable.remove(position);
            reachable.insert(0, preferred);
        }
    }
    let unreachable: Vec<usize> = (0..rtts_ms.len())
        .filter(|i| !reachable.contains(i))
        .collect();
    reachable.extend(unreachable);
    reachable
}

/// Each candidate's RTT: the smallest of a few TCP handshakes, all
/// candidates probed at once, within `budget` in total. `None` for a
/// candidate that did not answer in time.
pub async fn probe_rtts(
    urls: &[String],
    family: Option<Family>,
    budget: Duration,
) -> Vec<Option<f64>> {
    // No budget: keep locate's order (a zero timeout can still let a fast
    // handshake through, which would make the order depend on timing).
    if budget.is_zero() {
        return vec![None; urls.len()];
    }
    let deadline = tokio::time::Instant::now() + budget;
    let probes = urls.iter().map(|url| {
        let url = url.clone();
        async move {
            let Ok(target) = Target::parse(&url) else {
                return None;
            };
            let attempt = async {
                let endpoint = target.resolve(family).await.ok()?;
                let mut best: Option<f64> = None;
                for _ in 0..PROBES_PER_CANDIDATE {
                    match connect_tcp(endpoint.addr).await {
                        Ok((_stream, took)) => {
                            let ms = took.as_secs_f64() * 1e3;
                            best = Some(best.map_or(ms, |b: f64| b.min(ms)));
                        }
                        Err(_) => break,
                    }
                }
                best
            };
            // Whatever was measured by the deadline counts.
            tokio::time::timeout_at(deadline, attempt)
                .await
                .ok()
                .flatten()
        }
    });
    futures_util::future::join_all(probes).await
}

/// How one candidate ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The test ran here.
    Tested,
    /// No connection.
    Unreachable,
    /// `503`: full or shutting down.
    OverCapacity,
    /// The access token was refused.
    TokenRefused,
    /// The test point went away during the test.
    Lost,
}

/// One candidate tried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub test_point_id: String,
    pub url: String,
    pub outcome: AttemptOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// How the test point was chosen, kept with the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    pub test_point_id: String,
    pub class: TestPointClass,
    /// Measured RTT to it when choosing (ms).
    pub rtt_ms: Option<f64>,
    /// On-net in the client's own ISP.
    pub on_net: bool,
    /// The client's ISP as the collector saw it.
    pub client_isp: String,
    /// Every candidate tried, in order, ending with the one that ran the test.
    pub attempts: Vec<Attempt>,
    /// From the start of selection until the chosen test point took the test (ms).
    pub admission_wait_ms: u64,
}

/// How to select.
#[derive(Debug, Clone)]
pub struct SelectOptions {
    pub collector_url: String,
    /// Locate's query string (without `?`): `lat`, `lon`, `province`, `family`.
    pub query: String,
    /// Longest time to spend finding a test point that takes the test,
    /// waits for capacity included.
    pub admission_budget: Duration,
    /// Time for measuring the candidates' RTTs.
    pub probe_budget: Duration,
}

impl SelectOptions {
    pub fn new(collector_url: impl Into<String>) -> SelectOptions {
        SelectOptions {
            collector_url: collector_url.into(),
            query: String::new(),
            admission_budget: Duration::from_secs(30),
            probe_budget: Duration::from_millis(ispeed_proto::registry::SELECTION_PROBE_BUDGET_MS),
        }
    }
}

fn emit(events: &Option<mpsc::UnboundedSender<Event>>, event: Event) {
    if let Some(sender) = events {
        let _ = sender.send(event);
    }
}

/// Candidates with measured RTTs, in the order they would be tried.
pub async fn rank_candidates(
    located: &Located,
    family: Option<Family>,
    probe_budget: Duration,
) -> (Vec<usize>, Vec<Option<f64>>) {
    let urls: Vec<String> = located.candidates.iter().map(|c| c.url.clone()).collect();
    let rtts = probe_rtts(&urls, family, probe_budget).await;
    let on_net: Vec<bool> = located.candidates.iter().map(|c| c.on_net).collect();
    (choose_order(&rtts, &on_net), rtts)
}

/// Locates, chooses and runs the test, moving on from candidates that
/// cannot take it, and waiting (within the admission budget) when every
/// candidate is full.
pub async fn locate_and_run(
    test: &TestOptions,
    select: &SelectOptions,
    events: Option<mpsc::UnboundedSender<Event>>,
) -> Result<(TestResult, Selection), ClientError> {
    let started = Instant::now();
    let deadline = started + select.admission_budget;
    let mut attempts = Vec::new();
    loop {
        let wait = match locate(&select.collector_url, &select.query).await {
            Ok(located) => {
                let (order, rtts) =
                    rank_candidates(&located, test.family, select.probe_budget).await;
                match run_in_order(
                    test,
                    &located,
                    &order,
                    &rtts,
                    &mut attempts,
                    &events,
                    started,
                )
                .await
                {
                    Ok(done) => return Ok(done),
                    Err(RunError::Fatal(error)) => return Err(error),
                    Err(RunError::AllBusy) => DEFAULT_RETRY_WAIT,
                }
            }
            Err(SubmitError::Retryable {
                status: Some(503),
                retry_after_s,
                message,
            }) => {
                tracing::debug!(%message, "no test point available");
                retry_after_s.map_or(DEFAULT_RETRY_WAIT, Duration::from_secs)
            }
            Err(error) => {
                return Err(ClientError::Unreachable(format!(
                    "cannot locate a test point at {}: {error}",
                    select.collector_url
                )))
            }
        };
        let now = Instant::now();
        if now + wait.min(DEFAULT_RETRY_WAIT) >= deadline {
            return Err(ClientError::NoCapacity(format!(
                "no test point took the test within {} s ({} attempts)",
                select.admission_budget.as_secs(),
                attempts.len()
            )));
        }
        tokio::time::sleep(wait.min(deadline - now)).await;
    }
}

enum RunError {
    /// Every candidate was full, unreachable or refused the token.
    AllBusy,
    Fatal(ClientError),
}

/// Runs the test on the candidates of `located` in the given order (no
/// RTT probing, no waiting): for callers that choose the order themselves.
pub async fn try_in_order(
    test: &TestOptions,
    located: &Located,
    order: &[usize],
    events: Option<mpsc::UnboundedSender<Event>>,
) -> Result<(TestResult, Selection), ClientError> {
    let rtts = vec![None; located.candidates.len()];
    let mut attempts = Vec::new();
    match run_in_order(
        test,
        located,
        order,
        &rtts,
        &mut attempts,
        &events,
        Instant::now(),
    )
    .await
    {
        Ok(done) => Ok(done),
        Err(RunError::Fatal(error)) => Err(error),
        Err(RunError::AllBusy) => Err(ClientError::NoCapacity(format!(
            "none of {} candidates took the test: {attempts:?}",
            order.len()
        ))),
    }
}

/// Tries the candidates in `order`: an admission failure moves on to the
/// next; a test point lost mid-test is retried on the next one once.
async fn run_in_order(
    test: &TestOptions,
    located: &Located,
    order: &[usize],
    rtts: &[Option<f64>],
    attempts: &mut Vec<Attempt>,
    events: &Option<mpsc::UnboundedSender<Event>>,
    started: Instant,
) -> Result<(TestResult, Selection), RunError> {
    let mut lost_once = false;
    // The download a lost test point measured and signed before it went away.
    let mut resume: Option<Box<Partial>> = None;
    for (position, &index) in order.iter().enumerate() {
        let candidate: &Candidate = &located.candidates[index];
        let next = order
            .get(position + 1)
            .map(|&i| located.candidates[i].id.clone());
        emit(
            events,
            Event::Selected {
                id: candidate.id.clone(),
                url: candidate.url.clone(),
                rtt_ms: rtts[index],
                on_net: candidate.on_net,
            },
        );
        let mut options = test.clone();
        options.server = candidate.url.clone();
        options.access_token = Some(candidate.token.clone());
        let admitted_at = Instant::now();
        let outcome = run_test_resuming(&options, events.clone(), resume.as_deref()).await;
        let (kind, detail) = match outcome {
            Ok(result) => {
                attempts.push(Attempt {
                    test_point_id: candidate.id.clone(),
                    url: candidate.url.clone(),
                    outcome: AttemptOutcome::Tested,
                    detail: None,
                });
                let selection = Selection {
                    test_point_id: candidate.id.clone(),
                    class: candidate.class,
                    rtt_ms: rtts[index],
                    on_net: candidate.on_net,
                    client_isp: located.client.isp.clone(),
                    attempts: attempts.clone(),
                    admission_wait_ms: admitted_at.duration_since(started).as_millis() as u64,
                };
                return Ok((result, selection));
            }
            Err(interrupted) if interrupted.admitted => {
                // Lost mid-test: once, the next candidate measures what is
                // missing — the upload alone when a checkpoint backs the download.
                let mid_test = matches!(
                    classify(&interrupted.error),
                    Some(AttemptOutcome::Lost | AttemptOutcome::Unreachable)
                ) || matches!(interrupted.error, ClientError::Server { status, .. } if status >= 500);
                if lost_once || !mid_test {
                    return Err(RunError::Fatal(interrupted.error));
                }
                lost_once = true;
                let kept = interrupted.partial.is_some();
                if kept {
                    resume = interrupted.partial;
                }
                let detail = if kept {
                    format!(
                        "{}; its signed download is kept, the upload is measured again",
                        interrupted.error
                    )
                } else {
                    interrupted.error.to_string()
                };
                (AttemptOutcome::Lost, detail)
            }
            Err(interrupted) => match classify(&interrupted.error) {
                Some(kind) if kind != AttemptOutcome::Lost => (kind, interrupted.error.to_string()),
                _ => return Err(RunError::Fatal(interrupted.error)),
            },
        };
        emit(
            events,
            Event::Failover {
                from: candidate.id.clone(),
                reason: detail.clone(),
                to: next,
            },
        );
        attempts.push(Attempt {
            test_point_id: candidate.id.clone(),
            url: candidate.url.clone(),
            outcome: kind,
            detail: Some(detail),
        });
    }
    Err(RunError::AllBusy)
}

/// Which failures another candidate can fix.
fn classify(error: &ClientError) -> Option<AttemptOutcome> {
    match error {
        ClientError::Unreachable(_) => Some(AttemptOutcome::Unreachable),
        ClientError::Lost(_) => Some(AttemptOutcome::Lost),
        ClientError::Server { code, .. } => match code {
            ErrorCode::OverCapacity | ErrorCode::ShuttingDown => Some(AttemptOutcome::OverCapacity),
            ErrorCode::TokenMissing
            | ErrorCode::TokenInvalid
            | ErrorCode::TokenExpired
            | ErrorCode::TokenReused
            | ErrorCode::TokenAudience => Some(AttemptOutcome::TokenRefused),
            // The test point ended the session under us (a restart).
            ErrorCode::UnknownSession | ErrorCode::SessionExpired | ErrorCode::Internal => {
                Some(AttemptOutcome::Lost)
            }
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_rtt_first_and_unreachable_last() {
        let order = choose_order(&[Some(9.0), None, Some(3.0), Some(5.0)], &[false; 4]);
        assert_eq!(order, [2, 3, 0, 1]);
    }

    #[test]
    fn own_isp_on_net_wins_within_twenty_percent() {
        // Best is 10 ms; on-net at 11.9 ms is within 20 %: it goes first.
        let order = choose_order(&[Some(10.0), Some(11.9), Some(30.0)], &[false, true, false]);
        assert_eq!(order, [1, 0, 2]);
        // Exactly 20 % slower still counts; 12.1 ms does not.
        assert_eq!(
            choose_order(&[Some(10.0), Some(12.0)], &[false, true]),
            [1, 0]
        );
        assert_eq!(
            choose_order(&[Some(10.0), Some(12.1)], &[false, true]),
            [0, 1]
        );
        // Of two on-net candidates within the margin, the faster one.
        assert_eq!(
            choose_order(&[Some(10.0), Some(11.5), Some(11.0)], &[false, true, true]),
            [2, 0, 1]
        );
        // An on-net candidate that did not answer is not preferred.
        assert_eq!(choose_order(&[Some(10.0), None], &[false, true]), [0, 1]);
    }

    #[test]
    fn ties_keep_locate_order_and_nothing_reachable_keeps_it_all() {
        assert_eq!(choose_order(&[Some(4.0), Some(4.0)], &[false; 2]), [0, 1]);
        assert_eq!(choose_order(&[None, None, None], &[false; 3]), [0, 1, 2]);
        assert_eq!(choose_order(&[], &[]), Vec::<usize>::new());
    }

    #[test]
    fn admission_failures_move_on_and_other_errors_stop() {
        let server = |code| ClientError::Server {
            status: 0,
            code,
            message: String::new(),
        };
        assert_eq!(
            classify(&server(ErrorCode::OverCapacity)),
            Some(AttemptOutcome::OverCapacity)
        );
        assert_eq!(
            classify(&server(ErrorCode::TokenReused)),
            Some(AttemptOutcome::TokenRefused)
        );
        assert_eq!(
            classify(&ClientError::Unreachable(String::new())),
            Some(AttemptOutcome::Unreachable)
        );
        assert_eq!(
            classify(&ClientError::Lost(String::new())),
            Some(AttemptOutcome::Lost)
        );
        assert_eq!(classify(&server(ErrorCode::BadRequest)), None);
        assert_eq!(classify(&ClientError::Receipt(String::new())), None);
    }
}
