//! The demo board's deployments: a pipeline account, changes promoted
//! DEV → TEST → STAGE → PROD with deployments in every state, a freeze in
//! force and one coming up, a break-glass deployment through the freeze,
//! and a deployment nobody authorized. Written through the gate, the same
//! code as the API's.

use cab_domain::approval::{AssessmentDecision, VoteChoice};
use cab_domain::change::{ChangeAction, ChangeContent, ChangeType, Priority};
use cab_domain::deployment::DeploymentState;
use cab_domain::risk::RiskLevel;
use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::{Cast, answers, content, person};
use crate::accounts::{self, NewAccount, Operator};
use crate::auth::CurrentUser;
use crate::changes::{self, ChangeView};
use crate::crypto::Keys;
use crate::deployments::{self, GateRequest, Report};
use crate::error::AppError;
use crate::exceptions::{self, BreakGlassAsk, Observation};
use crate::freezes::{self, NewFreeze};
use crate::releases;
use crate::request::Origin;

/// The pipeline's service account.
pub const PIPELINE: &str = "deploy-bot";

/// The board's pipeline, through the gate as a pipeline would call it.
pub(super) struct Pipeline {
    bot: CurrentUser,
    keys: Keys,
    run: u32,
}

impl Pipeline {
    /// The pipeline's account; `run` numbers its runs from there.
    pub(super) async fn new(pool: &PgPool, keys: Keys, run: u32) -> Result<Self, AppError> {
        Ok(Self {
            bot: person(pool, PIPELINE).await?,
            keys,
            run,
        })
    }

    /// Asks the gate for `change`'s artifact in `env`, for `initiator`.
    async fn authorize(
        &mut self,
        pool: &PgPool,
        c: &ChangeView,
        env: &str,
        initiator: Option<&str>,
        break_glass: Option<String>,
    ) -> Result<(Uuid, String), AppError> {
        self.run += 1;
        let req = GateRequest {
            change: c.id.to_string(),
            revision: c.revision,
            environment: env.into(),
            artifact_name: c.content.services.first().cloned().unwrap_or_default(),
            artifact_version: format!("2026.11.{}", self.run),
            artifact_digest: c.content.artifact_digest.clone(),
            services: Vec::new(),
            initiator: initiator.map(str::to_owned),
            pipeline_provider: "github".into(),
            pipeline_run_id: format!("{}", 9000 + self.run),
            pipeline_url: format!(
                "https://git.example.com/platform/actions/runs/{}",
                9000 + self.run
            ),
            break_glass,
            commits: vec![deployments::Commit {
                sha: format!("{:012x}", 0x5eed_0000_u64 + self.run as u64),
                committed_at: chrono::Utc::now() - chrono::Duration::days(2),
            }],
        };
        let a = deployments::authorize(pool, &self.keys, &self.bot, &Origin::cli(), &req).await?;
        Ok((a.deployment.id, a.token))
    }

    pub(super) async fn report(
        &self,
        pool: &PgPool,
        id: Uuid,
        state: DeploymentState,
        token: Option<&str>,
        note: &str,
    ) -> Result<(), AppError> {
        deployments::report(
            pool,
            &self.bot,
            &Origin::cli(),
            id,
            &Report {
                state,
                token: token.map(str::to_owned),
                note: note.into(),
            },
        )
        .await?;
        Ok(())
    }

    /// Authorizes, starts and ends a deployment in `end`.
    async fn deploy(
        &mut self,
        pool: &PgPool,
        c: &ChangeView,
        env: &str,
        initiator: Option<&str>,
        end: DeploymentState,
    ) -> Result<Uuid, AppError> {
        let note = match end {
            DeploymentState::Failed => "Smoke tests failed: 502s from the health check.",
            _ => "",
        };
        self.deploy_noted(pool, c, env, initiator, end, note).await
    }

