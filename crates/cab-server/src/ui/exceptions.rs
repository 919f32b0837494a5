//! The exceptions page: break-glass deployments (asked for, confirmed by a
//! second person, used) and what runs in production that nobody
//! authorized. Every action goes through `exceptions`, the same code as the
//! API's.

use askama::Template;
use axum::Form;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cab_domain::Role;
use cab_domain::change::ChangeKey;
use chrono::Utc;
use uuid::Uuid;

use super::environments::EnvBadge;
use super::form::{FieldErrors, FormPairs as Pairs, form_value as value};
use super::freezes::readable;
use super::notice::{Notice, redirect_with};
use super::{Layout, Viewer, render};
use crate::deployments::{self, Environment};
use crate::error::AppError;
use crate::exceptions::{self, BreakGlassAsk};
use crate::page_error::PageResult;
use crate::request::Origin;

fn badge(envs: &[Environment], key: &str) -> EnvBadge {
    envs.iter().find(|e| e.rules.key == key).map_or_else(
        || EnvBadge {
            key: key.to_owned(),
            label: key.to_uppercase(),
        },
        EnvBadge::of,
    )
}

/// One break-glass request as the page says it.
pub struct GlassItem {
    pub key: String,
    pub env: EnvBadge,
    pub change_id: Uuid,
    pub change: String,
    pub change_title: String,
    /// The revision and artifact the two people agree to.
    pub what: String,
    pub reason: String,
    pub incident: String,
    pub requester: String,
    pub requested_at: String,
    pub status: String,
    pub confirmed: Option<String>,
    pub deployment: Option<String>,
    pub can_confirm: bool,
}

/// One observation that is a finding.
pub struct FindingItem {
    pub id: Uuid,
    pub env: EnvBadge,
    pub service: String,
    pub digest: String,
    pub short_digest: String,
    pub observed_at: String,
    pub reporter: String,
    pub resolved: Option<String>,
    pub error: Option<String>,
}

#[derive(Default)]
pub struct AskForm {
    pub change: String,
    pub environment: String,
    pub reason: String,
    pub incident: String,
}

#[derive(Template)]
#[template(path = "exceptions/list.html")]
struct ExceptionsPage {
    layout: Layout,
    env_css: String,
    glass: Vec<GlassItem>,
    findings: Vec<FindingItem>,
    production: Vec<EnvBadge>,
    can_request: bool,
    can_resolve: bool,
    form: AskForm,
    errors: FieldErrors,
}

/// Who may confirm: asked of the roles here, and of the change by the
/// service when they press the button.
fn may_confirm(viewer: &Viewer) -> bool {
    !viewer.user.is_service
        && (viewer.user.has(Role::ReleaseManager) || viewer.user.has(Role::CabMember))
}

