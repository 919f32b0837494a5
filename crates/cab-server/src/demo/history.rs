//! The board's past: thirteen weeks of changes before this one, each filed
//! by one of the demo's engineers, decided by its CAB, deployed DEV → STAGE
//! → PROD by the pipeline and closed by its author (the latest successes
//! not yet), with signed-off reviews where one was owed. It gives the
//! measures on `/measures` weeks to compare: more deployments each week
//! (4 successful ones in the oldest week, 12 in the last), fewer of them
//! failing (a third, then one in thirteen), a shorter lead time, two
//! emergency changes, and pipelines that more and more often report the
//! commits they deploy.
//!
//! The services stamp the present, so the past is written in one statement
//! through `cab_db::demo::lay_history`, and its audit events (each step of
//! every change, the team's sign-ins, a few failed ones and a few refused
//! votes) are appended as they were recorded then, in time order, before
//! anything is recorded at the present. Everything here follows from the
//! week and the change's place in it, so the figures are the same on every
//! board.

use std::collections::{BTreeMap, BTreeSet};

use cab_domain::approval::{AssessmentDecision, Duty, check_duty};
use cab_domain::change::{
    Category, ChangeContent, ChangeFacts, ChangeState, ChangeType, Environment, Priority,
    TestLevels,
};
use cab_domain::lifecycle::RETROSPECTIVE_DUE;
use cab_domain::review::{
    self, Causation, CloseCode, DEFAULT_DUE_DAYS, Incident, Intervention, Owed, ReviewContent,
    Severity,
};
use cab_domain::risk::{RISK_MODEL_VERSION, RiskAnswers, RiskAssessment, RiskLevel, assess};
use chrono::{DateTime, Datelike, Duration, NaiveTime, Utc};
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::audit_log::{self, Entity};
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::request::Origin;

/// How many weeks the history covers, ending with the week before this one.
pub const WEEKS: usize = 13;

/// One week's PROD deployments, oldest week first.
#[derive(Debug, Clone, Copy)]
pub struct Week {
    /// Succeeded (a hotfixed one among them).
    pub succeeded: usize,
    /// Of those, the ones whose change needed a hotfix afterwards.
    pub hotfixed: usize,
    /// Failed, and fixed forward.
    pub failed: usize,
    /// Rolled back.
    pub rolled_back: usize,
}

const fn week(succeeded: usize, hotfixed: usize, failed: usize, rolled_back: usize) -> Week {
    Week {
        succeeded,
        hotfixed,
        failed,
        rolled_back,
    }
}

/// The weeks, oldest first. Failures (failed, rolled back or hotfixed) over
/// the deployments that ended fall from 2 in 6 to 1 in 13.
pub const HISTORY: [Week; WEEKS] = [
    week(4, 0, 1, 1),
    week(5, 0, 1, 1),
    week(5, 0, 1, 1),
    week(6, 0, 1, 1),
    week(7, 1, 1, 0),
    week(7, 0, 1, 1),
    week(8, 0, 1, 1),
    week(9, 1, 1, 0),
    week(9, 0, 1, 1),
    week(10, 0, 1, 1),
    week(11, 0, 1, 1),
    week(11, 0, 0, 1),
    week(12, 0, 1, 0),
];

impl Week {
    /// PROD deployments that ended: succeeded, failed or rolled back.
    pub fn ended(self) -> usize {
        self.succeeded + self.failed + self.rolled_back
    }

    /// How the `j`th deployment of the week ended.
    fn ending(self, w: usize, j: usize) -> Ending {
        let n = self.ended();
        if self.failed > 0 && j == 1 {
            Ending::Failed
        } else if self.rolled_back > 0 && j == n / 2 {
            Ending::RolledBack
        } else if self.hotfixed > 0 && j == n - 2 {
            Ending::Hotfixed
        } else if (w, j) == SUSPECTED {
            Ending::Suspected
        } else {
            Ending::Succeeded
        }
    }
}

/// The two emergency changes: (week, place in the week, title,
/// description, service).
const EMERGENCIES: [(usize, usize, &str, &str, &str); 2] = [
    (
        3,
        2,
        "Patch the XML parser in billing for CVE-2026-3141",
        "The invoice import's XML parser expands external entities, and the flaw is being exploited; upgrade it and turn entity expansion off.",
        "billing",
    ),
    (
        8,
        4,
        "Block the credential-stuffing attack at the API gateway",
        "Rate-limit sign-in attempts per client and block the address ranges behind the attack on the public API.",
        "api-gateway",
    ),
];

/// The change whose review links an incident it may have caused, not yet
/// confirmed: (week, place in the week).
const SUSPECTED: (usize, usize) = (9, 11);

/// The services the history deploys.
const SERVICES: [&str; 10] = [
    "payments-api",
    "billing",
    "ledger",
    "crm",
    "orders-api",
    "notifications",
    "api-gateway",
    "reporting",
    "storefront",
    "edge-proxy",
];

