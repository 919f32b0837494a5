//! Administrators' pages: accounts, roles, service accounts and their tokens.
//! Every action goes through `accounts`, the same code as the API's.

use askama::Template;
use axum::Form;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cab_db::api_tokens::ApiTokenRow;
use cab_db::users::UserRow;
use cab_domain::Role;
use serde::Deserialize;
use uuid::Uuid;

use super::notice::{Notice, redirect_with};
use super::words::role_labels;
use super::{FieldErrors, Layout, Viewer, render, when};
use super::{FormPairs as Pairs, form_value as value, form_values as values};
use crate::accounts::{self, NewAccount, Operator};
use crate::error::AppError;
use crate::request::Origin;

pub struct RoleChoice {
    pub name: &'static str,
    pub label: &'static str,
    pub checked: bool,
}

fn role_choices(selected: &[String]) -> Vec<RoleChoice> {
    Role::ALL
        .into_iter()
        .map(|r| RoleChoice {
            name: r.as_str(),
            label: r.label(),
            checked: selected.iter().any(|s| s == r.as_str()),
        })
        .collect()
}

pub struct UserLine {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub roles: String,
    pub kind: &'static str,
    pub active: bool,
    pub created: String,
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
            created: when(&u.created_at),
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
}

async fn users_page(
    viewer: &Viewer,
    form: Option<&Pairs>,
    errors: FieldErrors,
) -> Result<Response, AppError> {
    let mut conn = viewer.state.pool.acquire().await?;
    let users = cab_db::users::list(&mut conn).await?;
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
        errors,
    };
    Ok(render(&page))
}

pub async fn list(viewer: Viewer, origin: Origin) -> Response {
    let shown = async {
        accounts::authorize_read(&viewer.state.pool, &viewer.user, &origin).await?;
        users_page(&viewer, None, FieldErrors::default()).await
    };
    shown.await.unwrap_or_else(|e| viewer.error(e))
}

pub async fn create(viewer: Viewer, origin: Origin, Form(form): Form<Pairs>) -> Response {
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
            let secret = created.generated_password.map(|pw| {
                (
                    "Initial password (shown once; hand it over securely)".to_owned(),
                    pw,
                )
            });
            let notice = format!("Account {} created.", created.user.username);
            detail_page(
                &viewer,
                created.user.id,
                Some(notice),
                secret,
                FieldErrors::default(),
            )
            .await
            .map(|mut r| {
                *r.status_mut() = StatusCode::CREATED;
                r
            })
            .unwrap_or_else(|e| viewer.error(e))
        }
        Err(err) => {
            let status = err.status();
            match FieldErrors::absorb(err, "username") {
                Ok(errors) => users_page(&viewer, Some(&form), errors)
                    .await
                    .map(|mut r| {
                        *r.status_mut() = status;
                        r
                    })
                    .unwrap_or_else(|e| viewer.error(e)),
                Err(other) => viewer.error(other),
            }
        }
    }
}

pub struct TokenLine {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub created: String,
    pub last_used: String,
    pub revoked: Option<String>,
}

impl From<&ApiTokenRow> for TokenLine {
    fn from(t: &ApiTokenRow) -> Self {
        TokenLine {
            id: t.id,
            name: t.name.clone(),
            prefix: t.token_prefix.clone(),
            created: when(&t.created_at),
            last_used: t
                .last_used_at
                .as_ref()
                .map(when)
                .unwrap_or_else(|| "never".into()),
            revoked: t.revoked_at.as_ref().map(when),
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
    secret: Option<(String, String)>,
    errors: FieldErrors,
    roles: Vec<RoleChoice>,
    tokens: Vec<TokenLine>,
}

async fn detail_page(
    viewer: &Viewer,
    id: Uuid,
    notice: Option<String>,
    secret: Option<(String, String)>,
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
        roles: role_choices(&user.roles),
        user: UserLine::from(&user),
        tokens: tokens.iter().map(TokenLine::from).collect(),
        secret,
        errors,
    };
    Ok((status, render(&page)).into_response())
}

fn parse_id(raw: &str) -> Result<Uuid, AppError> {
    raw.parse().map_err(|_| AppError::NotFound("user"))
}

pub async fn show(viewer: Viewer, origin: Origin, Path(id): Path<String>) -> Response {
    let shown = async {
        accounts::authorize_read(&viewer.state.pool, &viewer.user, &origin).await?;
        detail_page(&viewer, parse_id(&id)?, None, None, FieldErrors::default()).await
    };
    shown.await.unwrap_or_else(|e| viewer.error(e))
}

pub async fn set_roles(
    viewer: Viewer,
    origin: Origin,
    Path(id): Path<String>,
    Form(form): Form<Pairs>,
) -> Response {
    let done = async {
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
            Ok(_) => Ok(redirect_with(
                &viewer,
                &format!("/admin/users/{id}"),
                Notice::RolesSaved,
            )),
            Err(AppError::Invalid { field, message }) => {
                let mut errors = FieldErrors::default();
                errors.insert(&field, message);
                detail_page(&viewer, id, None, None, errors).await
            }
            Err(e) => Err(e),
        }
    };
    done.await.unwrap_or_else(|e| viewer.error(e))
}

pub async fn disable(viewer: Viewer, origin: Origin, Path(id): Path<String>) -> Response {
    let done = async {
        let id = parse_id(&id)?;
        accounts::disable(
            &viewer.state.pool,
            &Operator::User(&viewer.user),
            &origin,
            id,
        )
        .await?;
        Ok::<_, AppError>(redirect_with(
            &viewer,
            &format!("/admin/users/{id}"),
            Notice::AccountDisabled,
        ))
    };
    done.await.unwrap_or_else(|e| viewer.error(e))
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
) -> Response {
    let done = async {
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
                let secret = (
                    format!(
                        "API token \"{}\" (shown once: store it in your pipeline's secrets now)",
                        issued.token.name
                    ),
                    issued.secret,
                );
                detail_page(&viewer, id, None, Some(secret), FieldErrors::default()).await
            }
            Err(AppError::Invalid { field, message }) => {
                let mut errors = FieldErrors::default();
                errors.insert(&field, message);
                detail_page(&viewer, id, None, None, errors).await
            }
            Err(e) => Err(e),
        }
    };
    done.await.unwrap_or_else(|e| viewer.error(e))
}

pub async fn revoke_token(
    viewer: Viewer,
    origin: Origin,
    Path((id, token_id)): Path<(String, String)>,
) -> Response {
    let done = async {
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
        Ok::<_, AppError>(redirect_with(
            &viewer,
            &format!("/admin/users/{id}"),
            Notice::TokenRevoked,
        ))
    };
    done.await.unwrap_or_else(|e| viewer.error(e))
}
