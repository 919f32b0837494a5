//! Decision pages: the assessment form, votes, the reviewer and CAB queues
//! (with what is overdue of post-implementation reviews), the printable
//! agenda, and the quorum and review settings.

use askama::Template;
use axum::Form;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cab_domain::Role;
use cab_domain::approval::{
    AssessmentContent, AssessmentDecision, DataClassification, Duty, LevelRule, QuorumPolicy,
    TestRequirement, VoteChoice,
};
use cab_domain::calendar::Conflict;
use cab_domain::change::{ChangeKey, ChangeState, ChangeType};
use cab_domain::risk::RiskLevel;

use super::form::{Choice, FieldErrors, FormPairs as Pairs, form_value as value};
use super::notice::{Notice, redirect_with};
use super::{Layout, Viewer, render, when};
use crate::changes::{self, ChangeView};
use crate::decisions;
use crate::error::AppError;
use crate::page_error::PageResult;
use crate::request::Origin;
use crate::words::stored;

/// The refusal of an approving vote that does not acknowledge the planned
/// window's calendar conflicts (`calendar::unacknowledged`).
const CONFLICTS_NOT_ACKNOWLEDGED: &str = "conflicts_not_acknowledged";

async fn load(viewer: &Viewer, raw: &str) -> Result<ChangeView, AppError> {
    let id = changes::resolve_id(&viewer.state.pool, raw).await?;
    changes::load(&viewer.state.pool, id).await
}

#[derive(Template)]
#[template(path = "decisions/assess.html")]
struct AssessPage {
    layout: Layout,
    v: ChangeView,
    key: String,
    a: AssessmentContent,
    errors: FieldErrors,
    classes: Vec<Choice>,
    levels: Vec<Choice>,
    decisions: Vec<Choice>,
    conditions: String,
}

fn blank_assessment(level: RiskLevel) -> AssessmentContent {
    AssessmentContent {
        data_classification: DataClassification::Internal,
        security_implications: String::new(),
        sast: TestRequirement::default(),
        dast: TestRequirement::default(),
        pentest: TestRequirement::default(),
        residual_risk: String::new(),
        assessed_level: level,
        lowering_justification: String::new(),
        decision: AssessmentDecision::Accept,
        conditions: Vec::new(),
    }
}

fn assess_page(
    viewer: &Viewer,
    v: ChangeView,
    a: AssessmentContent,
    errors: FieldErrors,
) -> Response {
    let status = if errors.is_empty() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = AssessPage {
        layout: viewer.layout(format!("Assess {}", v.key())),
        key: v.key(),
        classes: DataClassification::ALL
            .iter()
            .map(|c| Choice {
                value: c.as_str(),
                label: c.label(),
                selected: *c == a.data_classification,
            })
            .collect(),
        levels: RiskLevel::ALL
            .iter()
            .map(|l| Choice {
                value: l.as_str(),
                label: l.label(),
                selected: *l == a.assessed_level,
            })
            .collect(),
        decisions: AssessmentDecision::ALL
            .iter()
            .map(|d| Choice {
                value: d.as_str(),
                label: d.label(),
                selected: *d == a.decision,
            })
            .collect(),
        conditions: a.conditions.join("\n"),
        a,
        errors,
        v,
    };
    (status, render(&page)).into_response()
}

pub async fn assess_form(viewer: Viewer, origin: Origin, Path(id): Path<String>) -> PageResult {
    let shown = async {
        let v = load(&viewer, &id).await?;
        decisions::check_duty(&viewer.state.pool, &viewer.user, &origin, &v, Duty::Assess).await?;
        let a = blank_assessment(v.risk_level);
        Ok::<_, AppError>(assess_page(&viewer, v, a, FieldErrors::default()))
    };
    Ok(shown.await?)
}

fn requirement(form: &Pairs, kind: &str) -> TestRequirement {
    TestRequirement {
        required: !value(form, &format!("{kind}_required")).is_empty(),
        evidence: value(form, &format!("{kind}_evidence")).trim().to_owned(),
        justification: value(form, &format!("{kind}_justification"))
            .trim()
            .to_owned(),
    }
}

