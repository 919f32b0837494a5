//! Signed checkpoints of the audit chain and the keys that sign them.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// A checkpoint as kept: the head it signs and its signed note.
#[derive(Debug, Clone)]
pub struct CheckpointRow {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub signed_at: DateTime<Utc>,
    pub kid: String,
    pub note: String,
}

/// A checkpoint key: its public half, and its private half sealed.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub kid: String,
    pub name: String,
    pub public_key: Vec<u8>,
    pub sealed_private: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
}

/// Waits for the signing lock, held until the transaction ends: one server
/// signs at a time.
pub async fn lock_signing(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtextextended('cab.checkpoints', 0))")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Takes the signing lock if nobody holds it.
pub async fn try_lock_signing(conn: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT pg_try_advisory_xact_lock(hashtextextended('cab.checkpoints', 0)) AS "got!""#
    )
    .fetch_one(&mut *conn)
    .await
}

/// The newest checkpoint.
pub async fn latest(conn: &mut PgConnection) -> sqlx::Result<Option<CheckpointRow>> {
    sqlx::query_as!(
        CheckpointRow,
        "SELECT seq, hash, signed_at, kid, note FROM audit_checkpoints ORDER BY seq DESC LIMIT 1"
    )
    .fetch_optional(&mut *conn)
    .await
}

/// Checkpoints older than `before` (or the newest), newest first.
pub async fn list(
    conn: &mut PgConnection,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<CheckpointRow>> {
    sqlx::query_as!(
        CheckpointRow,
        "SELECT seq, hash, signed_at, kid, note FROM audit_checkpoints
         WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
        before.unwrap_or(i64::MAX),
        limit
    )
    .fetch_all(&mut *conn)
    .await
}

pub async fn insert(conn: &mut PgConnection, row: &CheckpointRow) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO audit_checkpoints (seq, hash, signed_at, kid, note) VALUES ($1, $2, $3, $4, $5)",
        row.seq,
        row.hash,
        row.signed_at,
        row.kid,
        row.note
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Every checkpoint key, newest first.
pub async fn keys(conn: &mut PgConnection) -> sqlx::Result<Vec<KeyRow>> {
    sqlx::query_as!(
        KeyRow,
        "SELECT kid, name, public_key, sealed_private, created_at, retired_at
         FROM audit_checkpoint_keys ORDER BY created_at DESC, kid"
    )
    .fetch_all(&mut *conn)
    .await
}

/// Retires the active key (if any) and makes `row` the one that signs.
pub async fn rotate_key(conn: &mut PgConnection, row: &KeyRow) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE audit_checkpoint_keys SET retired_at = $1 WHERE retired_at IS NULL",
        row.created_at
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO audit_checkpoint_keys (kid, name, public_key, sealed_private, created_at)
         VALUES ($1, $2, $3, $4, $5)",
        row.kid,
        row.name,
        row.public_key,
        row.sealed_private,
        row.created_at
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A check of the whole chain, as recorded.
#[derive(Debug, Clone)]
pub struct VerificationRow {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub run_by: String,
    pub head_seq: i64,
    pub events: i64,
    pub checkpoints: i64,
    /// What failed, and where; none when the chain and every checkpoint held.
    pub finding: Option<(i64, String)>,
}

/// Takes the lock of the whole-chain check if nobody holds it (until the
/// transaction ends): one server checks at a time.
pub async fn try_lock_whole_check(conn: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT pg_try_advisory_xact_lock(hashtextextended('cab.audit_verify', 0)) AS "got!""#
    )
    .fetch_one(&mut *conn)
    .await
}

/// Records a check of the whole chain.
pub async fn record_verification(conn: &mut PgConnection, v: &VerificationRow) -> sqlx::Result<()> {
    let (finding_seq, finding) = v.finding.clone().unzip();
    sqlx::query!(
        "INSERT INTO audit_verifications
             (started_at, finished_at, run_by, head_seq, events, checkpoints, finding, finding_seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        v.started_at,
        v.finished_at,
        v.run_by,
        v.head_seq,
        v.events,
        v.checkpoints,
        finding,
        finding_seq
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The latest check of the whole chain: the last recorded (its own times
/// come from the clock of whoever ran it).
pub async fn latest_verification(conn: &mut PgConnection) -> sqlx::Result<Option<VerificationRow>> {
    let row = sqlx::query!(
        "SELECT started_at, finished_at, run_by, head_seq, events, checkpoints, finding, finding_seq
         FROM audit_verifications ORDER BY id DESC LIMIT 1"
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| VerificationRow {
        started_at: r.started_at,
        finished_at: r.finished_at,
        run_by: r.run_by,
        head_seq: r.head_seq,
        events: r.events,
        checkpoints: r.checkpoints,
        finding: r.finding_seq.zip(r.finding),
    }))
}
