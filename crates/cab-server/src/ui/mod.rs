//! HTML pages. They work without JavaScript; every state-changing form is a
//! POST carrying a CSRF token (checked centrally in `middleware::csrf_guard`).

mod admin;
mod audit;
mod calendar;
mod changes;
mod chart;
mod decisions;
mod deployments;
mod environments;
mod exceptions;
mod filters;
mod form;
mod freezes;
mod home;
mod login;
mod metrics;
pub mod notice;
mod releases;
mod reviews;
mod standard_templates;

pub use crate::auth::{login_binding, session_binding};

use std::sync::{Arc, OnceLock};

use askama::Template;
use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cab_domain::{Role, RoleSet};

use crate::auth::{self, CurrentUser, SESSION_COOKIE};
use crate::error::AppError;
use crate::page_error::{PageError, Unrendered};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home::dashboard))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/admin/users", get(admin::list).post(admin::create))
        .route("/admin/users/{id}", get(admin::show))
        .route("/admin/users/{id}/roles", post(admin::set_roles))
        .route("/admin/users/{id}/disable", post(admin::disable))
        .route("/admin/users/{id}/tokens", post(admin::issue_token))
        .route(
            "/admin/users/{id}/tokens/{token_id}/revoke",
            post(admin::revoke_token),
        )
        .route(
            "/admin/users/{id}/role-grants/{grant_id}/confirm",
            post(admin::confirm_grant),
        )
        .route(
            "/admin/users/{id}/role-grants/{grant_id}/cancel",
            post(admin::cancel_grant),
        )
        .route("/audit", get(audit::trail))
        .route("/audit/export", get(audit::export))
        .route("/audit/evidence", get(audit::evidence_form))
        .route("/audit/evidence/pack", get(audit::evidence_pack))
        .route("/changes", get(changes::list))
        .route("/changes/new", get(changes::new_form).post(changes::create))
        .route("/changes/risk-preview", get(changes::preview_risk))
        .route("/changes/{id}", get(changes::show))
        .route(
            "/changes/{id}/edit",
            get(changes::edit_form).post(changes::update),
        )
        .route("/changes/{id}/submit", post(changes::submit))
        .route("/changes/{id}/withdraw", post(changes::withdraw))
        .route("/changes/{id}/cancel", post(changes::cancel))
        .route("/changes/{id}/comments", post(changes::comment))
        .route("/changes/{id}/deployments", post(deployments::authorize))
        .route("/releases", get(releases::list))
        .route(
            "/releases/new",
            get(releases::new_form).post(releases::create),
        )
        .route("/releases/{id}", get(releases::show))
        .route(
            "/releases/{id}/edit",
            get(releases::edit_form).post(releases::update),
        )
        .route("/releases/{id}/changes", post(releases::add_change))
        .route(
            "/releases/{id}/changes/{change}/remove",
            post(releases::remove_change),
        )
        .route("/releases/{id}/submit", post(releases::submit))
        .route("/releases/{id}/votes", post(releases::vote))
        .route("/releases/{id}/advance", post(releases::advance))
        .route("/releases/{id}/rollback", post(releases::roll_back))
        .route("/releases/{id}/cancel", post(releases::cancel))
        .route("/calendar", get(calendar::page))
        .route(
            "/calendar/feeds",
            get(calendar::feeds).post(calendar::create_feed),
        )
        .route("/calendar/feeds/{id}/revoke", post(calendar::revoke_feed))
        // The route, not the path, is what the request log says for it:
        // the path holds the feed's secret.
        .route(crate::calendar::FEED_ROUTE, get(calendar::feed))
        .route(
            "/admin/maintenance",
            get(calendar::maintenance).post(calendar::add_period),
        )
        .route(
            "/admin/maintenance/{id}/remove",
            post(calendar::remove_period),
        )
        .route("/admin/maintenance/limit", post(calendar::set_limit))
        .route("/deployments", get(deployments::list))
        .route(
            "/deployments/environments.css",
            get(deployments::stylesheet),
        )
        .route("/deployments/{id}", get(deployments::show))
        .route("/deployments/{id}/events", post(deployments::report))
        .route(
            "/changes/{id}/assessment",
            get(decisions::assess_form).post(decisions::assess_submit),
        )
        .route("/changes/{id}/assessment/start", post(decisions::start))
        .route("/changes/{id}/votes", post(decisions::vote))
        .route("/changes/{id}/close", post(reviews::close))
        .route(
            "/changes/{id}/review",
            get(reviews::show).post(reviews::save),
        )
        .route("/changes/{id}/review/sign-off", post(reviews::sign_off))
        .route("/changes/{id}/review/actions", post(reviews::add_action))
        .route("/review-actions/{id}/status", post(reviews::set_status))
        .route("/assessments", get(decisions::reviewer_queue))
        .route("/measures", get(metrics::page))
        .route("/cab", get(decisions::cab_queue))
        .route("/cab/agenda", get(decisions::cab_agenda))
        .route(
            "/admin/quorum",
            get(decisions::quorum_form).post(decisions::quorum_submit),
        )
        .route(
            "/admin/quorum/reviews",
            post(decisions::review_settings_submit),
        )
        .route(
            "/templates",
            get(standard_templates::list).post(standard_templates::propose),
        )
        .route("/templates/{id}", get(standard_templates::show))
        .route("/templates/{id}/votes", post(standard_templates::vote))
        .route("/templates/{id}/retire", post(standard_templates::retire))
        .route("/freezes", get(freezes::list).post(freezes::declare))
        .route("/freezes/{id}/lift", post(freezes::lift))
        .route(
            "/admin/environments",
            get(environments::show).post(environments::save),
        )
        .route(
            "/admin/users/{id}/environments",
            post(environments::save_account),
        )
        .route("/exceptions", get(exceptions::list))
        .route("/exceptions/break-glass", post(exceptions::request))
        .route(
            "/exceptions/break-glass/{id}/confirm",
            post(exceptions::confirm),
        )
        .route(
            "/exceptions/findings/{id}/resolve",
            post(exceptions::resolve),
        )
        .layer(axum::middleware::from_fn(notice::clear_when_shown))
}

