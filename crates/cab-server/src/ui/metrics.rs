//! The metrics page: a chart per measure over time, each with the table of
//! its values beside it, the filter in the URL (so a view can be shared and
//! bookmarked), and the same figures as `GET /api/v1/metrics`.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Utc};

use super::chart::{Chart, Mark, Series, number};
use super::form::FieldErrors;
use super::{Layout, Viewer, render};
use crate::error::AppError;
use crate::metrics::{self, Figures, MetricsQuery, Report};
use crate::page_error::PageResult;
use crate::state::AppState;

/// One choice of a filter's list.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub chosen: bool,
}

/// One measure: its chart, and its table's header and rows.
pub struct Measure {
    pub id: &'static str,
    pub title: &'static str,
    pub explain: &'static str,
    pub svg: String,
    pub columns: Vec<String>,
    pub rows: Vec<(String, Vec<String>)>,
}

/// A headline figure for the whole period.
pub struct Headline {
    pub label: &'static str,
    pub value: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "metrics.html")]
struct MetricsPage {
    layout: Layout,
    query: MetricsQuery,
    buckets: Vec<Choice>,
    services: Vec<Choice>,
    environments: Vec<Choice>,
    errors: FieldErrors,
    scope: String,
    headlines: Vec<Headline>,
    measures: Vec<Measure>,
    quality: String,
    /// Changes whose latest records are not in the figures yet, in words.
    pending: String,
    api_url: String,
}

fn hours(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |h| format!("{} h", number(h)))
}

fn minutes(v: Option<f64>) -> String {
    v.map_or_else(
        || "–".into(),
        |m| {
            if m >= 120.0 {
                format!("{} h", number(m / 60.0))
            } else {
                format!("{} min", number(m))
            }
        },
    )
}

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |r| format!("{}%", number(r * 100.0)))
}

fn label(start: NaiveDate, bucket: &str) -> String {
    if bucket == "month" {
        start.format("%b %Y").to_string()
    } else {
        format!("Week of {}", start.format("%-d %b %Y"))
    }
}

fn short_label(start: NaiveDate, bucket: &str) -> String {
    if bucket == "month" {
        start.format("%b %y").to_string()
    } else {
        start.format("%-d %b").to_string()
    }
}

fn series(
    name: &str,
    mark: Mark,
    buckets: &[Figures],
    f: impl Fn(&Figures) -> Option<f64>,
) -> Series {
    Series {
        name: name.into(),
        values: buckets.iter().map(f).collect(),
        mark,
    }
}

