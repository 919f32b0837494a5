//! A release's own page: what it is and where it stands, what the go/no-go
//! still needs, the changes in scope with their promotion strips (and
//! those taken out, with why), the milestones as a timeline, the test
//! strategy, the phases in order, the rollback plan, the communications,
//! the approval trail of the plan, its revisions with what each changed,
//! and the actions the person looking may take. A refused or faulty action
//! shows the page again, with the refusal or the error beside its form.

use std::collections::HashMap;

use askama::Template;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cab_domain::change::{ChangeKey, ChangeState};
use cab_domain::deployment::DeploymentState;
use cab_domain::release::{self, Milestone, ReleaseState};
use cab_domain::risk::RiskLevel;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{load, page_of, still_needed};
use crate::error::AppError;
use crate::page_error::PageResult;
use crate::releases::{self, PhaseState, ReleaseRecord, ReleaseView};
use crate::ui::environments::minutes_in_words;
use crate::ui::form::FieldErrors;
use crate::ui::{Layout, Viewer, filters, render};
use crate::words::{Link, People, role_labels, stored};

/// What an action on the page left to show: its refusal, or its errors
/// beside the fields of its form (keyed by the fields' ids), with what was
/// typed kept.
#[derive(Default)]
pub(super) struct ActionErrors {
    pub refused: Vec<String>,
    pub fields: FieldErrors,
    /// The summary on top: (field id, what the field is, message).
    pub summary: Vec<(String, String, String)>,
    pub typed: HashMap<String, String>,
}

impl ActionErrors {
    pub fn refusal(sentences: Vec<String>) -> Self {
        ActionErrors {
            refused: sentences,
            ..ActionErrors::default()
        }
    }

    /// A message beside the field `id`, labelled `label` in the summary.
    pub fn field(&mut self, id: &str, label: &str, message: String) {
        self.summary
            .push((id.to_owned(), label.to_owned(), message.clone()));
        self.fields.insert(id, message);
    }

    pub fn keep(&mut self, id: &str, typed: String) {
        self.typed.insert(id.to_owned(), typed);
    }

    /// What was typed into the field `id`, to show it again.
    pub fn typed(&self, id: &str) -> &str {
        self.typed.get(id).map_or("", String::as_str)
    }

    /// The message beside the field `id`, for the form macros.
    pub fn get(&self, id: &str) -> Option<&String> {
        self.fields.get(id)
    }
}

/// One environment of a change's promotion strip: its latest deployment.
struct StripStep {
    key: String,
    label: String,
    latest: Option<StripDeployment>,
}

struct StripDeployment {
    id: Uuid,
    number: i64,
    state: DeploymentState,
    at: DateTime<Utc>,
}

/// A change in scope.
struct ScopeLine {
    href: String,
    key: String,
    number: i64,
    title: String,
    state: ChangeState,
    risk: RiskLevel,
    strip: Vec<StripStep>,
    added_by: String,
    added_at: DateTime<Utc>,
    reason: String,
    remove_error: Option<String>,
    remove_typed: String,
}

struct RemovedLine {
    key: String,
    title: String,
    by: String,
    at: DateTime<Utc>,
    reason: String,
}

struct MilestoneLine {
    label: &'static str,
    at: DateTime<Utc>,
    past: bool,
    next: bool,
}

struct PhaseLine {
    n: usize,
    env_key: String,
    env_label: String,
    target: String,
    soak: String,
    proceed: String,
    abort: String,
    state: PhaseState,
    opened: Option<Opened>,
    /// For the open phase: each change and when it deployed there.
    deployed: Vec<Deployed>,
}

/// When a phase opened, and who opened it.
struct Opened {
    at: DateTime<Utc>,
    by: String,
}

/// A change in the open phase, and when it deployed there.
struct Deployed {
    key: String,
    at: Option<DateTime<Utc>>,
}

struct CommunicationLine {
    audience: String,
    channel: String,
    when: DateTime<Utc>,
    message: String,
}

/// A phase that was rolled back, and why.
struct RolledBack {
    phase: usize,
    reason: String,
    by: Option<String>,
    at: Option<DateTime<Utc>>,
}

/// One vote on the plan.
struct VoteLine {
    who: String,
    roles: String,
    revision: i32,
    choice: &'static str,
    comment: String,
    at: DateTime<Utc>,
    status: &'static str,
    class: &'static str,
}

