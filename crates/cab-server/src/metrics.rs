//! The measures that show whether change is under control: deployment
//! frequency, lead time for changes, change failure rate, failed-deployment
//! recovery time, the share of emergency and break-glass changes, approval
//! lead time by risk level, and what the records lack. All computed in SQL
//! from the records (`cab_db::metrics`); this module reads the filter and
//! puts the figures together for the page and the API.
//!
//! A read first derives the rows of the changes whose records were written
//! since the last refresh ([`refresh`]; every server also runs it in the
//! background, one at a time across servers), so the figures include every
//! committed record. Figures for the same filter at the same version of the
//! derived rows are the same figures: each server keeps the last ones it
//! read ([`Cache`]) and answers from them until a refresh derives anything.

use std::collections::BTreeMap;

use cab_db::metrics::{ApprovalMeasures, ChangeMeasures, DeploymentMeasures, Filter, Gaps};
use cab_domain::metrics::{Bucket, Period, next_bucket, share};
use cab_domain::risk::RiskLevel;
use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};

use crate::error::AppError;

/// How many reads of the measures one server runs at once.
const CONCURRENT_READS: usize = 2;
/// How long a read waits for its turn before the answer is "busy".
const WAIT_FOR_TURN: std::time::Duration = std::time::Duration::from_secs(15);
static READS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(CONCURRENT_READS);
/// How many queued changes a read derives before it reads: a long queue
/// (after an upgrade, or a bulk import) is the background refresher's.
const READ_REFRESH: i64 = 500;
/// How many queued changes one background refresh derives at a time.
const BACKGROUND_REFRESH: i64 = 2_000;
/// How many filters' figures a server keeps.
const CACHED_REPORTS: usize = 256;

/// The figures a server read last, by filter, with the version of the
/// derived rows they were read at.
#[derive(Default)]
pub struct Cache {
    reports: std::sync::Mutex<std::collections::HashMap<CacheKey, (i64, std::sync::Arc<Report>)>>,
}

type CacheKey = (
    NaiveDate,
    NaiveDate,
    &'static str,
    Option<String>,
    Option<String>,
);

impl Cache {
    fn key(s: &Selection) -> CacheKey {
        (
            s.period.from,
            s.period.to,
            s.bucket.as_str(),
            s.service.clone(),
            s.environment.clone(),
        )
    }

    fn get(&self, s: &Selection, version: i64) -> Option<std::sync::Arc<Report>> {
        let reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        match reports.get(&Self::key(s)) {
            Some((v, report)) if *v == version => Some(report.clone()),
            _ => None,
        }
    }

    fn put(&self, s: &Selection, version: i64, report: std::sync::Arc<Report>) {
        let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        // Figures of older versions are never read again.
        reports.retain(|_, (v, _)| *v >= version);
        if reports.len() >= CACHED_REPORTS {
            reports.clear();
        }
        reports.insert(Self::key(s), (version, report));
    }
}

/// What to measure, as the page's and the API's query string give it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetricsQuery {
    /// The first day, YYYY-MM-DD (default: 89 days before `to`).
    pub from: Option<String>,
    /// The last day, YYYY-MM-DD (default: today, UTC).
    pub to: Option<String>,
    /// `week` (default) or `month`.
    pub bucket: Option<String>,
    /// One service (default: all).
    pub service: Option<String>,
    /// One environment's key (default: every production environment).
    pub environment: Option<String>,
}

/// The filter, checked.
#[derive(Debug, Clone)]
pub struct Selection {
    pub period: Period,
    pub bucket: Bucket,
    pub service: Option<String>,
    pub environment: Option<String>,
}