/// The kinds of routine change: title and description (`{svc}` is the
/// service), category, risk level.
const ROUTINE: [(&str, &str, Category, RiskLevel); 8] = [
    (
        "Weekly dependency update for {svc}",
        "Routine update of {svc}'s libraries from the weekly dependency scan.",
        Category::DependencyUpdate,
        RiskLevel::Low,
    ),
    (
        "Release the sprint's work on {svc}",
        "The sprint's features and fixes for {svc}, behind feature flags where customers see them.",
        Category::Feature,
        RiskLevel::Medium,
    ),
    (
        "Tune the connection pool of {svc}",
        "A larger pool and a shorter idle timeout for {svc}, after last week's saturation alerts.",
        Category::Configuration,
        RiskLevel::Medium,
    ),
    (
        "Fix retry handling in {svc}",
        "{svc} backs off exponentially instead of retrying a slow dependency at once.",
        Category::BugFix,
        RiskLevel::Low,
    ),
    (
        "Scale out {svc} for the month-end peak",
        "Two more {svc} instances and a larger database connection limit ahead of month-end traffic.",
        Category::Infrastructure,
        RiskLevel::High,
    ),
    (
        "Rotate the service credentials of {svc}",
        "The quarterly rotation of {svc}'s database and API credentials.",
        Category::SecurityPatch,
        RiskLevel::Medium,
    ),
    (
        "Upgrade the language runtime of {svc}",
        "Move {svc} to the current runtime release; the old one leaves support next month.",
        Category::DependencyUpdate,
        RiskLevel::High,
    ),
    (
        "Add latency alerts to {svc}",
        "Alert on {svc}'s p99 latency per endpoint, not only on its error rate.",
        Category::Configuration,
        RiskLevel::Low,
    ),
];

/// How a change's PROD deployment ended, and what followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Succeeded,
    /// Succeeded, but an incident it caused needed a hotfix.
    Hotfixed,
    /// Succeeded; an incident that afternoon may have been caused by it.
    Suspected,
    /// Failed, and fixed forward after an incident.
    Failed,
    RolledBack,
}

impl Ending {
    fn prod_state(self) -> &'static str {
        match self {
            Ending::Failed => "failed",
            Ending::RolledBack => "rolled_back",
            _ => "succeeded",
        }
    }

    fn close_code(self) -> CloseCode {
        match self {
            Ending::Succeeded => CloseCode::Successful,
            Ending::Hotfixed | Ending::Suspected => CloseCode::SuccessfulWithIssues,
            Ending::Failed => CloseCode::FailedNotRolledBack,
            Ending::RolledBack => CloseCode::FailedRolledBack,
        }
    }

    fn close_notes(self, svc: &str) -> String {
        match self {
            Ending::Succeeded => "Deployed to PROD as planned; no alerts since.".into(),
            Ending::Hotfixed => {
                format!("Deployed, but {svc} slowed down that afternoon and needed a hotfix.")
            }
            Ending::Suspected => {
                "Deployed as planned; an incident the same afternoon may be related and is being looked into."
                    .into()
            }
            Ending::Failed => {
                "The PROD deployment failed half way; the fix went out the same day.".into()
            }
            Ending::RolledBack => {
                "Rolled back after the error rate rose; it comes back as a new change.".into()
            }
        }
    }

    fn prod_note(self) -> &'static str {
        match self {
            Ending::Failed => "The database migration step failed: a lock timeout on a busy table.",
            Ending::RolledBack => "Rolled back: the error rate passed 2 % after the switch.",
            _ => "",
        }
    }
}

/// One change of the history, before it is written.
struct Past {
    id: Uuid,
    author: &'static str,
    content: ChangeContent,
    risk: RiskAssessment,
    retrospective_due: Option<DateTime<Utc>>,
    state: ChangeState,
    created_at: DateTime<Utc>,
    submitted_at: DateTime<Utc>,
    decided_at: DateTime<Utc>,
    approvers: Vec<&'static str>,
    assessed_at: Option<DateTime<Utc>>,
    closed: Option<(DateTime<Utc>, CloseCode, String)>,
    dev_at: DateTime<Utc>,
    stage_at: DateTime<Utc>,
    prod_at: DateTime<Utc>,
    ending: Ending,
    rolled_back_at: Option<DateTime<Utc>>,
    commits: Vec<String>,
    first_commit_at: Option<DateTime<Utc>>,
    review: Option<Review>,
}

struct Review {
    content: ReviewContent,
    reasons: Vec<String>,
    owed_at: DateTime<Utc>,
    due_at: DateTime<Utc>,
    written_at: DateTime<Utc>,
    signed_off_by: &'static str,
    signed_off_at: DateTime<Utc>,
}

/// A number that looks random and is always the same for `seed`.
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hours(h: usize) -> Duration {
    Duration::hours(h as i64)
}

fn minutes(m: usize) -> Duration {
    Duration::minutes(m as i64)
}

/// The Monday (00:00 UTC) of the week `weeks_ago` weeks before `now`'s.
fn monday(now: DateTime<Utc>, weeks_ago: usize) -> DateTime<Utc> {
    let today = now.date_naive();
    let this = today - Duration::days(today.weekday().num_days_from_monday() as i64);
    (this - Duration::weeks(weeks_ago as i64))
        .and_time(NaiveTime::MIN)
        .and_utc()
}

