//! Managing accounts: the operations behind the admin pages, the admin API
//! and the `cab user` commands, so each rule is enforced in one place.

use cab_db::api_tokens::{ApiTokenRow, NewApiToken};
use cab_db::audit::AuditActor;
use cab_db::role_grants::{NewRoleGrant, RoleGrantLine, RoleGrantRow};
use cab_db::users::{NewUser, UserRow};
use cab_domain::Actor;
use cab_domain::user_admin::{self, Account, GrantState, RoleChangePlan, RoleGrant};
use cab_domain::{Denial, Role, RoleSet, password};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::audit_log::{self, Entity};
use crate::auth::CurrentUser;
use crate::crypto::{self, Passwords};
use crate::error::AppError;
use crate::idempotency::{self, Created};
use crate::refusal;
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
                is_service: false,
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

    /// How roles are given: through the app, the two-person rule holds (a
    /// guarded role waits for a second administrator); from the command line
    /// they apply at once, since whoever runs it holds the database anyway.
    fn plan(&self, old: &RoleSet, new: &RoleSet) -> RoleChangePlan {
        match self {
            Operator::User(_) => user_admin::plan_role_change(old, new),
            Operator::Cli => RoleChangePlan {
                now: new.clone(),
                awaiting: RoleSet::new(),
            },
        }
    }

    /// Marks an audit payload written from the command line as such, so
    /// auditors see which role changes bypassed the two-person rule.
    fn mark(&self, mut payload: Value) -> Value {
        if let (Operator::Cli, Some(fields)) = (self, payload.as_object_mut()) {
            fields.insert("via".into(), json!(VIA_COMMAND_LINE));
        }
        payload
    }
}

/// `via` in the audit payload of an account change made from the command line.
pub const VIA_COMMAND_LINE: &str = "command line";

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
    let allowed = user_admin::require_admin(&op.actor());
    let entity = Entity::kind("user");
    refusal::checked(pool, op.audit_actor(), origin, attempted, entity, allowed).await
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
    /// The guarded roles asked for, waiting for a second administrator.
    pub pending: Option<RoleGrantRow>,
}

pub async fn create(
    pool: &PgPool,
    passwords: &Passwords,
    op: &Operator<'_>,
    origin: &Origin,
    new: NewAccount,
) -> Result<CreatedAccount, AppError> {
    create_at(pool, passwords, op, origin, new, Utc::now()).await
}

