//! The demo board's releases, one in each state: a draft, one waiting for
//! its go/no-go (and for a change in it to be approved), an approved one
//! not started yet, one cancelled, one deployed phase by phase and
//! completed, one with PROD open and deploying, and one whose PROD phase
//! was rolled back. Written through the same operations as the pages.

use cab_domain::approval::VoteChoice;
use cab_domain::release::{
    Communication, Milestones, Phase, ReleasePlan, RollbackPlan, TestLevel, TestStrategy,
};
use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{Cast, person};
use crate::auth::CurrentUser;
use crate::changes::ChangeView;
use crate::error::AppError;
use crate::releases::{self, Edit, ReleaseView};
use crate::request::Origin;

/// A plan of the board's kind: `deploy_in` from `now` to its deployment
/// milestone, through `phases` (environment, target, soak minutes).
pub(super) fn plan(
    name: &str,
    version: &str,
    now: DateTime<Utc>,
    deploy_in: Duration,
    phases: &[(&str, &str, u32)],
) -> ReleasePlan {
    let deployment = now + deploy_in;
    ReleasePlan {
        name: name.into(),
        version: version.into(),
        milestones: Milestones {
            code_freeze: deployment - Duration::days(5),
            go_no_go: deployment - Duration::days(1),
            deployment,
            hypercare_end: deployment + Duration::days(7),
        },
        test_strategy: TestStrategy {
            levels: vec![TestLevel::Unit, TestLevel::Integration, TestLevel::System],
            entry_criteria: "Every change in scope approved and green in CI; STAGE refreshed from last night's PROD snapshot.".into(),
            exit_criteria: "No open severity 1 or 2 defects; the smoke suite passes on STAGE twice in a row.".into(),
            evidence: vec![format!(
                "https://ci.example.com/releases/{}",
                version.replace('.', "-")
            )],
        },
        phases: phases
            .iter()
            .map(|(env, target, soak)| Phase {
                environment: (*env).into(),
                target: (*target).into(),
                soak_minutes: *soak,
                proceed_criteria: "Error rate below 0.5% and p95 latency within 10% of last week.".into(),
                abort_criteria: "Error rate above 2%, or any data-integrity alert.".into(),
            })
            .collect(),
        rollback: RollbackPlan {
            triggers: "An abort criterion is met, or the on-call engineer calls it.".into(),
            steps: "1. Stop the pipeline.\n2. Redeploy the previous artifacts from the pipeline.\n3. Confirm the dashboards are back to normal.".into(),
            max_minutes: 30,
            irreversible: false,
            irreversible_steps: String::new(),
        },
        communications: vec![
            Communication {
                audience: "Customer support".into(),
                channel: "#support-announcements".into(),
                when: deployment - Duration::days(1),
                message: "What changes for customers, and whom to call during the window.".into(),
            },
            Communication {
                audience: "Engineering".into(),
                channel: "eng-all mailing list".into(),
                when: deployment + Duration::hours(2),
                message: "Release notes and the hypercare rota.".into(),
            },
        ],
    }
}

/// Planned by `rita` with `changes` in scope.
pub(super) async fn planned(
    pool: &PgPool,
    rita: &CurrentUser,
    plan: ReleasePlan,
    changes: &[&ChangeView],
) -> Result<ReleaseView, AppError> {
    let keys: Vec<String> = changes.iter().map(|c| c.key()).collect();
    releases::create(
        pool,
        rita,
        &Origin::cli(),
        plan,
        &keys,
        "Goes out with the release.",
    )
    .await
}

/// Submitted, and approved by both CAB members (as many as it takes).
pub(super) async fn approved(
    pool: &PgPool,
    cast: &Cast,
    rita: &CurrentUser,
    release: ReleaseView,
) -> Result<ReleaseView, AppError> {
    let origin = Origin::cli();
    let r = releases::submit(pool, rita, &origin, release.id()).await?;
    let r = releases::vote(
        pool,
        &cast.carol,
        &origin,
        r.id(),
        VoteChoice::Approve,
        "Go.",
        Some(r.row.revision),
    )
    .await?;
    if r.state != cab_domain::release::ReleaseState::InReview {
        return Ok(r);
    }
    releases::vote(
        pool,
        &cast.carl,
        &origin,
        r.id(),
        VoteChoice::Approve,
        "Go; the rollback plan is rehearsed.",
        Some(r.row.revision),
    )
    .await
}

