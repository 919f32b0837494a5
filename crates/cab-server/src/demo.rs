//! The demo board: one person per role and a realistic board of change
//! requests, so a newcomer's first screen looks like a team's. Written
//! through the same operations as the pages and the API, so the audit trail
//! holds it all; only the weeks of history behind the measures, which no
//! operation can backdate, are written as records of the past (`history`),
//! their events appended as they were recorded then, after the team's
//! accounts (set up before the history) and before anything of the present.
//!
//! The board appears whole or not at all: it is built in a scratch database
//! which is renamed into place only once every step has succeeded, and the
//! last event of a finished board records its version (`demo.seeded`). A
//! database that holds a half-built board (or one from an older version of
//! CAB) is rebuilt; one that holds anything else is left alone.

use anyhow::{Context, bail};
use cab_domain::approval::{
    AssessmentContent, AssessmentDecision, DataClassification, TestRequirement, VoteChoice,
};
use cab_domain::change::{
    Category, ChangeAction, ChangeContent, ChangeState, ChangeType, Environment, Priority,
    TestLevels,
};
use cab_domain::risk::{RiskAnswers, RiskLevel};
use chrono::{DateTime, Duration, Timelike, Utc};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgPool};
use uuid::Uuid;

use crate::accounts::{self, NewAccount, Operator};
use crate::audit_log::{self, Entity};
use crate::auth::CurrentUser;
use crate::changes::{self, ChangeView};
use crate::crypto::{Passwords, generate_password};
use crate::decisions;
use crate::error::AppError;
use crate::request::Origin;

mod calendar;
mod deployments;
mod history;
mod releases;
mod reviews;

/// Raised whenever the board gains data (a new feature's examples): a board
/// of an older version is then rebuilt on the next `cab demo`.
pub const BOARD_VERSION: i64 = 10;

/// The audit action of the last event of a finished board.
pub const SEEDED: &str = "demo.seeded";

/// The database `cab demo` uses when none is named.
pub const DEFAULT_DATABASE: &str = "cab_demo";

/// The demo's people: one per role, and a second engineer and CAB member
/// so that changes have contributors and decisions need more than one voice.
pub const PEOPLE: [(&str, &str, &str); 8] = [
    ("erin", "Erin Engineer", "engineer"),
    ("eddie", "Eddie Engineer", "engineer"),
    ("sam", "Sam Security", "security_reviewer"),
    ("carol", "Carol CAB", "cab_member"),
    ("carl", "Carl CAB", "cab_member"),
    ("rita", "Rita Release", "release_manager"),
    ("audrey", "Audrey Auditor", "auditor"),
    ("adam", "Adam Admin", "admin"),
];

/// A demo person's sign-in, as printed for the newcomer.
#[derive(Debug, Clone)]
pub struct Credential {
    pub username: String,
    pub role: String,
    pub password: String,
}

/// What `cab demo` found in the database it was asked to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A finished board of this version: kept, passwords renewed.
    Current,
    /// No database, an empty one, a half-built board or an older board:
    /// (re)built.
    Rebuild,
    /// Someone's data: refused.
    Foreign,
}

/// The board `cab demo` serves: prepared (built or kept) on the PostgreSQL
/// server of `server`, in the database `name`.
pub struct Prepared {
    pub pool: PgPool,
    pub credentials: Vec<Credential>,
    pub rebuilt: bool,
}

pub async fn prepare(server: &PgConnectOptions, name: &str) -> anyhow::Result<Prepared> {
    let passwords = Passwords::new(2)?;
    let target = server.clone().database(name);
    let mut rebuilt = false;
    // Two runs on one database take turns: the second finds the first's board.
    let lock = crate::db::hold_lock(server, &format!("cab demo {name}")).await?;
    match inspect(&target, name).await? {
        Found::Current => {}
        Found::Foreign => refuse_foreign(name)?,
        Found::Rebuild => {
            crate::db::drop_scratch(server, name).await?;
            let scratch = crate::db::scratch_name(name);
            crate::db::create_database(server, &scratch).await?;
            let built = build(&server.clone().database(&scratch), &passwords).await;
            if let Err(e) = built {
                crate::db::drop_database(server, &scratch).await.ok();
                return Err(e.context("seeding the demo board (nothing was kept)"));
            }
            crate::db::replace_database(server, &scratch, name).await?;
            rebuilt = true;
        }
    }
    let pool = crate::db::pool(target, 10);
    cab_db::MIGRATOR
        .run(&pool)
        .await
        .context("applying migrations")?;
    let credentials = renew_passwords(&pool, &passwords).await?;
    lock.close().await.ok();
    Ok(Prepared {
        pool,
        credentials,
        rebuilt,
    })
}