pub struct NavLink {
    pub href: &'static str,
    pub label: &'static str,
    pub active: bool,
}

/// What a role may reach from the navigation; the handlers check again.
/// Only the roles are known here, so rules are asked about an actor who
/// holds them.
pub fn navigation(roles: &RoleSet, current_path: &str) -> Vec<NavLink> {
    let any = |of: &[Role]| of.iter().any(|r| roles.contains(*r));
    let holder = cab_domain::Actor {
        id: uuid::Uuid::nil(),
        roles: roles.clone(),
        is_service: false,
    };
    let items: [(&str, &str, bool); 16] = [
        ("/", "Dashboard", true),
        ("/changes", "Changes", true),
        ("/releases", "Releases", true),
        ("/calendar", "Calendar", true),
        ("/deployments", "Deployments", true),
        ("/freezes", "Freezes", true),
        ("/measures", "Metrics", true),
        (
            "/assessments",
            "Assessments",
            any(&[Role::SecurityReviewer]),
        ),
        ("/cab", "CAB queue", any(&[Role::CabMember])),
        (
            "/templates",
            "Standard changes",
            any(&[Role::Engineer, Role::CabMember, Role::Admin]),
        ),
        (
            "/exceptions",
            "Exceptions",
            any(&[
                Role::ReleaseManager,
                Role::CabMember,
                Role::Admin,
                Role::Auditor,
            ]),
        ),
        ("/admin/quorum", "Quorum", any(&[Role::Admin])),
        ("/admin/environments", "Environments", any(&[Role::Admin])),
        (
            "/admin/maintenance",
            "Maintenance",
            crate::calendar::may_plan(&holder).is_ok(),
        ),
        ("/admin/users", "Users", any(&[Role::Admin])),
        (
            "/audit",
            "Audit trail",
            cab_domain::audit::check_read_trail(&holder).is_ok(),
        ),
    ];
    items
        .into_iter()
        .filter(|(_, _, reachable)| *reachable)
        .map(|(href, label, _)| NavLink {
            href,
            label,
            active: if href == "/" {
                current_path == "/"
            } else {
                current_path.starts_with(href)
            },
        })
        .collect()
}

/// What `base.html` shows around every page.
pub struct Layout {
    pub title: String,
    pub env_label: String,
    pub env_class: &'static str,
    pub user: Option<LayoutUser>,
    pub nav: Vec<NavLink>,
    pub csrf: String,
    pub css: String,
    /// Appended to asset URLs as `?v=`.
    pub asset_version: String,
    /// What the last action did, said once (see [`notice`]).
    pub notice: Option<String>,
}

pub struct LayoutUser {
    pub username: String,
    pub display_name: String,
    pub roles: String,
}