struct DiffLine {
    field: String,
    before: String,
    after: String,
}

struct RevisionLine {
    number: i32,
    by: String,
    at: DateTime<Utc>,
    note: String,
    scope: String,
    diff: Vec<DiffLine>,
}

/// What the person looking may do now.
struct Offers {
    edit: bool,
    scope: bool,
    submit: bool,
    vote: bool,
    /// The advance button's words, when it applies.
    advance: Option<String>,
    roll_back: Option<usize>,
    cancel: bool,
}

#[derive(Template)]
#[template(path = "releases/detail.html")]
struct DetailPage {
    layout: Layout,
    env_css: String,
    href: String,
    key: String,
    name: String,
    version: String,
    state: ReleaseState,
    revision: i32,
    level: RiskLevel,
    planned_by: String,
    planned_at: DateTime<Utc>,
    needs: Vec<String>,
    scope: Vec<ScopeLine>,
    removed: Vec<RemovedLine>,
    milestones: Vec<MilestoneLine>,
    levels: String,
    entry_criteria: String,
    exit_criteria: String,
    evidence: Vec<Link>,
    phases: Vec<PhaseLine>,
    rollback_triggers: String,
    rollback_steps: String,
    rollback_max: String,
    irreversible: Option<String>,
    rolled_back: Option<RolledBack>,
    communications: Vec<CommunicationLine>,
    trail: Vec<VoteLine>,
    revisions: Vec<RevisionLine>,
    offers: Offers,
    errors: ActionErrors,
}

/// A revision's field as people read it.
fn field_label(field: &str) -> String {
    if let Some(m) = Milestone::parse(field) {
        return m.label().to_owned();
    }
    if let Some(n) = field.strip_prefix("phase ") {
        return format!("Phase {n}");
    }
    if let Some(n) = field.strip_prefix("communication ") {
        return format!("Communication {n}");
    }
    match field {
        "name" => "Name",
        "version" => "Version",
        "test_levels" => "Test levels",
        "entry_criteria" => "Entry criteria",
        "exit_criteria" => "Exit criteria",
        "evidence" => "Evidence",
        "rollback_triggers" => "Rollback triggers",
        "rollback_steps" => "Rollback steps",
        "rollback_max_minutes" => "Longest rollback (minutes)",
        "irreversible_steps" => "Steps that cannot be undone",
        "scope" => "Changes in scope",
        _ => "Another part of the plan",
    }
    .to_owned()
}

/// Why a vote counts or does not, now.
fn vote_status(
    v: &cab_db::releases::ReleaseVoteRow,
    current: i32,
    tally: &releases::Tally,
) -> (&'static str, &'static str) {
    if v.superseded_at.is_some() {
        ("Replaced by a later vote", "trail-superseded")
    } else if v.revision != current {
        ("On an earlier revision: does not count", "trail-earlier")
    } else {
        let standing = releases::vote_standing(tally, v.voter_id);
        let class = if standing.counts() {
            "trail-current"
        } else {
            "trail-earlier"
        };
        (standing.label(), class)
    }
}

fn offers(viewer: &Viewer, r: &ReleaseView) -> Offers {
    let actor = viewer.user.actor();
    let plans = releases::may_plan(&viewer.user);
    let facts = r.facts();
    let editable = release::check_edit(&actor, r.state).is_ok();
    let progress = r.progress();
    let advance = if !plans {
        None
    } else {
        match (r.state, progress.current, progress.rolled_back) {
            (ReleaseState::Approved, _, _) => Some("Start the release".to_owned()),
            (ReleaseState::InProgress, Some(c), None) if c + 1 < r.plan.phases.len() => {
                Some(format!("Open phase {}", c + 2))
            }
            (ReleaseState::InProgress, Some(_), None) => Some("Complete the release".to_owned()),
            _ => None,
        }
    };
    Offers {
        edit: editable,
        scope: editable,
        submit: release::check_submit(&actor, &facts).is_ok(),
        vote: releases::may_vote(r, &viewer.user),
        advance,
        roll_back: release::check_rollback(&actor, &facts, &progress)
            .ok()
            .map(|p| p + 1),
        cancel: release::check_cancel(&actor, r.state).is_ok(),
    }
}