/// Looks at the database `name` without changing it.
pub async fn inspect(target: &PgConnectOptions, name: &str) -> anyhow::Result<Found> {
    let mut conn = match target.connect().await {
        Ok(c) => c,
        Err(e) if crate::db::is_missing_database(&e) => return Ok(Found::Rebuild),
        Err(e) => return Err(e).with_context(|| format!("connecting to database {name}")),
    };
    let probe = cab_db::demo::probe(&mut conn)
        .await
        .with_context(|| format!("looking into database {name}"))?;
    conn.close().await.ok();
    let demo_people: Vec<&str> = PEOPLE
        .iter()
        .map(|(u, _, _)| *u)
        .chain([deployments::PIPELINE])
        .collect();
    let only_demo_people = probe
        .usernames
        .iter()
        .all(|u| demo_people.contains(&u.as_str()));
    Ok(match probe {
        p if !p.has_cab_tables && p.other_tables == 0 => Found::Rebuild,
        p if !p.has_cab_tables => Found::Foreign,
        _ if !only_demo_people => Found::Foreign,
        p if p.board_version == Some(BOARD_VERSION) => Found::Current,
        _ => Found::Rebuild,
    })
}

/// Builds the whole board in the (fresh) database of `opts`.
async fn build(opts: &PgConnectOptions, passwords: &Passwords) -> anyhow::Result<()> {
    let pool = crate::db::pool(opts.clone(), 4);
    let result = async {
        cab_db::MIGRATOR
            .run(&pool)
            .await
            .context("applying migrations")?;
        let now = Utc::now();
        // The team set CAB up weeks ago: the people, then Adam signs in and
        // creates the pipeline's account.
        let set_up = history::set_up(now);
        for (username, name, role) in PEOPLE {
            accounts::create_at(
                &pool,
                passwords,
                &Operator::Cli,
                &Origin::cli(),
                NewAccount {
                    username: username.into(),
                    display_name: name.into(),
                    roles: vec![role.into()],
                    // Replaced before anyone is told one.
                    password: Some(generate_password()),
                    service: false,
                },
                set_up,
            )
            .await
            .map_err(crate::cli::cli_error)?;
        }
        history::sign_in(&pool, "adam", set_up + Duration::minutes(15))
            .await
            .map_err(crate::cli::cli_error)?;
        deployments::pipeline_account(&pool, set_up + Duration::minutes(20))
            .await
            .map_err(crate::cli::cli_error)?;
        // The weeks before this one, for the measures and the audit trail:
        // written first, so that their events come before everything
        // stamped with the present and the chain's times never go back.
        history::seed(&pool, now)
            .await
            .map_err(crate::cli::cli_error)?;
        calendar::seed(&pool).await.map_err(crate::cli::cli_error)?;
        let (cast, board) = seed_board(&pool, now)
            .await
            .map_err(crate::cli::cli_error)?;
        releases::seed(&pool, &cast, &board, now)
            .await
            .map_err(crate::cli::cli_error)?;
        // Its authorizations are signed with a key sealed under a secret
        // of the build's own; the server makes its own key when it starts
        // with another.
        let keys = crate::crypto::Keys::new(crate::crypto::random_token(48).as_bytes());
        deployments::seed(&pool, &cast, keys.clone(), now)
            .await
            .map_err(crate::cli::cli_error)?;
        reviews::seed(&pool, &cast, &board, keys, now)
            .await
            .map_err(crate::cli::cli_error)?;
        let counts = {
            let mut conn = pool.acquire().await?;
            let counted = cab_db::changes::counts_by_state(&mut conn, None).await?;
            let mut counts = serde_json::Map::new();
            for &s in ChangeState::ALL {
                let n = counted
                    .iter()
                    .find(|(k, _)| k == s.as_str())
                    .map_or(0, |(_, n)| *n);
                counts.insert(s.as_str().to_owned(), n.into());
            }
            counts
        };
        seed_role_request(&pool)
            .await
            .map_err(crate::cli::cli_error)?;
        let mut conn = pool.acquire().await?;
        audit_log::record(
            &mut conn,
            None,
            &Origin::cli(),
            SEEDED,
            Entity::kind("demo"),
            json!({ "board": BOARD_VERSION, "changes": counts }),
        )
        .await
        .map_err(crate::cli::cli_error)?;
        anyhow::Ok(())
    }
    .await;
    pool.close().await;
    result
}