pub async fn assess_submit(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(form): Form<Pairs>,
) -> PageResult {
    let v = load(&viewer, &id).await?;
    let a = AssessmentContent {
        data_classification: DataClassification::parse(&value(&form, "data_classification"))
            .unwrap_or(DataClassification::Internal),
        security_implications: value(&form, "security_implications"),
        sast: requirement(&form, "sast"),
        dast: requirement(&form, "dast"),
        pentest: requirement(&form, "pentest"),
        residual_risk: value(&form, "residual_risk"),
        assessed_level: RiskLevel::parse(&value(&form, "risk_level")).unwrap_or(v.risk_level),
        lowering_justification: value(&form, "lowering_justification"),
        decision: AssessmentDecision::parse(&value(&form, "decision"))
            .unwrap_or(AssessmentDecision::Accept),
        conditions: value(&form, "conditions")
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect(),
    };
    let revision = value(&form, "revision").parse::<i32>().ok();
    match decisions::assess(
        &viewer.state.pool,
        &viewer.user,
        &origin,
        v.id,
        a.clone(),
        revision,
    )
    .await
    {
        Ok(saved) => Ok(redirect_with(
            &viewer,
            &format!("/changes/{}#decision", saved.id),
            Notice::Assessed {
                number: saved.number,
                state: saved.state,
            },
        )),
        Err(e @ (AppError::Invalid { .. } | AppError::Fields(_))) => {
            let errors = FieldErrors::absorb(e, "security_implications")?;
            Ok(assess_page(&viewer, v, a, errors))
        }
        Err(e) => Err(e.into()),
    }
}

// The decisions below load and check the change under its lock in the
// service; the page loads it again only to show it with an error beside a
// field.

pub async fn start(viewer: Viewer, origin: Origin, Path(id): Path<String>) -> PageResult {
    let pool = &viewer.state.pool;
    let id = changes::resolve_id(pool, &id).await?;
    let v = decisions::start_assessment(pool, &viewer.user, &origin, id).await?;
    Ok(redirect_with(
        &viewer,
        &format!("/changes/{}/assessment", v.id),
        Notice::AssessmentStarted { number: v.number },
    ))
}

pub async fn vote(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(form): Form<Pairs>,
) -> PageResult {
    let pool = &viewer.state.pool;
    let id = changes::resolve_id(pool, &id).await?;
    let choice = VoteChoice::parse(&value(&form, "vote"))
        .ok_or_else(|| AppError::invalid("vote", "Choose approve, reject or request changes."))?;
    let revision = value(&form, "revision").parse::<i32>().ok();
    let comment = value(&form, "comment");
    let acknowledged = value(&form, "acknowledge_conflicts");
    let ballot = decisions::VoteCast {
        choice,
        comment: &comment,
        revision,
        // The checkbox carries the digest of the conflicts the page showed.
        acknowledge_conflicts: Some(acknowledged.as_str()).filter(|d| !d.is_empty()),
    };
    match decisions::vote(pool, &viewer.user, &origin, id, &ballot).await {
        Ok(after) => Ok(redirect_with(
            &viewer,
            &format!("/changes/{id}#decision"),
            Notice::Voted {
                number: after.number,
                revision: after.revision,
                choice,
                state: after.state,
            },
        )),
        // An approval that does not acknowledge the window's calendar
        // conflicts (refused and recorded by the service): the change's page
        // again, the refusal with its sentences beside the checkbox.
        Err(AppError::Forbidden(d)) if d.code == CONFLICTS_NOT_ACKNOWLEDGED => {
            let mut errors = FieldErrors::default();
            errors.insert("acknowledge_conflicts", d.message);
            let v = changes::load(pool, id).await?;
            let mut resp = super::changes::detail_page(&viewer, v, errors).await?;
            *resp.status_mut() = StatusCode::FORBIDDEN;
            Ok(resp)
        }
        // The change's page again, the message beside the comment.
        Err(e @ (AppError::Invalid { .. } | AppError::Fields(_))) => {
            let errors = FieldErrors::absorb(e, "comment")?;
            let v = changes::load(pool, id).await?;
            Ok(super::changes::detail_page(&viewer, v, errors).await?)
        }
        Err(e) => Err(e.into()),
    }
}