/// Each change's latest deployment to each environment.
async fn strips(
    conn: &mut sqlx::PgConnection,
    r: &ReleaseView,
    envs: &[crate::deployments::Environment],
) -> Result<HashMap<Uuid, Vec<StripStep>>, AppError> {
    let mut out = HashMap::new();
    for c in &r.scope {
        let rows = cab_db::deployments::for_change(conn, c.change_id).await?;
        let mut steps = Vec::with_capacity(envs.len());
        for e in envs {
            // Newest first: the first of the environment is its latest.
            let latest = match rows.iter().find(|d| d.environment == e.rules.key) {
                Some(d) => Some(StripDeployment {
                    id: d.id,
                    number: d.number,
                    state: stored(
                        DeploymentState::parse(&d.state),
                        "deployment state",
                        &d.state,
                    )?,
                    at: d
                        .rolled_back_at
                        .or(d.finished_at)
                        .or(d.started_at)
                        .unwrap_or(d.authorized_at),
                }),
                None => None,
            };
            steps.push(StripStep {
                key: e.rules.key.clone(),
                label: e.rules.label.clone(),
                latest,
            });
        }
        out.insert(c.change_id, steps);
    }
    Ok(out)
}

/// The release's page, with what an action left to show, answered with
/// `status`.
pub(super) async fn detail_page(
    viewer: &Viewer,
    r: ReleaseView,
    errors: ActionErrors,
    status: StatusCode,
) -> Result<Response, AppError> {
    let record: ReleaseRecord = releases::record(&viewer.state.pool, &r).await?;
    let mut conn = viewer.state.pool.acquire().await?;
    let people = People::load(&mut conn).await?;
    let envs = crate::deployments::environments(&mut conn).await?;
    let mut strips = strips(&mut conn, &r, &envs).await?;
    drop(conn);
    let now = Utc::now();
    let env_label = |key: &str| {
        envs.iter()
            .find(|e| e.rules.key == key)
            .map_or_else(|| key.to_uppercase(), |e| e.rules.label.clone())
    };
    let plan = &r.plan;
    let next = plan
        .milestones
        .all()
        .iter()
        .find(|(_, at)| *at > now)
        .map(|(m, _)| *m);
    let milestones = plan
        .milestones
        .all()
        .into_iter()
        .map(|(m, at)| MilestoneLine {
            label: m.label(),
            at,
            past: at <= now,
            next: Some(m) == next,
        })
        .collect();
    let opened = |phase: usize| {
        record
            .phase_events
            .iter()
            .rfind(|e| e.kind == "opened" && usize::try_from(e.phase).ok() == Some(phase))
            .map(|e| Opened {
                at: e.at,
                by: people.name(&e.by_username),
            })
    };
    let phases = plan
        .phases
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let status = record.phases.get(i);
            PhaseLine {
                n: i + 1,
                env_key: p.environment.clone(),
                env_label: env_label(&p.environment),
                target: p.target.clone(),
                soak: if p.soak_minutes == 0 {
                    "none".into()
                } else {
                    minutes_in_words(i64::from(p.soak_minutes), 3)
                },
                proceed: p.proceed_criteria.clone(),
                abort: p.abort_criteria.clone(),
                state: status.map_or(PhaseState::Waiting, |s| s.state),
                opened: opened(i),
                deployed: status
                    .map(|s| {
                        s.deployed
                            .iter()
                            .map(|(key, at)| Deployed {
                                key: key.clone(),
                                at: *at,
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect();
    let rolled_back = r
        .row
        .rolled_back_phase
        .and_then(|p| usize::try_from(p).ok())
        .map(|p| {
            let event = record
                .phase_events
                .iter()
                .rfind(|e| e.kind == "rolled_back" && usize::try_from(e.phase).ok() == Some(p));
            RolledBack {
                phase: p + 1,
                reason: r.row.rollback_reason.clone(),
                by: event.map(|e| people.name(&e.by_username)),
                at: event.map(|e| e.at),
            }
        });
    let scope = r
        .scope
        .iter()
        .map(|c| {
            let key = ChangeKey(c.number).to_string();
            let remove_id = format!("remove_reason_{}", c.number);
            Ok(ScopeLine {
                href: format!("/changes/{key}"),
                number: c.number,
                title: c.title.clone(),
                state: stored(ChangeState::parse(&c.state), "change state", &c.state)?,
                risk: stored(RiskLevel::parse(&c.risk_level), "risk level", &c.risk_level)?,
                strip: strips.remove(&c.change_id).unwrap_or_default(),
                added_by: people.name(&c.added_by_username),
                added_at: c.added_at,
                reason: c.added_reason.clone(),
                remove_error: errors.fields.get(&remove_id).cloned(),
                remove_typed: errors.typed(&remove_id).to_owned(),
                key,
            })
        })
        .collect::<Result<Vec<_>, AppError>>()?;
    let removed = record
        .removed
        .iter()
        .map(|c| RemovedLine {
            key: ChangeKey(c.number).to_string(),
            title: c.title.clone(),
            by: people.name(&c.removed_by_username),
            at: c.removed_at,
            reason: c.removed_reason.clone(),
        })
        .collect();
    let trail = record
        .votes
        .iter()
        .map(|v| {
            let (status, class) = vote_status(v, r.row.revision, &record.outcome);
            VoteLine {
                who: people
                    .name_of_id(v.voter_id)
                    .unwrap_or_else(|| people.name(&v.voter_username)),
                roles: role_labels(&v.voter_roles),
                revision: v.revision,
                choice: cab_domain::approval::VoteChoice::parse(&v.choice)
                    .map_or("Vote", |c| c.label()),
                comment: v.comment.clone(),
                at: v.created_at,
                status,
                class,
            }
        })
        .collect();
    let revisions = record
        .revisions
        .iter()
        .rev()
        .map(|rev| RevisionLine {
            number: rev.number,
            by: people.name(&rev.author_username),
            at: rev.created_at,
            note: rev.note.clone(),
            scope: rev.scope.join(", "),
            diff: releases::revision_diff(rev)
                .into_iter()
                .map(|d| DiffLine {
                    field: field_label(&d.field),
                    before: d.before,
                    after: d.after,
                })
                .collect(),
        })
        .collect();
    let t = &plan.test_strategy;
    let rb = &plan.rollback;
    let page = DetailPage {
        layout: viewer.layout(format!("{} {} {}", r.key(), plan.name.trim(), plan.version)),
        env_css: crate::ui::deployments::stylesheet_url(&envs),
        href: page_of(&r),
        key: r.key(),
        name: plan.name.trim().to_owned(),
        version: plan.version.clone(),
        state: r.state,
        revision: r.row.revision,
        level: record.outcome.level,
        planned_by: people
            .name_of_id(r.row.created_by)
            .unwrap_or_else(|| "a former account".into()),
        planned_at: r.row.created_at,
        needs: still_needed(&r, Some(&record.outcome)),
        scope,
        removed,
        milestones,
        levels: t
            .levels
            .iter()
            .map(|l| l.label())
            .collect::<Vec<_>>()
            .join(", "),
        entry_criteria: t.entry_criteria.clone(),
        exit_criteria: t.exit_criteria.clone(),
        evidence: t.evidence.iter().map(|e| Link::new(e)).collect(),
        phases,
        rollback_triggers: rb.triggers.clone(),
        rollback_steps: rb.steps.clone(),
        rollback_max: minutes_in_words(i64::from(rb.max_minutes), 3),
        irreversible: rb.irreversible.then(|| rb.irreversible_steps.clone()),
        rolled_back,
        communications: plan
            .communications
            .iter()
            .map(|c| CommunicationLine {
                audience: c.audience.clone(),
                channel: c.channel.clone(),
                when: c.when,
                message: c.message.clone(),
            })
            .collect(),
        trail,
        revisions,
        offers: offers(viewer, &r),
        errors,
    };
    Ok((status, render(&page)).into_response())
}

/// `GET /releases/{id}`: by its key (`REL-3`) or its id.
pub(crate) async fn show(viewer: Viewer, Path(id): Path<String>) -> PageResult {
    let r = load(&viewer, &id).await?;
    Ok(detail_page(&viewer, r, ActionErrors::default(), StatusCode::OK).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_fields_read_as_words() {
        assert_eq!(field_label("go_no_go"), "Go/no-go");
        assert_eq!(field_label("phase 2"), "Phase 2");
        assert_eq!(field_label("communication 1"), "Communication 1");
        assert_eq!(field_label("scope"), "Changes in scope");
        assert_eq!(field_label("rollback_steps"), "Rollback steps");
    }
}