/// Gives every demo person a fresh password (and nothing else changes).
async fn renew_passwords(pool: &PgPool, passwords: &Passwords) -> anyhow::Result<Vec<Credential>> {
    let mut out = Vec::new();
    for (username, _, role) in PEOPLE {
        let user = person_row(pool, username).await?;
        let password = generate_password();
        accounts::set_password(
            pool,
            passwords,
            &Operator::Cli,
            &Origin::cli(),
            user.id,
            password.clone(),
        )
        .await
        .map_err(crate::cli::cli_error)?;
        out.push(Credential {
            username: username.into(),
            role: role.into(),
            password,
        });
    }
    Ok(out)
}

async fn person_row(pool: &PgPool, username: &str) -> anyhow::Result<cab_db::users::UserRow> {
    let mut conn = pool.acquire().await?;
    cab_db::users::find_by_username(&mut conn, username)
        .await?
        .with_context(|| format!("the demo board has no user {username}"))
}

async fn person(pool: &PgPool, username: &str) -> Result<CurrentUser, AppError> {
    let mut conn = pool.acquire().await?;
    let row = cab_db::users::find_by_username(&mut conn, username)
        .await?
        .ok_or(AppError::NotFound("demo user"))?;
    CurrentUser::command_line(row)
}

/// Where a demo change ends up, and how it gets there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Draft,
    Submitted,
    InAssessment,
    /// Assessed; no CAB vote yet.
    AwaitingVotes,
    /// Assessed, one of the two approvals it needs.
    OneApprovalOfTwo,
    ChangesRequested,
    /// Sent back by CAB, revised by its author and submitted again.
    Resubmitted,
    Approved,
    /// Approved, then its plan edited: a new revision back in review.
    EditedAfterApproval,
    /// Rejected by a CAB member.
    Rejected,
    /// Rejected by the security assessment.
    RejectedBySecurity,
    Withdrawn,
    Cancelled,
    /// Approved by the emergency CAB; its review (the retrospective) is
    /// owed.
    Emergency,
    /// Approved by the emergency CAB; its review is written and signed off
    /// (see `reviews`).
    EmergencyReviewed,
}

/// The board's 33 hand-filed changes (three more come from the standard-change
/// template): title, description, category, services, fate, risk level.
type Seed = (
    &'static str,
    &'static str,
    Category,
    &'static [&'static str],
    Fate,
    RiskLevel,
);