impl MetricsQuery {
    /// The selection, or every fault by field. `environments` are the keys
    /// that exist.
    pub fn select(&self, today: NaiveDate, environments: &[String]) -> Result<Selection, AppError> {
        let mut errors: Vec<cab_domain::change::FieldError> = Vec::new();
        let period = Period::parse(self.from.as_deref(), self.to.as_deref(), today)
            .map_err(|e| errors.extend(e))
            .ok();
        let bucket = match self.bucket.as_deref().map(str::trim) {
            None | Some("") => Some(Bucket::Week),
            Some(b) => Bucket::parse(b).or_else(|| {
                errors.push(cab_domain::change::FieldError {
                    field: "bucket",
                    message: "Choose week or month.".into(),
                });
                None
            }),
        };
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let environment = given(&self.environment);
        if let Some(env) = &environment
            && !environments.contains(env)
        {
            errors.push(cab_domain::change::FieldError {
                field: "environment",
                message: format!(
                    "No such environment; choose one of {}.",
                    environments.join(", ")
                ),
            });
        }
        let service = given(&self.service);
        if let Some(name) = &service {
            if name.chars().count() > 100 {
                errors.push(cab_domain::change::FieldError {
                    field: "service",
                    message: "A service name is at most 100 characters.".into(),
                });
            } else if let Err(e) = cab_domain::text::check_name("service", name) {
                errors.push(e);
            }
        }
        match (period, bucket) {
            (Some(period), Some(bucket)) if errors.is_empty() => Ok(Selection {
                period,
                bucket,
                service,
                environment,
            }),
            _ => Err(errors.into()),
        }
    }
}

/// The measures over a period, by bucket and in total.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Report {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub bucket: String,
    /// The service measured; none for all.
    pub service: Option<String>,
    /// The environment measured; none for every production environment.
    pub environment: Option<String>,
    /// Every bucket the period touches, empty ones included, in order.
    pub buckets: Vec<Figures>,
    /// The whole period: its percentiles are over all its records, not an
    /// average of the buckets'.
    pub total: Figures,
    pub data_quality: DataQuality,
    /// Changes whose latest records the figures do not include yet: they
    /// wait for the background refresh (zero but after a bulk import).
    pub changes_pending: i64,
}

/// The measures of one bucket (or of the whole period).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Figures {
    /// The first day.
    pub start: NaiveDate,
    /// The day after the last (the buckets at the ends are cut to the period).
    pub end: NaiveDate,
    pub deployment_frequency: Frequency,
    pub lead_time: LeadTime,
    pub change_failure_rate: FailureRate,
    pub recovery_time: Recovery,
    pub emergency: EmergencyShare,
    /// From submission to decision, by the engineer's risk level. Decisions
    /// are not deployed: the environment filter does not apply here.
    pub approval_lead_time: Vec<ApprovalLeadTime>,
}

/// Successful deployments.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Frequency {
    pub deployments: i64,
    pub per_day: f64,
    /// The median time between two consecutive successful deployments.
    pub median_gap_hours: Option<f64>,
}

/// From the first commit (when the deployment reported its commits) or
/// else from submission, to the change's first successful deployment.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct LeadTime {
    pub changes: i64,
    pub p50_hours: Option<f64>,
    pub p90_hours: Option<f64>,
    /// How many start at the first commit.
    pub from_commit: i64,
    /// How many start at submission, their deployment not having reported
    /// commits.
    pub from_submission: i64,
}

/// Deployments that failed, were rolled back, needed an intervention or
/// caused an incident, over all the deployments that ended; each counted
/// once, so the rate never exceeds 1.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct FailureRate {
    pub failed: i64,
    pub deployments: i64,
    pub rate: Option<f64>,
}

/// From a failure to the restoration of service.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Recovery {
    pub failures: i64,
    pub p50_minutes: Option<f64>,
    pub p90_minutes: Option<f64>,
    /// Failures with no restoration on record yet.
    pub unrecovered: i64,
}

/// Emergency changes among the changes first deployed, and break-glass
/// deployments among the deployments.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct EmergencyShare {
    pub changes: i64,
    pub emergency: i64,
    pub emergency_share: Option<f64>,
    pub break_glass: i64,
    pub break_glass_share: Option<f64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApprovalLeadTime {
    pub risk: String,
    pub risk_label: String,
    pub decided: i64,
    pub p50_hours: Option<f64>,
    pub p90_hours: Option<f64>,
}

/// What the records lack for the measures to be exact.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct DataQuality {
    /// Deployments that ended in the period.
    pub deployments: i64,
    /// Of those, deployments whose pipeline reported no commits: their
    /// change's lead time starts at submission.
    pub deployments_without_commits: i64,
    /// Incidents a break-glass named that no review of its change lists.
    pub incidents_unlinked: i64,
    /// Incidents reviews list whose cause is still only suspected.
    pub incidents_undetermined: i64,
}