/// The releases made of the board's hand-filed changes: a draft, one in
/// review, an approved one and a cancelled one. `board` holds the filed
/// changes in the order of `CHANGES`.
pub(super) async fn seed(
    pool: &PgPool,
    cast: &Cast,
    board: &[Uuid],
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    let origin = Origin::cli();
    let rita = person(pool, "rita").await?;
    let change = |i: usize| async move {
        let id = board
            .get(i)
            .copied()
            .ok_or(AppError::NotFound("demo change"))?;
        crate::changes::load(pool, id).await
    };
    // A draft: the invoice fix is still being written.
    let rounding = change(3).await?;
    let orders = change(19).await?;
    planned(
        pool,
        &rita,
        plan(
            "Billing fixes",
            "2026.12.2",
            now,
            Duration::days(20),
            &[
                ("stage", "All of STAGE", 60),
                ("prod", "All customers", 120),
            ],
        ),
        &[&rounding, &orders],
    )
    .await?;
    // In review: Carol said go; the ledger resize still waits for CAB.
    let mfa = change(6).await?;
    let ledger = change(5).await?;
    let r = planned(
        pool,
        &rita,
        plan(
            "Platform hardening",
            "2026.12.1",
            now,
            Duration::days(9),
            &[
                ("stage", "All of STAGE", 240),
                ("prod", "10% of traffic (canary)", 120),
                ("prod", "All customers", 1440),
            ],
        ),
        &[&mfa, &ledger],
    )
    .await?;
    let r = releases::submit(pool, &rita, &origin, r.id()).await?;
    releases::vote(
        pool,
        &cast.carol,
        &origin,
        r.id(),
        VoteChoice::Approve,
        "Go, once the ledger resize is approved.",
        Some(r.row.revision),
    )
    .await?;
    // Approved, not started: the image resizer patch goes out next week.
    let resizer = change(26).await?;
    let r = planned(
        pool,
        &rita,
        plan(
            "Media patch",
            "2026.11.4",
            now,
            Duration::days(6),
            &[("stage", "All of STAGE", 30), ("prod", "All customers", 60)],
        ),
        &[&resizer],
    )
    .await?;
    let r = approved(pool, cast, &rita, r).await?;
    // Then a scope change voids the approval and is approved again: the
    // trail shows both.
    let images = change(14).await?;
    let r = releases::edit(
        pool,
        &rita,
        &origin,
        r.id(),
        Some(r.row.revision),
        Edit::Add {
            change: &images.key(),
            reason: "The base images carry the same library; ship them together.",
        },
    )
    .await?;
    releases::vote(
        pool,
        &cast.carol,
        &origin,
        r.id(),
        VoteChoice::Approve,
        "Still go with the base images in.",
        Some(r.row.revision),
    )
    .await?;
    let r = releases::load(pool, r.id()).await?;
    if r.state == cab_domain::release::ReleaseState::InReview {
        releases::vote(
            pool,
            &cast.carl,
            &origin,
            r.id(),
            VoteChoice::Approve,
            "Agreed.",
            Some(r.row.revision),
        )
        .await?;
    }
    // Cancelled: the certificate rotation went out by itself.
    let certs = change(1).await?;
    let r = planned(
        pool,
        &rita,
        plan(
            "Certificates",
            "2026.11.3",
            now,
            Duration::days(3),
            &[("prod", "All customers", 30)],
        ),
        &[&certs],
    )
    .await?;
    releases::cancel(
        pool,
        &rita,
        &origin,
        r.id(),
        "The rotation is urgent and goes out on its own.",
    )
    .await?;
    Ok(())
}
