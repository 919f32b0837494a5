//! The dashboard: where a signed-in person starts.

use askama::Template;
use axum::response::Response;

use super::{Layout, Viewer, render};

#[derive(Template)]
#[template(path = "home.html")]
struct Dashboard {
    layout: Layout,
    name: String,
    roles: Vec<(&'static str, &'static str)>,
}

fn role_summary(role: cab_domain::Role) -> &'static str {
    use cab_domain::Role::*;
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
    };
    render(&page)
}
