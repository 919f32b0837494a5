//! The evidence pack for a period: one ZIP archive an auditor takes away,
//! with, for each control, the population and its exceptions (ISO/IEC
//! 27001 A.8.32 change management, A.5.3 segregation of duties, A.8.31
//! separation of environments), the period's approval trail, the signed
//! checkpoints that bracket the period, a reproducible random sample of
//! production changes told in full as printable HTML, and a manifest of
//! every file's SHA-256 signed with CAB's checkpoint key.

pub mod zip;

use askama::Template;
use cab_db::audit::EventFilter;
use cab_db::evidence::{ProductionChange, Refusal};
use cab_domain::audit::{Attempt, AuditAction};
use cab_domain::checkpoint;
use cab_domain::evidence::{
    ENVIRONMENT_GUARDS, ManifestHead, is_separation_of_duties, manifest_text, sample,
};
use cab_domain::export::csv_record;
use cab_domain::metrics::Period;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::IntoParams;

use crate::audit_log::{self, Entity};
use crate::auth::CurrentUser;
use crate::checkpoints::{self, Unverified};
use crate::crypto::Keys;
use crate::error::AppError;
use crate::request::Origin;
use crate::state::AppState;
use crate::words::{People, Subjects, role_labels};
use sqlx::{PgConnection, PgPool};

/// The most changes a sample holds.
pub const MAX_SAMPLE: usize = 100;
/// The sample's size when none is asked for.
pub const DEFAULT_SAMPLE: usize = 10;

/// What a pack is asked for: all may be left out.
#[derive(Debug, Clone, Default, Deserialize, Serialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EvidenceQuery {
    /// The first day, YYYY-MM-DD (UTC); 90 days before `to` by default.
    pub from: Option<String>,
    /// The last day, YYYY-MM-DD (UTC), included; today by default.
    pub to: Option<String>,
    /// How many production changes the random sample holds: 0 to 100, 10
    /// by default.
    pub sample: Option<String>,
    /// The sample's seed, a whole number; a new one when left out. The same
    /// seed over the same period picks the same changes.
    pub seed: Option<String>,
}

/// A checked request.
#[derive(Debug, Clone)]
pub struct PackRequest {
    pub period: Period,
    pub sample_size: usize,
    pub seed: u64,
}

impl EvidenceQuery {
    pub fn parse(&self, today: chrono::NaiveDate) -> Result<PackRequest, AppError> {
        let mut errors: Vec<cab_domain::change::FieldError> = Vec::new();
        let period = Period::parse(self.from.as_deref(), self.to.as_deref(), today)
            .map_err(|e| errors.extend(e))
            .ok();
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let sample_size = match given(&self.sample) {
            None => DEFAULT_SAMPLE,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if n <= MAX_SAMPLE => n,
                _ => {
                    errors.push(cab_domain::change::FieldError {
                        field: "sample",
                        message: format!("Give a number of changes from 0 to {MAX_SAMPLE}."),
                    });
                    0
                }
            },
        };
        let seed = match given(&self.seed) {
            None => rand::random::<u64>() >> 11,
            Some(s) => s.parse::<u64>().unwrap_or_else(|_| {
                errors.push(cab_domain::change::FieldError {
                    field: "seed",
                    message: "Give the seed as a whole number, e.g. 12345.".into(),
                });
                0
            }),
        };
        match period {
            Some(period) if errors.is_empty() => Ok(PackRequest {
                period,
                sample_size,
                seed,
            }),
            _ => Err(errors.into()),
        }
    }
}

/// The answer that downloads a pack.
pub fn download(pack: Pack) -> Result<axum::response::Response, AppError> {
    use axum::http::{HeaderValue, header};
    use axum::response::IntoResponse;
    let mut response = pack.bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"{}\"", pack.filename))
            .map_err(|e| AppError::Internal(e.into()))?,
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// A finished pack: its file name and bytes.
pub struct Pack {
    pub filename: String,
    pub bytes: Vec<u8>,
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map(time).unwrap_or_default()
}

fn csv<S: AsRef<str>>(header: &[&str], rows: impl IntoIterator<Item = Vec<S>>) -> Vec<u8> {
    let mut out = Vec::new();
    csv_record(&mut out, header);
    for row in rows {
        csv_record(&mut out, &row);
    }
    out
}

