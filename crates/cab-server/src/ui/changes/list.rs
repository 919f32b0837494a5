//! The list of change requests: the filter and sort as a shareable query
//! string, one page of rows at a time with a cursor to the next, and the
//! filter's choices with the current one selected.

use askama::Template;
use axum::extract::Query;
use cab_db::changes::Sort;
use cab_domain::change::{self, Category, ChangeState, ChangeType};
use cab_domain::risk::RiskLevel;

use super::{Row, rows};
use crate::change_list::{ListQuery, page};
use crate::page_error::PageResult;
use crate::ui::form::{Choice, selected_by_text};
use crate::ui::{Layout, Viewer, filters, message, render, urlencode};

#[derive(Template)]
#[template(path = "changes/list.html")]
struct ListPage {
    layout: Layout,
    rows: Vec<Row>,
    next: Option<String>,
    q: String,
    service: String,
    author: String,
    mine: bool,
    states: Vec<Choice>,
    types: Vec<Choice>,
    risks: Vec<Choice>,
    categories: Vec<Choice>,
    sorts: Vec<Choice>,
    can_create: bool,
    error: Option<String>,
}

/// The filter as a query string, without the cursor: the shareable view.
fn query_string(q: &ListQuery) -> String {
    let pairs: Vec<(&str, &Option<String>)> = vec![
        ("q", &q.q),
        ("state", &q.state),
        ("type", &q.change_type),
        ("risk", &q.risk),
        ("category", &q.category),
        ("service", &q.service),
        ("author", &q.author),
        ("mine", &q.mine),
        ("sort", &q.sort),
    ];
    pairs
        .into_iter()
        .filter_map(|(k, v)| {
            v.as_ref()
                .filter(|v| !v.is_empty())
                .map(|v| format!("{k}={}", urlencode(v)))
        })
        .collect::<Vec<_>>()
        .join("&")
}

pub(crate) async fn list(
    viewer: Viewer,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let q = query.map(|Query(q)| q).unwrap_or_default();
    let one = |v: &Option<String>| v.clone().unwrap_or_default();
    let (rows, next, error) = match q.filter(viewer.user.id) {
        Ok(filter) => {
            let (found, next) = page(&viewer.state.pool, &filter, 50).await?;
            (rows(found)?, next, None)
        }
        Err(e) => (Vec::new(), None, Some(message(&e))),
    };
    let base = query_string(&q);
    let state_now = one(&q.state);
    let type_now = one(&q.change_type);
    let risk_now = one(&q.risk);
    let cat_now = one(&q.category);
    let sort_now = q.sort.clone().unwrap_or_else(|| "newest".into());
    let page = ListPage {
        layout: viewer.layout("Changes"),
        rows,
        next: next.map(|c| {
            if base.is_empty() {
                format!("?cursor={c}")
            } else {
                format!("?{base}&cursor={c}")
            }
        }),
        q: one(&q.q),
        service: one(&q.service),
        author: one(&q.author),
        mine: matches!(q.mine.as_deref(), Some("true" | "on" | "1")),
        states: selected_by_text(ChangeState::ALL, &state_now, |v| (v.as_str(), v.label())),
        types: selected_by_text(ChangeType::ALL, &type_now, |v| (v.as_str(), v.label())),
        risks: selected_by_text(&RiskLevel::ALL, &risk_now, |v| (v.as_str(), v.label())),
        categories: selected_by_text(Category::ALL, &cat_now, |v| (v.as_str(), v.label())),
        sorts: selected_by_text(&Sort::ALL, &sort_now, |v| (v.as_str(), v.label())),
        can_create: change::check_create(&viewer.user.actor()).is_ok(),
        error,
    };
    Ok(render(&page))
}
