//! What the change endpoints read and write: the request bodies, the
//! responses, and their conversions from the domain and the store.

use axum::body::Bytes;
use cab_db::changes::{ChangeSummary, CommentRow, RevisionRow};
use cab_domain::change::{ChangeContent, ChangeKey, Environment, FieldChange, TestLevels};
use cab_domain::risk::RiskAnswers;
use chrono::{DateTime, FixedOffset, Offset, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::reviews::ClosureOut;
use crate::changes::ChangeView;
use crate::error::AppError;
use crate::vocab;

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowIo {
    /// RFC 3339 with an offset, e.g. `2026-12-01T10:00:00+01:00`; stored in UTC.
    pub start: Option<DateTime<FixedOffset>>,
    pub end: Option<DateTime<FixedOffset>>,
    /// The zone the window is planned in, for display (defaults to the start's offset).
    pub time_zone: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinksIo {
    #[serde(default)]
    pub pull_request: String,
    #[serde(default)]
    pub commit_sha: String,
    /// e.g. `sha256:<hex>`
    #[serde(default)]
    pub artifact_digest: String,
}

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestLevelsIo {
    #[serde(default)]
    pub unit: bool,
    #[serde(default)]
    pub integration: bool,
    #[serde(default)]
    pub system: bool,
    #[serde(default)]
    pub acceptance: bool,
}

/// The engineer's risk answers; impact and likelihood from 1 to 4.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RiskAnswersIo {
    pub impact: i16,
    pub likelihood: i16,
    #[serde(default)]
    pub touches_production_data: bool,
    #[serde(default)]
    pub customer_facing: bool,
    #[serde(default)]
    pub changes_security_control: bool,
    #[serde(default)]
    pub rollback_untested: bool,
    #[serde(default)]
    pub outside_usual_window: bool,
}

/// What a client writes. On create, absent fields take their defaults; on
/// PATCH, only the fields present change (objects are replaced whole).
/// Fields the server owns (state, number, author, risk level, revision,
/// timestamps) are refused.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeInput {
    pub title: Option<String>,
    pub description: Option<String>,
    pub justification: Option<String>,
    /// standard, normal (default) or emergency
    #[serde(rename = "type")]
    pub change_type: Option<String>,
    /// feature (default), bug_fix, security_patch, configuration, infrastructure, dependency_update
    pub category: Option<String>,
    /// low, medium (default), high, urgent
    pub priority: Option<String>,
    pub services: Option<Vec<String>>,
    /// Any of DEV, TEST, STAGE, PROD
    pub environments: Option<Vec<String>>,
    pub implementation_plan: Option<String>,
    pub test_plan: Option<String>,
    pub test_levels: Option<TestLevelsIo>,
    pub test_evidence: Option<Vec<String>>,
    pub rollback_plan: Option<String>,
    pub window: Option<WindowIo>,
    pub links: Option<LinksIo>,
    /// Usernames of people who worked on the change with the author.
    pub contributors: Option<Vec<String>>,
    pub risk: Option<RiskAnswersIo>,
    /// On create only: an approved standard-change template to make the
    /// change from (its plans and risk are imposed; it is approved on submission).
    pub template: Option<Uuid>,
    /// On create only, and required when a pipeline (service account) files
    /// the change: the username of the person it is filed for. That person
    /// is the change's author and can never approve it.
    pub on_behalf_of: Option<String>,
}

/// A new draft's starting point: risk unanswered, so it must be answered.
pub fn blank_content() -> ChangeContent {
    ChangeContent::blank()
}