pub struct QueueLine {
    pub id: String,
    pub key: String,
    pub title: String,
    pub state: ChangeState,
    pub change_type: ChangeType,
    pub risk: RiskLevel,
    pub author: String,
    pub window: String,
    pub needs: String,
    pub my_vote: Option<VoteChoice>,
    pub submitted: String,
    /// The freezes its planned window overlaps, as sentences.
    pub freezes: Vec<String>,
    /// Its window's other calendar conflicts (freezes are said above), as
    /// sentences.
    pub conflicts: Vec<String>,
}

impl QueueLine {
    /// A queue row; `level` is the one decisions use, `needs` what is missing.
    fn new(
        r: cab_db::decisions::QueueRow,
        level: &str,
        needs: String,
        my_vote: Option<VoteChoice>,
    ) -> Result<Self, AppError> {
        Ok(QueueLine {
            id: r.id.to_string(),
            key: ChangeKey(r.number).to_string(),
            state: stored(ChangeState::parse(&r.state), "state", &r.state)?,
            change_type: stored(ChangeType::parse(&r.change_type), "type", &r.change_type)?,
            risk: stored(RiskLevel::parse(level), "risk level", level)?,
            window: window(&r.window_start),
            submitted: r.submitted_at.as_ref().map(when).unwrap_or_default(),
            title: r.title,
            author: r.author,
            needs,
            my_vote,
            freezes: Vec::new(),
            conflicts: Vec::new(),
        })
    }
}

#[derive(Template)]
#[template(path = "decisions/queue.html")]
struct QueuePage {
    layout: Layout,
    heading: &'static str,
    intro: &'static str,
    cab: bool,
    agenda: bool,
    lines: Vec<QueueLine>,
    /// Overdue post-implementation reviews and action items (the CAB's
    /// pages only).
    overdue: super::reviews::OverdueLines,
    /// Releases awaiting CAB's go/no-go (the CAB's pages only).
    releases: Vec<ReleaseLine>,
}

/// A release awaiting its go/no-go, as the CAB queue and agenda list it.
pub struct ReleaseLine {
    pub key: String,
    pub name: String,
    pub version: String,
    pub deploy: String,
    pub changes: usize,
    pub needs: String,
    pub my_vote: Option<VoteChoice>,
}

/// Every release in review, soonest first, with what it needs and the
/// viewer's vote on its current revision.
async fn releases_in_review(viewer: &Viewer) -> Result<Vec<ReleaseLine>, AppError> {
    use cab_domain::release::ReleaseState;
    let pool = &viewer.state.pool;
    let mut out = Vec::new();
    for r in crate::releases::list(pool, Some(ReleaseState::InReview)).await? {
        let mut conn = pool.acquire().await?;
        let tally = crate::releases::tally(&mut conn, &r).await?;
        // The tally's ballots are the current votes on the current revision.
        let my_vote = tally
            .ballots
            .iter()
            .find(|b| b.voter == viewer.user.id)
            .map(|b| b.choice);
        out.push(ReleaseLine {
            key: r.key(),
            name: r.plan.name.clone(),
            version: r.plan.version.clone(),
            deploy: when(&r.plan.milestones.deployment),
            changes: r.scope.len(),
            needs: tally.still_needed(r.state).join("; "),
            my_vote,
        });
    }
    Ok(out)
}

fn window(t: &Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.as_ref().map(when).unwrap_or_else(|| "not planned".into())
}

