//! The quorum policy: the administrators' setting in force today, and the
//! policy each change is decided under, fixed when it was submitted.

use cab_domain::approval::QuorumPolicy;
use chrono::Utc;
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::audit_log::{self, Entity};
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::refusal;
use crate::request::Origin;

/// The name of the setting that holds the policy.
pub const QUORUM_SETTING: &str = "quorum_policy";

/// The policy a change is decided under, from what is stored: the policy
/// fixed when it was submitted, else the administrators' setting, else the
/// default. Unreadable, it is an error, never a weaker policy.
pub fn policy_from(fixed: Option<Value>, setting: Option<Value>) -> Result<QuorumPolicy, AppError> {
    match (fixed, setting) {
        (Some(v), _) => serde_json::from_value(v).map_err(|e| {
            AppError::Internal(anyhow::anyhow!(
                "the change's quorum policy is unreadable: {e}"
            ))
        }),
        (None, Some(v)) => serde_json::from_value(v).map_err(|e| {
            AppError::Internal(anyhow::anyhow!("stored quorum policy is unreadable: {e}"))
        }),
        (None, None) => Ok(QuorumPolicy::default()),
    }
}

/// The policy in force today: the stored setting, or the default when none
/// was ever set.
pub async fn in_force(conn: &mut PgConnection) -> Result<QuorumPolicy, AppError> {
    let setting = cab_db::decisions::setting(conn, QUORUM_SETTING).await?;
    policy_from(None, setting)
}

/// The policy a change is decided under: fixed when it was submitted (a
/// draft, or a change from before policies were fixed, reads today's).
pub async fn fixed_for(conn: &mut PgConnection, id: Uuid) -> Result<QuorumPolicy, AppError> {
    match cab_db::changes::quorum_policy(conn, id).await? {
        Some(v) => policy_from(Some(v), None),
        None => in_force(conn).await,
    }
}

/// An administrator sets the quorum policy.
pub async fn set(
    pool: &PgPool,
    user: &CurrentUser,
    origin: &Origin,
    new: QuorumPolicy,
) -> Result<QuorumPolicy, AppError> {
    let allowed = cab_domain::user_admin::require_admin(&user.actor());
    let entity = Entity::kind("settings");
    refusal::checked(
        pool,
        user.audit_actor(),
        origin,
        "settings.quorum",
        entity,
        allowed,
    )
    .await?;
    let errors = new.validate();
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let mut tx = pool.begin().await?;
    let old = in_force(&mut tx).await?;
    let value = serde_json::to_value(new).map_err(|e| AppError::Internal(e.into()))?;
    cab_db::decisions::put_setting(&mut tx, QUORUM_SETTING, &value, user.id, Utc::now()).await?;
    audit_log::record(
        &mut tx,
        Some(user.audit_actor()),
        origin,
        "settings.quorum_changed",
        Entity::new("settings", QUORUM_SETTING),
        json!({ "from": old, "to": new }),
    )
    .await?;
    tx.commit().await?;
    Ok(new)
}