impl ChangeInput {
    pub fn apply(self, mut c: ChangeContent) -> Result<ChangeContent, AppError> {
        if self.template.is_some() {
            return Err(AppError::invalid(
                "template",
                "A change's template is chosen when it is filed and cannot change.",
            ));
        }
        if self.on_behalf_of.is_some() {
            return Err(AppError::invalid(
                "on_behalf_of",
                "A change's author is set when it is filed and cannot change.",
            ));
        }
        if let Some(v) = self.title {
            c.title = v;
        }
        if let Some(v) = self.description {
            c.description = v;
        }
        if let Some(v) = self.justification {
            c.justification = v;
        }
        if let Some(v) = self.change_type {
            c.change_type = vocab::word("type", &v)?;
        }
        if let Some(v) = self.category {
            c.category = vocab::word("category", &v)?;
        }
        if let Some(v) = self.priority {
            c.priority = vocab::word("priority", &v)?;
        }
        if let Some(v) = self.services {
            c.services = v;
        }
        if let Some(v) = self.environments {
            c.environments = v
                .iter()
                .map(|e| vocab::word::<Environment>("environments", e))
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = self.implementation_plan {
            c.implementation_plan = v;
        }
        if let Some(v) = self.test_plan {
            c.test_plan = v;
        }
        if let Some(v) = self.test_levels {
            c.test_levels = TestLevels {
                unit: v.unit,
                integration: v.integration,
                system: v.system,
                acceptance: v.acceptance,
            };
        }
        if let Some(v) = self.test_evidence {
            c.test_evidence = v;
        }
        if let Some(v) = self.rollback_plan {
            c.rollback_plan = v;
        }
        if let Some(w) = self.window {
            c.window_tz = w
                .time_zone
                .filter(|z| !z.trim().is_empty())
                .or_else(|| w.start.map(|s| s.offset().to_string()))
                .unwrap_or_else(|| "UTC".into());
            c.window_start = w.start.map(|t| t.with_timezone(&Utc));
            c.window_end = w.end.map(|t| t.with_timezone(&Utc));
        }
        if let Some(l) = self.links {
            c.pr_url = l.pull_request;
            c.commit_sha = l.commit_sha;
            c.artifact_digest = l.artifact_digest;
        }
        if let Some(v) = self.contributors {
            c.contributors = v;
        }
        if let Some(r) = self.risk {
            c.risk = RiskAnswers {
                impact: r.impact,
                likelihood: r.likelihood,
                touches_production_data: r.touches_production_data,
                customer_facing: r.customer_facing,
                changes_security_control: r.changes_security_control,
                rollback_untested: r.rollback_untested,
                outside_usual_window: r.outside_usual_window,
            };
        }
        Ok(c)
    }
}

#[derive(Serialize, ToSchema)]
pub struct RiskOut {
    /// low, medium, high or critical, computed by the server.
    level: String,
    /// What drove the level.
    reasons: Vec<String>,
    /// Version of the risk rules that computed it.
    version: i32,
    answers: RiskAnswersIo,
}

#[derive(Serialize, ToSchema)]
pub struct ChangeOut {
    id: Uuid,
    /// CHG-<number>
    key: String,
    number: i64,
    state: String,
    author: String,
    contributors: Vec<String>,
    /// 0 while a draft; 1 at submission; each later edit adds one.
    revision: i32,
    risk: RiskOut,
    title: String,
    description: String,
    justification: String,
    #[serde(rename = "type")]
    change_type: String,
    category: String,
    priority: String,
    services: Vec<String>,
    environments: Vec<String>,
    implementation_plan: String,
    test_plan: String,
    test_levels: TestLevelsIo,
    test_evidence: Vec<String>,
    rollback_plan: String,
    window: WindowIo,
    links: LinksIo,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    submitted_at: Option<DateTime<Utc>>,
    /// The standard-change template it was made from.
    template: Option<Uuid>,
    /// How the change ended, once closed with a close code; null before.
    closure: Option<ClosureOut>,
}

impl ChangeOut {
    /// The change with how it was closed.
    pub fn with_closure(mut self, closure: Option<ClosureOut>) -> Self {
        self.closure = closure;
        self
    }
}

impl From<ChangeView> for ChangeOut {
    fn from(v: ChangeView) -> Self {
        let c = v.content;
        let utc = Utc.fix();
        ChangeOut {
            id: v.id,
            key: ChangeKey(v.number).to_string(),
            number: v.number,
            state: v.state.as_str().into(),
            author: v.author,
            contributors: v.contributors.into_iter().map(|(_, u)| u).collect(),
            revision: v.revision,
            risk: RiskOut {
                level: v.risk_level.as_str().into(),
                reasons: v.risk_reasons,
                version: v.risk_version,
                answers: RiskAnswersIo {
                    impact: c.risk.impact,
                    likelihood: c.risk.likelihood,
                    touches_production_data: c.risk.touches_production_data,
                    customer_facing: c.risk.customer_facing,
                    changes_security_control: c.risk.changes_security_control,
                    rollback_untested: c.risk.rollback_untested,
                    outside_usual_window: c.risk.outside_usual_window,
                },
            },
            title: c.title,
            description: c.description,
            justification: c.justification,
            change_type: c.change_type.as_str().into(),
            category: c.category.as_str().into(),
            priority: c.priority.as_str().into(),
            services: c.services,
            environments: c
                .environments
                .iter()
                .map(|e| e.as_str().to_owned())
                .collect(),
            implementation_plan: c.implementation_plan,
            test_plan: c.test_plan,
            test_levels: TestLevelsIo {
                unit: c.test_levels.unit,
                integration: c.test_levels.integration,
                system: c.test_levels.system,
                acceptance: c.test_levels.acceptance,
            },
            test_evidence: c.test_evidence,
            rollback_plan: c.rollback_plan,
            window: WindowIo {
                start: c.window_start.map(|t| t.with_timezone(&utc)),
                end: c.window_end.map(|t| t.with_timezone(&utc)),
                time_zone: Some(c.window_tz),
            },
            links: LinksIo {
                pull_request: c.pr_url,
                commit_sha: c.commit_sha,
                artifact_digest: c.artifact_digest,
            },
            created_at: v.created_at,
            updated_at: v.updated_at,
            submitted_at: v.submitted_at,
            template: v.template_id,
            closure: None,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ChangeSummaryOut {
    id: Uuid,
    key: String,
    title: String,
    state: String,
    #[serde(rename = "type")]
    change_type: String,
    category: String,
    priority: String,
    risk_level: String,
    services: Vec<String>,
    environments: Vec<String>,
    author: String,
    window_start: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

impl From<ChangeSummary> for ChangeSummaryOut {
    fn from(s: ChangeSummary) -> Self {
        ChangeSummaryOut {
            id: s.id,
            key: ChangeKey(s.number).to_string(),
            title: s.title,
            state: s.state,
            change_type: s.change_type,
            category: s.category,
            priority: s.priority,
            risk_level: s.risk_level,
            services: s.services,
            environments: s.environments,
            author: s.author,
            window_start: s.window_start,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ChangePage {
    items: Vec<ChangeSummaryOut>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next_cursor: Option<String>,
}

impl ChangePage {
    pub fn new(rows: Vec<ChangeSummary>, next_cursor: Option<String>) -> Self {
        ChangePage {
            items: rows.into_iter().map(ChangeSummaryOut::from).collect(),
            next_cursor,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionBody {
    /// Why; required to cancel.
    reason: Option<String>,
}

/// The optional body of a transition: its reason, if one was sent.
pub(super) fn reason_from(body: &Bytes) -> Result<Option<String>, AppError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice::<TransitionBody>(body)
        .map(|b| b.reason)
        .map_err(|e| AppError::invalid("body", e.to_string()))
}

#[derive(Serialize, ToSchema)]
pub struct FieldChangeOut {
    field: String,
    before: String,
    after: String,
}

#[derive(Serialize, ToSchema)]
pub struct RevisionOut {
    number: i32,
    created_at: DateTime<Utc>,
    created_by: String,
    risk_level: String,
    /// What differs from the revision before (empty for the first).
    diff: Vec<FieldChangeOut>,
}

impl From<RevisionRow> for RevisionOut {
    fn from(r: RevisionRow) -> Self {
        RevisionOut {
            number: r.number,
            created_at: r.created_at,
            created_by: r.created_by,
            risk_level: r.risk_level,
            diff: serde_json::from_value::<Vec<FieldChange>>(r.diff)
                .unwrap_or_default()
                .into_iter()
                .map(|f| FieldChangeOut {
                    field: f.field,
                    before: f.before,
                    after: f.after,
                })
                .collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CommentOut {
    id: Uuid,
    author: String,
    body: String,
    created_at: DateTime<Utc>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    body: String,
}

impl From<CommentRow> for CommentOut {
    fn from(c: CommentRow) -> Self {
        CommentOut {
            id: c.id,
            author: c.author,
            body: c.body,
            created_at: c.created_at,
        }
    }
}

impl NewComment {
    pub fn body(&self) -> &str {
        &self.body
    }
}
