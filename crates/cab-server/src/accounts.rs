//! Managing accounts: the operations behind the admin pages, the admin API
//! and the `cab user` commands, so each rule is enforced in one place.

use cab_db::api_tokens::{ApiTokenRow, NewApiToken};
use cab_db::audit::AuditActor;
use cab_db::users::{NewUser, UserRow};
use cab_domain::user_admin::{self, Account, Actor};
use cab_domain::{Denial, Role, RoleSet, password};
use chrono::Utc;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::audit_log::{self, Entity};
use crate::auth::CurrentUser;
use crate::crypto::{self, Passwords};
use crate::error::AppError;
use crate::request::Origin;

/// Who is managing accounts: a signed-in user (bound by every rule) or the
/// operator at the command line (who owns the database anyway, but is still
/// kept from removing the last administrator).
pub enum Operator<'a> {
    User(&'a CurrentUser),
    Cli,
}

impl Operator<'_> {
    fn actor(&self) -> Actor {
        match self {
            Operator::User(u) => u.actor(),
            Operator::Cli => Actor {
                id: Uuid::nil(),
                roles: [Role::Admin].into_iter().collect(),
            },
        }
    }

    fn audit_actor(&self) -> AuditActor {
        match self {
            Operator::User(u) => u.audit_actor(),
            Operator::Cli => AuditActor {
                id: None,
                username: "cab-cli".into(),
                roles: Vec::new(),
            },
        }
    }

    fn user_id(&self) -> Option<Uuid> {
        match self {
            Operator::User(u) => Some(u.id),
            Operator::Cli => None,
        }
    }
}

fn account(row: &UserRow) -> Result<Account, AppError> {
    Ok(Account {
        id: row.id,
        roles: RoleSet::parse(&row.roles).map_err(|e| AppError::Internal(e.into()))?,
        active: row.is_active(),
        is_service: row.is_service,
    })
}

pub fn parse_roles<S: AsRef<str>>(names: &[S]) -> Result<RoleSet, AppError> {
    RoleSet::parse(names).map_err(|e| AppError::invalid("roles", e.to_string()))
}

async fn require_admin(
    pool: &PgPool,
    op: &Operator<'_>,
    origin: &Origin,
    attempted: &str,
) -> Result<(), AppError> {
    if let Err(denial) = user_admin::require_admin(&op.actor()) {
        return Err(audit_log::deny(
            pool,
            Some(op.audit_actor()),
            origin,
            attempted,
            Entity::kind("user"),
            denial,
        )
        .await);
    }
    Ok(())
}

/// Refuses non-admins reading account data; the refusal is recorded.
pub async fn authorize_read(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
) -> Result<(), AppError> {
    require_admin(pool, &Operator::User(user), origin, "user.read").await
}

pub struct NewAccount {
    pub username: String,
    pub display_name: String,
    pub roles: Vec<String>,
    /// `None` for a person: a password is generated and returned once.
    pub password: Option<String>,
    pub service: bool,
}

pub struct CreatedAccount {
    pub user: UserRow,
    pub generated_password: Option<String>,
}