const CHANGE_COLUMNS: &[&str] = &[
    "Change",
    "Title",
    "Type",
    "Risk",
    "State",
    "Author",
    "Submitted (UTC)",
    "Approved (UTC)",
    "Approved revision",
    "Security assessment",
    "Approved by",
    "Production deployments",
    "Of them failed or rolled back",
    "First deployed (UTC)",
    "Retrospective due (UTC)",
    "Retrospective done (UTC)",
    "Review",
    "Closed as",
    "Closed (UTC)",
];

fn change_row(c: &ProductionChange) -> Vec<String> {
    vec![
        format!("CHG-{}", c.number),
        c.title.clone(),
        c.change_type.clone(),
        c.risk_level.clone(),
        c.state.clone(),
        c.author.clone(),
        opt_time(c.submitted_at),
        opt_time(c.decided_at),
        c.approved_revision
            .map(|r| r.to_string())
            .unwrap_or_default(),
        c.assessment.clone().unwrap_or_default(),
        c.approvers.clone(),
        c.deployments.to_string(),
        c.failed.to_string(),
        opt_time(c.first_deployed_at),
        opt_time(c.retrospective_due_at),
        opt_time(c.retrospective_done_at),
        match c.review.as_deref() {
            Some("signed_off") => "signed off".into(),
            Some(other) => other.into(),
            None => "not owed".into(),
        },
        c.close_code.clone().unwrap_or_default(),
        opt_time(c.closed_at),
    ]
}

const REFUSAL_COLUMNS: &[&str] = &[
    "Event number",
    "When (UTC)",
    "Account",
    "Roles then",
    "Tried to",
    "Change",
    "About",
    "Reason",
    "Reasons",
    "Message",
];

fn refusal_row(r: &Refusal) -> Vec<String> {
    let attempted = r.attempted.clone().unwrap_or_default();
    vec![
        r.seq.to_string(),
        time(r.occurred_at),
        r.actor.clone().unwrap_or_default(),
        role_labels(&r.roles),
        Attempt::parse(&attempted).map_or(attempted, |a| a.label().to_owned()),
        r.change_number
            .map(|n| format!("CHG-{n}"))
            .unwrap_or_default(),
        match &r.entity_id {
            Some(id) => format!("{} {id}", r.entity_type),
            None => r.entity_type.clone(),
        },
        r.reason.clone().unwrap_or_default(),
        r.reasons.clone().unwrap_or_default(),
        r.message.clone().unwrap_or_default(),
    ]
}