pub async fn reviewer_queue(viewer: Viewer) -> PageResult {
    let shown = async {
        let mut conn = viewer.state.pool.acquire().await?;
        let rows = cab_db::decisions::awaiting_assessment(&mut conn).await?;
        let mut lines = Vec::with_capacity(rows.len());
        for r in rows {
            let level = r.risk_level.clone();
            lines.push(QueueLine::new(r, &level, String::new(), None)?);
        }
        let page = QueuePage {
            layout: viewer.layout("Assessments"),
            heading: "Waiting for security assessment",
            intro: "Submitted changes whose current revision has no assessment, riskiest and oldest first.",
            releases: Vec::new(),
            cab: false,
            agenda: false,
            lines,
            overdue: super::reviews::OverdueLines::default(),
        };
        Ok::<_, AppError>(render(&page))
    };
    Ok(shown.await?)
}

async fn cab_page(viewer: &Viewer, agenda: bool) -> Result<Response, AppError> {
    let items = crate::queues::cab_queue(&viewer.state.pool, viewer.user.id).await?;
    let mut conn = viewer.state.pool.acquire().await?;
    let people = crate::words::People::load(&mut conn).await?;
    let overdue = super::reviews::overdue(&mut conn, &viewer.user, &people).await?;
    let ids: Vec<uuid::Uuid> = items.iter().map(|i| i.row.id).collect();
    let mut freezes = super::deployments::freeze_warnings(&mut conn, &ids).await?;
    drop(conn);
    let mut views = Vec::with_capacity(ids.len());
    for id in &ids {
        views.push(changes::load(&viewer.state.pool, *id).await?);
    }
    let mut conn = viewer.state.pool.acquire().await?;
    let mut conflicts =
        crate::calendar::conflicts_by_change(&mut conn, &views.iter().collect::<Vec<_>>()).await?;
    drop(conn);
    let releases = releases_in_review(viewer).await?;
    let mut lines = Vec::with_capacity(items.len());
    for i in items {
        let my_vote = i.my_vote.as_deref().and_then(VoteChoice::parse);
        let overlaps = freezes.remove(&i.row.id).unwrap_or_default();
        let others = conflicts
            .remove(&i.row.id)
            .unwrap_or_default()
            .iter()
            .filter(|c| !matches!(c, Conflict::Freeze { .. }))
            .map(Conflict::sentence)
            .collect();
        let mut line = QueueLine::new(i.row, &i.level, i.needs.join("; "), my_vote)?;
        line.freezes = overlaps;
        line.conflicts = others;
        lines.push(line);
    }
    let page = QueuePage {
        layout: viewer.layout(if agenda { "CAB agenda" } else { "CAB queue" }),
        heading: if agenda {
            "CAB meeting agenda"
        } else {
            "Awaiting CAB decision"
        },
        intro: if agenda {
            "Changes to decide, by planned window and risk. Print this page for the meeting."
        } else {
            "Changes awaiting a decision, by planned window and risk, with what each still needs."
        },
        cab: true,
        agenda,
        lines,
        releases,
        overdue,
    };
    Ok(render(&page))
}

pub async fn cab_queue(viewer: Viewer) -> PageResult {
    Ok(cab_page(&viewer, false).await?)
}

pub async fn cab_agenda(viewer: Viewer) -> PageResult {
    Ok(cab_page(&viewer, true).await?)
}

/// One line of the quorum policy: a risk level, or emergency changes.
pub struct QuorumRule {
    /// The form fields' prefix.
    pub name: &'static str,
    pub label: String,
    pub approvals: u32,
    pub assessment: bool,
}

#[derive(Template)]
#[template(path = "decisions/quorum.html")]
struct QuorumPage {
    layout: Layout,
    rules: Vec<QuorumRule>,
    errors: FieldErrors,
    can_edit: bool,
    /// The review settings' form, as saved or as typed.
    reviews: ReviewSettingsForm,
}

/// When post-implementation reviews are due, and whether every change owes
/// one.
pub struct ReviewSettingsForm {
    pub due_days: String,
    pub required_for_all: bool,
    pub error: Option<String>,
}

impl ReviewSettingsForm {
    fn saved(s: crate::reviews::ReviewSettings) -> Self {
        ReviewSettingsForm {
            due_days: s.due_days.to_string(),
            required_for_all: s.required_for_all,
            error: None,
        }
    }
}