#[rustfmt::skip]
const CHANGES: [Seed; 33] = [
    ("Upgrade OpenSSL on edge proxies", "Move the edge proxy fleet to the patched OpenSSL release.", Category::SecurityPatch, &["edge-proxy"], Fate::Emergency, RiskLevel::High),
    ("Rotate TLS certificates for api.example.com", "Replace the certificates that expire next month.", Category::Configuration, &["edge-proxy", "payments-api"], Fate::Approved, RiskLevel::Low),
    ("Add idempotency keys to payment capture", "Capture requests carry an idempotency key so retries never double-charge.", Category::Feature, &["payments-api"], Fate::OneApprovalOfTwo, RiskLevel::Medium),
    ("Fix rounding in invoice totals", "Totals used banker's rounding; invoices must round half up.", Category::BugFix, &["billing"], Fate::Draft, RiskLevel::Low),
    ("Bump serde and tokio", "Routine dependency update across the Rust services.", Category::DependencyUpdate, &["payments-api", "billing", "ledger"], Fate::Submitted, RiskLevel::Low),
    ("Resize the ledger database", "Move the ledger PostgreSQL cluster to larger instances before the quarter close.", Category::Infrastructure, &["ledger"], Fate::AwaitingVotes, RiskLevel::High),
    ("Enable MFA for the admin console", "Require a second factor for every administrator sign-in.", Category::SecurityPatch, &["admin-console"], Fate::Approved, RiskLevel::Medium),
    ("Harden SSH baseline on bastion hosts", "Apply the updated CIS baseline: no password logins, modern ciphers only.", Category::Configuration, &["bastion"], Fate::InAssessment, RiskLevel::Medium),
    ("New search index for customer lookup", "Add a trigram index so support can find customers by partial name.", Category::Feature, &["crm"], Fate::ChangesRequested, RiskLevel::Medium),
    ("Fix session timeout on the support portal", "Sessions expired after five minutes instead of thirty.", Category::BugFix, &["support-portal"], Fate::Withdrawn, RiskLevel::Low),
    ("Upgrade Kubernetes node pools to 1.31", "Rolling upgrade of the production node pools.", Category::Infrastructure, &["k8s-platform"], Fate::AwaitingVotes, RiskLevel::Critical),
    ("Patch log4j in the reporting service", "Replace the vulnerable logging library in the legacy reporting job.", Category::SecurityPatch, &["reporting"], Fate::EmergencyReviewed, RiskLevel::High),
    ("Switch email provider", "Move transactional email to the new provider with DKIM and SPF in place.", Category::Configuration, &["notifications"], Fate::RejectedBySecurity, RiskLevel::Medium),
    ("Add rate limiting to the public API", "Per-key rate limits at the gateway.", Category::Feature, &["api-gateway"], Fate::Resubmitted, RiskLevel::Medium),
    ("Update base container images", "Rebuild every service on the latest slim base image.", Category::DependencyUpdate, &["k8s-platform", "payments-api", "crm"], Fate::Approved, RiskLevel::High),
    ("Fix currency conversion cache", "Stale rates were served for up to a day after an outage.", Category::BugFix, &["fx-rates", "billing"], Fate::Submitted, RiskLevel::Medium),
    ("Decommission the old FTP server", "Shut down the FTP server; partners moved to SFTP last quarter.", Category::Infrastructure, &["partner-sftp"], Fate::Cancelled, RiskLevel::Low),
    ("Tighten firewall rules for the data warehouse", "Only the ETL subnet may reach the warehouse.", Category::Configuration, &["data-warehouse"], Fate::Rejected, RiskLevel::Medium),
    ("Migrate sessions to the new cache cluster", "Move session storage off the ageing cache nodes.", Category::Infrastructure, &["session-store"], Fate::Draft, RiskLevel::Medium),
    ("Retire the v1 orders endpoint", "All partners call v2; remove v1 after the notice period.", Category::Feature, &["orders-api"], Fate::Submitted, RiskLevel::Medium),
    ("Add audit logging to the refunds tool", "Every refund records who issued it and why.", Category::Feature, &["refunds"], Fate::InAssessment, RiskLevel::Low),
    ("Turn on row-level security in the CRM database", "Support agents see only their region's customers.", Category::SecurityPatch, &["crm"], Fate::AwaitingVotes, RiskLevel::Medium),
    ("Raise connection limits on the payments database", "Peak traffic exhausts the pool at month end.", Category::Configuration, &["payments-api"], Fate::EditedAfterApproval, RiskLevel::Low),
    ("Fix time zone handling in scheduled reports", "Reports scheduled for 09:00 ran at 08:00 after the clock change.", Category::BugFix, &["reporting"], Fate::ChangesRequested, RiskLevel::Low),
    ("Upgrade the CI runners", "New runner images with the current toolchains.", Category::DependencyUpdate, &["ci"], Fate::Draft, RiskLevel::Low),
    ("Move DNS to the managed provider", "Zones move to the managed DNS service with DNSSEC.", Category::Infrastructure, &["dns"], Fate::OneApprovalOfTwo, RiskLevel::High),
    ("Patch the image resizer for CVE-2026-1234", "Upgrade the image library used by the thumbnail service.", Category::SecurityPatch, &["media"], Fate::Approved, RiskLevel::Medium),
    ("Change the default currency display", "Show amounts in the customer's own currency.", Category::Feature, &["storefront"], Fate::Withdrawn, RiskLevel::Low),
    ("Shorten log retention for debug logs", "Debug logs kept 7 days instead of 30, as the data policy asks.", Category::Configuration, &["logging"], Fate::Rejected, RiskLevel::Low),
    ("Replace the message queue client", "Move to the maintained client library with TLS by default.", Category::DependencyUpdate, &["orders-api", "notifications"], Fate::ChangesRequested, RiskLevel::Medium),
    ("Add a read replica for analytics", "Reports stop competing with checkout for the primary.", Category::Infrastructure, &["ledger", "reporting"], Fate::Submitted, RiskLevel::Medium),
    ("Restrict S3 bucket policies", "Deny public access on every bucket by organisation policy.", Category::SecurityPatch, &["storage"], Fate::InAssessment, RiskLevel::High),
    ("Fix duplicate welcome emails", "A retry sent the welcome email twice to some customers.", Category::BugFix, &["notifications"], Fate::Cancelled, RiskLevel::Low),
];

