//! A change's own page: its fields, the decision section (what it still
//! needs, the assessment, the approval trail of every assessment and vote),
//! how it ended and where its post-implementation review stands, its
//! revisions with what each changed, its comments and its timeline, and
//! which actions the person looking may take.

use askama::Template;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cab_domain::approval::{AssessmentDecision, DataClassification, VoteChoice};
use cab_domain::change::{ChangeAction, ChangeState, FieldChange, SUBMISSION_FIELDS, field_label};
use cab_domain::risk::RiskLevel;
use chrono::{DateTime, Utc};

use super::form::parse_offset;
use super::load;
use crate::changes::ChangeView;
use crate::error::AppError;
use crate::page_error::PageResult;
use crate::ui::deployments::{DeployAttempt, DeploySection, deploy_section};
use crate::ui::form::FieldErrors;
use crate::ui::{Layout, Viewer, filters, render, when};
use crate::words::{Link, People, Sentence, Subjects, role_labels};

/// One fact on a change's page: text, text as written (line breaks kept),
/// or links, of which only web addresses can be followed.
struct Field {
    pub label: &'static str,
    pub text: String,
    pub multiline: bool,
    pub links: Vec<Link>,
}

impl Field {
    fn text(label: &'static str, text: impl Into<String>) -> Self {
        Field {
            label,
            text: text.into(),
            multiline: false,
            links: Vec::new(),
        }
    }

    fn prose(label: &'static str, text: impl Into<String>) -> Self {
        Field {
            multiline: true,
            ..Field::text(label, text)
        }
    }

    fn links<'a>(label: &'static str, items: impl IntoIterator<Item = &'a str>) -> Self {
        Field {
            links: items
                .into_iter()
                .filter(|s| !s.trim().is_empty())
                .map(Link::new)
                .collect(),
            ..Field::text(label, "")
        }
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty() && self.links.is_empty()
    }
}

/// One changed field of a revision, by its label.
struct DiffLine {
    pub field: &'static str,
    pub before: String,
    pub after: String,
}

struct RevisionLine {
    pub number: i32,
    pub at: DateTime<Utc>,
    pub by: String,
    pub risk: Option<RiskLevel>,
    pub diff: Vec<DiffLine>,
}

struct CommentLine {
    pub author: String,
    pub at: DateTime<Utc>,
    pub body: String,
}

struct TimelineLine {
    pub at: DateTime<Utc>,
    /// The stored action, kept as `data-action` for scripts and tests.
    pub action: String,
    pub sentence: Sentence,
}

/// The decision section of a change's page.
struct DecisionView {
    pub level: RiskLevel,
    pub still_needed: Vec<String>,
    pub review_note: Option<String>,
    pub assessment: Option<AssessmentSummary>,
    pub trail: Vec<TrailLine>,
    pub may_vote: bool,
    pub may_assess: bool,
    pub may_start: bool,
    pub my_vote: Option<VoteChoice>,
}

/// One kind of security testing in an assessment.
struct TestingLine {
    pub name: &'static str,
    pub required: bool,
    pub evidence: Option<Link>,
    pub justification: String,
}

struct AssessmentSummary {
    pub by: String,
    pub decision: Option<AssessmentDecision>,
    pub level: Option<RiskLevel>,
    pub lowers: bool,
    pub lowering_justification: String,
    pub conditions: Vec<String>,
    pub classification: Option<DataClassification>,
    pub testing: Vec<TestingLine>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrailKind {
    Assessment,
    Vote,
}

impl TrailKind {
    pub fn label(self) -> &'static str {
        match self {
            TrailKind::Assessment => "Security assessment",
            TrailKind::Vote => "CAB vote",
        }
    }
}

/// Whether an assessment or vote still counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrailStatus {
    Current,
    Superseded,
    EarlierRevision,
    /// On the current revision, but the person no longer counts (see
    /// `cab_domain::approval::Standing`).
    DoesNotCount(cab_domain::approval::Standing),
}

impl TrailStatus {
    pub fn label(self) -> &'static str {
        match self {
            TrailStatus::Current => "Counts",
            TrailStatus::Superseded => "Replaced by a later one",
            TrailStatus::EarlierRevision => "On an earlier revision",
            TrailStatus::DoesNotCount(s) => s.label(),
        }
    }

    pub fn class(self) -> &'static str {
        match self {
            TrailStatus::Current => "trail-current",
            TrailStatus::Superseded => "trail-superseded",
            TrailStatus::EarlierRevision | TrailStatus::DoesNotCount(_) => "trail-earlier",
        }
    }
}