/// The `j`th change of week `w` (0 the oldest); `i` counts the changes
/// before it.
fn past(now: DateTime<Utc>, w: usize, j: usize, i: usize) -> Past {
    let week = HISTORY[w];
    let n = week.ended();
    let ending = week.ending(w, j);
    let emergency = EMERGENCIES.iter().find(|e| (e.0, e.1) == (w, j));
    let svc = emergency.map_or(SERVICES[(7 * w + 3 * j) % SERVICES.len()], |e| e.4);
    let (title, description, category, level) = match emergency {
        Some(&(_, _, title, description, _)) => (
            title.to_owned(),
            description.to_owned(),
            Category::SecurityPatch,
            RiskLevel::High,
        ),
        None => {
            let (title, description, category, level) = ROUTINE[(3 * w + j) % ROUTINE.len()];
            (
                title.replace("{svc}", svc),
                description.replace("{svc}", svc),
                category,
                level,
            )
        }
    };
    let author = if (w + j).is_multiple_of(2) {
        "erin"
    } else {
        "eddie"
    };
    let (first_cab, second_cab) = if (w + j).is_multiple_of(2) {
        ("carol", "carl")
    } else {
        ("carl", "carol")
    };

    // Spread over the working days, during working hours; the emergencies
    // in the evening.
    let prod_at = monday(now, WEEKS - w)
        + Duration::days((j * 5 / n) as i64)
        + if emergency.is_some() {
            hours(20)
        } else {
            hours(9 + 2 * (j % 4))
        }
        + minutes((j * 17) % 60);
    // The pipeline gets faster, approvals a little too, and less time
    // passes between the first commit and filing the change.
    let (stage_gap, dev_gap, commit_gap) = match emergency {
        Some(_) => (minutes(90), hours(3), hours(6)),
        None => {
            let dev = 48 - 2 * w;
            (hours(dev / 2), hours(dev), hours(96 - 6 * w + 4 * (j % 4)))
        }
    };
    let approval = match (emergency, level) {
        (Some(_), _) => minutes(70),
        (None, RiskLevel::Low) => hours(6 - 6 * w / 40 + j % 3),
        (None, RiskLevel::Medium) => hours(20 - 20 * w / 40 + j % 3),
        (None, _) => hours(44 - 44 * w / 40 + j % 3),
    };
    let stage_at = prod_at - stage_gap;
    let dev_at = prod_at - dev_gap;
    let decided_at = dev_at - minutes(45);
    let submitted_at = decided_at - approval;
    let created_at = submitted_at - hours(2);
    let first_commit = created_at - commit_gap;

    // Older pipelines did not always report the commits they deployed.
    let commits: Vec<String> = if j % (2 + w / 3) == 1 && emergency.is_none() {
        Vec::new()
    } else {
        (0..1 + j % 3 + w % 2)
            .map(|k| {
                let seed = ((i as u64) << 8) | k as u64;
                format!(
                    "{:016x}{:016x}{:08x}",
                    mix(seed),
                    mix(!seed),
                    mix(seed ^ 0x5a5a) >> 32
                )
            })
            .collect()
    };

    let answers = RiskAnswers {
        impact: match level {
            RiskLevel::Low => 1,
            RiskLevel::Medium => 2,
            _ => 3,
        },
        likelihood: match level {
            RiskLevel::Low => 1 + (j % 2) as i16,
            RiskLevel::Medium => 2,
            _ => 3,
        },
        customer_facing: level != RiskLevel::Low && j % 2 == 1,
        ..RiskAnswers::default()
    };
    let risk = assess(&answers);
    let content = ChangeContent {
        title,
        description,
        justification: if emergency.is_some() {
            "Actively exploited; waiting for the next CAB meeting is not an option.".into()
        } else {
            format!("Planned in {svc}'s weekly review of its backlog.")
        },
        change_type: if emergency.is_some() {
            ChangeType::Emergency
        } else {
            ChangeType::Normal
        },
        category,
        priority: match (emergency, level) {
            (Some(_), _) => Priority::Urgent,
            (None, RiskLevel::Low) => Priority::Low,
            (None, RiskLevel::Medium) => Priority::Medium,
            (None, _) => Priority::High,
        },
        services: vec![svc.to_owned()],
        environments: vec![Environment::Dev, Environment::Stage, Environment::Prod],
        implementation_plan: format!(
            "1. Deploy with the pipeline, DEV → STAGE → PROD.\n2. Watch the {svc} dashboard for 30 minutes."
        ),
        test_plan: "Unit and integration suites in CI; smoke tests on STAGE before PROD.".into(),
        test_levels: TestLevels {
            unit: true,
            integration: true,
            system: level >= RiskLevel::High,
            acceptance: false,
        },
        test_evidence: vec![format!("https://ci.example.com/runs/{}", 20000 + i)],
        rollback_plan: "Redeploy the previous release from the pipeline.".into(),
        window_start: Some(prod_at - hours(1)),
        window_end: Some(prod_at + hours(2)),
        window_tz: "UTC".into(),
        pr_url: format!("https://git.example.com/platform/pulls/{}", 1000 + i),
        commit_sha: commits.last().cloned().unwrap_or_default(),
        artifact_digest: format!(
            "sha256:{:016x}{:016x}{:016x}{:016x}",
            mix(5 * i as u64 + 1),
            mix(5 * i as u64 + 2),
            mix(5 * i as u64 + 3),
            mix(5 * i as u64 + 4)
        ),
        contributors: Vec::new(),
        risk: answers,
    }
    .normalized(author);

    let rolled_back_at = (ending == Ending::RolledBack).then(|| prod_at + minutes(70 - 4 * w));
    // The incident a failure or a hotfix caused, and the one suspected.
    let incident = |caused, severity, lasted: usize| Incident {
        reference: format!("INC-{}", 1400 + 7 * i),
        severity,
        caused,
        started_at: prod_at + minutes(5),
        restored_at: Some(prod_at + minutes(5 + lasted)),
    };
    let text =
        |outcome: String, intervention, incidents, well: &str, wrong: &str, lessons: &str| {
            ReviewContent {
                outcome,
                intervention: Some(intervention),
                incidents,
                went_well: well.into(),
                went_wrong: wrong.into(),
                lessons: lessons.into(),
            }
        };
    let said = match ending {
        Ending::Failed => text(
            format!("{svc} is healthy again; the fix went out the same day."),
            Intervention::ForwardFix,
            vec![incident(
                Causation::Confirmed,
                if level >= RiskLevel::High {
                    Severity::Sev2
                } else {
                    Severity::Sev3
                },
                150 - 8 * w,
            )],
            "The alert fired within minutes and the fix was ready before the window closed.",
            "The migration took a lock that STAGE, with its small tables, never waits for.",
            "Run migrations on STAGE against a copy of PROD's largest tables.",
        ),
        Ending::RolledBack => text(
            format!("Rolled back; {svc} runs the previous release again."),
            Intervention::Rollback,
            Vec::new(),
            "The pipeline rolled back in minutes, as the plan said.",
            "Error rates rose right after the switch; STAGE's traffic had not shown it.",
            "Replay a sample of PROD traffic on STAGE before a release like this one.",
        ),
        Ending::Hotfixed => text(
            format!("Deployed; a hotfix that afternoon brought {svc}'s latency back down."),
            Intervention::Hotfix,
            vec![incident(Causation::Confirmed, Severity::Sev3, 95 - 3 * w)],
            "The latency alert added the month before caught it.",
            "A cache was sized for the old release's objects and thrashed.",
            "Load-test cache sizes whenever the objects they hold change.",
        ),
        Ending::Suspected => text(
            "Deployed as planned; an incident that afternoon may be related.".into(),
            Intervention::NoIntervention,
            vec![incident(Causation::Suspected, Severity::Sev4, 30)],
            "The deployment itself went as planned.",
            "Nobody has yet confirmed whether the change caused the incident.",
            "Link incidents to the changes around them as soon as they are opened.",
        ),
        Ending::Succeeded if emergency.is_some() => text(
            "Patched within the hour; no customer impact.".into(),
            Intervention::NoIntervention,
            Vec::new(),
            "The emergency CAB decided within the hour of the advisory.",
            "The advisory reached the team through a customer, not through the scanner.",
            "Subscribe the dependency scanner to the vendors' advisories.",
        ),
        Ending::Succeeded => text(
            "Went as planned; no alerts.".into(),
            Intervention::NoIntervention,
            Vec::new(),
            "The rehearsal on STAGE matched PROD step for step.",
            "The change window was longer than it needed to be.",
            "Plan windows from the rehearsal's timings.",
        ),
    }
    .normalized();

    let code = ending.close_code();
    let owed = review::reasons(&Owed {
        change_type: content.change_type,
        risk: risk.level,
        close_code: Some(code),
        break_glass: false,
        incident: said.links_incident(),
        all: false,
    });
    // The latest plain successes are deployed but not closed yet.
    let open = owed.is_empty() && w + 2 >= WEEKS && j.is_multiple_of(2);
    let closed = (!open).then(|| (prod_at + hours(4 + j % 20), code, ending.close_notes(svc)));
    let retrospective_due = emergency.map(|_| decided_at + RETROSPECTIVE_DUE);
    let review = (!owed.is_empty()).then(|| {
        let due = prod_at + Duration::days(DEFAULT_DUE_DAYS);
        let written_at = prod_at + hours(24 + j % 5);
        // Owed from the moment its first reason arose: an emergency's from
        // its approval, a risky or failed change's from the end of its PROD
        // deployment (a rolled-back one's from the rollback), and one owed
        // only for an incident from the save of the review that links it.
        let owed_at = if emergency.is_some() {
            decided_at
        } else if risk.level >= RiskLevel::High || ending == Ending::Failed {
            prod_at
        } else if let Some(t) = rolled_back_at {
            t
        } else {
            written_at
        };
        Review {
            content: said,
            reasons: owed.iter().map(|r| r.as_str().to_owned()).collect(),
            owed_at,
            due_at: retrospective_due.map_or(due, |r| r.min(due)),
            written_at,
            signed_off_by: first_cab,
            signed_off_at: written_at + hours(20),
        }
    });
    Past {
        id: Uuid::new_v4(),
        author,
        state: if open {
            ChangeState::Implemented
        } else {
            ChangeState::Closed
        },
        created_at,
        submitted_at,
        decided_at,
        approvers: if risk.level == RiskLevel::Low {
            vec![first_cab]
        } else {
            vec![first_cab, second_cab]
        },
        assessed_at: (risk.level >= RiskLevel::High || emergency.is_some())
            .then(|| submitted_at + approval / 2),
        closed,
        dev_at,
        stage_at,
        prod_at,
        ending,
        rolled_back_at,
        first_commit_at: (!commits.is_empty()).then_some(first_commit),
        commits,
        review,
        risk,
        retrospective_due,
        content,
    }
}