/// Risk answers that land on `level` (see `cab_domain::risk::assess`).
fn answers(level: RiskLevel, i: usize) -> RiskAnswers {
    let (impact, likelihood) = match level {
        RiskLevel::Low => (1 + (i % 2) as i16, 1),
        RiskLevel::Medium => (2, 2 + (i % 2) as i16),
        RiskLevel::High => (3, 3),
        RiskLevel::Critical => (4, 3),
    };
    RiskAnswers {
        impact,
        likelihood,
        customer_facing: i % 3 == 1,
        ..RiskAnswers::default()
    }
}

fn content(i: usize, base: DateTime<Utc>) -> ChangeContent {
    let (title, description, category, services, fate, level) = CHANGES[i];
    let other = if i.is_multiple_of(3) { "erin" } else { "eddie" };
    let environments = match i % 4 {
        0 => vec![Environment::Dev, Environment::Test],
        1 => vec![Environment::Test, Environment::Stage],
        _ => vec![Environment::Stage, Environment::Prod],
    };
    let emergency = matches!(fate, Fate::Emergency | Fate::EmergencyReviewed);
    let start = if fate == Fate::Emergency {
        // Exploited now: its window opens within hours.
        base + Duration::hours(6)
    } else {
        base + Duration::days((i as i64 % 21) - 3) + Duration::hours(18 + (i as i64 % 4))
    };
    ChangeContent {
        title: title.to_owned(),
        description: description.to_owned(),
        justification: if emergency {
            "Actively exploited; waiting for the next CAB meeting is not an option.".into()
        } else {
            "Agreed in the quarterly plan; see the linked ticket.".into()
        },
        change_type: if emergency {
            ChangeType::Emergency
        } else {
            ChangeType::Normal
        },
        category,
        priority: if emergency {
            Priority::Urgent
        } else {
            [Priority::Low, Priority::Medium, Priority::High][i % 3]
        },
        services: services.iter().map(|s| (*s).to_owned()).collect(),
        environments,
        implementation_plan: "1. Announce in #ops.\n2. Apply with the deployment pipeline.\n3. Watch dashboards for 30 minutes.".into(),
        test_plan: "Unit and integration suites in CI; smoke tests on STAGE before PROD.".into(),
        test_levels: TestLevels {
            unit: true,
            integration: i.is_multiple_of(2),
            system: i.is_multiple_of(3),
            acceptance: i.is_multiple_of(5),
        },
        test_evidence: vec![format!("https://ci.example.com/runs/{}", 4000 + i)],
        rollback_plan: "Redeploy the previous release from the pipeline; restore the config from version control.".into(),
        window_start: Some(start),
        window_end: Some(start + Duration::hours(1 + (i as i64 % 3))),
        window_tz: "+01:00".into(),
        pr_url: format!("https://git.example.com/platform/pulls/{}", 100 + i),
        commit_sha: format!("{:040x}", 0x5eed_0000_u64 + i as u64 * 7919),
        artifact_digest: format!("sha256:{:064x}", 0xd16e_5700_u64 + i as u64),
        contributors: if i % 4 == 1 { vec![other.to_owned()] } else { Vec::new() },
        risk: answers(level, i),
    }
}