pub async fn create(
    pool: &PgPool,
    passwords: &Passwords,
    op: &Operator<'_>,
    origin: &Origin,
    new: NewAccount,
) -> Result<CreatedAccount, AppError> {
    require_admin(pool, op, origin, "user.create").await?;
    let username = new.username.trim().to_owned();
    password::validate_username(&username).map_err(|d| AppError::invalid("username", d.message))?;
    let display_name = new.display_name.trim().to_owned();
    if display_name.chars().count() > 100 {
        return Err(AppError::invalid("display_name", "At most 100 characters."));
    }
    let roles = parse_roles(&new.roles)?;
    user_admin::check_role_assignment(new.service, &roles)
        .map_err(|d| AppError::invalid("roles", d.message))?;
    let (hash, generated_password) = if new.service {
        if new.password.as_deref().is_some_and(|p| !p.is_empty()) {
            return Err(AppError::invalid(
                "password",
                "Service accounts have no password; issue them an API token instead.",
            ));
        }
        (None, None)
    } else {
        let (pw, generated) = match new.password.filter(|p| !p.is_empty()) {
            Some(pw) => (pw, None),
            None => {
                let pw = crypto::generate_password();
                (pw.clone(), Some(pw))
            }
        };
        password::validate_new_password(&pw)
            .map_err(|d| AppError::invalid("password", d.message))?;
        (Some(passwords.hash(pw).await?), generated)
    };

    let mut tx = pool.begin().await?;
    let role_names = roles.names();
    let inserted = cab_db::users::insert(
        &mut tx,
        &NewUser {
            id: Uuid::new_v4(),
            username: &username,
            display_name: &display_name,
            password_hash: hash.as_deref(),
            is_service: new.service,
            roles: &role_names,
            created_at: Utc::now(),
        },
    )
    .await;
    let user = match inserted {
        Ok(u) => u,
        Err(e) if cab_db::is_unique_violation(&e, "users_username_key") => {
            return Err(AppError::Conflict(Denial::new(
                "username_taken",
                format!("The username '{username}' is already taken."),
            )));
        }
        Err(e) => return Err(e.into()),
    };
    audit_log::record(
        &mut tx,
        Some(op.audit_actor()),
        origin,
        "user.created",
        Entity::new("user", user.id),
        json!({
            "username": user.username,
            "display_name": user.display_name,
            "roles": user.roles,
            "is_service": user.is_service,
            "password_generated": generated_password.is_some(),
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(CreatedAccount {
        user,
        generated_password,
    })
}

async fn deny_on(
    pool: &PgPool,
    op: &Operator<'_>,
    origin: &Origin,
    attempted: &str,
    target: Uuid,
    d: Denial,
) -> AppError {
    audit_log::deny(
        pool,
        Some(op.audit_actor()),
        origin,
        attempted,
        Entity::new("user", target),
        d,
    )
    .await
}

/// Sets an account's roles and ends its sessions, so the change applies at once.
pub async fn set_roles(
    pool: &PgPool,
    op: &Operator<'_>,
    origin: &Origin,
    target_id: Uuid,
    roles: &[String],
) -> Result<UserRow, AppError> {
    require_admin(pool, op, origin, "user.set_roles").await?;
    let new_roles = parse_roles(roles)?;
    let mut tx = pool.begin().await?;
    let admins = cab_db::users::count_active_admins_for_update(&mut tx).await?;
    let target = cab_db::users::find_by_id_for_update(&mut tx, target_id)
        .await?
        .ok_or(AppError::NotFound("user"))?;
    if let Err(d) = user_admin::check_set_roles(&op.actor(), &account(&target)?, &new_roles, admins)
    {
        drop(tx);
        return Err(deny_on(pool, op, origin, "user.set_roles", target_id, d).await);
    }
    let names = new_roles.names();
    cab_db::users::set_roles(&mut tx, target_id, &names).await?;
    let ended =
        cab_db::sessions::end_all_for_user(&mut tx, target_id, "roles changed", Utc::now()).await?;
    audit_log::record(
        &mut tx,
        Some(op.audit_actor()),
        origin,
        "user.roles_changed",
        Entity::new("user", target_id),
        json!({
            "username": target.username,
            "from": target.roles,
            "to": names,
            "sessions_ended": ended,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(UserRow {
        roles: names,
        ..target
    })
}

/// Disables an account and ends its sessions; its API tokens stop working.
pub async fn disable(
    pool: &PgPool,
    op: &Operator<'_>,
    origin: &Origin,
    target_id: Uuid,
) -> Result<UserRow, AppError> {
    require_admin(pool, op, origin, "user.disable").await?;
    let mut tx = pool.begin().await?;
    let admins = cab_db::users::count_active_admins_for_update(&mut tx).await?;
    let target = cab_db::users::find_by_id_for_update(&mut tx, target_id)
        .await?
        .ok_or(AppError::NotFound("user"))?;
    if let Err(d) = user_admin::check_disable(&op.actor(), &account(&target)?, admins) {
        drop(tx);
        return Err(deny_on(pool, op, origin, "user.disable", target_id, d).await);
    }
    let now = Utc::now();
    cab_db::users::disable(&mut tx, target_id, now).await?;
    let ended =
        cab_db::sessions::end_all_for_user(&mut tx, target_id, "account disabled", now).await?;
    audit_log::record(
        &mut tx,
        Some(op.audit_actor()),
        origin,
        "user.disabled",
        Entity::new("user", target_id),
        json!({ "username": target.username, "sessions_ended": ended }),
    )
    .await?;
    tx.commit().await?;
    Ok(UserRow {
        disabled_at: Some(now),
        ..target
    })
}

/// Sets a person's password (the command line's reset, and the demo seed).
pub async fn set_password(
    pool: &PgPool,
    passwords: &Passwords,
    op: &Operator<'_>,
    origin: &Origin,
    target_id: Uuid,
    new_password: String,
) -> Result<(), AppError> {
    require_admin(pool, op, origin, "user.set_password").await?;
    password::validate_new_password(&new_password)
        .map_err(|d| AppError::invalid("password", d.message))?;
    let hash = passwords.hash(new_password).await?;
    let mut tx = pool.begin().await?;
    let target = cab_db::users::find_by_id_for_update(&mut tx, target_id)
        .await?
        .ok_or(AppError::NotFound("user"))?;
    if target.is_service {
        return Err(AppError::invalid(
            "password",
            "Service accounts have no password.",
        ));
    }
    cab_db::users::set_password_hash(&mut tx, target_id, &hash).await?;
    let ended =
        cab_db::sessions::end_all_for_user(&mut tx, target_id, "password changed", Utc::now())
            .await?;
    audit_log::record(
        &mut tx,
        Some(op.audit_actor()),
        origin,
        "user.password_set",
        Entity::new("user", target_id),
        json!({ "username": target.username, "sessions_ended": ended }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub struct IssuedToken {
    pub token: ApiTokenRow,
    /// Shown once; only its hash is stored.
    pub secret: String,
}

pub async fn issue_token(
    pool: &PgPool,
    op: &Operator<'_>,
    origin: &Origin,
    target_id: Uuid,
    name: &str,
) -> Result<IssuedToken, AppError> {
    require_admin(pool, op, origin, "api_token.create").await?;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AppError::invalid(
            "name",
            "Give the token a name of 1 to 100 characters, e.g. the pipeline that uses it.",
        ));
    }
    let mut tx = pool.begin().await?;
    let target = cab_db::users::find_by_id_for_update(&mut tx, target_id)
        .await?
        .ok_or(AppError::NotFound("user"))?;
    if let Err(d) = user_admin::check_issue_token(&op.actor(), &account(&target)?) {
        drop(tx);
        return Err(deny_on(pool, op, origin, "api_token.create", target_id, d).await);
    }
    let issued = crypto::issue_api_token();
    let token = cab_db::api_tokens::insert(
        &mut tx,
        &NewApiToken {
            id: Uuid::new_v4(),
            user_id: target_id,
            name,
            token_hash: &issued.hash,
            token_prefix: &issued.prefix,
            created_at: Utc::now(),
            created_by: op.user_id(),
        },
    )
    .await?;
    audit_log::record(
        &mut tx,
        Some(op.audit_actor()),
        origin,
        "api_token.created",
        Entity::new("api_token", token.id),
        json!({ "account": target.username, "account_id": target.id, "name": token.name, "prefix": token.token_prefix }),
    )
    .await?;
    tx.commit().await?;
    Ok(IssuedToken {
        token,
        secret: issued.secret,
    })
}

pub async fn revoke_token(
    pool: &PgPool,
    op: &Operator<'_>,
    origin: &Origin,
    target_id: Uuid,
    token_id: Uuid,
) -> Result<ApiTokenRow, AppError> {
    require_admin(pool, op, origin, "api_token.revoke").await?;
    let mut tx = pool.begin().await?;
    let token = cab_db::api_tokens::revoke(&mut tx, target_id, token_id, Utc::now())
        .await?
        .ok_or(AppError::NotFound("active API token"))?;
    audit_log::record(
        &mut tx,
        Some(op.audit_actor()),
        origin,
        "api_token.revoked",
        Entity::new("api_token", token.id),
        json!({ "account_id": target_id, "name": token.name, "prefix": token.token_prefix }),
    )
    .await?;
    tx.commit().await?;
    Ok(token)
}