    /// Authorizes, starts and ends a deployment in `end` (unless that is
    /// `Started`), the pipeline saying `note`.
    pub(super) async fn deploy_noted(
        &mut self,
        pool: &PgPool,
        c: &ChangeView,
        env: &str,
        initiator: Option<&str>,
        end: DeploymentState,
        note: &str,
    ) -> Result<Uuid, AppError> {
        let (id, token) = self.authorize(pool, c, env, initiator, None).await?;
        self.report(pool, id, DeploymentState::Started, Some(&token), "")
            .await?;
        if end != DeploymentState::Started {
            self.report(pool, id, end, None, note).await?;
        }
        Ok(id)
    }

    /// DEV, TEST and STAGE, each deployed successfully.
    pub(super) async fn promote_to_stage(
        &mut self,
        pool: &PgPool,
        c: &ChangeView,
    ) -> Result<(), AppError> {
        for env in ["dev", "test", "stage"] {
            self.deploy(pool, c, env, None, DeploymentState::Succeeded)
                .await?;
        }
        Ok(())
    }
}

/// A low-risk change of the board's kind whose window is open now, for
/// deployments made as the board is built; `i` tells its artifact.
fn live_content(i: usize, base: DateTime<Utc>, title: &str, services: &[&str]) -> ChangeContent {
    let mut c = content(0, base);
    c.risk = answers(RiskLevel::Low, i);
    c.title = title.into();
    c.services = services.iter().map(|s| (*s).to_owned()).collect();
    c.window_start = Some(base - Duration::hours(1));
    c.window_end = Some(base + Duration::hours(6));
    c.window_tz = "UTC".into();
    c.artifact_digest = format!("sha256:{:064x}", 0xdeb1_0000_u64 + i as u64);
    c.contributors = Vec::new();
    c.change_type = ChangeType::Normal;
    c
}

/// A change filed by `author`, submitted and approved by the board's CAB.
async fn approved(
    pool: &PgPool,
    cast: &Cast,
    author: &CurrentUser,
    content: ChangeContent,
) -> Result<ChangeView, AppError> {
    let origin = Origin::cli();
    let c = changes::create(pool, author, &origin, content).await?;
    let c = changes::transition(pool, author, &origin, c.id, ChangeAction::Submit, None).await?;
    cast.approve(pool, c).await
}

/// `change` as a release planned by Rita, approved by the board's CAB and
/// started (its first phase open).
async fn release(
    pool: &PgPool,
    cast: &Cast,
    rita: &CurrentUser,
    change: &ChangeView,
    (name, version): (&str, &str),
    deployment: DateTime<Utc>,
    phases: &[(&str, &str, u32)],
) -> Result<Uuid, AppError> {
    let plan = super::releases::plan(name, version, deployment, Duration::zero(), phases);
    let r = super::releases::planned(pool, rita, plan, &[change]).await?;
    let r = super::releases::approved(pool, cast, rita, r).await?;
    let r = releases::advance(pool, rita, &Origin::cli(), r.id()).await?;
    Ok(r.id())
}

/// Adam creates the pipeline's service account at `at`, when the team
/// sets CAB up, and lets it deploy everywhere.
pub(super) async fn pipeline_account(pool: &PgPool, at: DateTime<Utc>) -> Result<(), AppError> {
    let origin = Origin::cli();
    let adam = person(pool, "adam").await?;
    let created = accounts::create_at(
        pool,
        &crate::crypto::Passwords::new(1)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?,
        &Operator::User(&adam),
        &origin,
        NewAccount {
            username: PIPELINE.into(),
            display_name: "Deployment pipeline".into(),
            roles: vec!["engineer".into()],
            password: None,
            service: true,
        },
        at,
    )
    .await?;
    let all: Vec<String> = ["dev", "test", "stage", "prod"].map(String::from).into();
    deployments::set_account_environments_at(
        pool,
        &adam,
        &origin,
        created.user.id,
        &all,
        at + Duration::minutes(1),
    )
    .await?;
    Ok(())
}

