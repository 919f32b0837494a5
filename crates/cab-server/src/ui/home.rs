//! The dashboard: what needs me, my recent changes, and counts by state.

use askama::Template;
use axum::response::Response;
use cab_db::changes::{ChangeFilter, Sort};
use cab_domain::Role;
use cab_domain::change::ChangeState;

use super::changes::Row;
use super::{Layout, Viewer, render, when};
use crate::error::AppError;

#[derive(Template)]
#[template(path = "home.html")]
struct Dashboard {
    layout: Layout,
    name: String,
    roles: Vec<(&'static str, &'static str)>,
    can_create: bool,
    counts: Vec<(&'static str, &'static str, i64)>,
    drafts: Vec<Row>,
    comments: Vec<(String, String, String, String, String)>,
    recent: Vec<Row>,
    overdue: Vec<(String, String, String, String)>,
}

fn role_summary(role: Role) -> &'static str {
    use Role::*;
    match role {
        Engineer => "You file change requests and see them through.",
        SecurityReviewer => "You assess the security impact of submitted changes.",
        CabMember => "You vote on changes under the quorum policy.",
        ReleaseManager => "You plan releases and promote changes between environments.",
        Auditor => "You read and export the approval and audit trail.",
        Admin => {
            "You manage users, service accounts and settings. This gives no approval or deployment power."
        }
    }
}

pub async fn dashboard(viewer: Viewer) -> Response {
    let shown = async {
        let me = viewer.user.id;
        let mut conn = viewer.state.pool.acquire().await?;
        let counted = cab_db::changes::counts_by_state(&mut conn, None).await?;
        let counts = ChangeState::ALL
            .iter()
            .map(|s| {
                let n = counted
                    .iter()
                    .find(|(k, _)| k == s.as_str())
                    .map_or(0, |(_, n)| *n);
                (s.as_str(), s.label(), n)
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
        let overdue =
            cab_db::decisions::overdue_retrospectives(&mut conn, chrono::Utc::now()).await?;
        let page = Dashboard {
            layout: viewer.layout("Dashboard"),
            name: if viewer.user.display_name.is_empty() {
                viewer.user.username.clone()
            } else {
                viewer.user.display_name.clone()
            },
            roles: viewer
                .user
                .roles
                .iter()
                .map(|r| (r.label(), role_summary(r)))
                .collect(),
            can_create: viewer.user.has(Role::Engineer),
            counts,
            drafts: drafts.into_iter().map(Row::from).collect(),
            comments: comments
                .into_iter()
                .map(|(id, n, title, who, at)| {
                    (id.to_string(), format!("CHG-{n}"), title, who, when(&at))
                })
                .collect(),
            recent: recent.into_iter().map(Row::from).collect(),
            overdue: overdue
                .into_iter()
                .map(|(id, n, title, due)| (id.to_string(), format!("CHG-{n}"), title, when(&due)))
                .collect(),
        };
        Ok::<_, AppError>(render(&page))
    };
    shown.await.unwrap_or_else(|e| viewer.error(e))
}