fn measures(r: &Report) -> Vec<Measure> {
    let b = &r.buckets;
    let labels: Vec<String> = b.iter().map(|f| short_label(f.start, &r.bucket)).collect();
    let rows = |cells: &dyn Fn(&Figures) -> Vec<String>| -> Vec<(String, Vec<String>)> {
        b.iter()
            .chain(std::iter::once(&r.total))
            .enumerate()
            .map(|(i, f)| {
                let name = if i == b.len() {
                    "Whole period".to_owned()
                } else {
                    label(f.start, &r.bucket)
                };
                (name, cells(f))
            })
            .collect()
    };
    let chart = |id: &str, title: &str, unit: &str, percent: bool, series: Vec<Series>| {
        Chart {
            id: format!("chart-{id}"),
            title: title.into(),
            unit: unit.into(),
            labels: labels.clone(),
            series,
            percent,
        }
        .svg()
    };
    let risk_series: Vec<Series> = ["low", "medium", "high", "critical"]
        .iter()
        .enumerate()
        .map(|(k, risk)| {
            let name = r.total.approval_lead_time[k].risk_label.clone();
            Series {
                name: format!("{name} risk, median"),
                values: b
                    .iter()
                    .map(|f| {
                        f.approval_lead_time
                            .iter()
                            .find(|a| a.risk == *risk)
                            .and_then(|a| a.p50_hours)
                    })
                    .collect(),
                mark: if k % 2 == 0 { Mark::Line } else { Mark::Dashed },
            }
        })
        .collect();
    vec![
        Measure {
            id: "deployment-frequency",
            title: "Deployment frequency",
            explain: "Successful production deployments in each period, and the median time between two of them.",
            svg: chart(
                "deployment-frequency",
                "Successful deployments",
                "deployments",
                false,
                vec![series("Successful deployments", Mark::Bar, b, |f| {
                    Some(f.deployment_frequency.deployments as f64)
                })],
            ),
            columns: vec![
                "Successful deployments".into(),
                "Per day".into(),
                "Median gap".into(),
            ],
            rows: rows(&|f| {
                vec![
                    f.deployment_frequency.deployments.to_string(),
                    number(f.deployment_frequency.per_day),
                    hours(f.deployment_frequency.median_gap_hours),
                ]
            }),
        },
        Measure {
            id: "lead-time",
            title: "Lead time for changes",
            explain: "From the first commit, when the deployment reported its commits, or else from submission, to the change's first successful deployment. The table says how many start where.",
            svg: chart(
                "lead-time",
                "Lead time for changes, hours",
                "hours",
                false,
                vec![
                    series("Median", Mark::Line, b, |f| f.lead_time.p50_hours),
                    series("90th percentile", Mark::Dashed, b, |f| {
                        f.lead_time.p90_hours
                    }),
                ],
            ),
            columns: vec![
                "Changes".into(),
                "Median".into(),
                "90th percentile".into(),
                "From first commit".into(),
                "From submission".into(),
            ],
            rows: rows(&|f| {
                vec![
                    f.lead_time.changes.to_string(),
                    hours(f.lead_time.p50_hours),
                    hours(f.lead_time.p90_hours),
                    f.lead_time.from_commit.to_string(),
                    f.lead_time.from_submission.to_string(),
                ]
            }),
        },
        Measure {
            id: "change-failure-rate",
            title: "Change failure rate",
            explain: "Deployments that failed, were rolled back, needed an intervention or caused an incident, over all the deployments that ended. Each deployment counts once, so the rate never passes 100%.",
            svg: chart(
                "change-failure-rate",
                "Change failure rate",
                "%",
                true,
                vec![series("Failure rate", Mark::Line, b, |f| {
                    f.change_failure_rate.rate
                })],
            ),
            columns: vec!["Failed".into(), "Deployments".into(), "Failure rate".into()],
            rows: rows(&|f| {
                vec![
                    f.change_failure_rate.failed.to_string(),
                    f.change_failure_rate.deployments.to_string(),
                    percent(f.change_failure_rate.rate),
                ]
            }),
        },
        Measure {
            id: "recovery-time",
            title: "Failed deployment recovery time",
            explain: "From a failure to the restoration of service: the end of the incidents it caused, else its rollback, else the next successful deployment of its services.",
            svg: chart(
                "recovery-time",
                "Recovery time, minutes",
                "minutes",
                false,
                vec![
                    series("Median", Mark::Line, b, |f| f.recovery_time.p50_minutes),
                    series("90th percentile", Mark::Dashed, b, |f| {
                        f.recovery_time.p90_minutes
                    }),
                ],
            ),
            columns: vec![
                "Failures".into(),
                "Median".into(),
                "90th percentile".into(),
                "Not restored yet".into(),
            ],
            rows: rows(&|f| {
                vec![
                    f.recovery_time.failures.to_string(),
                    minutes(f.recovery_time.p50_minutes),
                    minutes(f.recovery_time.p90_minutes),
                    f.recovery_time.unrecovered.to_string(),
                ]
            }),
        },
        Measure {
            id: "emergency-share",
            title: "Emergency and break-glass changes",
            explain: "Emergency changes among the changes first deployed in each period, and break-glass deployments among the deployments.",
            svg: chart(
                "emergency-share",
                "Share of emergency changes and break-glass deployments",
                "%",
                true,
                vec![
                    series("Emergency changes", Mark::Line, b, |f| {
                        f.emergency.emergency_share
                    }),
                    series("Break-glass deployments", Mark::Dashed, b, |f| {
                        f.emergency.break_glass_share
                    }),
                ],
            ),
            columns: vec![
                "Changes deployed".into(),
                "Emergency".into(),
                "Share".into(),
                "Break-glass deployments".into(),
                "Share".into(),
            ],
            rows: rows(&|f| {
                vec![
                    f.emergency.changes.to_string(),
                    f.emergency.emergency.to_string(),
                    percent(f.emergency.emergency_share),
                    f.emergency.break_glass.to_string(),
                    percent(f.emergency.break_glass_share),
                ]
            }),
        },
        Measure {
            id: "approval-lead-time",
            title: "Approval lead time by risk level",
            explain: "From submission to CAB's decision, by the engineer's risk level, for the decisions made in each period. Decisions are not deployed anywhere: the environment filter does not apply.",
            svg: chart(
                "approval-lead-time",
                "Approval lead time, median hours by risk level",
                "hours",
                false,
                risk_series,
            ),
            columns: r
                .total
                .approval_lead_time
                .iter()
                .map(|a| format!("{} risk: decided, median, 90th percentile", a.risk_label))
                .collect(),
            rows: rows(&|f| {
                f.approval_lead_time
                    .iter()
                    .map(|a| {
                        format!(
                            "{}, {}, {}",
                            a.decided,
                            hours(a.p50_hours),
                            hours(a.p90_hours)
                        )
                    })
                    .collect()
            }),
        },
    ]
}