struct Cast {
    carol: CurrentUser,
    carl: CurrentUser,
    sam: CurrentUser,
}

impl Cast {
    async fn assess(
        &self,
        pool: &PgPool,
        c: &ChangeView,
        decision: AssessmentDecision,
    ) -> Result<ChangeView, AppError> {
        decisions::assess(
            pool,
            &self.sam,
            &Origin::cli(),
            c.id,
            assessment(c.risk_level, decision),
            Some(c.revision),
        )
        .await
    }

    async fn vote(
        &self,
        pool: &PgPool,
        who: &CurrentUser,
        c: &ChangeView,
        choice: VoteChoice,
        comment: &str,
    ) -> Result<ChangeView, AppError> {
        // The demo board's CAB approves knowingly: the conflicts a window
        // has are acknowledged with the vote, and shown with it.
        decisions::vote(
            pool,
            who,
            &Origin::cli(),
            c.id,
            &decisions::VoteCast {
                choice,
                comment,
                revision: Some(c.revision),
                acknowledge_conflicts: Some(""),
            },
        )
        .await
    }

    /// Assessment, then both CAB members' approvals (as many as it takes).
    async fn approve(&self, pool: &PgPool, c: ChangeView) -> Result<ChangeView, AppError> {
        let c = self
            .assess(pool, &c, AssessmentDecision::AcceptWithConditions)
            .await?;
        let c = self
            .vote(pool, &self.carol, &c, VoteChoice::Approve, "")
            .await?;
        if c.state == ChangeState::Approved {
            return Ok(c);
        }
        self.vote(
            pool,
            &self.carl,
            &c,
            VoteChoice::Approve,
            "Fine by me; keep the rollback warm.",
        )
        .await
    }
}

/// Adam asks for Rita to join CAB as well: the request waits on the users
/// page for a second administrator, as the two-person rule has it.
async fn seed_role_request(pool: &PgPool) -> Result<(), AppError> {
    let adam = person(pool, "adam").await?;
    let rita = person(pool, "rita").await?;
    let mut roles = rita.roles.names();
    roles.push("cab_member".into());
    accounts::set_roles(
        pool,
        &Operator::User(&adam),
        &Origin::cli(),
        rita.id,
        &roles,
    )
    .await?;
    Ok(())
}