async fn page(
    viewer: &Viewer,
    form: AskForm,
    errors: FieldErrors,
    finding_error: Option<(Uuid, String)>,
) -> Result<Response, AppError> {
    let now = Utc::now();
    let pool = &viewer.state.pool;
    let envs = {
        let mut conn = pool.acquire().await?;
        deployments::environments(&mut conn).await?
    };
    let glass =
        exceptions::break_glass_list(pool, None, 100)
            .await?
            .into_iter()
            .map(|b| {
                let status = match exceptions::status(&b, now) {
                    "used" => "Used",
                    "expired" if b.confirmed_at.is_some() => "Ran out unused",
                    "expired" => "Nobody confirmed it in time",
                    "confirmed" => "Confirmed",
                    _ => "Waiting for a second person",
                };
                GlassItem {
                    key: format!("BG-{}", b.number),
                    env: badge(&envs, &b.environment),
                    change_id: b.change_id,
                    change: ChangeKey(b.change_number).to_string(),
                    change_title: b.change_title.clone(),
                    what: format!(
                        "Revision {}, artifact {}",
                        b.revision,
                        super::deployments::short_digest(&b.artifact_digest)
                    ),
                    reason: b.reason.clone(),
                    incident: b.incident.clone(),
                    requested_at: readable(&b.requested_at),
                    confirmed: b.confirmer.as_ref().zip(b.confirmed_at.as_ref()).map(
                        |(who, at)| {
                            format!(
                                "Confirmed by {who}, {}; usable until {}.",
                                readable(at),
                                readable(&b.expires_at)
                            )
                        },
                    ),
                    deployment: b.deployment_number.map(|n| format!("DEP-{n}")),
                    can_confirm: status == "Waiting for a second person"
                        && may_confirm(viewer)
                        && b.requested_by != viewer.user.id,
                    requester: b.requester,
                    status: status.to_owned(),
                }
            })
            .collect();
    // Every open finding, then the latest resolved ones.
    let open = exceptions::observed(pool, true, None, 200).await?;
    let resolved = exceptions::observed(pool, false, None, 200)
        .await?
        .into_iter()
        .filter(|o| o.finding && o.resolved_at.is_some())
        .take(20);
    let findings = open
        .into_iter()
        .chain(resolved)
        .map(|o| FindingItem {
            id: o.id,
            env: badge(&envs, &o.environment),
            short_digest: super::deployments::short_digest(&o.artifact_digest),
            digest: o.artifact_digest,
            service: o.service,
            observed_at: readable(&o.observed_at),
            reporter: o.reporter,
            resolved: o.resolved_at.map(|at| {
                format!(
                    "Resolved by {}, {}: {}",
                    o.resolver.unwrap_or_default(),
                    readable(&at),
                    o.resolution
                )
            }),
            error: finding_error
                .as_ref()
                .filter(|(id, _)| *id == o.id)
                .map(|(_, m)| m.clone()),
        })
        .collect();
    let status = if errors.is_empty() && finding_error.is_none() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let may_manage = !viewer.user.is_service
        && (viewer.user.has(Role::ReleaseManager) || viewer.user.has(Role::Admin));
    let page = ExceptionsPage {
        layout: viewer.layout("Exceptions"),
        env_css: super::deployments::stylesheet_url(&envs),
        glass,
        findings,
        production: envs
            .iter()
            .filter(|e| e.rules.production)
            .map(EnvBadge::of)
            .collect(),
        can_request: !viewer.user.is_service && viewer.user.has(Role::ReleaseManager),
        can_resolve: may_manage,
        form,
        errors,
    };
    Ok((status, render(&page)).into_response())
}

pub async fn list(viewer: Viewer) -> PageResult {
    Ok(page(&viewer, AskForm::default(), FieldErrors::default(), None).await?)
}

/// Asks for a break-glass deployment from the form.
pub async fn request(viewer: Viewer, origin: Origin, Form(pairs): Form<Pairs>) -> PageResult {
    let form = AskForm {
        change: value(&pairs, "change"),
        environment: value(&pairs, "environment"),
        reason: value(&pairs, "reason"),
        incident: value(&pairs, "incident"),
    };
    let ask = BreakGlassAsk {
        change: form.change.trim().to_owned(),
        environment: form.environment.clone(),
        reason: form.reason.clone(),
        incident: form.incident.clone(),
    };
    let result = exceptions::request_break_glass(&viewer.state.pool, &viewer.user, &origin, &ask);
    match result.await {
        Ok(b) => Ok(redirect_with(
            &viewer,
            &format!("/exceptions#BG-{}", b.number),
            Notice::BreakGlassRequested { number: b.number },
        )),
        Err(AppError::NotFound(_)) => {
            let mut errors = FieldErrors::default();
            errors.insert("change", "No change has that number.");
            Ok(page(&viewer, form, errors, None).await?)
        }
        Err(e @ (AppError::Invalid { .. } | AppError::Fields(_))) => {
            let errors = FieldErrors::absorb(e, "reason")?;
            Ok(page(&viewer, form, errors, None).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Confirms a break-glass as the second person.
pub async fn confirm(viewer: Viewer, origin: Origin, Path(key): Path<String>) -> PageResult {
    let b =
        exceptions::confirm_break_glass(&viewer.state.pool, &viewer.user, &origin, &key).await?;
    Ok(redirect_with(
        &viewer,
        &format!("/exceptions#BG-{}", b.number),
        Notice::BreakGlassConfirmed { number: b.number },
    ))
}

/// Resolves a finding, saying what it was.
pub async fn resolve(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(pairs): Form<Pairs>,
) -> PageResult {
    let id: Uuid = id.parse().map_err(|_| AppError::NotFound("finding"))?;
    let resolution = value(&pairs, "resolution");
    match exceptions::resolve_finding(&viewer.state.pool, &viewer.user, &origin, id, &resolution)
        .await
    {
        Ok(()) => Ok(redirect_with(
            &viewer,
            "/exceptions#findings",
            Notice::FindingResolved,
        )),
        Err(AppError::Invalid { message, .. }) => Ok(page(
            &viewer,
            AskForm::default(),
            FieldErrors::default(),
            Some((id, message)),
        )
        .await?),
        Err(e) => Err(e.into()),
    }
}