struct TrailLine {
    pub kind: TrailKind,
    pub who: String,
    pub roles: String,
    pub revision: i32,
    pub decision: String,
    pub comment: String,
    pub at: String,
    pub status: TrailStatus,
    /// The calendar conflicts an approving vote acknowledged, as sentences.
    pub acknowledged: Vec<String>,
}

#[derive(Template)]
#[template(path = "changes/detail.html")]
struct DetailPage {
    d: DecisionView,
    layout: Layout,
    v: ChangeView,
    fields: Vec<Field>,
    revisions: Vec<RevisionLine>,
    comments: Vec<CommentLine>,
    timeline: Vec<TimelineLine>,
    can_edit: bool,
    can_submit: bool,
    can_withdraw: bool,
    can_cancel: bool,
    can_comment: bool,
    errors: FieldErrors,
    /// The fields an action's error summary lists, in order, with labels.
    summary_fields: Vec<(&'static str, &'static str)>,
    /// The promotion strip, freezes over the window and the deploy form.
    dep: DeploySection,
    /// What the planned window runs into on the calendar, as sentences.
    conflicts: Vec<String>,
    /// What the acknowledgement checkbox sends: these conflicts, as shown.
    conflicts_digest: String,
    /// The calendar's week of the planned window.
    conflicts_week: Option<String>,
    /// How it ended and where its post-implementation review stands, once
    /// it was approved.
    ending: Option<crate::ui::reviews::Ending>,
}

/// What submitting asks for, by label, then the reason cancelling asks for:
/// the fields an action on this page can be refused over.
fn submission_summary() -> Vec<(&'static str, &'static str)> {
    SUBMISSION_FIELDS
        .into_iter()
        .map(|f| (f, field_label(f).unwrap_or(f)))
        .chain([("reason", "Reason for cancelling")])
        .collect()
}

pub(crate) async fn detail_page(
    viewer: &Viewer,
    v: ChangeView,
    errors: FieldErrors,
) -> Result<Response, AppError> {
    detail_page_with(viewer, v, errors, None).await
}