/// Seeds the board's changes and the approved standard-change template.
/// Returns the CAB that decided them, and the hand-filed changes in the
/// order of `CHANGES`.
async fn seed_board(pool: &PgPool, now: DateTime<Utc>) -> Result<(Cast, Vec<Uuid>), AppError> {
    let erin = person(pool, "erin").await?;
    let eddie = person(pool, "eddie").await?;
    let cast = Cast {
        carol: person(pool, "carol").await?,
        carl: person(pool, "carl").await?,
        sam: person(pool, "sam").await?,
    };
    let origin = Origin::cli();
    let base = now
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(now);
    let mut states = Vec::new();
    let mut board = Vec::with_capacity(CHANGES.len());
    for (i, &(.., fate, _)) in CHANGES.iter().enumerate() {
        let author = if i.is_multiple_of(3) { &eddie } else { &erin };
        let c = changes::create(pool, author, &origin, content(i, base)).await?;
        board.push(c.id);
        if fate == Fate::Draft {
            states.push(c.state);
            continue;
        }
        let mut c = submit(pool, author, c.id).await?;
        if i % 4 == 2 {
            changes::comment(
                pool,
                &cast.carol,
                &origin,
                c.id,
                "Please add the dashboard you will watch during the window.",
            )
            .await?;
        }
        c = match fate {
            Fate::Draft | Fate::Submitted => c,
            Fate::InAssessment => {
                decisions::start_assessment(pool, &cast.sam, &origin, c.id).await?
            }
            Fate::AwaitingVotes => cast.assess(pool, &c, AssessmentDecision::Accept).await?,
            Fate::OneApprovalOfTwo => {
                let c = cast.assess(pool, &c, AssessmentDecision::Accept).await?;
                cast.vote(pool, &cast.carol, &c, VoteChoice::Approve, "")
                    .await?
            }
            Fate::ChangesRequested | Fate::Resubmitted => {
                let c = cast.assess(pool, &c, AssessmentDecision::Accept).await?;
                let c = cast
                    .vote(
                        pool,
                        &cast.carl,
                        &c,
                        VoteChoice::RequestChanges,
                        "Say which dashboard you will watch, and for how long.",
                    )
                    .await?;
                if fate == Fate::Resubmitted {
                    let mut edited = c.content.clone();
                    edited.implementation_plan.push_str(
                        "\n4. Watch the gateway's 429 rate on the API dashboard for an hour.",
                    );
                    changes::edit(pool, author, &origin, c.id, edited).await?;
                    submit(pool, author, c.id).await?
                } else {
                    c
                }
            }
            Fate::Approved => cast.approve(pool, c).await?,
            Fate::EditedAfterApproval => {
                let c = cast.approve(pool, c).await?;
                let mut edited = c.content.clone();
                edited
                    .implementation_plan
                    .push_str("\n4. Keep the previous release warm for an hour.");
                changes::edit(pool, author, &origin, c.id, edited).await?
            }
            Fate::Rejected => {
                let c = cast.assess(pool, &c, AssessmentDecision::Accept).await?;
                cast.vote(
                    pool,
                    &cast.carol,
                    &c,
                    VoteChoice::Reject,
                    "Not before the quarter close; propose it again in January.",
                )
                .await?
            }
            Fate::RejectedBySecurity => cast.assess(pool, &c, AssessmentDecision::Reject).await?,
            Fate::Withdrawn => {
                changes::transition(pool, author, &origin, c.id, ChangeAction::Withdraw, None)
                    .await?
            }
            Fate::Cancelled => {
                changes::transition(
                    pool,
                    &cast.carol,
                    &origin,
                    c.id,
                    ChangeAction::Cancel,
                    Some("Superseded by a later change.".into()),
                )
                .await?
            }
            Fate::Emergency | Fate::EmergencyReviewed => {
                let c = cast
                    .vote(
                        pool,
                        &cast.carol,
                        &c,
                        VoteChoice::Approve,
                        "Go: exploited in the wild.",
                    )
                    .await?;
                let c = cast.assess(pool, &c, AssessmentDecision::Accept).await?;
                // A high-risk emergency needs a second CAB approval.
                if c.state == ChangeState::Approved {
                    c
                } else {
                    cast.vote(pool, &cast.carl, &c, VoteChoice::Approve, "Agreed; go.")
                        .await?
                }
            }
        };
        states.push(c.state);
    }
    states.extend(seed_standard_changes(pool, &cast, &erin, base).await?);
    Ok((cast, board))
}

async fn submit(pool: &PgPool, author: &CurrentUser, id: Uuid) -> Result<ChangeView, AppError> {
    changes::transition(pool, author, &Origin::cli(), id, ChangeAction::Submit, None).await
}

