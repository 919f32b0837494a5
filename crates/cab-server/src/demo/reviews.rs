//! How the demo board's changes ended: closed changes of every close code,
//! post-implementation reviews in every state (signed off, being written,
//! overdue, amended after sign-off, and the emergency change's review that
//! is still owed) and action items in every status, owned by the demo's
//! people (all but the auditor, who changes nothing). Written through the
//! same operations as the pages and the API.

use cab_domain::change::{ChangeAction, ChangeContent, ChangeType};
use cab_domain::deployment::DeploymentState;
use cab_domain::review::{
    ActionStatus, Causation, CloseCode, Incident, Intervention, ReviewContent, Severity,
};
use cab_domain::risk::RiskLevel;
use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::deployments::Pipeline;
use super::{Cast, answers, content, person};
use crate::auth::CurrentUser;
use crate::changes::{self, ChangeView};
use crate::crypto::Keys;
use crate::error::AppError;
use crate::request::Origin;
use crate::reviews;

/// A low-risk change of the board's kind whose window is open now; `i`
/// tells its artifact.
fn live_content(
    i: usize,
    now: DateTime<Utc>,
    (title, description): (&str, &str),
    services: &[&str],
) -> ChangeContent {
    let mut c = content(2, now);
    c.title = title.into();
    c.description = description.into();
    c.risk = answers(RiskLevel::Low, i);
    c.services = services.iter().map(|s| (*s).to_owned()).collect();
    c.window_start = Some(now - Duration::hours(1));
    c.window_end = Some(now + Duration::hours(6));
    c.window_tz = "UTC".into();
    c.artifact_digest = format!("sha256:{:064x}", 0x0e71_d000_u64 + i as u64);
    c.commit_sha = format!("{:040x}", 0xc105_e000_u64 + i as u64 * 7919);
    c.pr_url = format!("https://git.example.com/platform/pulls/{}", 300 + i);
    c.contributors = Vec::new();
    c.change_type = ChangeType::Normal;
    c
}

/// Filed by `author`, approved by the board's CAB, promoted to STAGE and
/// deployed to PROD, the production deployment ending in `end` (a success
/// rolled back when `rolled_back` says why).
async fn deployed(
    pool: &PgPool,
    cast: &Cast,
    pipe: &mut Pipeline,
    author: &CurrentUser,
    content: ChangeContent,
    end: (DeploymentState, &str),
    rolled_back: Option<&str>,
) -> Result<ChangeView, AppError> {
    let origin = Origin::cli();
    let c = changes::create(pool, author, &origin, content).await?;
    let c = changes::transition(pool, author, &origin, c.id, ChangeAction::Submit, None).await?;
    let c = cast.approve(pool, c).await?;
    pipe.promote_to_stage(pool, &c).await?;
    let (state, note) = end;
    let id = pipe
        .deploy_noted(pool, &c, "prod", Some("rita"), state, note)
        .await?;
    if let Some(why) = rolled_back {
        pipe.report(pool, id, DeploymentState::RolledBack, None, why)
            .await?;
    }
    changes::load(pool, c.id).await
}

/// The one change in `state` that names `service` and is titled `title`.
async fn find(pool: &PgPool, state: &str, service: &str, title: &str) -> Result<Uuid, AppError> {
    let mut conn = pool.acquire().await?;
    let found = cab_db::changes::list(
        &mut conn,
        &cab_db::changes::ChangeFilter {
            state: Some(state.into()),
            service: Some(service.into()),
            ..Default::default()
        },
        50,
    )
    .await?;
    found
        .into_iter()
        .find(|c| c.title == title)
        .map(|c| c.id)
        .ok_or(AppError::NotFound("demo change"))
}

/// Adds an action item due in `due_in_days` and moves it to `status` as
/// its owner. Returns its id.
async fn action(
    pool: &PgPool,
    by: &CurrentUser,
    change: Uuid,
    title: &str,
    owner: &CurrentUser,
    due_in_days: i64,
    status: ActionStatus,
) -> Result<Uuid, AppError> {
    let origin = Origin::cli();
    let due = (Utc::now() + Duration::days(due_in_days)).date_naive();
    let a =
        reviews::add_action(pool, by, &origin, change, title, &owner.username, Some(due)).await?;
    if status != ActionStatus::Open {
        reviews::set_action_status(pool, owner, &origin, a.id, status.as_str()).await?;
    }
    Ok(a.id)
}