/// Every change of the history, in the order they were filed.
fn history(now: DateTime<Utc>) -> Vec<Past> {
    let mut all = Vec::new();
    for (w, week) in HISTORY.iter().enumerate() {
        for j in 0..week.ended() {
            let i = all.len();
            all.push(past(now, w, j, i));
        }
    }
    all.sort_by_key(|p| p.created_at);
    all
}

fn internal(e: impl Into<anyhow::Error>) -> AppError {
    AppError::Internal(e.into())
}

/// When the team set CAB up: the Monday before the history's first week,
/// before anything of the history happened.
pub(super) fn set_up(now: DateTime<Utc>) -> DateTime<Utc> {
    monday(now, WEEKS + 1) + hours(9)
}

/// Records `username`'s sign-in to the web pages at `at`, in the past.
pub(super) async fn sign_in(
    pool: &PgPool,
    username: &str,
    at: DateTime<Utc>,
) -> Result<(), AppError> {
    let user = super::person(pool, username).await?;
    let mut conn = pool.acquire().await?;
    let said = signed_in(at, &user.username, user.id);
    append(
        &mut conn,
        &BTreeMap::from([(user.username.clone(), user)]),
        vec![said],
    )
    .await?;
    Ok(())
}

/// Writes the history behind the board built at `now`, with its audit
/// events. Run once the demo's people and pipeline exist and before
/// anything else: its events come before everything stamped with the
/// present, so the chain's times never go backwards.
pub(super) async fn seed(pool: &PgPool, now: DateTime<Utc>) -> Result<(), AppError> {
    let all = history(now);
    let mut rows = cab_db::demo::History::default();
    for p in &all {
        let errors = p.content.validate_for_submission();
        if let Some(e) = errors.first() {
            return Err(internal(anyhow::anyhow!(
                "history change {:?}: {}: {}",
                p.content.title,
                e.field,
                e.message
            )));
        }
        if let Some(r) = &p.review
            && let Some(e) = r.content.missing().first()
        {
            return Err(internal(anyhow::anyhow!(
                "review of {:?}: {}: {}",
                p.content.title,
                e.field,
                e.message
            )));
        }
        rows.id.push(p.id);
        rows.author.push(p.author.to_owned());
        rows.content
            .push(serde_json::to_value(&p.content).map_err(internal)?);
        rows.risk_level.push(p.risk.level.as_str().to_owned());
        rows.risk_reasons.push(json!(p.risk.reasons));
        rows.state.push(p.state.as_str().to_owned());
        rows.created_at.push(p.created_at);
        rows.submitted_at.push(p.submitted_at);
        rows.decided_at.push(p.decided_at);
        rows.retrospective_due_at.push(p.retrospective_due);
        rows.approvers.push(json!(p.approvers));
        rows.assessed_at.push(p.assessed_at);
        rows.closed_at.push(p.closed.as_ref().map(|c| c.0));
        rows.close_code
            .push(p.closed.as_ref().map(|c| c.1.as_str().to_owned()));
        rows.close_notes
            .push(p.closed.as_ref().map(|c| c.2.clone()).unwrap_or_default());
        rows.dev_at.push(p.dev_at);
        rows.stage_at.push(p.stage_at);
        rows.prod_at.push(p.prod_at);
        rows.prod_state.push(p.ending.prod_state().to_owned());
        rows.prod_note.push(p.ending.prod_note().to_owned());
        rows.rolled_back_at.push(p.rolled_back_at);
        rows.commit_shas.push(json!(p.commits));
        rows.first_commit_at.push(p.first_commit_at);
        let r = p.review.as_ref();
        rows.review.push(match r {
            Some(r) => Some(serde_json::to_value(&r.content).map_err(internal)?),
            None => None,
        });
        rows.review_reasons.push(r.map(|r| json!(r.reasons)));
        rows.review_owed_at.push(r.map(|r| r.owed_at));
        rows.review_due_at.push(r.map(|r| r.due_at));
        rows.review_written_at.push(r.map(|r| r.written_at));
        rows.signed_off_by
            .push(r.map(|r| r.signed_off_by.to_owned()));
        rows.signed_off_at.push(r.map(|r| r.signed_off_at));
    }
    let mut people = BTreeMap::new();
    for name in super::PEOPLE
        .iter()
        .map(|p| p.0)
        .chain([super::deployments::PIPELINE])
    {
        people.insert(name.to_owned(), super::person(pool, name).await?);
    }
    let mut tx = pool.begin().await?;
    let policy = serde_json::to_value(crate::quorum::in_force(&mut tx).await?).map_err(internal)?;
    let content = super::assessment(RiskLevel::High, AssessmentDecision::AcceptWithConditions);
    let assessment = serde_json::to_value(&content).map_err(internal)?;
    cab_db::demo::lay_history(
        &mut tx,
        &rows,
        &cab_db::demo::HistoryCast {
            pipeline: super::deployments::PIPELINE,
            releaser: "rita",
            assessor: "sam",
            quorum_policy: &policy,
            risk_version: RISK_MODEL_VERSION,
            assessment: &assessment,
        },
    )
    .await?;
    // The rows as written: the numbers and ids the events name.
    let deployments = cab_db::demo::past_deployments(&mut tx, &rows.id).await?;
    let votes = cab_db::demo::past_votes(&mut tx, &rows.id).await?;
    let mut said = Vec::new();
    for (k, p) in all.iter().enumerate() {
        let deployed: Vec<&cab_db::demo::PastDeployment> =
            deployments.iter().filter(|d| d.change_id == p.id).collect();
        let voted: Vec<(&str, DateTime<Utc>)> = votes
            .iter()
            .filter(|v| v.0 == p.id)
            .map(|v| (v.1.as_str(), v.2))
            .collect();
        let number = deployed.first().map(|d| d.change_number).ok_or_else(|| {
            internal(anyhow::anyhow!(
                "history change {:?} has no deployments",
                p.content.title
            ))
        })?;
        said.extend(told(p, number, &deployed, &voted, &content.conditions));
        said.extend(refused(k, p, &voted, &people));
    }
    said.extend(sign_ins(&said, &people));
    // In time order; at the same moment, in the order they happened.
    said.sort_by_key(|e| (e.at, e.rank));
    append(&mut tx, &people, said).await?;
    tx.commit().await?;
    Ok(())
}

