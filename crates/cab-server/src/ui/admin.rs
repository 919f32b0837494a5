//! Administrators' pages: accounts, roles, service accounts and their tokens.
//! Every action goes through `accounts`, the same code as the API's.

use askama::Template;
use axum::Form;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cab_db::api_tokens::ApiTokenRow;
use cab_db::role_grants::RoleGrantLine;
use cab_db::users::UserRow;
use cab_domain::Role;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::form::{FieldErrors, FormPairs as Pairs, form_value as value, form_values as values};
use super::notice::{Notice, redirect_with};
use super::{Layout, Viewer, filters, render, when};
use crate::accounts::{self, NewAccount, Operator};
use crate::error::AppError;
use crate::page_error::PageResult;
use crate::request::Origin;
use crate::words::role_labels;

pub struct RoleChoice {
    pub name: &'static str,
    pub label: &'static str,
    pub checked: bool,
    /// Requested, and waiting for a second administrator.
    pub awaiting: bool,
}

fn role_choices(selected: &[String]) -> Vec<RoleChoice> {
    role_choices_awaiting(selected, &[])
}

/// The roles held are ticked, and so are those awaiting confirmation: saving
/// the form again keeps the open request rather than withdrawing it.
fn role_choices_awaiting(selected: &[String], awaiting: &[String]) -> Vec<RoleChoice> {
    Role::ALL
        .into_iter()
        .map(|r| {
            let waits = awaiting.iter().any(|s| s == r.as_str());
            RoleChoice {
                name: r.as_str(),
                label: r.label(),
                checked: waits || selected.iter().any(|s| s == r.as_str()),
                awaiting: waits,
            }
        })
        .collect()
}

fn person_name(display_name: &str, username: &str) -> String {
    if display_name.trim().is_empty() {
        username.to_owned()
    } else {
        display_name.to_owned()
    }
}

/// A request for roles as the pages show it, in people's words.
pub struct GrantLine {
    pub id: Uuid,
    pub user_id: Uuid,
    pub person: String,
    pub roles: String,
    pub requested_by: String,
    pub requested: DateTime<Utc>,
    pub open: bool,
    /// What became of a settled request, e.g. "confirmed by Alice Admin".
    pub outcome: String,
    /// Whether the viewer may confirm it: an administrator other than the
    /// one who asked, and not the person the roles are for.
    pub can_confirm: bool,
    /// Why the viewer may not, when they may not.
    pub confirm_hint: &'static str,
}

impl GrantLine {
    fn new(g: &RoleGrantLine, viewer: Uuid) -> Self {
        let (can_confirm, confirm_hint) = if g.requested_by == viewer {
            (
                false,
                "You asked for these roles; another administrator has to confirm them.",
            )
        } else if g.user_id == viewer {
            (
                false,
                "These roles are for you; another administrator has to confirm them.",
            )
        } else {
            (true, "")
        };
        let outcome = match (&g.confirmed_at, &g.cancelled_at) {
            (Some(at), _) => format!(
                "confirmed by {}, {}",
                person_name(
                    g.confirmed_by_display_name.as_deref().unwrap_or_default(),
                    g.confirmed_by_username
                        .as_deref()
                        .unwrap_or("an administrator"),
                ),
                when(at)
            ),
            (None, Some(at)) => match &g.cancelled_by_username {
                Some(u) => format!(
                    "cancelled by {}, {}",
                    person_name(
                        g.cancelled_by_display_name.as_deref().unwrap_or_default(),
                        u
                    ),
                    when(at)
                ),
                None => format!("replaced by a later change of roles, {}", when(at)),
            },
            (None, None) => "awaiting a second administrator's confirmation".into(),
        };
        GrantLine {
            id: g.id,
            user_id: g.user_id,
            person: person_name(&g.display_name, &g.username),
            roles: role_labels(&g.roles),
            requested_by: person_name(&g.requested_by_display_name, &g.requested_by_username),
            requested: g.requested_at,
            open: g.is_open(),
            outcome,
            can_confirm,
            confirm_hint,
        }
    }
}

pub struct UserLine {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub roles: String,
    pub kind: &'static str,
    pub active: bool,
    pub created: DateTime<Utc>,
}