/// The change's page, with what the gate said to a request from its deploy
/// form (answered with the refusal's status).
pub(crate) async fn detail_page_with(
    viewer: &Viewer,
    v: ChangeView,
    errors: FieldErrors,
    attempt: Option<DeployAttempt>,
) -> Result<Response, AppError> {
    let status = match &attempt {
        Some(a) => Some(a.status),
        None if errors.is_empty() => Some(StatusCode::OK),
        None => None,
    };
    let mut conn = viewer.state.pool.acquire().await?;
    let revisions = cab_db::changes::revisions(&mut conn, v.id).await?;
    let comments = cab_db::changes::comments(&mut conn, v.id).await?;
    let events = cab_db::audit::for_change(&mut conn, &v.id.to_string()).await?;
    let facts = crate::decisions::facts(&mut conn, &v).await?;
    let subjects = Subjects::for_change(People::load(&mut conn).await?, v.id, v.number);
    // Worked out from the records now, so a window or freeze added since
    // shows at once.
    let found = crate::calendar::conflicts_of_change(&mut conn, &v).await?;
    let conflicts_digest = crate::calendar::conflicts_digest(&found);
    let conflicts: Vec<String> = found.iter().map(|c| c.sentence()).collect();
    let acknowledged = cab_db::calendar::acknowledged_conflicts(&mut conn, v.id).await?;
    drop(conn);
    let people = &subjects.people;
    let d = decision_view(viewer, &v, &facts, people, &acknowledged);
    let dep = deploy_section(viewer, &v, people, attempt).await?;
    let ending = crate::ui::reviews::ending(viewer, v.id).await?;
    let c = &v.content;
    let offset = parse_offset(&c.window_tz);
    let show = |t: Option<DateTime<Utc>>| match (t, offset) {
        (Some(t), Some(o)) if o.local_minus_utc() != 0 => format!(
            "{} ({} {})",
            when(&t),
            t.with_timezone(&o).format("%Y-%m-%d %H:%M"),
            o
        ),
        (Some(t), _) => when(&t),
        (None, _) => "not planned yet".into(),
    };
    let window = format!("{} → {}", show(c.window_start), show(c.window_end));
    let levels = [
        (c.test_levels.unit, "unit"),
        (c.test_levels.integration, "integration"),
        (c.test_levels.system, "system"),
        (c.test_levels.acceptance, "acceptance"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| *n)
    .collect::<Vec<_>>()
    .join(", ");
    let fields = vec![
        Field::prose("Description", c.description.clone()),
        Field::prose("Business justification", c.justification.clone()),
        Field::text("Category", c.category.label()),
        Field::text("Priority", c.priority.label()),
        Field::text("Affected services", c.services.join(", ")),
        Field::text(
            "Target environments",
            c.environments
                .iter()
                .map(|e| e.label())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        Field::text("Planned window", window),
        Field::prose("Implementation plan", c.implementation_plan.clone()),
        Field::prose("Test plan", c.test_plan.clone()),
        Field::text("Testing levels", levels),
        Field::links("Test evidence", c.test_evidence.iter().map(String::as_str)),
        Field::prose("Rollback plan", c.rollback_plan.clone()),
        Field::links("Pull request", [c.pr_url.as_str()]),
        Field::text("Commit", c.commit_sha.clone()),
        Field::text("Artifact digest", c.artifact_digest.clone()),
        Field::text("Author", people.name(&v.author)),
        Field::text(
            "Contributors",
            v.contributors
                .iter()
                .map(|(_, u)| people.name(u))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    ];
    let page = DetailPage {
        summary_fields: submission_summary(),
        d,
        layout: viewer.layout(format!("{} {}", v.key(), c.title)),
        fields,
        revisions: revisions
            .into_iter()
            .map(|r| RevisionLine {
                number: r.number,
                at: r.created_at,
                by: people.name(&r.created_by),
                risk: RiskLevel::parse(&r.risk_level),
                diff: serde_json::from_value::<Vec<FieldChange>>(r.diff)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|f| DiffLine {
                        field: field_label(&f.field).unwrap_or("Another field"),
                        before: f.before,
                        after: f.after,
                    })
                    .collect(),
            })
            .collect(),
        comments: comments
            .into_iter()
            .map(|c| CommentLine {
                author: people.name(&c.author),
                at: c.created_at,
                body: c.body,
            })
            .collect(),
        timeline: events
            .iter()
            .map(|e| TimelineLine {
                at: e.occurred_at,
                action: e.action.clone(),
                sentence: subjects.describe(e),
            })
            .collect(),
        can_edit: v.allows(&viewer.user, ChangeAction::Edit),
        can_submit: v.allows(&viewer.user, ChangeAction::Submit),
        can_withdraw: v.allows(&viewer.user, ChangeAction::Withdraw),
        can_cancel: v.allows(&viewer.user, ChangeAction::Cancel),
        can_comment: v.allows(&viewer.user, ChangeAction::Comment),
        errors,
        dep,
        conflicts_week: (!conflicts.is_empty())
            .then_some(c.window_start)
            .flatten()
            .map(|t| format!("/calendar?view=week&date={}", t.format("%Y-%m-%d"))),
        conflicts,
        conflicts_digest,
        ending,
        v,
    };
    let status = status.unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
    Ok((status, render(&page)).into_response())
}

pub(crate) async fn show(viewer: Viewer, Path(id): Path<String>) -> PageResult {
    let shown = async {
        let v = load(&viewer, &id).await?;
        detail_page(&viewer, v, FieldErrors::default()).await
    };
    Ok(shown.await?)
}

/// The approval trail: every assessment and vote, oldest first, superseded
/// ones and those on earlier revisions included.
fn trail(
    facts: &crate::decisions::DecisionFacts,
    revision: i32,
    people: &People,
    acknowledged: &[cab_db::calendar::AcknowledgedRow],
) -> Vec<TrailLine> {
    crate::trail::entries(facts, revision)
        .into_iter()
        .map(|e| {
            let status = if e.superseded {
                TrailStatus::Superseded
            } else if e.stale {
                TrailStatus::EarlierRevision
            } else {
                e.does_not_count()
                    .map_or(TrailStatus::Current, TrailStatus::DoesNotCount)
            };
            // A vote is known by who cast it, on which revision, and when.
            let accepted: Vec<String> = match e.kind {
                crate::trail::TrailKind::Vote => acknowledged
                    .iter()
                    .filter(|a| {
                        a.voter_username == e.who
                            && a.revision == e.revision
                            && a.created_at == e.at
                    })
                    .filter_map(|a| a.acknowledged_conflicts.as_array())
                    .flatten()
                    .filter_map(|c| c.get("sentence").and_then(|s| s.as_str()))
                    .map(str::to_owned)
                    .collect(),
                crate::trail::TrailKind::Assessment => Vec::new(),
            };
            let (kind, decision, comment) = match e.kind {
                crate::trail::TrailKind::Assessment => {
                    let mut decision = AssessmentDecision::parse(&e.decision)
                        .map_or("Assessment", AssessmentDecision::label)
                        .to_owned();
                    if let Some(level) = e.assessed_level.as_deref().and_then(RiskLevel::parse) {
                        decision = format!("{decision}, {} risk", level.label().to_lowercase());
                    }
                    if e.lowers_risk == Some(true) {
                        decision.push_str(" (lowered)");
                    }
                    let mut comment = e.comment;
                    if !e.conditions.is_empty() {
                        comment = format!("{comment} Conditions: {}", e.conditions.join("; "));
                    }
                    (TrailKind::Assessment, decision, comment.trim().to_owned())
                }
                crate::trail::TrailKind::Vote => (
                    TrailKind::Vote,
                    VoteChoice::parse(&e.decision)
                        .map_or("Vote", VoteChoice::label)
                        .to_owned(),
                    e.comment,
                ),
            };
            TrailLine {
                kind,
                who: people.name(&e.who),
                roles: role_labels(&e.roles),
                revision: e.revision,
                decision,
                comment,
                at: when(&e.at),
                status,
                acknowledged: accepted,
            }
        })
        .collect()
}

fn decision_view(
    viewer: &Viewer,
    v: &ChangeView,
    facts: &crate::decisions::DecisionFacts,
    people: &People,
    acknowledged: &[cab_db::calendar::AcknowledgedRow],
) -> DecisionView {
    use cab_domain::approval::{AssessmentContent, Duty};
    let assessment = facts.current_assessment.as_ref().map(|a| {
        let content: Option<AssessmentContent> = serde_json::from_value(a.content.clone()).ok();
        let testing = content
            .as_ref()
            .map(|c| {
                [
                    ("SAST", &c.sast),
                    ("DAST", &c.dast),
                    ("Penetration test", &c.pentest),
                ]
                .into_iter()
                .map(|(name, t)| TestingLine {
                    name,
                    required: t.required,
                    evidence: Some(t.evidence.as_str())
                        .filter(|e| !e.trim().is_empty())
                        .map(Link::new),
                    justification: t.justification.clone(),
                })
                .collect()
            })
            .unwrap_or_default();
        AssessmentSummary {
            by: people.name(&a.assessor_username),
            decision: AssessmentDecision::parse(&a.decision),
            level: RiskLevel::parse(&a.assessed_level),
            lowers: a.lowers_risk,
            lowering_justification: content
                .as_ref()
                .map(|c| c.lowering_justification.clone())
                .unwrap_or_default(),
            conditions: content
                .as_ref()
                .map(|c| c.conditions.clone())
                .unwrap_or_default(),
            classification: content.as_ref().map(|c| c.data_classification),
            testing,
        }
    });
    DecisionView {
        level: facts.level,
        still_needed: facts.still_needed(v.state),
        review_note: facts
            .decision
            .review_note
            .clone()
            .filter(|_| !v.state.is_decided()),
        assessment,
        trail: trail(facts, v.revision, people, acknowledged),
        may_vote: crate::decisions::may(v, &viewer.user, Duty::Vote),
        may_assess: crate::decisions::may(v, &viewer.user, Duty::Assess),
        may_start: v.state == ChangeState::Submitted
            && crate::decisions::may(v, &viewer.user, Duty::Assess),
        my_vote: facts
            .my_vote(viewer.user.id, v.revision)
            .and_then(|x| VoteChoice::parse(&x.choice)),
    }
}