/// An event of the history, before it is appended.
struct Said {
    at: DateTime<Utc>,
    /// Breaks ties between events of the same moment.
    rank: u8,
    /// Who did it (a username); nobody for a failed sign-in.
    by: Option<String>,
    action: &'static str,
    entity: &'static str,
    id: Option<String>,
    payload: Value,
}

impl Said {
    fn new(at: DateTime<Utc>, by: &str, action: &'static str, payload: Value) -> Self {
        Said {
            at,
            rank: 1,
            by: Some(by.to_owned()),
            action,
            entity: "change",
            id: None,
            payload,
        }
    }

    fn about(mut self, entity: &'static str, id: impl ToString) -> Self {
        self.entity = entity;
        self.id = Some(id.to_string());
        self
    }

    fn ranked(mut self, rank: u8) -> Self {
        self.rank = rank;
        self
    }
}

/// Appends `said`, in its order, each at its own time; the actors' roles
/// are those they hold.
async fn append(
    conn: &mut PgConnection,
    people: &BTreeMap<String, CurrentUser>,
    said: Vec<Said>,
) -> Result<(), AppError> {
    let origin = Origin::cli();
    for e in said {
        let actor = match &e.by {
            Some(name) => Some(
                people
                    .get(name)
                    .ok_or_else(|| internal(anyhow::anyhow!("no demo person {name}")))?
                    .audit_actor(),
            ),
            None => None,
        };
        let entity = Entity {
            kind: e.entity,
            id: e.id,
        };
        audit_log::record_at(conn, e.at, actor, &origin, e.action, entity, e.payload).await?;
    }
    Ok(())
}