impl From<&UserRow> for UserLine {
    fn from(u: &UserRow) -> Self {
        UserLine {
            id: u.id,
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            roles: role_labels(&u.roles),
            kind: if u.is_service {
                "Service account"
            } else {
                "Person"
            },
            active: u.is_active(),
            created: u.created_at,
        }
    }
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage {
    layout: Layout,
    users: Vec<UserLine>,
    errors: FieldErrors,
    username: String,
    display_name: String,
    service: bool,
    roles: Vec<RoleChoice>,
    grants: Vec<GrantLine>,
}

async fn users_page(
    viewer: &Viewer,
    form: Option<&Pairs>,
    errors: FieldErrors,
) -> Result<Response, AppError> {
    let mut conn = viewer.state.pool.acquire().await?;
    let users = cab_db::users::list(&mut conn).await?;
    let grants = cab_db::role_grants::lines(&mut conn, None, accounts::RECENT_GRANTS).await?;
    let selected: Vec<String> = form
        .map(|f| values(f, "roles").into_iter().map(str::to_owned).collect())
        .unwrap_or_default();
    let page = UsersPage {
        layout: viewer.layout("Users"),
        users: users.iter().map(UserLine::from).collect(),
        username: form.map(|f| value(f, "username")).unwrap_or_default(),
        display_name: form.map(|f| value(f, "display_name")).unwrap_or_default(),
        service: form.is_some_and(|f| value(f, "service") == "on"),
        roles: role_choices(&selected),
        grants: grants
            .iter()
            .map(|g| GrantLine::new(g, viewer.user.id))
            .collect(),
        errors,
    };
    Ok(render(&page))
}

pub async fn list(viewer: Viewer, origin: Origin) -> PageResult {
    accounts::authorize_read(&viewer.state.pool, &viewer.user, &origin).await?;
    Ok(users_page(&viewer, None, FieldErrors::default()).await?)
}

pub async fn create(viewer: Viewer, origin: Origin, Form(form): Form<Pairs>) -> PageResult {
    let service = value(&form, "service") == "on";
    let password = value(&form, "password");
    let new = NewAccount {
        username: value(&form, "username"),
        display_name: value(&form, "display_name"),
        roles: values(&form, "roles")
            .into_iter()
            .map(str::to_owned)
            .collect(),
        password: (!password.is_empty()).then_some(password),
        service,
    };
    let state = viewer.state.clone();
    match accounts::create(
        &state.pool,
        &state.passwords,
        &Operator::User(&viewer.user),
        &origin,
        new,
    )
    .await
    {
        Ok(created) => {
            let secret = created.generated_password.map(|value| Secret {
                label: "Initial password (shown once; hand it over securely)".to_owned(),
                value,
            });
            let notice = match &created.pending {
                Some(g) => format!(
                    "Account {} created. {}: awaiting a second administrator's confirmation.",
                    created.user.username,
                    role_labels(&g.roles)
                ),
                None => format!("Account {} created.", created.user.username),
            };
            let mut resp = detail_page(
                &viewer,
                created.user.id,
                Some(notice),
                secret,
                FieldErrors::default(),
            )
            .await?;
            *resp.status_mut() = StatusCode::CREATED;
            Ok(resp)
        }
        Err(err) => {
            let status = err.status();
            let errors = FieldErrors::absorb(err, "username")?;
            let mut resp = users_page(&viewer, Some(&form), errors).await?;
            *resp.status_mut() = status;
            Ok(resp)
        }
    }
}

pub struct TokenLine {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub created: DateTime<Utc>,
    pub last_used: Option<DateTime<Utc>>,
    pub revoked: Option<DateTime<Utc>>,
}

/// Something shown once on an account's page (a generated password, a new
/// API token), with what it is.
pub struct Secret {
    pub label: String,
    pub value: String,
}

impl From<&ApiTokenRow> for TokenLine {
    fn from(t: &ApiTokenRow) -> Self {
        TokenLine {
            id: t.id,
            name: t.name.clone(),
            prefix: t.token_prefix.clone(),
            created: t.created_at,
            last_used: t.last_used_at,
            revoked: t.revoked_at,
        }
    }
}

#[derive(Template)]
#[template(path = "admin/user.html")]
struct UserPage {
    layout: Layout,
    user: UserLine,
    is_service: bool,
    is_self: bool,
    secret: Option<Secret>,
    errors: FieldErrors,
    roles: Vec<RoleChoice>,
    tokens: Vec<TokenLine>,
    /// The open request for roles, if any.
    awaiting: Option<GrantLine>,
    /// For a service account: every environment, ticked where it may deploy.
    deploys_to: Vec<super::environments::EnvChoice>,
}

async fn detail_page(
    viewer: &Viewer,
    id: Uuid,
    notice: Option<String>,
    secret: Option<Secret>,
    errors: FieldErrors,
) -> Result<Response, AppError> {
    let mut conn = viewer.state.pool.acquire().await?;
    let user = cab_db::users::find_by_id(&mut conn, id)
        .await?
        .ok_or(AppError::NotFound("user"))?;
    let tokens = if user.is_service {
        cab_db::api_tokens::list_for_user(&mut conn, id).await?
    } else {
        Vec::new()
    };
    let deploys_to = if user.is_service {
        super::environments::account_choices(&mut conn, id).await?
    } else {
        Vec::new()
    };
    let awaiting = cab_db::role_grants::lines(&mut conn, Some(id), 1)
        .await?
        .into_iter()
        .find(RoleGrantLine::is_open);
    let awaiting_roles = awaiting
        .as_ref()
        .map(|g| g.roles.clone())
        .unwrap_or_default();
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let mut layout = viewer.layout(format!("User {}", user.username));
    if notice.is_some() {
        layout.notice = notice;
    }
    let page = UserPage {
        layout,
        is_service: user.is_service,
        is_self: user.id == viewer.user.id,
        roles: role_choices_awaiting(&user.roles, &awaiting_roles),
        user: UserLine::from(&user),
        tokens: tokens.iter().map(TokenLine::from).collect(),
        awaiting: awaiting.map(|g| GrantLine::new(&g, viewer.user.id)),
        deploys_to,
        secret,
        errors,
    };
    Ok((status, render(&page)).into_response())
}

fn parse_id(raw: &str) -> Result<Uuid, AppError> {
    raw.parse().map_err(|_| AppError::NotFound("user"))
}

pub async fn show(viewer: Viewer, origin: Origin, Path(id): Path<String>) -> PageResult {
    accounts::authorize_read(&viewer.state.pool, &viewer.user, &origin).await?;
    Ok(detail_page(&viewer, parse_id(&id)?, None, None, FieldErrors::default()).await?)
}

pub async fn set_roles(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(form): Form<Pairs>,
) -> PageResult {
    let id = parse_id(&id)?;
    let roles: Vec<String> = values(&form, "roles")
        .into_iter()
        .map(str::to_owned)
        .collect();
    match accounts::set_roles(
        &viewer.state.pool,
        &Operator::User(&viewer.user),
        &origin,
        id,
        &roles,
    )
    .await
    {
        Ok(change) => Ok(redirect_with(
            &viewer,
            &format!("/admin/users/{id}"),
            if change.pending.is_some() {
                Notice::RolesRequested
            } else {
                Notice::RolesSaved
            },
        )),
        Err(AppError::Invalid { field, message }) => {
            let mut errors = FieldErrors::default();
            errors.insert(&field, message);
            Ok(detail_page(&viewer, id, None, None, errors).await?)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn disable(viewer: Viewer, origin: Origin, Path(id): Path<String>) -> PageResult {
    let id = parse_id(&id)?;
    accounts::disable(
        &viewer.state.pool,
        &Operator::User(&viewer.user),
        &origin,
        id,
    )
    .await?;
    Ok(redirect_with(
        &viewer,
        &format!("/admin/users/{id}"),
        Notice::AccountDisabled,
    ))
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    name: String,
}

pub async fn issue_token(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(form): Form<TokenForm>,
) -> PageResult {
    let id = parse_id(&id)?;
    match accounts::issue_token(
        &viewer.state.pool,
        &Operator::User(&viewer.user),
        &origin,
        id,
        &form.name,
    )
    .await
    {
        Ok(issued) => {
            let secret = Secret {
                label: format!(
                    "API token \"{}\" (shown once: store it in your pipeline's secrets now)",
                    issued.token.name
                ),
                value: issued.secret,
            };
            Ok(detail_page(&viewer, id, None, Some(secret), FieldErrors::default()).await?)
        }
        Err(AppError::Invalid { field, message }) => {
            let mut errors = FieldErrors::default();
            errors.insert(&field, message);
            Ok(detail_page(&viewer, id, None, None, errors).await?)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn revoke_token(
    viewer: Viewer,
    origin: Origin,
    Path((id, token_id)): Path<(String, String)>,
) -> PageResult {
    let id = parse_id(&id)?;
    let token_id: Uuid = token_id
        .parse()
        .map_err(|_| AppError::NotFound("API token"))?;
    accounts::revoke_token(
        &viewer.state.pool,
        &Operator::User(&viewer.user),
        &origin,
        id,
        token_id,
    )
    .await?;
    Ok(redirect_with(
        &viewer,
        &format!("/admin/users/{id}"),
        Notice::TokenRevoked,
    ))
}

fn parse_grant_id(raw: &str) -> Result<Uuid, AppError> {
    raw.parse().map_err(|_| AppError::NotFound("role request"))
}

/// A second administrator confirms a request for roles.
pub async fn confirm_grant(
    viewer: Viewer,
    origin: Origin,
    Path((id, grant_id)): Path<(String, String)>,
) -> PageResult {
    parse_id(&id)?;
    let grant_id = parse_grant_id(&grant_id)?;
    let change =
        accounts::confirm_grant(&viewer.state.pool, &viewer.user, &origin, grant_id).await?;
    Ok(redirect_with(
        &viewer,
        &format!("/admin/users/{}", change.user.id),
        Notice::RolesConfirmed,
    ))
}

/// An administrator withdraws a request for roles.
pub async fn cancel_grant(
    viewer: Viewer,
    origin: Origin,
    Path((id, grant_id)): Path<(String, String)>,
) -> PageResult {
    parse_id(&id)?;
    let grant_id = parse_grant_id(&grant_id)?;
    let grant = accounts::cancel_grant(&viewer.state.pool, &viewer.user, &origin, grant_id).await?;
    Ok(redirect_with(
        &viewer,
        &format!("/admin/users/{}", grant.user_id),
        Notice::RoleRequestCancelled,
    ))
}
