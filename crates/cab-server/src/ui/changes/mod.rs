//! Change-request pages: the list, the form (new and edit), the detail page
//! with revisions, comments and timeline, and the actions on it. This is the
//! hall between those rooms: it names them, hands their handlers to the
//! router, and keeps what more than one of them needs, the change a path
//! names and a change as a row of a list (the dashboard shows rows too).

mod actions;
mod detail;
mod form;
mod list;

pub(super) use actions::{cancel, comment, submit, withdraw};
pub(super) use detail::{detail_page, detail_page_with, show};
pub(super) use form::{create, edit_form, new_form, offsets, parse_offset, preview_risk, update};
pub(super) use list::list;

use cab_db::changes::ChangeSummary;
use cab_domain::change::{ChangeState, ChangeType};
use cab_domain::risk::RiskLevel;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Viewer;
use crate::changes::{self, ChangeView};
use crate::error::AppError;
use crate::words::stored;

async fn load(viewer: &Viewer, raw: &str) -> Result<ChangeView, AppError> {
    let id = changes::resolve_id(&viewer.state.pool, raw).await?;
    changes::load(&viewer.state.pool, id).await
}

/// A change in a list.
pub(super) struct Row {
    pub id: Uuid,
    pub number: i64,
    pub title: String,
    pub state: ChangeState,
    pub change_type: ChangeType,
    pub risk: RiskLevel,
    pub services: String,
    pub environments: String,
    pub author: String,
    /// When the planned window opens, if it is planned yet.
    pub window: Option<DateTime<Utc>>,
    pub updated: DateTime<Utc>,
}

impl TryFrom<ChangeSummary> for Row {
    type Error = AppError;

    fn try_from(s: ChangeSummary) -> Result<Self, AppError> {
        Ok(Row {
            id: s.id,
            number: s.number,
            state: stored(ChangeState::parse(&s.state), "state", &s.state)?,
            change_type: stored(ChangeType::parse(&s.change_type), "type", &s.change_type)?,
            risk: stored(RiskLevel::parse(&s.risk_level), "risk level", &s.risk_level)?,
            title: s.title,
            services: s.services.join(", "),
            environments: s.environments.join(", "),
            author: s.author,
            window: s.window_start,
            updated: s.updated_at,
        })
    }
}

/// Rows for a list page.
pub(super) fn rows(summaries: Vec<ChangeSummary>) -> Result<Vec<Row>, AppError> {
    summaries.into_iter().map(Row::try_from).collect()
}