/// Reads the measures for `selection`.
pub async fn report(
    pool: &PgPool,
    cache: &Cache,
    selection: &Selection,
) -> Result<Report, AppError> {
    let mut fresh = {
        let mut conn = pool.acquire().await?;
        cab_db::metrics::freshness(&mut conn).await?
    };
    if fresh.pending > 0 {
        // Unless a refresh runs already (it derives what it took, and the
        // page says what is left); a failed one leaves the figures as they
        // were, and the background refresher says why.
        match derive_queued(pool, READ_REFRESH, Turn::IfFree).await {
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "deriving the measures before a read failed"),
        }
        let mut conn = pool.acquire().await?;
        fresh = cab_db::metrics::freshness(&mut conn).await?;
    }
    let answer = |report: &Report| Report {
        changes_pending: fresh.pending,
        ..report.clone()
    };
    if let Some(report) = cache.get(selection, fresh.version) {
        return Ok(answer(&report));
    }
    // A few reads at a time per server: the measures are aggregates over
    // many rows, and must never take the connections the board needs.
    let _turn = tokio::time::timeout(WAIT_FOR_TURN, READS.acquire())
        .await
        .map_err(|_| AppError::Busy)?
        .map_err(|_| AppError::Busy)?;
    // Another read of the same filter may have read it while this one
    // waited.
    if let Some(report) = cache.get(selection, fresh.version) {
        return Ok(answer(&report));
    }
    let filter = Filter {
        from: selection.period.start(),
        to: selection.period.end(),
        environment: selection.environment.clone(),
        service: selection.service.clone(),
        bucket: selection.bucket.as_str(),
    };
    let mut tx = pool.begin().await?;
    // One snapshot (see `prepare`): the version and the rows it names.
    cab_db::metrics::prepare(&mut tx).await?;
    let version = cab_db::metrics::freshness(&mut tx).await?.version;
    let deployments = cab_db::metrics::deployments(&mut tx, &filter).await?;
    let changes = cab_db::metrics::changes(&mut tx, &filter).await?;
    let approvals = cab_db::metrics::approvals(&mut tx, &filter).await?;
    let gaps = cab_db::metrics::gaps(&mut tx, &filter).await?;
    tx.commit().await?;
    let report = std::sync::Arc::new(assemble(selection, deployments, changes, approvals, gaps));
    cache.put(selection, version, report.clone());
    Ok(answer(&report))
}

/// Derives the rows of up to `limit` queued changes, oldest first: how many
/// it derived. Any number of servers may call it at once; one derives at a
/// time, and each queued change is derived once.
pub async fn refresh(pool: &PgPool, limit: i64) -> Result<usize, AppError> {
    derive_queued(pool, limit, Turn::Wait).await
}

/// Whether a refresh waits for another to end, or gives way to it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Turn {
    Wait,
    IfFree,
}

async fn derive_queued(pool: &PgPool, limit: i64, turn: Turn) -> Result<usize, AppError> {
    let mut tx = pool.begin().await?;
    if turn == Turn::Wait {
        cab_db::metrics::lock_refresh(&mut tx).await?;
    } else if !cab_db::metrics::try_lock_refresh(&mut tx).await? {
        return Ok(0);
    }
    let changes = cab_db::metrics::take_pending(&mut tx, limit).await?;
    if changes.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    cab_db::metrics::derive(&mut tx, &changes).await?;
    cab_db::metrics::restore(&mut tx, &changes).await?;
    cab_db::metrics::bump_version(&mut tx).await?;
    tx.commit().await?;
    Ok(changes.len())
}

/// Every `every`, derives whatever is queued, until the process ends.
pub async fn run_refresher(pool: PgPool, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        loop {
            match refresh(&pool, BACKGROUND_REFRESH).await {
                Ok(0) => break,
                Ok(n) => tracing::debug!(changes = n, "derived the measures of changes"),
                Err(e) => {
                    tracing::warn!(error = %e, "deriving the measures failed; will retry");
                    break;
                }
            }
        }
    }
}

/// The environment keys that exist, for the filter.
pub async fn environment_keys(pool: &PgPool) -> Result<Vec<String>, AppError> {
    let mut conn = pool.acquire().await?;
    Ok(crate::deployments::environments(&mut conn)
        .await?
        .into_iter()
        .map(|e| e.rules.key)
        .collect())
}

fn day(at: Option<chrono::DateTime<Utc>>) -> Option<NaiveDate> {
    at.map(|t| t.date_naive())
}

