//! The dashboard: what needs me, my recent changes, and counts by state.

use askama::Template;
use cab_db::changes::{ChangeFilter, Sort};
use cab_domain::Role;
use cab_domain::change::{self, ChangeState};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::changes::{Row, rows};
use super::words::People;
use super::{Layout, Viewer, filters, render};
use crate::page_error::PageResult;

#[derive(Template)]
#[template(path = "home.html")]
struct Dashboard {
    layout: Layout,
    name: String,
    roles: Vec<Role>,
    can_create: bool,
    counts: Vec<StateCount>,
    drafts: Vec<Row>,
    comments: Vec<CommentNote>,
    recent: Vec<Row>,
    overdue: Vec<OverdueNote>,
}

/// A comment someone left on one of my changes.
struct CommentNote {
    change: Uuid,
    number: i64,
    title: String,
    who: String,
    at: DateTime<Utc>,
}

/// An emergency change whose retrospective review is overdue.
struct OverdueNote {
    change: Uuid,
    number: i64,
    title: String,
    due: DateTime<Utc>,
}

/// How many changes are in one state.
struct StateCount {
    state: ChangeState,
    count: i64,
}

impl Dashboard {
    fn summary(&self, role: &Role) -> &'static str {
        role_summary(*role)
    }
}

/// What each role does in CAB today: only what its pages offer.
fn role_summary(role: Role) -> &'static str {
    use Role::*;
    match role {
        Engineer => {
            "You file change requests, edit and submit them, and withdraw them while they are open. You can start one from an approved standard-change template."
        }
        SecurityReviewer => {
            "You take submitted changes from the Assessments queue and write their security impact assessment."
        }
        CabMember => {
            "You vote on changes in the CAB queue (with a printable agenda) and on proposed standard-change templates, record the retrospective review of emergency changes, and can cancel a change."
        }
        ReleaseManager => {
            "You see every change with its planned window and approval trail, and can cancel a change."
        }
        Auditor => {
            "You read the audit trail, with a check that its hash chain is intact, and every change's approval trail and timeline."
        }
        Admin => {
            "You manage accounts, service accounts and their API tokens, the quorum policy and standard-change templates, and can cancel a change. It gives no power to assess or vote on changes."
        }
    }
}

pub async fn dashboard(viewer: Viewer) -> PageResult {
    let me = viewer.user.id;
    let mut conn = viewer.state.pool.acquire().await?;
    let counted = cab_db::changes::counts_by_state(&mut conn, None).await?;
    let counts = ChangeState::ALL
        .iter()
        .map(|s| StateCount {
            state: *s,
            count: counted
                .iter()
                .find(|(k, _)| k == s.as_str())
                .map_or(0, |(_, n)| *n),
        })
        .collect();
    let drafts = cab_db::changes::list(
        &mut conn,
        &ChangeFilter {
            state: Some(ChangeState::Draft.as_str().into()),
            involving: Some(me),
            sort: Sort::Updated,
            ..ChangeFilter::default()
        },
        10,
    )
    .await?;
    let recent = cab_db::changes::list(
        &mut conn,
        &ChangeFilter {
            involving: Some(me),
            sort: Sort::Updated,
            ..ChangeFilter::default()
        },
        10,
    )
    .await?;
    let comments = cab_db::changes::comments_for_author(&mut conn, me, 10).await?;
    let overdue = cab_db::decisions::overdue_retrospectives(&mut conn, chrono::Utc::now()).await?;
    let people = People::load(&mut conn).await?;
    let page = Dashboard {
        layout: viewer.layout("Dashboard"),
        name: if viewer.user.display_name.is_empty() {
            viewer.user.username.clone()
        } else {
            viewer.user.display_name.clone()
        },
        roles: viewer.user.roles.iter().collect(),
        can_create: change::check_create(&viewer.user.actor()).is_ok(),
        counts,
        drafts: rows(drafts)?,
        comments: comments
            .into_iter()
            .map(|(change, number, title, who, at)| CommentNote {
                change,
                number,
                title,
                who: people.name(&who),
                at,
            })
            .collect(),
        recent: rows(recent)?,
        overdue: overdue
            .into_iter()
            .map(|(change, number, title, due)| OverdueNote {
                change,
                number,
                title,
                due,
            })
            .collect(),
    };
    Ok(render(&page))
}