/// Seeds the endings: run after the deployments and releases exist. `now`
/// is when the board is built; the windows of the changes deployed here
/// are open around it.
pub(super) async fn seed(
    pool: &PgPool,
    cast: &Cast,
    board: &[Uuid],
    keys: Keys,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    let origin = Origin::cli();
    let erin = person(pool, "erin").await?;
    let eddie = person(pool, "eddie").await?;
    let sam = person(pool, "sam").await?;
    let rita = person(pool, "rita").await?;
    let adam = person(pool, "adam").await?;
    let mut pipe = Pipeline::new(pool, keys, 100).await?;

    // Successful: the edge proxy went out with its release, which is
    // complete. Its author closes it; nothing calls for a review.
    let proxy = find(
        pool,
        "implemented",
        "edge-proxy",
        "Roll out the new edge proxy",
    )
    .await?;
    reviews::close(
        pool,
        &erin,
        &origin,
        proxy,
        CloseCode::Successful.as_str(),
        "Rolled out to every proxy as planned; no alerts since.",
    )
    .await?;

    // Successful with issues: the image CDN moved to the new origin shield,
    // and the cold cache overloaded the origin for a while. The review links
    // the incident (which owes the review), its actions are under way and
    // Carol, who did not work on it, signed it off.
    let cdn = deployed(
        pool,
        cast,
        &mut pipe,
        &eddie,
        live_content(
            60,
            now,
            (
                "Move the image CDN to the new origin shield",
                "The CDN pulls images through the regional origin shield instead of hitting the origin directly.",
            ),
            &["cdn"],
        ),
        (DeploymentState::Succeeded, "Traffic on the new origin shield."),
        None,
    )
    .await?;
    reviews::close(
        pool,
        &eddie,
        &origin,
        cdn.id,
        CloseCode::SuccessfulWithIssues.as_str(),
        "Deployed, but the cold shield sent every request to the origin for 40 minutes; product images loaded slowly until it warmed up.",
    )
    .await?;
    let started = Utc::now() - Duration::minutes(55);
    let written = reviews::save(
        pool,
        &eddie,
        &origin,
        cdn.id,
        ReviewContent {
            outcome: "The origin shield serves the CDN as intended; the origin's traffic is down 85%.".into(),
            intervention: Some(Intervention::ForwardFix),
            incidents: vec![Incident {
                reference: "INC-2047".into(),
                severity: Severity::Sev3,
                caused: Causation::Confirmed,
                started_at: started,
                restored_at: Some(started + Duration::minutes(40)),
            }],
            went_well: "The pipeline promoted it without a hitch, and the dashboards showed the origin's load within a minute.".into(),
            went_wrong: "Nobody warmed the shield first: every product image missed the cache at once and the origin slowed down.".into(),
            lessons: "Warm a new cache layer before moving traffic onto it, and watch the hit rate, not just the error rate.".into(),
        },
        0,
    )
    .await?;
    action(
        pool,
        &eddie,
        cdn.id,
        "Pre-warm the origin shield before moving traffic",
        &eddie,
        7,
        ActionStatus::Done,
    )
    .await?;
    action(
        pool,
        &eddie,
        cdn.id,
        "Alert when the CDN's cache hit rate drops below 80%",
        &adam,
        10,
        ActionStatus::InProgress,
    )
    .await?;
    reviews::sign_off(pool, &cast.carol, &origin, cdn.id, revision(&written)).await?;

    // Failed and rolled back: the new tax calculation went out and was
    // rolled back. The review was signed off by Carl, then amended by its
    // author: revision 2 waits for a sign-off again.
    let tax = deployed(
        pool,
        cast,
        &mut pipe,
        &erin,
        live_content(
            61,
            now,
            (
                "Switch checkout to the new tax calculation service",
                "Checkout asks the new tax service for totals instead of computing them itself.",
            ),
            &["checkout"],
        ),
        (DeploymentState::Succeeded, ""),
        Some("Totals were a cent off for baskets with mixed VAT rates; the previous release is back."),
    )
    .await?;
    reviews::close(
        pool,
        &erin,
        &origin,
        tax.id,
        CloseCode::FailedRolledBack.as_str(),
        "Rolled back after 25 minutes: some totals were a cent off. It will come back as a new change with the rounding fixed.",
    )
    .await?;
    let first = ReviewContent {
        outcome: "Rolled back; checkout computes taxes itself again, as before the change.".into(),
        intervention: Some(Intervention::Rollback),
        incidents: Vec::new(),
        went_well: "The rollback took six minutes, well within the plan's thirty.".into(),
        went_wrong: "The tax service rounds each line, checkout rounded the total: baskets with mixed rates differed by a cent.".into(),
        lessons: "Compare totals on a copy of real baskets before switching the calculation.".into(),
    };
    let written = reviews::save(pool, &erin, &origin, tax.id, first.clone(), 0).await?;
    reviews::sign_off(pool, &cast.carl, &origin, tax.id, revision(&written)).await?;
    reviews::save(
        pool,
        &erin,
        &origin,
        tax.id,
        ReviewContent {
            went_wrong: format!(
                "{} No customer was charged wrongly: payment captures use the order's stored total.",
                first.went_wrong
            ),
            lessons: format!(
                "{} Contract tests between checkout and the tax service would have caught it in CI.",
                first.lessons
            ),
            ..first
        },
        revision(&written),
    )
    .await?;
    action(
        pool,
        &erin,
        tax.id,
        "Run the tax service's contract tests in the deployment pipeline",
        &erin,
        14,
        ActionStatus::Open,
    )
    .await?;
    action(
        pool,
        &erin,
        tax.id,
        "Give checkout a tax service key limited to quotes",
        &sam,
        21,
        ActionStatus::Open,
    )
    .await?;

    // Failed and not rolled back: the warehouse index rebuild failed half
    // way and was fixed forward. Its review is overdue, and so is one of
    // its action items.
    let warehouse = deployed(
        pool,
        cast,
        &mut pipe,
        &eddie,
        live_content(
            62,
            now,
            (
                "Rebuild the warehouse's order indexes",
                "Replace the order table's indexes with ones that fit the new reporting queries.",
            ),
            &["data-warehouse"],
        ),
        (
            DeploymentState::Failed,
            "The migration stopped half way: the disk filled while building the second index.",
        ),
        None,
    )
    .await?;
    reviews::close(
        pool,
        &eddie,
        &origin,
        warehouse.id,
        CloseCode::FailedNotRolledBack.as_str(),
        "The first index was already in use, so it stays; the second was built by hand after the disk was grown. Reports were slow for the morning.",
    )
    .await?;
    reviews::save(
        pool,
        &eddie,
        &origin,
        warehouse.id,
        ReviewContent {
            outcome: "Both indexes are in place; the second was built by hand.".into(),
            ..ReviewContent::default()
        },
        0,
    )
    .await?;
    let rehearse = action(
        pool,
        &eddie,
        warehouse.id,
        "Rehearse index migrations on a restored copy of PROD",
        &rita,
        0,
        ActionStatus::Open,
    )
    .await?;
    action(
        pool,
        &eddie,
        warehouse.id,
        "Confirm the warehouse's access logs are complete for the morning of the failure",
        &sam,
        5,
        ActionStatus::InProgress,
    )
    .await?;
    action(
        pool,
        &eddie,
        warehouse.id,
        "Ask for a tested rollback step in every schema change's plan",
        &cast.carl,
        7,
        ActionStatus::Done,
    )
    .await?;
    // Both fell due before today, as if the failure were a week old.
    {
        let mut conn = pool.acquire().await?;
        cab_db::demo::backdate_review(&mut conn, warehouse.id, now - Duration::days(2)).await?;
        let due = (now - Duration::days(3)).date_naive();
        cab_db::demo::backdate_action(&mut conn, rehearse, due).await?;
    }

    // Being written: the payment gateway's certificate went out through
    // break-glass, which owes a review; Erin has started it.
    let cert = find(
        pool,
        "implemented",
        "payment-gateway",
        "Renew the payment gateway's TLS certificate",
    )
    .await?;
    reviews::save(
        pool,
        &erin,
        &origin,
        cert,
        ReviewContent {
            outcome: "The new certificate was served before the old one expired; card payments never stopped.".into(),
            intervention: Some(Intervention::NoIntervention),
            went_well: "Break-glass was asked for, confirmed and used within 20 minutes.".into(),
            ..ReviewContent::default()
        },
        0,
    )
    .await?;

    // The emergency log4j patch: its review (once its retrospective) is
    // written ahead of its deployment, and waits for it to be signed off
    // (a review looks back on what ran); its action item is under way.
    let log4j = board
        .get(11)
        .copied()
        .ok_or(AppError::NotFound("demo change"))?;
    reviews::save(
        pool,
        &erin,
        &origin,
        log4j,
        ReviewContent {
            outcome:
                "To confirm once it has run: the patch goes out in the first hour of its window."
                    .into(),
            intervention: Some(Intervention::NoIntervention),
            incidents: Vec::new(),
            went_well: "The emergency CAB decided within 30 minutes of the advisory.".into(),
            went_wrong: "Nobody knew the reporting job carried its own copy of the library.".into(),
            lessons: "Scan every job's dependencies, not only the services'.".into(),
        },
        0,
    )
    .await?;
    action(
        pool,
        &erin,
        log4j,
        "Add the reporting job's libraries to the weekly dependency scan",
        &cast.carol,
        14,
        ActionStatus::InProgress,
    )
    .await?;
    // Not implemented: the certificate rotation's window passed two days ago
    // and it never reached production; CAB closes it as the server does.
    reviews::sweep_lapsed(pool, Utc::now()).await?;
    Ok(())
}

/// The revision of the review that `view` holds (0 before it is written).
fn revision(view: &reviews::ReviewView) -> i32 {
    view.review.as_ref().map_or(0, |r| r.revision)
}