/// A sign-in to the web pages.
fn signed_in(at: DateTime<Utc>, username: &str, id: Uuid) -> Said {
    Said::new(
        at,
        username,
        "auth.login_succeeded",
        json!({ "username": username, "session": Uuid::new_v4(), "via": cab_db::sessions::KIND_WEB }),
    )
    .about("user", id)
}

/// The events of one change's life, as the services record them: filed
/// and submitted by its author, assessed, voted on and approved, deployed
/// DEV → STAGE → PROD by the pipeline, closed by its author, its review
/// owed, written and signed off.
fn told(
    p: &Past,
    number: i64,
    deployed: &[&cab_db::demo::PastDeployment],
    voted: &[(&str, DateTime<Utc>)],
    conditions: &[String],
) -> Vec<Said> {
    let level = p.risk.level.as_str();
    let emergency = p.content.change_type == ChangeType::Emergency;
    let change = |s: Said| s.about("change", p.id);
    let mut out = vec![
        change(Said::new(
            p.created_at,
            p.author,
            "change.created",
            json!({
                "number": number,
                "title": p.content.title,
                "type": p.content.change_type.as_str(),
                "risk_level": level,
                "contributors": p.content.contributors,
                "template": null,
                "author": p.author,
                "filed_by": null,
            }),
        )),
        change(Said::new(
            p.submitted_at,
            p.author,
            "change.submitted",
            json!({ "number": number, "revision": 1, "from": "draft", "to": "submitted", "reason": null }),
        )),
    ];
    if let Some(at) = p.assessed_at {
        // Taken into assessment a little before it was written.
        let started = at - minutes(40).min((at - p.submitted_at) / 2);
        out.push(change(Said::new(
            started,
            "sam",
            "change.assessment_started",
            json!({ "number": number, "revision": 1, "from": "submitted", "to": "in_assessment" }),
        )));
        out.push(change(Said::new(
            at,
            "sam",
            "change.assessed",
            json!({
                "number": number,
                "revision": 1,
                "decision": AssessmentDecision::AcceptWithConditions.as_str(),
                "assessed_level": level,
                "engineer_level": level,
                "lowers_risk": false,
                "conditions": conditions,
            }),
        )));
    }
    for (voter, at) in voted {
        out.push(change(Said::new(
            *at,
            voter,
            "change.voted",
            json!({ "number": number, "revision": 1, "vote": "approve", "comment": "" }),
        )));
    }
    // The last approval decided it, in the same moment.
    let decider = voted.last().map_or(p.approvers[0], |v| v.0);
    let mut approved = json!({
        "number": number,
        "revision": 1,
        "from": if p.assessed_at.is_some() { "in_cab_review" } else { "submitted" },
        "to": "approved",
        "level": level,
        "approvals": voted.len(),
    });
    if let Some(due) = p.retrospective_due {
        approved["retrospective_due_at"] = json!(due);
    }
    out.push(change(
        Said::new(p.decided_at, decider, "change.approved", approved).ranked(2),
    ));
    let owed = p
        .review
        .as_ref()
        .map(|r| json!({ "number": number, "reasons": r.reasons, "due_at": r.due_at }));
    if let (Some(r), Some(owed)) = (&p.review, &owed)
        && emergency
    {
        out.push(change(
            Said::new(r.owed_at, decider, "review.owed", owed.clone()).ranked(3),
        ));
    }

    for d in deployed {
        let prod = d.environment == "prod";
        let key = format!("CHG-{number}");
        let deployment = |s: Said| s.about("deployment", d.id);
        out.push(deployment(Said::new(
            d.authorized_at,
            &d.executor,
            "deployment.authorized",
            json!({
                "change": key,
                "change_id": p.id,
                "revision": d.revision,
                "environment": d.environment,
                "environment_label": d.environment_label,
                "artifact": {"name": d.artifact_name, "version": d.artifact_version, "digest": d.artifact_digest},
                "services": d.services,
                "initiator": d.initiator,
                "executor": d.executor,
                "pipeline": {"provider": d.pipeline_provider, "run_id": d.pipeline_run_id, "url": d.pipeline_url},
                "expires_at": d.expires_at,
                // Signed with a key of the time, long since rotated out of
                // this board's key set.
                "key": null,
                "break_glass": null,
            }),
        )));
        // A move of the deployment, and of the change when it is PROD's.
        let moved = |at: DateTime<Utc>,
                     action: &'static str,
                     from: &str,
                     to: &str,
                     note: &str,
                     change: Option<(&str, &str)>| {
            let (change_from, change_to) = match change {
                Some((f, t)) if prod => (Some(f), Some(t)),
                _ => (None, None),
            };
            deployment(Said::new(
                at,
                &d.executor,
                action,
                json!({
                    "change": key,
                    "change_id": p.id,
                    "environment": d.environment,
                    "digest": d.artifact_digest,
                    "from": from,
                    "to": to,
                    "note": note,
                    "change_from": change_from,
                    "change_to": change_to,
                }),
            ))
        };
        let (Some(started), Some(finished)) = (d.started_at, d.finished_at) else {
            continue;
        };
        out.push(moved(
            started,
            "deployment.started",
            "authorized",
            "started",
            "",
            Some(("approved", "implementing")),
        ));
        // The review a PROD deployment's end owes is recorded before the
        // deployment's own event, as the services do.
        let owes = |at: DateTime<Utc>| {
            p.review
                .as_ref()
                .zip(owed.as_ref())
                .filter(|(r, _)| prod && !emergency && r.owed_at == at)
                .map(|(_, o)| {
                    change(Said::new(at, &d.executor, "review.owed", o.clone()).ranked(0))
                })
        };
        out.extend(owes(finished));
        match d.state.as_str() {
            "failed" => out.push(moved(
                finished,
                "deployment.failed",
                "started",
                "failed",
                &d.note,
                Some(("implementing", "implementation_failed")),
            )),
            _ => out.push(moved(
                finished,
                "deployment.succeeded",
                "started",
                "succeeded",
                "",
                Some(("implementing", "implemented")),
            )),
        }
        if let Some(at) = d.rolled_back_at {
            out.extend(owes(at));
            out.push(moved(
                at,
                "deployment.rolled_back",
                "succeeded",
                "rolled_back",
                &d.note,
                Some(("implemented", "implementation_failed")),
            ));
        }
    }

    if let Some((at, code, notes)) = &p.closed {
        let from = if p.ending.prod_state() == "succeeded" {
            "implemented"
        } else {
            "implementation_failed"
        };
        out.push(change(Said::new(
            *at,
            p.author,
            "change.closed",
            json!({
                "number": number,
                "revision": 1,
                "from": from,
                "to": "closed",
                "close_code": code.as_str(),
                "notes": notes,
            }),
        )));
    }
    if let (Some(r), Some(owed)) = (&p.review, owed) {
        out.push(change(Said::new(
            r.written_at,
            p.author,
            "review.saved",
            json!({
                "number": number,
                "revision": 1,
                "fields": r.content.diff(&ReviewContent::default()),
                "amends_signed_off": false,
            }),
        )));
        // Owed only for the incident it links: from this save.
        if r.owed_at == r.written_at {
            out.push(change(
                Said::new(r.written_at, p.author, "review.owed", owed).ranked(2),
            ));
        }
        out.push(change(Said::new(
            r.signed_off_at,
            r.signed_off_by,
            "review.signed_off",
            json!({ "number": number, "revision": 1 }),
        )));
    }
    out
}