fn headlines(r: &Report) -> Vec<Headline> {
    let t = &r.total;
    vec![
        Headline {
            label: "Deployment frequency",
            value: format!("{} a day", number(t.deployment_frequency.per_day)),
            detail: format!(
                "{} successful deployments; median gap {}",
                t.deployment_frequency.deployments,
                hours(t.deployment_frequency.median_gap_hours)
            ),
        },
        Headline {
            label: "Lead time for changes",
            value: hours(t.lead_time.p50_hours),
            detail: format!(
                "median; 90th percentile {}; {} of {} changes from the first commit",
                hours(t.lead_time.p90_hours),
                t.lead_time.from_commit,
                t.lead_time.changes
            ),
        },
        Headline {
            label: "Change failure rate",
            value: percent(t.change_failure_rate.rate),
            detail: format!(
                "{} of {} deployments",
                t.change_failure_rate.failed, t.change_failure_rate.deployments
            ),
        },
        Headline {
            label: "Recovery time",
            value: minutes(t.recovery_time.p50_minutes),
            detail: format!(
                "median; 90th percentile {}; {} not restored yet",
                minutes(t.recovery_time.p90_minutes),
                t.recovery_time.unrecovered
            ),
        },
        Headline {
            label: "Emergency changes",
            value: percent(t.emergency.emergency_share),
            detail: format!(
                "{} of {} changes; break-glass {} of deployments",
                t.emergency.emergency,
                t.emergency.changes,
                percent(t.emergency.break_glass_share)
            ),
        },
    ]
}

/// `GET /measures`: the page, for everyone signed in. (`/metrics` is the
/// operators' Prometheus endpoint.)
pub async fn page(
    viewer: Viewer,
    State(state): State<AppState>,
    query: Result<Query<MetricsQuery>, axum::extract::rejection::QueryRejection>,
) -> PageResult {
    let q = query.map(|Query(q)| q).unwrap_or_default();
    Ok(show(&viewer, &state, q).await?)
}

async fn show(viewer: &Viewer, state: &AppState, q: MetricsQuery) -> Result<Response, AppError> {
    let envs = {
        let mut conn = state.pool.acquire().await?;
        crate::deployments::environments(&mut conn).await?
    };
    let keys: Vec<String> = envs.iter().map(|e| e.rules.key.clone()).collect();
    let known = {
        let mut conn = state.pool.acquire().await?;
        cab_db::metrics::services(&mut conn).await?
    };
    let chosen = |v: &Option<String>, value: &str| v.as_deref().map(str::trim) == Some(value);
    let mut environments = vec![Choice {
        value: String::new(),
        label: "Every production environment".into(),
        chosen: q.environment.as_deref().is_none_or(|e| e.trim().is_empty()),
    }];
    environments.extend(envs.iter().map(|e| Choice {
        value: e.rules.key.clone(),
        label: e.rules.label.clone(),
        chosen: chosen(&q.environment, &e.rules.key),
    }));
    let mut services = vec![Choice {
        value: String::new(),
        label: "All services".into(),
        chosen: q.service.as_deref().is_none_or(|s| s.trim().is_empty()),
    }];
    services.extend(known.iter().map(|s| Choice {
        value: s.clone(),
        label: s.clone(),
        chosen: chosen(&q.service, s),
    }));
    let buckets = ["week", "month"]
        .iter()
        .map(|b| Choice {
            value: (*b).into(),
            label: if *b == "week" { "Week" } else { "Month" }.into(),
            chosen: q.bucket.as_deref().map_or(*b == "week", |v| v.trim() == *b),
        })
        .collect();
    let api_url = format!(
        "/api/v1/metrics?{}",
        serde_urlencoded::to_string(&q).unwrap_or_default()
    );
    let selected = q.select(Utc::now().date_naive(), &keys);
    let (status, errors, report) = match selected {
        Ok(sel) => (
            StatusCode::OK,
            FieldErrors::default(),
            Some(metrics::report(&state.pool, &state.measures, &sel).await?),
        ),
        Err(e) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            FieldErrors::absorb(e, "from")?,
            None,
        ),
    };
    let scope = report.as_ref().map_or_else(String::new, |r| {
        let env = r.environment.as_deref().map_or_else(
            || "every production environment".to_owned(),
            |k| {
                envs.iter()
                    .find(|e| e.rules.key == k)
                    .map_or_else(|| k.to_owned(), |e| e.rules.label.clone())
            },
        );
        format!(
            "{} to {}, by {}, {}, {}.",
            r.from.format("%-d %b %Y"),
            r.to.format("%-d %b %Y"),
            r.bucket,
            r.service
                .as_deref()
                .map_or_else(|| "all services".to_owned(), |s| format!("service {s}")),
            env
        )
    });
    let quality = report.as_ref().map_or_else(String::new, |r| {
        let d = &r.data_quality;
        format!(
            "{} of {} deployments reported no commits (their changes' lead time starts at submission); {} incidents named by a break-glass are in no review; {} incidents in reviews have a cause still only suspected.",
            d.deployments_without_commits,
            d.deployments,
            d.incidents_unlinked,
            d.incidents_undetermined
        )
    });
    let pending = report
        .as_ref()
        .filter(|r| r.changes_pending > 0)
        .map_or_else(String::new, |r| {
            format!(
                "The latest records of {} changes are not in these figures yet; they are being added.",
                r.changes_pending
            )
        });
    let page = MetricsPage {
        layout: viewer.layout("Metrics"),
        headlines: report.as_ref().map(headlines).unwrap_or_default(),
        measures: report.as_ref().map(measures).unwrap_or_default(),
        query: q,
        buckets,
        services,
        environments,
        errors,
        scope,
        quality,
        pending,
        api_url,
    };
    Ok((status, render(&page)).into_response())
}
