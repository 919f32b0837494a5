//! Idempotency keys of the API's creating requests: which effect a caller's
//! key stands for, and the answer it was given. Rows count for `lifetime`
//! from `created_at` (the database's clock); older ones are ignored.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// The lock key the purge holds (`pg_try_advisory_xact_lock`) so that one
/// server at a time deletes expired keys.
const PURGE_LOCK: i64 = 0x6361_625f_6964_656d; // "cab_idem"

/// A live key: the request that bound it and what it answered, if stored.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub fingerprint: Vec<u8>,
    pub entity_kind: String,
    pub entity_id: Uuid,
    pub sealed_secret: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
    pub response_status: Option<i16>,
    pub response_type: Option<String>,
    pub response_location: Option<String>,
    pub response_body: Option<Vec<u8>>,
    /// Bound less than `settle` ago: the request that bound it may still be
    /// about to store its answer.
    pub settling: bool,
}

pub struct NewKey<'a> {
    pub user_id: Uuid,
    pub key_hash: &'a [u8],
    pub fingerprint: &'a [u8],
    pub entity_kind: &'a str,
    pub entity_id: Uuid,
    pub sealed_secret: Option<&'a [u8]>,
}

pub struct Answer<'a> {
    pub status: i16,
    pub content_type: Option<&'a str>,
    pub location: Option<&'a str>,
    pub sealed_body: &'a [u8],
}

fn seconds(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

/// The caller's live key with this hash.
pub async fn find(
    conn: &mut PgConnection,
    user_id: Uuid,
    key_hash: &[u8],
    lifetime: chrono::Duration,
    settle: chrono::Duration,
) -> sqlx::Result<Option<KeyRow>> {
    sqlx::query_as!(
        KeyRow,
        r#"SELECT fingerprint, entity_kind, entity_id, sealed_secret, created_at,
                  response_status, response_type, response_location, response_body,
                  created_at > clock_timestamp() - make_interval(secs => $4) AS "settling!"
           FROM idempotency_keys
           WHERE user_id = $1 AND key_hash = $2
             AND created_at > now() - make_interval(secs => $3)"#,
        user_id,
        key_hash,
        seconds(lifetime),
        seconds(settle)
    )
    .fetch_optional(&mut *conn)
    .await
}

/// Binds the key to the effect, in the effect's transaction. `false` when the
/// caller's key is live already (bound by a request that committed first,
/// waited for if it is committing now): the effect must then be rolled back.
/// An expired row of the same key is replaced.
pub async fn bind(
    conn: &mut PgConnection,
    key: &NewKey<'_>,
    lifetime: chrono::Duration,
) -> sqlx::Result<bool> {
    let bound = sqlx::query_scalar!(
        r#"INSERT INTO idempotency_keys
               (user_id, key_hash, fingerprint, entity_kind, entity_id, sealed_secret, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp())
           ON CONFLICT (user_id, key_hash) DO UPDATE
              SET fingerprint = EXCLUDED.fingerprint,
                  entity_kind = EXCLUDED.entity_kind,
                  entity_id = EXCLUDED.entity_id,
                  sealed_secret = EXCLUDED.sealed_secret,
                  created_at = EXCLUDED.created_at,
                  response_status = NULL,
                  response_type = NULL,
                  response_location = NULL,
                  response_body = NULL,
                  answered_at = NULL
            WHERE idempotency_keys.created_at <= now() - make_interval(secs => $7)
           RETURNING true AS "bound!""#,
        key.user_id,
        key.key_hash,
        key.fingerprint,
        key.entity_kind,
        key.entity_id,
        key.sealed_secret,
        seconds(lifetime)
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(bound.is_some())
}

/// Stores the answer given for a bound key, unless one is stored already.
pub async fn store_answer(
    conn: &mut PgConnection,
    user_id: Uuid,
    key_hash: &[u8],
    answer: &Answer<'_>,
) -> sqlx::Result<bool> {
    let stored = sqlx::query!(
        "UPDATE idempotency_keys
            SET response_status = $3, response_type = $4, response_location = $5,
                response_body = $6, answered_at = clock_timestamp()
          WHERE user_id = $1 AND key_hash = $2 AND response_status IS NULL",
        user_id,
        key_hash,
        answer.status,
        answer.content_type,
        answer.location,
        answer.sealed_body
    )
    .execute(&mut *conn)
    .await?;
    Ok(stored.rows_affected() == 1)
}

/// Deletes keys past `lifetime`, unless another server is doing so: `None`
/// then. Call in a transaction, which holds the lock until it ends.
pub async fn purge_expired(
    conn: &mut PgConnection,
    lifetime: chrono::Duration,
) -> sqlx::Result<Option<u64>> {
    let locked = sqlx::query_scalar!(
        r#"SELECT pg_try_advisory_xact_lock($1) AS "locked!""#,
        PURGE_LOCK
    )
    .fetch_one(&mut *conn)
    .await?;
    if !locked {
        return Ok(None);
    }
    let deleted = sqlx::query!(
        "DELETE FROM idempotency_keys WHERE created_at <= now() - make_interval(secs => $1)",
        seconds(lifetime)
    )
    .execute(&mut *conn)
    .await?;
    Ok(Some(deleted.rows_affected()))
}
