//! Demo data: a realistic board of change requests, so a newcomer's first
//! screen looks like a team's. Written through the same operations as the
//! pages and the API, so the audit trail holds it all.

use cab_domain::change::{
    Category, ChangeAction, ChangeContent, ChangeType, Environment, Priority, TestLevels,
};
use cab_domain::risk::RiskAnswers;
use chrono::{Duration, Timelike, Utc};
use sqlx::PgPool;

use crate::auth::CurrentUser;
use cab_domain::approval::{
    AssessmentContent, AssessmentDecision, DataClassification, TestRequirement, VoteChoice,
};

use crate::changes;
use crate::decisions;
use crate::error::AppError;
use crate::request::Origin;

/// (title, description, category, services)
const CHANGES: [(&str, &str, Category, &[&str]); 18] = [
    (
        "Upgrade OpenSSL on edge proxies",
        "Move the edge proxy fleet to the patched OpenSSL release.",
        Category::SecurityPatch,
        &["edge-proxy"],
    ),
    (
        "Rotate TLS certificates for api.example.com",
        "Replace the certificates that expire next month.",
        Category::Configuration,
        &["edge-proxy", "payments-api"],
    ),
    (
        "Add idempotency keys to payment capture",
        "Capture requests carry an idempotency key so retries never double-charge.",
        Category::Feature,
        &["payments-api"],
    ),
    (
        "Fix rounding in invoice totals",
        "Totals used banker's rounding; invoices must round half up.",
        Category::BugFix,
        &["billing"],
    ),
    (
        "Bump serde and tokio",
        "Routine dependency update across the Rust services.",
        Category::DependencyUpdate,
        &["payments-api", "billing", "ledger"],
    ),
    (
        "Resize the ledger database",
        "Move the ledger PostgreSQL cluster to larger instances before the quarter close.",
        Category::Infrastructure,
        &["ledger"],
    ),
    (
        "Enable MFA for the admin console",
        "Require a second factor for every administrator sign-in.",
        Category::SecurityPatch,
        &["admin-console"],
    ),
    (
        "Harden SSH baseline on bastion hosts",
        "Apply the updated CIS baseline: no password logins, modern ciphers only.",
        Category::Configuration,
        &["bastion"],
    ),
    (
        "New search index for customer lookup",
        "Add a trigram index so support can find customers by partial name.",
        Category::Feature,
        &["crm"],
    ),
    (
        "Fix session timeout on the support portal",
        "Sessions expired after five minutes instead of thirty.",
        Category::BugFix,
        &["support-portal"],
    ),
    (
        "Upgrade Kubernetes node pools to 1.31",
        "Rolling upgrade of the production node pools.",
        Category::Infrastructure,
        &["k8s-platform"],
    ),
    (
        "Patch log4j in the reporting service",
        "Replace the vulnerable logging library in the legacy reporting job.",
        Category::SecurityPatch,
        &["reporting"],
    ),
    (
        "Switch email provider",
        "Move transactional email to the new provider with DKIM and SPF in place.",
        Category::Configuration,
        &["notifications"],
    ),
    (
        "Add rate limiting to the public API",
        "Per-key rate limits at the gateway.",
        Category::Feature,
        &["api-gateway"],
    ),
    (
        "Update base container images",
        "Rebuild every service on the latest slim base image.",
        Category::DependencyUpdate,
        &["k8s-platform", "payments-api", "crm"],
    ),
    (
        "Fix currency conversion cache",
        "Stale rates were served for up to a day after an outage.",
        Category::BugFix,
        &["fx-rates", "billing"],
    ),
    (
        "Decommission the old FTP server",
        "Shut down the FTP server; partners moved to SFTP last quarter.",
        Category::Infrastructure,
        &["partner-sftp"],
    ),
    (
        "Tighten firewall rules for the data warehouse",
        "Only the ETL subnet may reach the warehouse.",
        Category::Configuration,
        &["data-warehouse"],
    ),
];

async fn person(pool: &PgPool, username: &str) -> Result<CurrentUser, AppError> {
    let mut conn = pool.acquire().await?;
    let row = cab_db::users::find_by_username(&mut conn, username)
        .await?
        .ok_or(AppError::NotFound("demo user"))?;
    CurrentUser::command_line(row)
}