fn env_class(label: &str) -> &'static str {
    let l = label.to_ascii_uppercase();
    if l.starts_with("PROD") || l == "LIVE" {
        "env-prod"
    } else if l.starts_with("STAG") || l.starts_with("PRE") {
        "env-staging"
    } else {
        "env-other"
    }
}

impl Layout {
    pub fn new(state: &AppState, user: Option<&CurrentUser>, path: &str, csrf: String) -> Self {
        Layout {
            title: String::new(),
            env_label: state.settings.env_label.clone(),
            env_class: env_class(&state.settings.env_label),
            user: user.map(|u| LayoutUser {
                username: u.username.clone(),
                display_name: if u.display_name.is_empty() {
                    u.username.clone()
                } else {
                    u.display_name.clone()
                },
                roles: u
                    .roles
                    .iter()
                    .map(|r| r.label())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
            nav: user.map(|u| navigation(&u.roles, path)).unwrap_or_default(),
            csrf,
            css: state.assets.url("app.css"),
            asset_version: state.assets.version.clone(),
            notice: None,
        }
    }

    pub fn titled(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: Layout,
    heading: String,
    detail: String,
    back: BackLink,
}

/// Where an error page sends people back to.
pub struct BackLink {
    pub href: String,
    pub label: &'static str,
}

impl BackLink {
    fn dashboard() -> Self {
        BackLink {
            href: "/".into(),
            label: "Back to the dashboard",
        }
    }
}

/// A path segment that names a change, template or account: an id or a
/// change number, nothing else.
fn is_id(segment: &str) -> bool {
    segment.parse::<uuid::Uuid>().is_ok() || {
        let digits = segment.strip_prefix("CHG-").unwrap_or(segment);
        !digits.is_empty() && digits.len() <= 18 && digits.bytes().all(|b| b.is_ascii_digit())
    }
}

/// A path segment that names a release: an id or a release number.
fn is_release_id(segment: &str) -> bool {
    segment.parse::<uuid::Uuid>().is_ok() || {
        let digits = segment.strip_prefix("REL-").unwrap_or(segment);
        !digits.is_empty() && digits.len() <= 18 && digits.bytes().all(|b| b.is_ascii_digit())
    }
}

/// The page of the thing a request acted on (the change, template or
/// account), for the way back from an error; the dashboard when there is
/// none, when it is the page that failed, or when the person cannot open it.
pub fn back_link(method: &Method, path: &str, user: Option<&CurrentUser>) -> BackLink {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let admin = user.is_some_and(|u| u.has(Role::Admin));
    let (href, label) = match segments.as_slice() {
        ["changes", id, ..] if is_id(id) => (format!("/changes/{id}"), "Back to the change"),
        ["changes", "new"] => ("/changes".to_owned(), "Back to the changes"),
        ["releases", "new"] => ("/releases".to_owned(), "Back to the releases"),
        ["releases", id, ..] if is_release_id(id) => {
            (format!("/releases/{id}"), "Back to the release")
        }
        ["templates", id, ..] if is_id(id) => (format!("/templates/{id}"), "Back to the template"),
        ["templates"] => ("/templates".to_owned(), "Back to the standard changes"),
        ["admin", "users", id, ..] if admin && is_id(id) => {
            (format!("/admin/users/{id}"), "Back to the account")
        }
        ["admin", "users"] if admin => ("/admin/users".to_owned(), "Back to the users"),
        ["admin", "quorum", ..] => ("/admin/quorum".to_owned(), "Back to the quorum policy"),
        ["freezes", ..] => ("/freezes".to_owned(), "Back to the freezes"),
        ["admin", "environments"] => ("/admin/environments".to_owned(), "Back to the environments"),
        ["admin", "maintenance", ..] => (
            "/admin/maintenance".to_owned(),
            "Back to the maintenance periods",
        ),
        ["calendar", "feeds", ..] => ("/calendar/feeds".to_owned(), "Back to your calendar feeds"),
        _ => return BackLink::dashboard(),
    };
    if *method == Method::GET && href == path {
        return BackLink::dashboard();
    }
    BackLink { href, label }
}

pub fn render<T: Template>(page: &T) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal error").into_response()
        }
    }
}

/// What an error says to people on a page: its sentence, without the
/// field codes the API names.
pub fn message(err: &AppError) -> String {
    match err {
        AppError::Invalid { message, .. } => message.clone(),
        AppError::Fields(errors) => errors
            .iter()
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => err.detail(),
    }
}