/// [`create`], recorded at `at`: the present, or for the demo board the
/// day its team set CAB up, weeks before its history.
pub(crate) async fn create_at(
    pool: &PgPool,
    passwords: &Passwords,
    op: &Operator<'_>,
    origin: &Origin,
    new: NewAccount,
    at: DateTime<Utc>,
) -> Result<CreatedAccount, AppError> {
    require_admin(pool, op, origin, "user.create").await?;
    let username = new.username.trim().to_owned();
    password::validate_username(&username).map_err(|d| AppError::invalid("username", d.message))?;
    let display_name = new.display_name.trim().to_owned();
    password::validate_display_name(&display_name)
        .map_err(|d| AppError::invalid("display_name", d.message))?;
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

    let plan = op.plan(&RoleSet::new(), &roles);
    let mut tx = pool.begin().await?;
    let role_names = plan.now.names();
    let inserted = cab_db::users::insert(
        &mut tx,
        &NewUser {
            id: Uuid::new_v4(),
            username: &username,
            display_name: &display_name,
            password_hash: hash.as_deref(),
            is_service: new.service,
            roles: &role_names,
            created_at: at,
        },
    )
    .await;
    let user = match inserted {
        Ok(u) => u,
        Err(e) if cab_db::is_unique_violation(&e, "users_username_key") => {
            return Err(AppError::Conflict(Denial::new(
                "username_taken",
                format!(
                    "The username {} is already taken.",
                    cab_domain::text::quoted(&username)
                ),
            )));
        }
        Err(e) => return Err(e.into()),
    };
    audit_log::record_at(
        &mut tx,
        at,
        Some(op.audit_actor()),
        origin,
        "user.created",
        Entity::new("user", user.id),
        op.mark(json!({
            "username": user.username,
            "display_name": user.display_name,
            "roles": user.roles,
            "is_service": user.is_service,
            "password_generated": generated_password.is_some(),
        })),
    )
    .await?;
    let pending = match op.user_id() {
        Some(by) if !plan.awaiting.is_empty() => {
            Some(request_roles(&mut tx, op, origin, &user, &plan.awaiting, by, at).await?)
        }
        _ => None,
    };
    idempotency::bind(
        &mut tx,
        origin,
        Created::User {
            id: user.id,
            initial_password: generated_password.as_deref(),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(CreatedAccount {
        user,
        generated_password,
        pending,
    })
}

/// Records a request for guarded roles, to be confirmed by a second
/// administrator, in the caller's transaction.
async fn request_roles(
    tx: &mut PgConnection,
    op: &Operator<'_>,
    origin: &Origin,
    target: &UserRow,
    roles: &RoleSet,
    by: Uuid,
    at: DateTime<Utc>,
) -> Result<RoleGrantRow, AppError> {
    let names = roles.names();
    let grant = cab_db::role_grants::insert(
        tx,
        &NewRoleGrant {
            id: Uuid::new_v4(),
            user_id: target.id,
            roles: &names,
            requested_by: by,
            requested_at: at,
        },
    )
    .await?;
    audit_log::record(
        tx,
        Some(op.audit_actor()),
        origin,
        "user.roles_requested",
        Entity::new("user", target.id),
        json!({
            "username": target.username,
            "grant": grant.id,
            "roles": names,
        }),
    )
    .await?;
    Ok(grant)
}

/// What a role change did: the account as it is now, and the request
/// waiting for a second administrator, if any.
#[derive(Debug)]
pub struct RoleChange {
    pub user: UserRow,
    pub pending: Option<RoleGrantRow>,
}

/// Sets an account's roles and ends its sessions, so the change applies at
/// once; except that through the app, a guarded role the account does not
/// hold yet (see [`user_admin::grant_needs_second_admin`]) is only requested,
/// and holds once a second administrator confirms it. A new request replaces
/// the account's open one unless it asks for the same roles.
pub async fn set_roles(
    pool: &PgPool,
    op: &Operator<'_>,
    origin: &Origin,
    target_id: Uuid,
    roles: &[String],
) -> Result<RoleChange, AppError> {
    require_admin(pool, op, origin, "user.set_roles").await?;
    let new_roles = parse_roles(roles)?;
    let mut tx = pool.begin().await?;
    let admins = cab_db::users::count_active_admins_for_update(&mut tx).await?;
    let target = cab_db::users::find_by_id_for_update(&mut tx, target_id)
        .await?
        .ok_or(AppError::NotFound("user"))?;
    if let Err(d) = user_admin::check_set_roles(&op.actor(), &account(&target)?, &new_roles, admins)
    {
        let entity = Entity::new("user", target_id);
        let actor = op.audit_actor();
        return Err(refusal::refuse_in(tx, pool, actor, origin, "user.set_roles", entity, d).await);
    }
    let old_roles = account(&target)?.roles;
    let plan = op.plan(&old_roles, &new_roles);
    let now = Utc::now();
    let mut pending = None;
    if let Some(open) = cab_db::role_grants::open_for_user_for_update(&mut tx, target_id).await? {
        let same = RoleSet::parse(&open.roles).is_ok_and(|r| r == plan.awaiting);
        if same {
            pending = Some(open);
        } else {
            cab_db::role_grants::cancel(&mut tx, open.id, None, now).await?;
            audit_log::record(
                &mut tx,
                Some(op.audit_actor()),
                origin,
                "user.roles_cancelled",
                Entity::new("user", target_id),
                op.mark(json!({
                    "username": target.username,
                    "grant": open.id,
                    "roles": open.roles,
                    "replaced": true,
                })),
            )
            .await?;
        }
    }
    let names = plan.now.names();
    let mut user = target.clone();
    if plan.now != old_roles || plan.awaiting.is_empty() {
        cab_db::users::set_roles(&mut tx, target_id, &names).await?;
        let ended =
            cab_db::sessions::end_all_for_user(&mut tx, target_id, "roles changed", now).await?;
        audit_log::record(
            &mut tx,
            Some(op.audit_actor()),
            origin,
            "user.roles_changed",
            Entity::new("user", target_id),
            op.mark(json!({
                "username": target.username,
                "from": target.roles,
                "to": names,
                "sessions_ended": ended,
            })),
        )
        .await?;
        user.roles = names;
    }
    if let (None, Some(by)) = (&pending, op.user_id())
        && !plan.awaiting.is_empty()
    {
        pending = Some(request_roles(&mut tx, op, origin, &user, &plan.awaiting, by, now).await?);
    }
    tx.commit().await?;
    Ok(RoleChange { user, pending })
}

fn grant_facts(row: &RoleGrantRow) -> Result<RoleGrant, AppError> {
    let state = match (row.confirmed_at, row.cancelled_at) {
        (Some(_), _) => GrantState::Confirmed,
        (None, Some(_)) => GrantState::Cancelled,
        (None, None) => GrantState::Pending,
    };
    Ok(RoleGrant {
        requested_by: row.requested_by,
        roles: RoleSet::parse(&row.roles).map_err(|e| AppError::Internal(e.into()))?,
        state,
    })
}

/// The request and its account, both locked (the account first, as in every
/// role change).
async fn lock_grant(
    tx: &mut PgConnection,
    grant_id: Uuid,
) -> Result<(RoleGrantRow, UserRow), AppError> {
    let grant = cab_db::role_grants::find(tx, grant_id)
        .await?
        .ok_or(AppError::NotFound("role request"))?;
    let target = cab_db::users::find_by_id_for_update(tx, grant.user_id)
        .await?
        .ok_or(AppError::NotFound("user"))?;
    let grant = cab_db::role_grants::find_for_update(tx, grant_id)
        .await?
        .ok_or(AppError::NotFound("role request"))?;
    Ok((grant, target))
}

/// A second administrator confirms a request: the roles are added to the
/// account's and its sessions end, so they apply at once.
pub async fn confirm_grant(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    grant_id: Uuid,
) -> Result<RoleChange, AppError> {
    let op = Operator::User(user);
    require_admin(pool, &op, origin, "user.confirm_roles").await?;
    let mut tx = pool.begin().await?;
    let (grant, target) = lock_grant(&mut tx, grant_id).await?;
    let facts = grant_facts(&grant)?;
    if let Err(d) = user_admin::check_confirm_grant(&user.actor(), &facts, &account(&target)?) {
        let entity = Entity::new("user", target.id);
        let actor = op.audit_actor();
        return Err(
            refusal::refuse_in(tx, pool, actor, origin, "user.confirm_roles", entity, d).await,
        );
    }
    let mut roles = account(&target)?.roles;
    for role in facts.roles.iter() {
        roles.insert(role);
    }
    let names = roles.names();
    let now = Utc::now();
    let requester = cab_db::users::find_by_id(&mut tx, grant.requested_by).await?;
    cab_db::role_grants::confirm(&mut tx, grant.id, user.id, now).await?;
    cab_db::users::set_roles(&mut tx, target.id, &names).await?;
    let ended =
        cab_db::sessions::end_all_for_user(&mut tx, target.id, "roles changed", now).await?;
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        "user.roles_confirmed",
        Entity::new("user", target.id),
        json!({
            "username": target.username,
            "grant": grant.id,
            "roles": grant.roles,
            "requested_by": requester.map(|r| r.username),
            "requested_by_id": grant.requested_by,
            "from": target.roles,
            "to": names,
            "sessions_ended": ended,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(RoleChange {
        user: UserRow {
            roles: names,
            ..target
        },
        pending: None,
    })
}

/// Withdraws an open request; the account keeps the roles it holds.
pub async fn cancel_grant(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    grant_id: Uuid,
) -> Result<RoleGrantRow, AppError> {
    let op = Operator::User(user);
    require_admin(pool, &op, origin, "user.cancel_roles").await?;
    let mut tx = pool.begin().await?;
    let (grant, target) = lock_grant(&mut tx, grant_id).await?;
    if let Err(d) = user_admin::check_cancel_grant(&user.actor(), &grant_facts(&grant)?) {
        let entity = Entity::new("user", target.id);
        let actor = op.audit_actor();
        return Err(
            refusal::refuse_in(tx, pool, actor, origin, "user.cancel_roles", entity, d).await,
        );
    }
    let now = Utc::now();
    cab_db::role_grants::cancel(&mut tx, grant.id, Some(user.id), now).await?;
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        "user.roles_cancelled",
        Entity::new("user", target.id),
        json!({
            "username": target.username,
            "grant": grant.id,
            "roles": grant.roles,
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(RoleGrantRow {
        cancelled_by: Some(user.id),
        cancelled_at: Some(now),
        ..grant
    })
}

/// How many settled requests the lists show besides the open ones.
pub const RECENT_GRANTS: i64 = 50;

/// Open requests and recent settled ones, for administrators and auditors;
/// of one account when `user_id` is given. Anyone else's attempt is recorded.
pub async fn role_grants(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    user_id: Option<Uuid>,
) -> Result<Vec<RoleGrantLine>, AppError> {
    let allowed = user_admin::check_read_grants(&user.actor());
    let entity = Entity::kind("role_grant");
    refusal::checked(
        pool,
        user.audit_actor(),
        origin,
        "role_grant.read",
        entity,
        allowed,
    )
    .await?;
    let mut conn = pool.acquire().await?;
    Ok(cab_db::role_grants::lines(&mut conn, user_id, RECENT_GRANTS).await?)
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
        let entity = Entity::new("user", target_id);
        let actor = op.audit_actor();
        return Err(refusal::refuse_in(tx, pool, actor, origin, "user.disable", entity, d).await);
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
    cab_domain::text::check_name("name", name)?;
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
        let entity = Entity::new("user", target_id);
        let actor = op.audit_actor();
        return Err(
            refusal::refuse_in(tx, pool, actor, origin, "api_token.create", entity, d).await,
        );
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
    idempotency::bind(
        &mut tx,
        origin,
        Created::ApiToken {
            id: token.id,
            secret: &issued.secret,
        },
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