/// One sampled change, told in full.
#[derive(Template)]
#[template(path = "evidence/change.html")]
struct SampledChange {
    key: String,
    title: String,
    facts: Vec<(&'static str, String)>,
    texts: Vec<(&'static str, String)>,
    summary: Vec<(&'static str, String)>,
    timeline: Vec<(String, String, String)>,
    period: String,
    seed: u64,
}

/// The pack's first page.
#[derive(Template)]
#[template(path = "evidence/index.html")]
struct Index {
    origin: String,
    period: String,
    generated: String,
    controls: Vec<Control>,
    sample: Vec<(String, String)>,
    sample_size: usize,
    population: usize,
    seed: u64,
    first_checkpoint: String,
    last_checkpoint: String,
    /// No checkpoint was signed before the period: its trail is checked
    /// from the chain's first event.
    from_first_event: bool,
    /// No checkpoint was ever signed: nothing to check the trail against.
    unsigned: bool,
    /// Why the audit chain did not verify when the pack was made; empty
    /// when it did.
    chain_fault: String,
}

/// A control's files: what each holds, how many rows, and whether a row is
/// an exception.
struct Control {
    name: &'static str,
    files: Vec<(String, &'static str, usize)>,
}

/// Read on `conn`, in the pack's snapshot, so a sampled change's page
/// tells what the populations tell.
async fn sampled_change(
    conn: &mut PgConnection,
    change: &ProductionChange,
    period: &str,
    seed: u64,
) -> Result<Vec<u8>, AppError> {
    let view = crate::changes::load_in(conn, change.id).await?;
    let events = cab_db::audit::for_change(conn, &change.id.to_string()).await?;
    let people = People::load(conn).await?;
    let subjects = Subjects::for_change(people, change.id, change.number);
    let c = &view.content;
    let page = SampledChange {
        key: view.key(),
        title: c.title.clone(),
        facts: vec![
            ("Type", c.change_type.label().to_owned()),
            ("Category", c.category.label().to_owned()),
            ("Risk", view.risk_level.label().to_owned()),
            ("Risk because", view.risk_reasons.join("; ")),
            ("State", view.state.label().to_owned()),
            ("Author", view.author.clone()),
            (
                "Contributors",
                view.contributors
                    .iter()
                    .map(|(_, u)| u.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            ("Services", c.services.join(", ")),
            (
                "Window (UTC)",
                match (c.window_start, c.window_end) {
                    (Some(s), Some(e)) => format!("{} to {}", time(s), time(e)),
                    _ => String::new(),
                },
            ),
            ("Pull request", c.pr_url.clone()),
            ("Commit", c.commit_sha.clone()),
            ("Artifact", c.artifact_digest.clone()),
            ("Revision now", view.revision.to_string()),
        ],
        texts: vec![
            ("Description", c.description.clone()),
            ("Justification", c.justification.clone()),
            ("Implementation plan", c.implementation_plan.clone()),
            ("Test plan", c.test_plan.clone()),
            ("Rollback plan", c.rollback_plan.clone()),
        ],
        summary: change_row(change)
            .into_iter()
            .zip(CHANGE_COLUMNS.iter())
            .skip(6)
            .map(|(v, k)| (*k, v))
            .collect(),
        timeline: events
            .iter()
            .map(|e| {
                (
                    e.seq.to_string(),
                    time(e.occurred_at),
                    subjects.describe(e).to_string(),
                )
            })
            .collect(),
        period: period.to_owned(),
        seed,
    };
    Ok(page
        .render()
        .map_err(|e| AppError::Internal(e.into()))?
        .into_bytes())
}

/// Builds the pack for an auditor or administrator; anyone else is refused
/// and the refusal recorded. The pack is recorded too.
pub async fn pack(
    state: &AppState,
    user: &CurrentUser,
    origin: &Origin,
    query: &EvidenceQuery,
) -> Result<Pack, AppError> {
    audit_log::check_reading(&state.pool, user, origin).await?;
    let request = query.parse(Utc::now().date_naive())?;
    let _slot = crate::audit_trail::export_slot(state)?;
    let name = checkpoints::key_name(&state.settings.public_url);
    build(
        &state.pool,
        &state.keys,
        &name,
        Some(user),
        origin,
        &request,
    )
    .await
}

/// Builds the pack, signed with the checkpoint key named `name` (the
/// command line has no user).
pub async fn build(
    pool: &PgPool,
    keys: &Keys,
    name: &str,
    user: Option<&CurrentUser>,
    origin: &Origin,
    request: &PackRequest,
) -> Result<Pack, AppError> {
    let name = name.to_owned();
    // The chain is signed first, so the last checkpoint covers the period
    // when it ends today.
    let chain_fault = match checkpoints::sign_now(pool, keys, &name).await {
        Ok(_) => String::new(),
        Err(Unverified::Failed(e)) => return Err(e),
        Err(other) => {
            tracing::error!(error = %other, "the evidence pack's chain does not verify");
            other.to_string()
        }
    };
    let (start, end) = (request.period.start(), request.period.end());
    let period_words = format!("{} to {}", request.period.from, request.period.to);
    let mut tx = pool.begin().await?;
    cab_db::evidence::snapshot(&mut tx).await?;
    let production = cab_db::evidence::production_changes(&mut tx, start, end).await?;
    let emergency = cab_db::evidence::emergency_changes(&mut tx, start, end).await?;
    let failed = cab_db::evidence::failed_changes(&mut tx, start, end).await?;
    let refusals = cab_db::evidence::refusals(&mut tx, start, end).await?;
    let own = cab_db::evidence::own_decisions(&mut tx, start, end).await?;
    let grants = cab_db::evidence::events_of(
        &mut tx,
        &[
            AuditAction::UserCreated.as_str(),
            AuditAction::UserRolesChanged.as_str(),
            AuditAction::UserRolesRequested.as_str(),
            AuditAction::UserRolesConfirmed.as_str(),
            AuditAction::UserRolesCancelled.as_str(),
        ],
        start,
        end,
    )
    .await?;
    let deployments = cab_db::evidence::deployments(&mut tx, start, end).await?;
    let break_glass = cab_db::evidence::break_glass(&mut tx, start, end).await?;
    let unauthorized = cab_db::evidence::unauthorized(&mut tx, start, end).await?;
    let (first_cp, last_cp) = cab_db::evidence::bracketing_checkpoints(&mut tx, start, end).await?;
    let published = cab_db::checkpoints::keys(&mut tx).await?;
    let approvals = {
        let f = EventFilter {
            from: Some(start),
            until: Some(end),
            ..EventFilter::default()
        };
        let mut out = Vec::new();
        crate::audit_trail::approvals_csv(&mut tx, &f, &mut out).await?;
        out
    };
    // The sample, in the same snapshot.
    let picked: Vec<&ProductionChange> =
        sample(production.len(), request.sample_size, request.seed)
            .into_iter()
            .filter_map(|i| production.get(i))
            .collect();
    let mut sampled = Vec::with_capacity(picked.len());
    for c in &picked {
        sampled.push((
            c,
            sampled_change(&mut tx, c, &period_words, request.seed).await?,
        ));
    }
    tx.rollback().await?;

    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut controls = Vec::new();
    let add = |files: &mut Vec<(String, Vec<u8>)>,
               control: &mut Vec<(String, &'static str, usize)>,
               path: String,
               what: &'static str,
               rows: usize,
               bytes: Vec<u8>| {
        control.push((path.clone(), what, rows));
        files.push((path, bytes));
    };

    // A.8.32
    let mut c832 = Vec::new();
    add(
        &mut files,
        &mut c832,
        "A.8.32-change-management/production-changes.csv".into(),
        "Population: every change with a production deployment in the period, with its assessment, approvers, deployments, review and closure.",
        production.len(),
        csv(CHANGE_COLUMNS, production.iter().map(change_row)),
    );
    add(
        &mut files,
        &mut c832,
        "A.8.32-change-management/emergency-changes.csv".into(),
        "Emergency changes approved in the period, with their retrospective reviews (an empty \"done\" is an exception once due).",
        emergency.len(),
        csv(CHANGE_COLUMNS, emergency.iter().map(change_row)),
    );
    add(
        &mut files,
        &mut c832,
        "A.8.32-change-management/changes-closed-failed.csv".into(),
        "Exceptions: changes closed as failed in the period, and whether their review is signed off.",
        failed.len(),
        csv(CHANGE_COLUMNS, failed.iter().map(change_row)),
    );
    add(
        &mut files,
        &mut c832,
        "A.8.32-change-management/approval-trail.csv".into(),
        "Every decision on a change in the period, and every refused attempt at one: decision-maker, roles then, quorum needed, separation of duties, audit event and hash.",
        approvals
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            .saturating_sub(1),
        approvals,
    );
    controls.push(Control {
        name: "A.8.32 Change management",
        files: c832,
    });

    // A.5.3
    let sod: Vec<&Refusal> = refusals
        .iter()
        .filter(|r| {
            r.reason.as_deref().is_some_and(is_separation_of_duties)
                || r.reasons
                    .as_deref()
                    .is_some_and(|all| all.split(' ').any(is_separation_of_duties))
        })
        .collect();
    let mut c53 = Vec::new();
    add(
        &mut files,
        &mut c53,
        "A.5.3-segregation-of-duties/separation-of-duties-refusals.csv".into(),
        "Every attempt refused in the period because one person would have been two of a decision's voices, or decided on their own work.",
        sod.len(),
        csv(REFUSAL_COLUMNS, sod.iter().map(|r| refusal_row(r))),
    );
    add(
        &mut files,
        &mut c53,
        "A.5.3-segregation-of-duties/worked-on-and-decided.csv".into(),
        "Exceptions: people who worked on a change (author or contributor) and approved, assessed or deployed it to production in the period. Expected empty.",
        own.len(),
        csv(
            &["Change", "Person", "Worked on it as", "And", "When (UTC)"],
            own.iter().map(|o| {
                vec![
                    format!("CHG-{}", o.change_number),
                    o.person.clone(),
                    o.worked_as.clone(),
                    o.decided_as.clone(),
                    time(o.at),
                ]
            }),
        ),
    );
    add(
        &mut files,
        &mut c53,
        "A.5.3-segregation-of-duties/role-grants.csv".into(),
        "Accounts made and roles granted, asked for, confirmed or cancelled in the period, and who did it.",
        grants.len(),
        csv(
            &[
                "Event number",
                "When (UTC)",
                "By",
                "What",
                "Account",
                "Roles",
                "Via",
            ],
            grants.iter().map(|g| {
                let p = &g.payload;
                let roles = p
                    .get("roles")
                    .or_else(|| p.get("new_roles"))
                    .and_then(|r| r.as_array())
                    .map(|r| {
                        r.iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                vec![
                    g.seq.to_string(),
                    time(g.occurred_at),
                    g.actor.clone().unwrap_or_else(|| "command line".into()),
                    AuditAction::parse(&g.action)
                        .map_or_else(|| g.action.clone(), |a| a.label().to_owned()),
                    p.get("username")
                        .and_then(|u| u.as_str())
                        .map(str::to_owned)
                        .or_else(|| g.entity_id.clone())
                        .unwrap_or_default(),
                    roles,
                    p.get("via")
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_owned(),
                ]
            }),
        ),
    );
    controls.push(Control {
        name: "A.5.3 Segregation of duties",
        files: c53,
    });

    // A.8.31
    let mut by_env: Vec<(String, bool, usize, usize)> = Vec::new();
    for d in &deployments {
        match by_env.iter_mut().find(|(e, ..)| *e == d.environment) {
            Some(entry) => {
                entry.2 += 1;
                entry.3 += usize::from(d.state == "succeeded");
            }
            None => by_env.push((
                d.environment.clone(),
                d.production,
                1,
                usize::from(d.state == "succeeded"),
            )),
        }
    }
    let guards: Vec<&Refusal> = refusals
        .iter()
        .filter(|r| {
            r.reason
                .as_deref()
                .is_some_and(|x| ENVIRONMENT_GUARDS.contains(&x))
                || r.reasons
                    .as_deref()
                    .is_some_and(|all| all.split(' ').any(|x| ENVIRONMENT_GUARDS.contains(&x)))
        })
        .collect();
    let mut c831 = Vec::new();
    add(
        &mut files,
        &mut c831,
        "A.8.31-separation-of-environments/deployments-by-environment.csv".into(),
        "How many deployments each environment had in the period, and how many succeeded.",
        by_env.len(),
        csv(
            &["Environment", "Production", "Deployments", "Succeeded"],
            by_env.iter().map(|(e, p, n, ok)| {
                vec![
                    e.clone(),
                    if *p { "yes" } else { "no" }.to_owned(),
                    n.to_string(),
                    ok.to_string(),
                ]
            }),
        ),
    );
    add(
        &mut files,
        &mut c831,
        "A.8.31-separation-of-environments/deployments.csv".into(),
        "Population: every deployment authorized in the period.",
        deployments.len(),
        csv(
            &[
                "Deployment",
                "Change",
                "Environment",
                "State",
                "Initiator",
                "Executor",
                "Authorized (UTC)",
                "Finished (UTC)",
                "Break-glass",
            ],
            deployments.iter().map(|d| {
                vec![
                    format!("DEP-{}", d.number),
                    format!("CHG-{}", d.change_number),
                    d.environment.clone(),
                    d.state.clone(),
                    d.initiator.clone(),
                    d.executor.clone(),
                    time(d.authorized_at),
                    opt_time(d.finished_at),
                    if d.break_glass { "yes" } else { "" }.to_owned(),
                ]
            }),
        ),
    );
    add(
        &mut files,
        &mut c831,
        "A.8.31-separation-of-environments/promotion-and-freeze-refusals.csv".into(),
        "Deployments the gate refused in the period for promotion order, a freeze, the window or the soak time.",
        guards.len(),
        csv(REFUSAL_COLUMNS, guards.iter().map(|r| refusal_row(r))),
    );
    add(
        &mut files,
        &mut c831,
        "A.8.31-separation-of-environments/break-glass.csv".into(),
        "Exceptions: break-glass deployments asked for in the period, who asked, who confirmed, and the deployment.",
        break_glass.len(),
        csv(
            &[
                "Break-glass",
                "Change",
                "Environment",
                "Incident",
                "Reason",
                "Asked by",
                "Asked (UTC)",
                "Confirmed by",
                "Confirmed (UTC)",
                "Deployment",
            ],
            break_glass.iter().map(|b| {
                vec![
                    format!("BG-{}", b.number),
                    format!("CHG-{}", b.change_number),
                    b.environment.clone(),
                    b.incident.clone(),
                    b.reason.clone(),
                    b.requested_by.clone(),
                    time(b.requested_at),
                    b.confirmed_by.clone().unwrap_or_default(),
                    opt_time(b.confirmed_at),
                    b.deployment_number
                        .map(|n| format!("DEP-{n}"))
                        .unwrap_or_default(),
                ]
            }),
        ),
    );
    add(
        &mut files,
        &mut c831,
        "A.8.31-separation-of-environments/deployments-nobody-authorized.csv".into(),
        "Exceptions: deployments an environment reported that CAB never authorized, and how each was resolved.",
        unauthorized.len(),
        csv(
            &[
                "Finding",
                "Environment",
                "Service",
                "Artifact",
                "Observed (UTC)",
                "Reported by",
                "Resolved (UTC)",
                "Resolved by",
                "Resolution",
            ],
            unauthorized.iter().map(|u| {
                vec![
                    format!("OBS-{}", u.number),
                    u.environment.clone(),
                    u.service.clone(),
                    u.artifact_digest.clone(),
                    time(u.observed_at),
                    u.reported_by.clone(),
                    opt_time(u.resolved_at),
                    u.resolved_by.clone().unwrap_or_default(),
                    u.resolution.clone(),
                ]
            }),
        ),
    );
    controls.push(Control {
        name: "A.8.31 Separation of development, test and production environments",
        files: c831,
    });

    // The checkpoints and their keys.
    let describe = |c: &Option<cab_db::checkpoints::CheckpointRow>| {
        c.as_ref().map_or_else(
            || "none signed yet".to_owned(),
            |c| format!("event {}, signed {} UTC", c.seq, time(c.signed_at)),
        )
    };
    let (first_words, last_words) = (describe(&first_cp), describe(&last_cp));
    let from_first_event = first_cp.is_none();
    let unsigned = last_cp.is_none();
    for (file, cp) in [
        ("audit/checkpoint-first.txt", &first_cp),
        ("audit/checkpoint-last.txt", &last_cp),
    ] {
        if let Some(cp) = cp {
            files.push((file.into(), cp.note.clone().into_bytes()));
        }
    }
    let key_lines: String = published
        .iter()
        .filter_map(checkpoints::verifier)
        .map(|k| format!("{}\n", checkpoint::verifier_key(&k.name, &k.public_key)))
        .collect();
    files.push(("audit/keys.txt".into(), key_lines.into_bytes()));

    let mut sample_links = Vec::new();
    for (c, page) in sampled {
        let path = format!("sample/CHG-{}.html", c.number);
        files.push((path.clone(), page));
        sample_links.push((
            format!("CHG-{}.html", c.number),
            format!("CHG-{} {}", c.number, c.title),
        ));
    }
    let generated = Utc::now();
    let index = Index {
        origin: name.clone(),
        period: period_words.clone(),
        generated: time(generated),
        controls,
        sample: sample_links,
        sample_size: picked.len(),
        population: production.len(),
        seed: request.seed,
        first_checkpoint: first_words,
        last_checkpoint: last_words,
        from_first_event,
        unsigned,
        chain_fault,
    };
    files.insert(
        0,
        (
            "index.html".into(),
            index
                .render()
                .map_err(|e| AppError::Internal(e.into()))?
                .into_bytes(),
        ),
    );

    // The signed manifest, last.
    let sums: Vec<(String, [u8; 32])> = files
        .iter()
        .map(|(n, b)| (n.clone(), Sha256::digest(b).into()))
        .collect();
    let text = manifest_text(
        &ManifestHead {
            origin: &name,
            from: request.period.from,
            to: request.period.to,
            generated,
            sample_size: picked.len(),
            seed: request.seed,
        },
        &sums,
    );
    let signed = checkpoints::sign_text(pool, keys, &name, &text).await?;
    files.push(("MANIFEST.txt".into(), signed.into_bytes()));

    let mut zip = zip::ZipWriter::new(generated);
    for (n, b) in &files {
        zip.add(n, b).map_err(AppError::Internal)?;
    }
    let bytes = zip.finish().map_err(AppError::Internal)?;

    let mut record = pool.begin().await?;
    audit_log::record(
        &mut record,
        user.map(CurrentUser::audit_actor),
        origin,
        AuditAction::AuditExported.as_str(),
        Entity::kind("audit"),
        json!({
            "trail": "evidence",
            "format": "zip",
            "filter": { "from": request.period.from.to_string(), "to": request.period.to.to_string() },
            "sample": picked.len(),
            "seed": request.seed,
            "files": files.len(),
        }),
    )
    .await?;
    record.commit().await?;
    Ok(Pack {
        filename: format!(
            "cab-evidence-{}-to-{}.zip",
            request.period.from, request.period.to
        ),
        bytes,
    })
}
