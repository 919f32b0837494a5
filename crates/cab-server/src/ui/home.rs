//! The dashboard: what needs me, my recent changes, and counts by state.

use askama::Template;
use cab_db::changes::{ChangeFilter, Sort};
use cab_domain::Role;
use cab_domain::change::{self, ChangeState};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::changes::{Row, rows};
use super::reviews::OverdueLines;
use super::{Layout, Viewer, filters, render};
use crate::page_error::PageResult;
use crate::words::People;

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
    /// Overdue post-implementation reviews and action items: all of them
    /// for CAB members and release managers, the viewer's own otherwise.
    overdue: OverdueLines,
    /// Open findings (deployments nobody authorized), for those who
    /// review them.
    findings: Option<i64>,
    /// Break-glass requests waiting for a second person this viewer could be.
    glass_waiting: Vec<GlassNote>,
}

/// A break-glass request waiting for its second person.
struct GlassNote {
    key: String,
    change: Uuid,
    number: i64,
    title: String,
    requester: String,
    until: DateTime<Utc>,
}

/// A comment someone left on one of my changes.
struct CommentNote {
    change: Uuid,
    number: i64,
    title: String,
    who: String,
    at: DateTime<Utc>,
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
            "You file change requests, edit and submit them, and withdraw them while they are open. You can start one from an approved standard-change template. Once one is done you close it with how it ended, write its post-implementation review and work on the action items you own."
        }
        SecurityReviewer => {
            "You take submitted changes from the Assessments queue and write their security impact assessment, and can help write a change's post-implementation review."
        }
        CabMember => {
            "You vote on changes and on releases' go/no-go in the CAB queue (with a printable agenda) and on proposed standard-change templates, close changes with how they ended, write post-implementation reviews and sign off those of changes you did not work on, confirm another person's break-glass deployment, and can cancel a change."
        }
        ReleaseManager => {
            "You plan releases and take them through CAB's go/no-go and their deployment phases, deploy approved changes to production from the change page (never your own, nor one you approved), declare and lift freezes, ask for break-glass deployments or confirm another's, resolve deployments nobody authorized, close changes with how they ended, and sign off the post-implementation reviews of changes you did not work on."
        }
        Auditor => {
            "You read the audit trail, filtered by period, account, kind of event, change or refusals, with a check that its hash chain is intact; you download the events and the approval trail as CSV or NDJSON and take away an evidence pack for a period; and you read every change's approval trail and timeline."
        }
        Admin => {
            "You manage accounts, service accounts and their API tokens, the quorum policy and when post-implementation reviews are due, the environments and where each pipeline may deploy, and standard-change templates, and can cancel or close a change. It gives no power to assess, vote on or deploy changes."
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
    let people = People::load(&mut conn).await?;
    let user = &viewer.user;
    let overdue = super::reviews::overdue(&mut conn, user, &people).await?;
    let reviews_findings = [Role::ReleaseManager, Role::Admin, Role::Auditor]
        .iter()
        .any(|r| user.has(*r));
    let findings = if reviews_findings {
        Some(cab_db::exceptions::open_findings(&mut conn).await?)
    } else {
        None
    };
    let now = chrono::Utc::now();
    let glass_waiting = if user.has(Role::ReleaseManager) || user.has(Role::CabMember) {
        cab_db::exceptions::break_glass(&mut conn, None, None, 20)
            .await?
            .into_iter()
            .filter(|b| b.confirmed_at.is_none() && b.expires_at > now && b.requested_by != me)
            .map(|b| GlassNote {
                key: format!("BG-{}", b.number),
                change: b.change_id,
                number: b.change_number,
                title: b.change_title,
                requester: people.name(&b.requester),
                until: b.expires_at,
            })
            .collect()
    } else {
        Vec::new()
    };
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
        overdue,
        findings,
        glass_waiting,
    };
    Ok(render(&page))
}
