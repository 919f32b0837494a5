//! The list of change requests: the filters and sort as a query string
//! reads them, and one page of rows at a time with the cursor of the next.
//! The list page and `GET /api/v1/changes` both read it from here.

use cab_db::changes::{ChangeFilter, ChangeSummary, Cursor, Sort};
use cab_domain::change::{Category, ChangeState, ChangeType};
use cab_domain::risk::RiskLevel;
use cab_domain::text;
use serde::Deserialize;
use sqlx::PgPool;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::error::AppError;
use crate::vocab;

/// Filters shared by the change list page and the API.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub state: Option<String>,
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub change_type: Option<String>,
    pub risk: Option<String>,
    pub category: Option<String>,
    pub service: Option<String>,
    /// Author's username.
    pub author: Option<String>,
    /// `true`: only changes I wrote or contributed to.
    pub mine: Option<String>,
    /// Words to find in titles and descriptions (web search syntax).
    pub q: Option<String>,
    /// newest (default), oldest, updated, window, risk
    pub sort: Option<String>,
    pub cursor: Option<String>,
    /// 1 to 200, default 50.
    pub limit: Option<i64>,
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// A filter word as sent, once it is known to be one of `T`'s words.
fn known<T: cab_domain::Vocabulary>(
    field: &str,
    v: Option<String>,
) -> Result<Option<String>, AppError> {
    v.map(|v| {
        vocab::word_or::<T>(field, &v, |raw| {
            format!("{} is not a known {field}.", text::quoted(raw))
        })
        .map(|_| v)
    })
    .transpose()
}

impl ListQuery {
    /// The store's filter; unknown values are errors naming the parameter.
    pub fn filter(&self, me: Uuid) -> Result<ChangeFilter, AppError> {
        Ok(ChangeFilter {
            state: known::<ChangeState>("state", nonempty(&self.state))?,
            change_type: known::<ChangeType>("type", nonempty(&self.change_type))?,
            risk: known::<RiskLevel>("risk", nonempty(&self.risk))?,
            category: known::<Category>("category", nonempty(&self.category))?,
            service: nonempty(&self.service).map(|s| s.to_lowercase()),
            author: nonempty(&self.author).map(|s| s.to_lowercase()),
            involving: matches!(self.mine.as_deref(), Some("true" | "on" | "1")).then_some(me),
            text: nonempty(&self.q).map(|q| q.chars().take(200).collect()),
            sort: match nonempty(&self.sort) {
                None => Sort::default(),
                Some(s) => Sort::parse(&s).ok_or_else(|| {
                    AppError::invalid("sort", format!("{} is not a known sort.", text::quoted(&s)))
                })?,
            },
            after: match nonempty(&self.cursor) {
                None => None,
                Some(c) => Some(
                    Cursor::decode(&c)
                        .ok_or_else(|| AppError::invalid("cursor", "This cursor is not valid."))?,
                ),
            },
        })
    }

    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(50).clamp(1, 200)
    }
}

/// Lists a page and the cursor of the next one. A search for a control
/// character finds nothing, since no stored text holds one.
pub async fn page(
    pool: &PgPool,
    filter: &ChangeFilter,
    limit: i64,
) -> Result<(Vec<ChangeSummary>, Option<String>), AppError> {
    let searched = [&filter.text, &filter.service, &filter.author];
    if searched
        .into_iter()
        .flatten()
        .any(|s| !text::is_searchable(s))
    {
        return Ok((Vec::new(), None));
    }
    let mut conn = pool.acquire().await?;
    let mut rows = cab_db::changes::list(&mut conn, filter, limit + 1).await?;
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.cursor(filter.sort).encode())
    } else {
        None
    };
    Ok((rows, next))
}
