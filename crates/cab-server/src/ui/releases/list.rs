//! The list of releases, the ones going out soonest first: each with its
//! key, name and version, state, deployment date, how many changes it holds
//! and what it still needs. The state filter is in the URL; a state the
//! list does not know is named beside the filter.

use askama::Template;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use cab_domain::release::ReleaseState;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{page_of, still_needed};
use crate::page_error::PageResult;
use crate::releases::{self, ReleaseView};
use crate::ui::form::{Choice, FieldErrors, selected_by_text};
use crate::ui::{Layout, Viewer, filters, render};

#[derive(Deserialize, Default)]
pub(crate) struct ListQuery {
    state: Option<String>,
}

/// A release in the list.
struct Row {
    href: String,
    key: String,
    name: String,
    version: String,
    state: ReleaseState,
    deployment: DateTime<Utc>,
    changes: usize,
    needs: Vec<String>,
}

#[derive(Template)]
#[template(path = "releases/list.html")]
struct ListPage {
    layout: Layout,
    rows: Vec<Row>,
    states: Vec<Choice>,
    filtered: bool,
    may_plan: bool,
    errors: FieldErrors,
}

async fn row(viewer: &Viewer, r: &ReleaseView) -> Result<Row, crate::error::AppError> {
    let tally = if r.state == ReleaseState::InReview {
        let mut conn = viewer.state.pool.acquire().await?;
        Some(releases::tally(&mut conn, r).await?)
    } else {
        None
    };
    Ok(Row {
        href: page_of(r),
        key: r.key(),
        name: r.plan.name.clone(),
        version: r.plan.version.clone(),
        state: r.state,
        deployment: r.plan.milestones.deployment,
        changes: r.scope.len(),
        needs: still_needed(r, tally.as_ref()),
    })
}

/// `GET /releases`: every release, or those in one state (`?state=`).
pub(crate) async fn list(
    viewer: Viewer,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> PageResult {
    let q = query.map(|Query(q)| q).unwrap_or_default();
    let wanted = q.state.clone().unwrap_or_default();
    let mut errors = FieldErrors::default();
    let state = match wanted.trim() {
        "" => None,
        s => match ReleaseState::parse(s) {
            Some(state) => Some(state),
            None => {
                errors.insert(
                    "state",
                    format!(
                        "Choose one of the states: {}.",
                        ReleaseState::ALL
                            .iter()
                            .map(|s| s.label().to_lowercase())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                None
            }
        },
    };
    let found = if errors.is_empty() {
        releases::list(&viewer.state.pool, state).await?
    } else {
        Vec::new()
    };
    let mut rows = Vec::with_capacity(found.len());
    for r in &found {
        rows.push(row(&viewer, r).await?);
    }
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = ListPage {
        layout: viewer.layout("Releases"),
        rows,
        states: selected_by_text(ReleaseState::ALL, &wanted, |s| (s.as_str(), s.label())),
        filtered: state.is_some(),
        may_plan: releases::may_plan(&viewer.user),
        errors,
    };
    Ok((status, render(&page)).into_response())
}