/// An error as a page in the site's layout.
pub fn error_page(state: &AppState, user: Option<&CurrentUser>, err: AppError) -> Response {
    error_page_with(state, user, &err, BackLink::dashboard())
}

fn error_page_with(
    state: &AppState,
    user: Option<&CurrentUser>,
    err: &AppError,
    back: BackLink,
) -> Response {
    let status = err.status();
    if let AppError::Refused(d) = err {
        tracing::error!(code = d.code, "a refusal was answered unrecorded");
    }
    if let AppError::Internal(e) = err {
        tracing::error!(error = ?e, "internal error");
    }
    let csrf = user
        .and_then(|u| u.session)
        .map(|sid| state.keys.csrf_token(&session_binding(sid)))
        .unwrap_or_default();
    let page = ErrorPage {
        layout: Layout::new(state, user, "", csrf).titled(err.title()),
        heading: err.title().to_owned(),
        detail: message(err),
        back,
    };
    let mut resp = render(&page);
    *resp.status_mut() = status;
    if let AppError::Busy = err {
        resp.extensions_mut().insert(crate::error::Shed);
    }
    if let Some(retry_after) = err.retry_after()
        && let Ok(v) = retry_after.to_string().parse()
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// A signed-in person looking at a page, with the layout for it. Without a
/// valid session the request is sent to the login page instead.
pub struct Viewer {
    pub user: CurrentUser,
    pub state: AppState,
    pub path: String,
    /// Left by the action that led here; shown once.
    pub notice: Option<notice::Notice>,
}

impl Viewer {
    pub fn layout(&self, title: impl Into<String>) -> Layout {
        let mut layout =
            Layout::new(&self.state, Some(&self.user), &self.path, self.csrf()).titled(title);
        layout.notice = self.notice.map(notice::Notice::sentence);
        layout
    }

    pub fn csrf(&self) -> String {
        self.user
            .session
            .map(|sid| self.state.keys.csrf_token(&session_binding(sid)))
            .unwrap_or_default()
    }
}

/// Who the request's [`Viewer`] turned out to be, if a page asked: the error
/// page shows the same person the page would have, without authenticating
/// them a second time (the database may be the very thing that failed).
#[derive(Clone, Default)]
struct SeenViewer(Arc<OnceLock<CurrentUser>>);

/// Renders every answer that carries an unrendered error (a [`PageError`],
/// from a page or from a layer that refused the request first) as the error
/// page. For a signed-in person the page is in their layout, with the way
/// back to what the request acted on; otherwise it is the anonymous one,
/// leading to the dashboard. Other answers pass untouched.
pub async fn error_pages(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let seen = SeenViewer::default();
    req.extensions_mut().insert(seen.clone());
    let resp = next.run(req).await;
    let Some(unrendered) = resp.extensions().get::<Unrendered>().cloned() else {
        return resp;
    };
    let err = unrendered.error();
    let mut page = match seen.0.get() {
        Some(user) => {
            let back = back_link(&method, uri.path(), Some(user));
            error_page_with(&state, Some(user), err, back)
        }
        None => error_page_with(&state, None, err, BackLink::dashboard()),
    };
    // What the layers in between added stays: a cleared notice cookie,
    // `Retry-After` on a 503, the load-shedding marker.
    let (mut parts, _) = resp.into_parts();
    parts.extensions.remove::<Unrendered>();
    for name in parts.headers.keys() {
        if !page.headers().contains_key(name) {
            for value in parts.headers.get_all(name) {
                page.headers_mut().append(name.clone(), value.clone());
            }
        }
    }
    page.extensions_mut().extend(parts.extensions);
    page
}

pub fn expire_cookie(name: &str) -> String {
    format!("{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
}

/// The attributes of every cookie CAB sets for pages.
pub fn cookie_attrs(state: &AppState) -> &'static str {
    if state.settings.secure_cookies {
        "Path=/; HttpOnly; SameSite=Strict; Secure"
    } else {
        "Path=/; HttpOnly; SameSite=Strict"
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let path = parts.uri.path().to_owned();
        let to_login = || {
            let next = parts
                .uri
                .path_and_query()
                .map(|pq| pq.as_str())
                .unwrap_or("/");
            let target = format!("/login?next={}", urlencode(next));
            Redirect::to(&target)
        };
        match auth::authenticate(parts, state).await {
            Ok(Some(user)) => {
                if let Some(seen) = parts.extensions.get::<SeenViewer>() {
                    let _ = seen.0.set(user.clone());
                }
                let notice = match (user.session, auth::cookie(parts, notice::NOTICE_COOKIE)) {
                    (Some(sid), Some(value)) => notice::read(&state.keys, sid, value),
                    _ => None,
                };
                Ok(Viewer {
                    user,
                    state: state.clone(),
                    path,
                    notice,
                })
            }
            Ok(None) => Err(to_login().into_response()),
            Err(AppError::Unauthenticated(_)) => Err((
                [(header::SET_COOKIE, expire_cookie(SESSION_COOKIE))],
                to_login(),
            )
                .into_response()),
            Err(e) => Err(PageError(e).into_response()),
        }
    }
}

pub fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|enc| enc.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

pub use crate::words::when;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn navigation_follows_roles() {
        let labels = |roles: &[Role]| -> Vec<&str> {
            navigation(&roles.iter().copied().collect(), "/")
                .into_iter()
                .map(|l| l.label)
                .collect()
        };
        assert_eq!(
            labels(&[Role::Engineer]),
            vec![
                "Dashboard",
                "Changes",
                "Releases",
                "Calendar",
                "Deployments",
                "Freezes",
                "Metrics",
                "Standard changes"
            ]
        );
        assert_eq!(
            labels(&[Role::Auditor]),
            vec![
                "Dashboard",
                "Changes",
                "Releases",
                "Calendar",
                "Deployments",
                "Freezes",
                "Metrics",
                "Exceptions",
                "Audit trail"
            ]
        );
        assert_eq!(
            labels(&[Role::Admin]),
            vec![
                "Dashboard",
                "Changes",
                "Releases",
                "Calendar",
                "Deployments",
                "Freezes",
                "Metrics",
                "Standard changes",
                "Exceptions",
                "Quorum",
                "Environments",
                "Maintenance",
                "Users",
                "Audit trail"
            ]
        );
        assert_eq!(
            labels(&[Role::CabMember]),
            vec![
                "Dashboard",
                "Changes",
                "Releases",
                "Calendar",
                "Deployments",
                "Freezes",
                "Metrics",
                "CAB queue",
                "Standard changes",
                "Exceptions"
            ]
        );
        assert_eq!(
            labels(&[Role::ReleaseManager]),
            vec![
                "Dashboard",
                "Changes",
                "Releases",
                "Calendar",
                "Deployments",
                "Freezes",
                "Metrics",
                "Exceptions",
                "Maintenance"
            ]
        );
        assert_eq!(
            labels(&[Role::SecurityReviewer]),
            vec![
                "Dashboard",
                "Changes",
                "Releases",
                "Calendar",
                "Deployments",
                "Freezes",
                "Metrics",
                "Assessments"
            ]
        );
    }

    #[test]
    fn errors_lead_back_to_what_was_acted_on() {
        let id = "7d1f0a3e-5a5e-4c4e-9a38-2f6f0f6f0f6f";
        let back = |m: Method, p: &str| back_link(&m, p, None).href;
        assert_eq!(
            back(Method::POST, &format!("/changes/{id}/votes")),
            format!("/changes/{id}")
        );
        assert_eq!(
            back(Method::GET, &format!("/changes/{id}/assessment")),
            format!("/changes/{id}")
        );
        assert_eq!(back(Method::GET, "/changes/12/edit"), "/changes/12");
        assert_eq!(
            back(Method::POST, &format!("/templates/{id}/retire")),
            format!("/templates/{id}")
        );
        // The page that failed itself, something that is no id, or an
        // administration page a non-administrator cannot open: the dashboard.
        assert_eq!(back(Method::GET, &format!("/changes/{id}")), "/");
        assert_eq!(back(Method::POST, "/changes/javascript:x/votes"), "/");
        assert_eq!(back(Method::POST, &format!("/admin/users/{id}/roles")), "/");
        assert_eq!(back(Method::GET, "/audit"), "/");
        assert_eq!(
            back(Method::POST, "/releases/REL-3/votes"),
            "/releases/REL-3"
        );
        assert_eq!(back(Method::POST, "/releases/new"), "/releases");
        assert_eq!(back(Method::GET, "/releases/REL-3"), "/");
    }

    #[test]
    fn environment_colours() {
        assert_eq!(env_class("PRODUCTION"), "env-prod");
        assert_eq!(env_class("staging"), "env-staging");
        assert_eq!(env_class("DEMO"), "env-other");
    }
}