/// Every how many changes one sees a refused vote, and of the assessed
/// ones, every how many its assessor tries to vote on it too.
const REFUSED_EVERY: usize = 30;
const ASSESSOR_EVERY: usize = 9;

/// The separation of duties at work: now and then an author tries to
/// approve their own change, the security reviewer who assessed a change
/// tries to vote on it too, or a CAB member votes on a change the other
/// already approved. Each refused as the rule refuses it, and recorded.
fn refused(
    k: usize,
    p: &Past,
    voted: &[(&str, DateTime<Utc>)],
    people: &BTreeMap<String, CurrentUser>,
) -> Vec<Said> {
    let ids = |name: &str| people.get(name).map(|u| u.id);
    let (Some(author), Some(sam)) = (ids(p.author), ids("sam")) else {
        return Vec::new();
    };
    let facts = |state, voters: &[&str]| ChangeFacts {
        state,
        author,
        contributors: Vec::new(),
        assessors: p.assessed_at.map(|_| sam).into_iter().collect(),
        voters: voters.iter().filter_map(|v| ids(v)).collect(),
    };
    let decision = p.decided_at - p.submitted_at;
    let first_vote = voted.first().map_or(p.decided_at, |v| v.1);
    let mut tries: Vec<(DateTime<Utc>, &str, ChangeFacts)> = Vec::new();
    match k % REFUSED_EVERY {
        // The author, on the vote form while it waits for CAB.
        5 => tries.push((
            p.submitted_at + decision / 4,
            p.author,
            facts(ChangeState::Submitted, &[]),
        )),
        // The CAB member who did not vote, once one approval decided it.
        20 if p.approvers.len() == 1 => {
            let other = if p.approvers[0] == "carol" {
                "carl"
            } else {
                "carol"
            };
            tries.push((
                p.decided_at + minutes(20),
                other,
                facts(ChangeState::Approved, &p.approvers),
            ));
        }
        _ => {}
    }
    if let Some(at) = p.assessed_at
        && k % ASSESSOR_EVERY == 4
    {
        tries.push((
            at + minutes(10).min((first_vote - at) / 3),
            "sam",
            facts(ChangeState::InCabReview, &[]),
        ));
    }
    tries
        .into_iter()
        .filter_map(|(at, who, facts)| {
            let actor = people.get(who)?.actor();
            let denial = check_duty(&facts, &actor, Duty::Vote).err()?;
            Some(
                Said::new(
                    at,
                    who,
                    audit_log::ACCESS_DENIED,
                    json!({
                        "attempted": Duty::Vote.as_str(),
                        "reason": denial.code,
                        "message": denial.message,
                    }),
                )
                .about("change", p.id),
            )
        })
        .collect()
}