/// Seeds 36 changes across types, categories, risk levels and states, once:
/// an existing board is left alone.
pub async fn seed_changes(pool: &PgPool) -> Result<(), AppError> {
    let mut conn = pool.acquire().await?;
    let existing = cab_db::changes::counts_by_state(&mut conn, None).await?;
    drop(conn);
    if existing.iter().map(|(_, n)| n).sum::<i64>() > 0 {
        return Ok(());
    }
    let erin = person(pool, "erin").await?;
    let eddie = person(pool, "eddie").await?;
    let carol = person(pool, "carol").await?;
    let carl = person(pool, "carl").await?;
    let sam = person(pool, "sam").await?;
    let origin = Origin::cli();
    let base = Utc::now()
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or_else(Utc::now);
    for i in 0..36usize {
        let (title, description, category, services) = CHANGES[i % CHANGES.len()];
        let author = if i % 3 == 0 { &eddie } else { &erin };
        let other = if i % 3 == 0 { "erin" } else { "eddie" };
        let change_type = match i % 9 {
            0 => ChangeType::Emergency,
            4 | 7 => ChangeType::Standard,
            _ => ChangeType::Normal,
        };
        let environments = match i % 4 {
            0 => vec![Environment::Dev, Environment::Test],
            1 => vec![Environment::Test, Environment::Stage],
            _ => vec![Environment::Stage, Environment::Prod],
        };
        let start =
            base + Duration::days((i as i64 % 21) - 3) + Duration::hours(18 + (i as i64 % 4));
        let content = ChangeContent {
            title: if i < CHANGES.len() { title.to_owned() } else { format!("{title} (phase 2)") },
            description: description.to_owned(),
            justification: "Agreed in the quarterly plan; see the linked ticket.".into(),
            change_type,
            category,
            priority: [Priority::Low, Priority::Medium, Priority::High, Priority::Urgent][i % 4],
            services: services.iter().map(|s| (*s).to_owned()).collect(),
            environments,
            implementation_plan: "1. Announce in #ops.\n2. Apply with the deployment pipeline.\n3. Watch dashboards for 30 minutes.".into(),
            test_plan: "Unit and integration suites in CI; smoke tests on STAGE before PROD.".into(),
            test_levels: TestLevels {
                unit: true,
                integration: i % 2 == 0,
                system: i % 3 == 0,
                acceptance: i % 5 == 0,
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
            risk: RiskAnswers {
                impact: (i % 4) as i16 + 1,
                likelihood: ((i / 4) % 3) as i16 + 1,
                touches_production_data: i % 5 == 2,
                customer_facing: i % 3 == 1,
                changes_security_control: category == Category::SecurityPatch && i % 2 == 0,
                rollback_untested: i % 11 == 5,
                outside_usual_window: i % 7 == 3,
            },
        };
        let change = changes::create(pool, author, &origin, content).await?;
        // A few stay drafts; most are submitted; some are later withdrawn or cancelled.
        if i % 6 == 5 {
            continue;
        }
        changes::transition(pool, author, &origin, change.id, ChangeAction::Submit, None).await?;
        if i % 5 == 1 {
            let mut edited = changes::load(pool, change.id).await?.content;
            edited
                .implementation_plan
                .push_str("\n4. Keep the previous release warm for an hour.");
            changes::edit(pool, author, &origin, change.id, edited).await?;
        }
        if i % 4 == 2 {
            changes::comment(
                pool,
                &carol,
                &origin,
                change.id,
                "Please add the dashboard you will watch during the window.",
            )
            .await?;
        }
        if i % 13 == 7 {
            changes::transition(
                pool,
                author,
                &origin,
                change.id,
                ChangeAction::Withdraw,
                None,
            )
            .await?;
        } else if i % 17 == 11 {
            changes::transition(
                pool,
                &carol,
                &origin,
                change.id,
                ChangeAction::Cancel,
                Some("Superseded by a later change.".into()),
            )
            .await?;
        } else if i % 3 == 1 {
            // Assessed and decided: most approved, one sent back, one rejected.
            let current = changes::load(pool, change.id).await?;
            let decision = if i == 10 {
                AssessmentDecision::Reject
            } else {
                AssessmentDecision::AcceptWithConditions
            };
            decisions::assess(
                pool,
                &sam,
                &origin,
                change.id,
                demo_assessment(current.risk_level, decision),
                Some(current.revision),
            )
            .await?;
            if i != 10 {
                let second = if i == 22 {
                    VoteChoice::RequestChanges
                } else {
                    VoteChoice::Approve
                };
                decisions::vote(
                    pool,
                    &carol,
                    &origin,
                    change.id,
                    VoteChoice::Approve,
                    "",
                    None,
                )
                .await?;
                let current = changes::load(pool, change.id).await?;
                if cab_domain::approval::under_review(current.state) {
                    decisions::vote(
                        pool,
                        &carl,
                        &origin,
                        change.id,
                        second,
                        "Add the dashboard you will watch.",
                        None,
                    )
                    .await?;
                }
            }
        } else if i % 9 == 0 {
            // An emergency change, approved by the emergency CAB.
            decisions::vote(
                pool,
                &carol,
                &origin,
                change.id,
                VoteChoice::Approve,
                "",
                None,
            )
            .await?;
            let current = changes::load(pool, change.id).await?;
            decisions::assess(
                pool,
                &sam,
                &origin,
                change.id,
                demo_assessment(current.risk_level, AssessmentDecision::Accept),
                Some(current.revision),
            )
            .await?;
        }
    }
    // A standard-change template, approved by CAB.
    let mut routine = crate::api::changes::blank_content();
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
    let template =
        crate::templates::propose(pool, &carol, &origin, "TLS certificate renewal", routine)
            .await?;
    crate::templates::vote(
        pool,
        &carl,
        &origin,
        template.row.id,
        VoteChoice::Approve,
        "",
    )
    .await?;
    Ok(())
}

fn demo_assessment(
    level: cab_domain::risk::RiskLevel,
    decision: AssessmentDecision,
) -> AssessmentContent {
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
        residual_risk: "Acceptable with monitoring during the window.".into(),
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