/// A standard-change template approved by CAB, and three changes made from
/// it: two within its scope (approved on submission), one beyond it.
async fn seed_standard_changes(
    pool: &PgPool,
    cast: &Cast,
    author: &CurrentUser,
    base: DateTime<Utc>,
) -> Result<Vec<ChangeState>, AppError> {
    let origin = Origin::cli();
    let mut routine = ChangeContent::blank();
    routine.title = "Renew a TLS certificate from the internal CA".into();
    routine.description = "Routine renewal before expiry.".into();
    routine.category = Category::Configuration;
    routine.implementation_plan = "Run the renewal job for the host.".into();
    routine.test_plan = "The TLS check passes on the host.".into();
    routine.rollback_plan = "Restore the previous certificate from the vault.".into();
    routine.risk = RiskAnswers {
        impact: 1,
        likelihood: 1,
        ..RiskAnswers::default()
    };
    // What CAB approves it for: a change from it stays within these.
    routine.services = vec!["intranet".into()];
    routine.environments = vec![Environment::Stage, Environment::Prod];
    let template = crate::standard_templates::propose(
        pool,
        &cast.carol,
        &origin,
        "TLS certificate renewal",
        routine,
    )
    .await?;
    crate::standard_templates::vote(
        pool,
        &cast.carl,
        &origin,
        template.row.id,
        VoteChoice::Approve,
        "",
    )
    .await?;
    let mut states = Vec::new();
    // The third names a service the template does not cover, so it is
    // submitted for review like any other change instead of being approved.
    for (n, (host, service)) in [
        ("intranet.example.com", "intranet"),
        ("portal.example.com", "intranet"),
        ("wiki.example.com", "wiki"),
    ]
    .iter()
    .enumerate()
    {
        let start = base + Duration::days(2 + n as i64) + Duration::hours(9);
        let mut c = ChangeContent::blank();
        c.title = format!("Renew the TLS certificate of {host}");
        c.description = format!("The certificate of {host} expires in three weeks.");
        c.justification = "Expiry would break sign-in for staff.".into();
        c.change_type = ChangeType::Standard;
        c.services = vec![(*service).into()];
        c.environments = vec![Environment::Prod];
        c.window_start = Some(start);
        c.window_end = Some(start + Duration::hours(1));
        let made = changes::create_with(pool, author, &origin, c, Some(template.row.id)).await?;
        states.push(submit(pool, author, made.id).await?.state);
    }
    Ok(states)
}

fn assessment(level: RiskLevel, decision: AssessmentDecision) -> AssessmentContent {
    AssessmentContent {
        data_classification: DataClassification::Internal,
        security_implications: "Changes how the service talks to its neighbours; no new exposure."
            .into(),
        sast: TestRequirement {
            required: true,
            evidence: "https://ci.example.com/sast/latest".into(),
            justification: String::new(),
        },
        dast: TestRequirement {
            required: true,
            evidence: String::new(),
            justification: "Runs on STAGE before PROD.".into(),
        },
        pentest: TestRequirement::default(),
        residual_risk: if decision == AssessmentDecision::Reject {
            "The new provider cannot sign with our domain keys yet; mail would fail DMARC.".into()
        } else {
            "Acceptable with monitoring during the window.".into()
        },
        assessed_level: level,
        lowering_justification: String::new(),
        decision,
        conditions: if decision == AssessmentDecision::AcceptWithConditions {
            vec!["Watch error rates for an hour after the change.".into()]
        } else {
            Vec::new()
        },
    }
}

/// The database `cab demo` should use: `--database`, else the one named in
/// `DATABASE_URL` (when it was given), else `cab_demo`.
pub fn database_name(flag: Option<&str>, url_given: bool, opts: &PgConnectOptions) -> String {
    flag.map(str::to_owned)
        .or_else(|| {
            url_given
                .then(|| opts.get_database().map(str::to_owned))
                .flatten()
        })
        .unwrap_or_else(|| DEFAULT_DATABASE.to_owned())
}

/// Refuses a database that holds someone's data.
pub fn refuse_foreign(name: &str) -> anyhow::Result<()> {
    bail!(
        "database {name} holds data that is not a CAB demo board, so the demo leaves it alone; \
         choose another with `cab demo --database NAME`"
    )
}