/// The team's sign-ins: each person signs in to the web pages a few
/// minutes before the first thing they do on a day; now and then a
/// password is mistyped first, and once someone tries an account that
/// does not exist.
fn sign_ins(said: &[Said], people: &BTreeMap<String, CurrentUser>) -> Vec<Said> {
    let ids = |name: &str| people.get(name).map(|u| u.id);
    let mut first: BTreeMap<(String, chrono::NaiveDate), DateTime<Utc>> = BTreeMap::new();
    for e in said {
        let Some(by) = &e.by else { continue };
        if by == super::deployments::PIPELINE {
            continue;
        }
        let day = (by.clone(), e.at.date_naive());
        let t = first.entry(day).or_insert(e.at);
        *t = (*t).min(e.at);
    }
    let mut out = Vec::new();
    let mut typo_days = BTreeSet::new();
    for (n, ((by, day), at)) in first.into_iter().enumerate() {
        let Some(id) = ids(&by) else { continue };
        let seed = mix(n as u64 ^ 0x51_6e_1e);
        let at = at - minutes(2 + (seed % 25) as usize);
        if seed % 17 == 3 {
            typo_days.insert(day);
            out.push(failed_sign_in(at - minutes(1), &by, Some(id)));
        }
        out.push(signed_in(at, &by, id));
    }
    // Someone trying the usual administrator names, once, at night.
    if let Some(day) = typo_days.iter().nth(1) {
        let at = day.and_time(NaiveTime::MIN).and_utc() + hours(2) + minutes(13);
        for (m, name) in ["admin", "administrator", "root"].iter().enumerate() {
            let id = ids(name);
            out.push(failed_sign_in(
                at + Duration::seconds(7 * m as i64),
                name,
                id,
            ));
        }
    }
    out
}

fn failed_sign_in(at: DateTime<Utc>, username: &str, id: Option<Uuid>) -> Said {
    Said {
        at,
        rank: 1,
        by: None,
        action: "auth.login_failed",
        entity: "user",
        id: id.map(|i| i.to_string()),
        payload: json!({ "username": username, "via": cab_db::sessions::KIND_WEB }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_weeks_deploy_more_and_fail_less() {
        let rate = |w: &Week| (w.failed + w.rolled_back + w.hotfixed) as f64 / w.ended() as f64;
        for pair in HISTORY.windows(2) {
            assert!(pair[0].succeeded <= pair[1].succeeded, "{pair:?}");
            assert!(rate(&pair[0]) >= rate(&pair[1]), "{pair:?}");
        }
        assert_eq!(HISTORY[0].succeeded, 4);
        assert_eq!(HISTORY[WEEKS - 1].succeeded, 12);
        assert!(rate(&HISTORY[0]) > 0.3 && rate(&HISTORY[WEEKS - 1]) < 0.08);
    }

    #[test]
    fn the_history_is_the_same_every_time_and_all_in_the_past() {
        let now = "2026-11-23T00:30:00Z".parse::<DateTime<Utc>>().unwrap();
        let all = history(now);
        assert_eq!(all.len(), HISTORY.iter().map(|w| w.ended()).sum::<usize>());
        for p in &all {
            let last = [
                Some(p.prod_at),
                p.closed.as_ref().map(|c| c.0),
                p.rolled_back_at,
                p.review.as_ref().map(|r| r.signed_off_at),
            ];
            assert!(
                last.iter().flatten().all(|t| *t < now),
                "{}",
                p.content.title
            );
            // After the team set CAB up, with room for the sign-ins
            // before the first change was filed.
            assert!(p.created_at > set_up(now) + hours(1), "{}", p.content.title);
            assert!(p.first_commit_at.is_none_or(|t| t < p.created_at));
            assert!(p.submitted_at < p.decided_at && p.decided_at < p.dev_at);
            assert!(p.dev_at < p.stage_at && p.stage_at < p.prod_at);
            // A review is owed for every failed, emergency or high-risk
            // change, and for one that may have caused an incident; the
            // history's are all signed off, and a change owed one is closed.
            let owed = p.ending != Ending::Succeeded
                || p.content.change_type == ChangeType::Emergency
                || p.risk.level >= RiskLevel::High;
            assert_eq!(p.review.is_some(), owed, "{}", p.content.title);
            if owed {
                assert_eq!(p.state, ChangeState::Closed, "{}", p.content.title);
            }
        }
        let again = history(now);
        let titles = |v: &[Past]| {
            v.iter()
                .map(|p| p.content.title.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(titles(&all), titles(&again));
        let emergencies = all
            .iter()
            .filter(|p| p.content.change_type == ChangeType::Emergency)
            .count();
        assert_eq!(emergencies, 2);
        assert!(all.iter().any(|p| p.commits.is_empty()));
        assert!(all.iter().filter(|p| !p.commits.is_empty()).count() * 2 > all.len());
    }
}