/// Seeds the deployments part of the board. `now` is when the board is
/// built; windows are open around it.
pub(super) async fn seed(
    pool: &PgPool,
    cast: &Cast,
    keys: Keys,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    let origin = Origin::cli();
    let rita = person(pool, "rita").await?;
    let erin = person(pool, "erin").await?;
    let eddie = person(pool, "eddie").await?;
    let mut pipe = Pipeline::new(pool, keys, 0).await?;

    // Promoted all the way and deployed to PROD by Rita through the
    // pipeline: the change is deployed.
    let proxy = approved(
        pool,
        cast,
        &erin,
        live_content(40, now, "Roll out the new edge proxy", &["edge-proxy"]),
    )
    .await?;
    // It goes out as a release, phase by phase: STAGE, then PROD; then the
    // release is complete.
    let edge = release(
        pool,
        cast,
        &rita,
        &proxy,
        ("Edge proxy", "2026.11.1"),
        now - Duration::hours(2),
        &[("stage", "All of STAGE", 0), ("prod", "All customers", 0)],
    )
    .await?;
    pipe.promote_to_stage(pool, &proxy).await?;
    releases::advance(pool, &rita, &origin, edge).await?;
    pipe.deploy(
        pool,
        &proxy,
        "prod",
        Some("rita"),
        DeploymentState::Succeeded,
    )
    .await?;
    releases::advance(pool, &rita, &origin, edge).await?;

    // Deployed to PROD, then rolled back: the deployment failed after all.
    let search = approved(
        pool,
        cast,
        &eddie,
        live_content(
            41,
            now,
            "Switch search to the new ranking model",
            &["search-api"],
        ),
    )
    .await?;
    let ranking = release(
        pool,
        cast,
        &rita,
        &search,
        ("Search ranking", "2026.11.2"),
        now - Duration::hours(1),
        &[("stage", "All of STAGE", 0), ("prod", "All customers", 60)],
    )
    .await?;
    pipe.promote_to_stage(pool, &search).await?;
    releases::advance(pool, &rita, &origin, ranking).await?;
    let id = pipe
        .deploy(
            pool,
            &search,
            "prod",
            Some("rita"),
            DeploymentState::Succeeded,
        )
        .await?;
    pipe.report(
        pool,
        id,
        DeploymentState::RolledBack,
        None,
        "Relevance complaints within the hour; back on the old model.",
    )
    .await?;
    // The release's PROD phase is rolled back with it: nothing after it opens.
    releases::roll_back(
        pool,
        &rita,
        &origin,
        ranking,
        "Relevance complaints within the hour; back on the old model.",
    )
    .await?;

    // Being deployed to PROD right now.
    let queue = approved(
        pool,
        cast,
        &erin,
        live_content(
            42,
            now,
            "Move the job queue to the managed broker",
            &["job-queue"],
        ),
    )
    .await?;
    let broker = release(
        pool,
        cast,
        &rita,
        &queue,
        ("Job queue", "2026.11.5"),
        now,
        &[
            ("stage", "All of STAGE", 0),
            ("prod", "10% of workers (canary)", 60),
            ("prod", "All workers", 240),
        ],
    )
    .await?;
    pipe.promote_to_stage(pool, &queue).await?;
    releases::advance(pool, &rita, &origin, broker).await?;
    pipe.deploy(pool, &queue, "prod", Some("rita"), DeploymentState::Started)
        .await?;

    // TEST failed once, an authorization was given up, one ran out, and
    // one waits to start.
    let sdk = approved(
        pool,
        cast,
        &eddie,
        live_content(43, now, "Upgrade the notifications SDK", &["notifications"]),
    )
    .await?;
    pipe.deploy(pool, &sdk, "dev", None, DeploymentState::Succeeded)
        .await?;
    pipe.deploy(pool, &sdk, "test", None, DeploymentState::Failed)
        .await?;
    let (id, _) = pipe.authorize(pool, &sdk, "test", None, None).await?;
    pipe.report(
        pool,
        id,
        DeploymentState::Aborted,
        None,
        "Wrong build picked up; starting over.",
    )
    .await?;
    let (stale, _) = pipe.authorize(pool, &sdk, "test", None, None).await?;
    {
        let mut conn = pool.acquire().await?;
        cab_db::demo::age_authorization(&mut conn, stale, now - Duration::minutes(20)).await?;
    }
    // Asking again finds the old one run out.
    pipe.authorize(pool, &sdk, "test", None, None).await?;

    // A freeze on the payment gateway in force now, and the year-end freeze
    // coming up.
    freezes::declare(
        pool,
        &rita,
        &origin,
        NewFreeze {
            starts_at: None,
            ends_at: Some(now + Duration::days(2)),
            reason:
                "Payment gateway migration: nothing else touches it until the cut-over is done."
                    .into(),
            environments: vec!["prod".into()],
            services: vec!["payment-gateway".into()],
            unreadable: Vec::new(),
        },
    )
    .await?;
    freezes::declare(
        pool,
        &rita,
        &origin,
        NewFreeze {
            starts_at: Some(now + Duration::days(24)),
            ends_at: Some(now + Duration::days(34)),
            reason: "Year-end trading peak: production is frozen.".into(),
            environments: vec!["prod".into()],
            services: Vec::new(),
            unreadable: Vec::new(),
        },
    )
    .await?;

    // A certificate about to expire on the frozen gateway: in CAB review,
    // its window tomorrow. Rita asks for break-glass, Carl confirms, and
    // the pipeline deploys it for her through the freeze.
    let mut cert = live_content(
        44,
        now,
        "Renew the payment gateway's TLS certificate",
        &["payment-gateway"],
    );
    cert.window_start = Some(now + Duration::days(1));
    cert.window_end = Some(now + Duration::days(1) + Duration::hours(2));
    cert.priority = Priority::Urgent;
    let c = changes::create(pool, &erin, &origin, cert).await?;
    let c = changes::transition(pool, &erin, &origin, c.id, ChangeAction::Submit, None).await?;
    let c = cast.assess(pool, &c, AssessmentDecision::Accept).await?;
    let c = cast
        .vote(
            pool,
            &cast.carol,
            &c,
            VoteChoice::Approve,
            "Fine, once the new chain is in the trust store.",
        )
        .await?;
    pipe.promote_to_stage(pool, &c).await?;
    let bg = exceptions::request_break_glass(
        pool,
        &rita,
        &origin,
        &BreakGlassAsk {
            change: c.id.to_string(),
            environment: "prod".into(),
            reason: "The gateway's certificate expires tonight; card payments stop when it does."
                .into(),
            incident: "INC-2041".into(),
        },
    )
    .await?;
    exceptions::confirm_break_glass(pool, &cast.carl, &origin, &bg.id.to_string()).await?;
    let (id, token) = pipe
        .authorize(pool, &c, "prod", Some("rita"), Some(bg.id.to_string()))
        .await?;
    pipe.report(pool, id, DeploymentState::Started, Some(&token), "")
        .await?;
    pipe.report(
        pool,
        id,
        DeploymentState::Succeeded,
        None,
        "New certificate served; payments flowing.",
    )
    .await?;

    // Something runs in PROD that no deployment covers: a finding.
    exceptions::observe(
        pool,
        &pipe.bot,
        &origin,
        &Observation {
            environment: "prod".into(),
            service: "billing".into(),
            digest: format!("sha256:{:064x}", 0xbad_c0de_u64),
            observed_at: Some(now - Duration::minutes(35)),
        },
    )
    .await?;
    // And what the edge proxy's deployment covers is none.
    exceptions::observe(
        pool,
        &pipe.bot,
        &origin,
        &Observation {
            environment: "prod".into(),
            service: "edge-proxy".into(),
            digest: proxy.content.artifact_digest.clone(),
            observed_at: None,
        },
    )
    .await?;
    Ok(())
}