fn rules(p: &QuorumPolicy) -> Vec<QuorumRule> {
    let level = |l: RiskLevel, r: LevelRule| QuorumRule {
        name: l.as_str(),
        label: format!("{} risk", l.label()),
        approvals: r.approvals,
        assessment: r.assessment,
    };
    vec![
        level(RiskLevel::Low, p.low),
        level(RiskLevel::Medium, p.medium),
        level(RiskLevel::High, p.high),
        level(RiskLevel::Critical, p.critical),
        QuorumRule {
            name: "emergency",
            label: format!("{} changes, any risk", ChangeType::Emergency.label()),
            approvals: p.emergency.approvals,
            assessment: p.emergency.assessment,
        },
    ]
}

pub async fn quorum_form(viewer: Viewer) -> PageResult {
    let shown = async {
        let mut conn = viewer.state.pool.acquire().await?;
        let p = crate::quorum::in_force(&mut conn).await?;
        let reviews = crate::reviews::settings(&mut conn).await?;
        Ok::<_, AppError>(render(&QuorumPage {
            layout: viewer.layout("Quorum policy"),
            rules: rules(&p),
            errors: FieldErrors::default(),
            can_edit: viewer.user.has(Role::Admin),
            reviews: ReviewSettingsForm::saved(reviews),
        }))
    };
    Ok(shown.await?)
}

pub async fn quorum_submit(viewer: Viewer, origin: Origin, Form(form): Form<Pairs>) -> PageResult {
    let rule = |name: &str| LevelRule {
        approvals: value(&form, &format!("{name}_approvals"))
            .parse()
            .unwrap_or(0),
        assessment: !value(&form, &format!("{name}_assessment")).is_empty(),
    };
    let p = QuorumPolicy {
        low: rule("low"),
        medium: rule("medium"),
        high: rule("high"),
        critical: rule("critical"),
        emergency: rule("emergency"),
    };
    match crate::quorum::set(&viewer.state.pool, &viewer.user, &origin, p).await {
        Ok(_) => Ok(redirect_with(&viewer, "/admin/quorum", Notice::QuorumSaved)),
        Err(e @ AppError::Fields(_)) => {
            let errors = FieldErrors::absorb(e, "low")?;
            let mut conn = viewer.state.pool.acquire().await?;
            let reviews = crate::reviews::settings(&mut conn).await?;
            let mut resp = render(&QuorumPage {
                layout: viewer.layout("Quorum policy"),
                rules: rules(&p),
                errors,
                can_edit: true,
                reviews: ReviewSettingsForm::saved(reviews),
            });
            *resp.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
            Ok(resp)
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /admin/quorum/reviews`: how many days after a change's production
/// deployment (or closure) its review is due, and whether every change owes
/// one (administrators).
pub async fn review_settings_submit(
    viewer: Viewer,
    origin: Origin,
    Form(form): Form<Pairs>,
) -> PageResult {
    let typed = value(&form, "due_days");
    let required_for_all = super::form::checked(&form, "required_for_all");
    let pool = &viewer.state.pool;
    let new = crate::reviews::ReviewSettings {
        // Unreadable is out of range: the service says what it takes.
        due_days: typed.trim().parse().unwrap_or(0),
        required_for_all,
    };
    match crate::reviews::set_settings(pool, &viewer.user, &origin, new).await {
        Ok(_) => Ok(redirect_with(
            &viewer,
            "/admin/quorum#review-settings",
            Notice::ReviewSettingsSaved,
        )),
        Err(AppError::Invalid { message, .. }) => {
            let mut conn = pool.acquire().await?;
            let p = crate::quorum::in_force(&mut conn).await?;
            let mut resp = render(&QuorumPage {
                layout: viewer.layout("Quorum policy"),
                rules: rules(&p),
                errors: FieldErrors::default(),
                can_edit: true,
                reviews: ReviewSettingsForm {
                    due_days: typed,
                    required_for_all,
                    error: Some(message),
                },
            });
            *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            Ok(resp)
        }
        Err(e) => Err(e.into()),
    }
}