fn assemble(
    s: &Selection,
    deployments: Vec<DeploymentMeasures>,
    changes: Vec<ChangeMeasures>,
    approvals: Vec<ApprovalMeasures>,
    gaps: Gaps,
) -> Report {
    let deployments: BTreeMap<Option<NaiveDate>, DeploymentMeasures> = deployments
        .into_iter()
        .map(|d| (day(d.bucket), d))
        .collect();
    let changes: BTreeMap<Option<NaiveDate>, ChangeMeasures> =
        changes.into_iter().map(|c| (day(c.bucket), c)).collect();
    let mut by_risk: BTreeMap<Option<NaiveDate>, Vec<ApprovalMeasures>> = BTreeMap::new();
    for a in approvals {
        by_risk.entry(day(a.bucket)).or_default().push(a);
    }
    let p = s.period;
    let figures = |key: Option<NaiveDate>, start: NaiveDate, end: NaiveDate| {
        let start = start.max(p.from);
        let end = end.min(p.to + chrono::Duration::days(1));
        figures(
            start,
            end,
            deployments.get(&key),
            changes.get(&key),
            by_risk.get(&key).map(Vec::as_slice).unwrap_or_default(),
        )
    };
    let buckets = p
        .buckets(s.bucket)
        .into_iter()
        .map(|b| figures(Some(b), b, next_bucket(b, s.bucket)))
        .collect();
    let total = figures(None, p.from, p.to + chrono::Duration::days(1));
    let ended = deployments.get(&None);
    Report {
        from: p.from,
        to: p.to,
        bucket: s.bucket.as_str().to_owned(),
        service: s.service.clone(),
        environment: s.environment.clone(),
        buckets,
        total,
        data_quality: DataQuality {
            deployments: ended.map_or(0, |d| d.ended),
            deployments_without_commits: ended.map_or(0, |d| d.without_commits),
            incidents_unlinked: gaps.incidents_unlinked,
            incidents_undetermined: gaps.incidents_undetermined,
        },
        changes_pending: 0,
    }
}

fn figures(
    start: NaiveDate,
    end: NaiveDate,
    d: Option<&DeploymentMeasures>,
    c: Option<&ChangeMeasures>,
    approvals: &[ApprovalMeasures],
) -> Figures {
    let days = (end - start).num_days().max(1) as f64;
    let succeeded = d.map_or(0, |d| d.succeeded);
    let ended = d.map_or(0, |d| d.ended);
    let failed = d.map_or(0, |d| d.failed);
    let first = c.map_or(0, |c| c.changes);
    let emergency = c.map_or(0, |c| c.emergency);
    let break_glass = d.map_or(0, |d| d.break_glass);
    let from_commit = c.map_or(0, |c| c.from_commit);
    Figures {
        start,
        end,
        deployment_frequency: Frequency {
            deployments: succeeded,
            per_day: succeeded as f64 / days,
            median_gap_hours: d.and_then(|d| d.gap_p50_hours),
        },
        lead_time: LeadTime {
            changes: first,
            p50_hours: c.and_then(|c| c.lead_p50_hours),
            p90_hours: c.and_then(|c| c.lead_p90_hours),
            from_commit,
            from_submission: first - from_commit,
        },
        change_failure_rate: FailureRate {
            failed,
            deployments: ended,
            rate: share(failed, ended),
        },
        recovery_time: Recovery {
            failures: failed,
            p50_minutes: d.and_then(|d| d.recovery_p50_minutes),
            p90_minutes: d.and_then(|d| d.recovery_p90_minutes),
            unrecovered: d.map_or(0, |d| d.unrecovered),
        },
        emergency: EmergencyShare {
            changes: first,
            emergency,
            emergency_share: share(emergency, first),
            break_glass,
            break_glass_share: share(break_glass, ended),
        },
        approval_lead_time: RiskLevel::ALL
            .iter()
            .map(|level| {
                let a = approvals.iter().find(|a| a.risk_level == level.as_str());
                ApprovalLeadTime {
                    risk: level.as_str().to_owned(),
                    risk_label: level.label().to_owned(),
                    decided: a.map_or(0, |a| a.decided),
                    p50_hours: a.and_then(|a| a.p50_hours),
                    p90_hours: a.and_then(|a| a.p90_hours),
                }
            })
            .collect(),
    }
}
