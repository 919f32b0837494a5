//! Signed checkpoints of the audit chain. CAB signs the chain's head at
//! least hourly while events arrive, and on demand (every export ends at a
//! checkpoint signed for it). Before it signs, it verifies the events since
//! the last checkpoint, so a checkpoint vouches for a chain that was intact
//! when it was signed; the audit page verifies from the latest checkpoint
//! on. Every replica runs the schedule; an advisory lock lets one sign.

use std::time::Duration;

use cab_db::checkpoints::{CheckpointRow, KeyRow};
use cab_domain::audit::{AuditAction, ChainBreak, ChainHead, ChainVerifier, GENESIS_HASH};
use cab_domain::checkpoint::{self, Checkpoint, VerifierKey};
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgConnection, PgPool};

use crate::audit_log::{self, Entity};
use crate::crypto::Keys;
use crate::crypto::checkpoint::{SealedKey, generate, open};
use crate::error::AppError;
use crate::request::Origin;

/// The longest a head that moved waits for a checkpoint.
pub const EVERY: Duration = Duration::from_secs(60 * 60);

/// The key name (and checkpoint origin) for a CAB at `public_url`: its host
/// and path, then `/audit`.
pub fn key_name(public_url: &str) -> String {
    let rest = public_url
        .split_once("://")
        .map_or(public_url, |(_, rest)| rest)
        .trim_end_matches('/');
    let name: String = format!("{rest}/audit")
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == '+' {
                '-'
            } else {
                c
            }
        })
        .collect();
    if checkpoint::valid_key_name(&name) {
        name
    } else {
        "cab/audit".to_owned()
    }
}

fn sealed(k: &KeyRow) -> Result<SealedKey, AppError> {
    Ok(SealedKey {
        kid: k.kid.clone(),
        name: k.name.clone(),
        public_key: k.public_key.as_slice().try_into().map_err(|_| {
            AppError::Internal(anyhow::anyhow!("checkpoint key {} is not 32 bytes", k.kid))
        })?,
        sealed_private: k.sealed_private.clone(),
    })
}

/// The verifier key of a stored key.
pub fn verifier(k: &KeyRow) -> Option<VerifierKey> {
    let public: [u8; 32] = k.public_key.as_slice().try_into().ok()?;
    VerifierKey::parse(&checkpoint::verifier_key(&k.name, &public)).ok()
}

/// Why a checkpoint was not signed, or a chain not vouched for.
#[derive(Debug)]
pub enum Unverified {
    /// The chain is broken since the last checkpoint.
    Broken(ChainBreak),
    /// A stored checkpoint does not verify.
    BadCheckpoint {
        seq: i64,
        why: String,
    },
    Failed(AppError),
}

impl std::fmt::Display for Unverified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unverified::Broken(b) => write!(f, "{b}"),
            Unverified::BadCheckpoint { seq, why } => {
                write!(f, "the checkpoint at event {seq} does not verify: {why}")
            }
            Unverified::Failed(e) => write!(f, "{e}"),
        }
    }
}

impl From<AppError> for Unverified {
    fn from(e: AppError) -> Self {
        Unverified::Failed(e)
    }
}

impl From<sqlx::Error> for Unverified {
    fn from(e: sqlx::Error) -> Self {
        Unverified::Failed(e.into())
    }
}

/// The chain checked from the latest checkpoint to the head.
#[derive(Debug)]
pub struct Verified {
    /// Where the check began; none before the first checkpoint.
    pub checkpoint: Option<CheckpointRow>,
    pub checked: u64,
    pub head: ChainHead,
}

/// Checks a stored checkpoint: its note verifies under its key (one of
/// `keys`), says what the row says, and the event it names has that hash.
async fn check_row(
    conn: &mut PgConnection,
    row: &CheckpointRow,
    keys: &[KeyRow],
) -> Result<(), Unverified> {
    let bad = |why: String| Unverified::BadCheckpoint { seq: row.seq, why };
    let key = keys
        .iter()
        .find(|k| k.kid == row.kid)
        .and_then(verifier)
        .ok_or_else(|| bad(format!("its key {} is not published", row.kid)))?;
    let signed = checkpoint::open(&row.note, &key).map_err(|e| bad(e.0))?;
    if signed.seq != row.seq || signed.hash != row.hash {
        return Err(bad("its note names another head".into()));
    }
    let at = cab_db::audit::page(conn, row.seq - 1, 1).await?;
    match at.first() {
        Some(e) if e.record.seq == row.seq && e.hash == row.hash => Ok(()),
        _ => Err(bad("the event it names has another hash now".into())),
    }
}

/// Checks every stored checkpoint, newest first: each note verifies under
/// its published key and names the head its row says, and the event it
/// names still has that hash. The number checked, or the first that fails.
pub async fn verify_all(conn: &mut PgConnection) -> Result<u64, Unverified> {
    let keys = cab_db::checkpoints::keys(conn).await?;
    let mut checked = 0;
    let mut before = None;
    loop {
        let rows = cab_db::checkpoints::list(conn, before, 500).await?;
        let Some(last) = rows.last() else { break };
        before = Some(last.seq);
        for row in &rows {
            check_row(conn, row, &keys).await?;
            checked += 1;
        }
    }
    Ok(checked)
}

/// Events a verifier reads at once. Small: with one page being checked,
/// one waiting and one being read, the server's memory stays what it was
/// (a large page's events, once parsed, would stay with the allocator).
const VERIFY_PAGE: i64 = 1000;

/// Checks the events after `start` up to `head`: each hash recomputed from
/// the event's fields and the hash before it, the sequence without a gap,
/// the chain ending at `head`, and, if given, an `external` head (kept
/// elsewhere) on the chain. The next page is read while the last is checked
/// on another thread. The number checked.
pub async fn verify_range(
    conn: &mut PgConnection,
    start: &ChainHead,
    head: &ChainHead,
    external: Option<&ChainHead>,
) -> Result<u64, Unverified> {
    let (pages, mut received) =
        tokio::sync::mpsc::channel::<Vec<(cab_domain::audit::AuditRecord, Vec<u8>)>>(1);
    let (from, until, kept) = (start.clone(), head.clone(), external.cloned());
    let checker = tokio::task::spawn_blocking(move || -> Result<u64, ChainBreak> {
        let mut verifier = ChainVerifier::after(&from);
        let mut at_kept = None;
        while let Some(page) = received.blocking_recv() {
            for (record, hash) in page {
                verifier.check_content(&record, &hash)?;
                if kept.as_ref().is_some_and(|k| k.seq == record.seq) {
                    at_kept = Some(hash);
                }
            }
        }
        let last = verifier.last_seq();
        let checked = verifier.finish(Some(&until))?;
        if let Some(kept) = &kept {
            if kept.seq > last {
                return Err(ChainBreak {
                    seq: last + 1,
                    reason: format!(
                        "missing: the head you recorded is event {} but the chain ends at event {}",
                        kept.seq, last
                    ),
                });
            }
            if kept.seq > from.seq && at_kept.as_deref() != Some(kept.hash.as_slice()) {
                return Err(ChainBreak {
                    seq: kept.seq,
                    reason: "its hash differs from the head you recorded".into(),
                });
            }
        }
        Ok(checked)
    });
    let mut after = start.seq;
    let read = async {
        loop {
            let page = cab_db::audit::content_page(conn, after, head.seq, VERIFY_PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            after = last.seq;
            if pages.send(page).await.is_err() {
                // The checker found a break and stopped.
                break;
            }
        }
        drop(pages);
        Ok::<_, sqlx::Error>(())
    };
    let read = read.await;
    let checked = checker
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("checking the chain: {e}")))?
        .map_err(Unverified::Broken)?;
    read?;
    Ok(checked)
}

/// The whole chain, from the first event, against the recorded head, in one
/// snapshot (so events appended meanwhile do not count against it): and no
/// event may lie beyond that head, which only a writer going around CAB
/// could put there.
pub async fn verify_whole(
    pool: &PgPool,
    external: Option<&ChainHead>,
) -> Result<(u64, ChainHead), Unverified> {
    let mut tx = pool.begin().await?;
    cab_db::audit::snapshot(&mut tx).await?;
    let head = cab_db::audit::head(&mut tx).await?;
    let genesis = ChainHead {
        seq: 0,
        hash: GENESIS_HASH.to_vec(),
    };
    let checked = verify_range(&mut tx, &genesis, &head, external).await?;
    if let Some(seq) = cab_db::audit::first_after(&mut tx, head.seq).await? {
        return Err(Unverified::Broken(ChainBreak {
            seq,
            reason: format!("it lies beyond the recorded head (event {})", head.seq),
        }));
    }
    tx.rollback().await?;
    Ok((checked, head))
}

/// Verifies the chain from the latest checkpoint (its signature first) to
/// the head as the connection reads it (in a snapshot, or under the
/// signing lock).
pub async fn verify_since_checkpoint(conn: &mut PgConnection) -> Result<Verified, Unverified> {
    let head = cab_db::audit::head(conn).await?;
    let latest = cab_db::checkpoints::latest(conn).await?;
    let start = match &latest {
        Some(row) => {
            let keys = cab_db::checkpoints::keys(conn).await?;
            check_row(conn, row, &keys).await?;
            ChainHead {
                seq: row.seq,
                hash: row.hash.clone(),
            }
        }
        None => ChainHead {
            seq: 0,
            hash: GENESIS_HASH.to_vec(),
        },
    };
    let checked = verify_range(conn, &start, &head, None).await?;
    Ok(Verified {
        checkpoint: latest,
        checked,
        head,
    })
}

/// The key that signs now, opened, if this server's secret key opens it.
async fn usable_key(
    conn: &mut PgConnection,
    keys: &Keys,
) -> Result<(Option<(SealedKey, ed25519_dalek::SigningKey)>, bool), AppError> {
    let active = cab_db::checkpoints::keys(conn)
        .await?
        .into_iter()
        .find(|k| k.retired_at.is_none());
    let Some(row) = &active else {
        return Ok((None, false));
    };
    let key = sealed(row)?;
    match open(keys, &key) {
        Ok(signing) => Ok((Some((key, signing)), true)),
        Err(e) => {
            tracing::warn!(error = %e, "the checkpoint key cannot be opened; a new one will sign");
            Ok((None, true))
        }
    }
}

/// The key that signs now, opened; a new one when there is none or this
/// server's secret key does not open it (it was changed). A new key is
/// recorded. Its own short transaction: the record takes the trail's head,
/// which no verification may hold.
async fn signing_key_in(
    pool: &PgPool,
    keys: &Keys,
    name: &str,
    now: DateTime<Utc>,
) -> Result<(SealedKey, ed25519_dalek::SigningKey), AppError> {
    let mut tx = pool.begin().await?;
    cab_db::checkpoints::lock_signing(&mut tx).await?;
    match signing_key(&mut tx, keys, name, now).await {
        Ok(made) => {
            tx.commit().await?;
            Ok(made)
        }
        Err(e) => {
            tx.rollback().await?;
            Err(e)
        }
    }
}

async fn signing_key(
    conn: &mut PgConnection,
    keys: &Keys,
    name: &str,
    now: DateTime<Utc>,
) -> Result<(SealedKey, ed25519_dalek::SigningKey), AppError> {
    let (usable, any) = usable_key(conn, keys).await?;
    if let Some(found) = usable {
        return Ok(found);
    }
    let key = generate(keys, name).map_err(AppError::Internal)?;
    let signing = open(keys, &key).map_err(AppError::Internal)?;
    cab_db::checkpoints::rotate_key(
        conn,
        &KeyRow {
            kid: key.kid.clone(),
            name: key.name.clone(),
            public_key: key.public_key.to_vec(),
            sealed_private: key.sealed_private.clone(),
            created_at: now,
            retired_at: None,
        },
    )
    .await?;
    audit_log::record(
        conn,
        None,
        &Origin::default(),
        AuditAction::CheckpointKeyMade.as_str(),
        Entity::new("signing_key", &key.kid),
        json!({
            "kid": key.kid,
            "first": !any,
            "verifier_key": checkpoint::verifier_key(&key.name, &key.public_key),
        }),
    )
    .await?;
    Ok((key, signing))
}

/// Signs the head under the signing lock, unless it is signed already;
/// `due` decides from the latest checkpoint whether to sign at all.
async fn sign_locked(
    conn: &mut PgConnection,
    keys: &Keys,
    now: DateTime<Utc>,
    due: impl Fn(Option<&CheckpointRow>) -> bool,
) -> Result<Option<CheckpointRow>, Unverified> {
    let latest = cab_db::checkpoints::latest(conn).await?;
    let head = cab_db::audit::head(conn).await?;
    if head.seq == 0 || latest.as_ref().is_some_and(|l| l.seq >= head.seq) {
        return Ok(latest);
    }
    if !due(latest.as_ref()) {
        return Ok(latest);
    }
    // A key is made beforehand, in a transaction of its own (`sign_now`).
    let Some((key, signing)) = usable_key(conn, keys).await?.0 else {
        return Err(Unverified::Failed(AppError::Internal(anyhow::anyhow!(
            "no checkpoint key this server can open"
        ))));
    };
    let verified = verify_since_checkpoint(conn).await?;
    let time = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
    let cp = Checkpoint {
        origin: key.name.clone(),
        seq: verified.head.seq,
        hash: verified.head.hash.clone(),
        time,
    };
    let row = CheckpointRow {
        seq: cp.seq,
        hash: cp.hash.clone(),
        signed_at: time,
        kid: key.kid.clone(),
        note: checkpoint::sign(&cp, &key.name, &signing),
    };
    cab_db::checkpoints::insert(conn, &row).await?;
    Ok(Some(row))
}

/// Signs the chain's head now (waiting for another server's signing), or
/// gives back the checkpoint already at the head. `None` while the chain is
/// empty.
pub async fn sign_now(
    pool: &PgPool,
    keys: &Keys,
    name: &str,
) -> Result<Option<CheckpointRow>, Unverified> {
    if cab_db::audit::head(&mut *pool.acquire().await?).await?.seq == 0 {
        return Ok(None);
    }
    signing_key_in(pool, keys, name, Utc::now()).await?;
    let mut tx = pool.begin().await?;
    cab_db::checkpoints::lock_signing(&mut tx).await?;
    // Ended on every path, not when dropped: the signing lock goes with it.
    match sign_locked(&mut tx, keys, Utc::now(), |_| true).await {
        Ok(row) => {
            tx.commit().await?;
            Ok(row)
        }
        Err(refused) => {
            tx.rollback().await?;
            Err(refused)
        }
    }
}

/// Signs any note text with the checkpoint key (the evidence pack's
/// manifest), making the key if there is none.
pub async fn sign_text(
    pool: &PgPool,
    keys: &Keys,
    name: &str,
    text: &str,
) -> Result<String, AppError> {
    let (key, signing) = signing_key_in(pool, keys, name, Utc::now()).await?;
    Ok(checkpoint::sign_text(text, &key.name, &signing))
}

/// An administrator asks for a checkpoint now; anyone else is refused,
/// and the refusal recorded. A chain that no longer verifies is not signed:
/// the answer names the first broken event.
pub async fn sign_on_request(
    state: &crate::AppState,
    user: &crate::auth::CurrentUser,
    origin: &Origin,
) -> Result<Option<CheckpointRow>, AppError> {
    let allowed = cab_domain::user_admin::require_admin(&user.actor());
    crate::refusal::checked(
        &state.pool,
        user.audit_actor(),
        origin,
        cab_domain::audit::Attempt::AuditCheckpoint.as_str(),
        Entity::kind("audit"),
        allowed,
    )
    .await?;
    let name = key_name(&state.settings.public_url);
    match sign_now(&state.pool, &state.keys, &name).await {
        Ok(row) => Ok(row),
        Err(Unverified::Failed(e)) => Err(e),
        Err(refused) => Err(AppError::Conflict(cab_domain::Denial::new(
            "audit_chain_broken",
            format!("CAB signs no checkpoint of a chain that does not verify: {refused}."),
        ))),
    }
}

/// Signs the head if the latest checkpoint is `every` old or more (or there
/// is none) and the chain has moved since, unless another server is signing.
pub async fn sign_if_due(
    pool: &PgPool,
    keys: &Keys,
    name: &str,
    now: DateTime<Utc>,
    every: Duration,
) -> Result<Option<CheckpointRow>, Unverified> {
    let every = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::hours(1));
    let due = |latest: Option<&CheckpointRow>| latest.is_none_or(|l| l.signed_at + every <= now);
    // Whether to sign at all, first; the key is made (when it must be)
    // before the signing takes the lock again.
    {
        let mut tx = pool.begin().await?;
        if !cab_db::checkpoints::try_lock_signing(&mut tx).await? {
            return Ok(None);
        }
        let latest = cab_db::checkpoints::latest(&mut tx).await?;
        let head = cab_db::audit::head(&mut tx).await?;
        let skip = head.seq == 0
            || latest.as_ref().is_some_and(|l| l.seq >= head.seq)
            || !due(latest.as_ref());
        let keyless = !skip && usable_key(&mut tx, keys).await?.0.is_none();
        // Ended here, not when dropped: the lock goes with it now, so the
        // signing below can take it again.
        tx.rollback().await?;
        if skip {
            return Ok(latest);
        }
        if keyless {
            signing_key_in(pool, keys, name, now).await?;
        }
    }
    let mut tx = pool.begin().await?;
    if !cab_db::checkpoints::try_lock_signing(&mut tx).await? {
        return Ok(None);
    }
    // Ended on every path, not when dropped: the signing lock goes with it.
    match sign_locked(&mut tx, keys, now, due).await {
        Ok(row) => {
            tx.commit().await?;
            Ok(row)
        }
        Err(refused) => {
            tx.rollback().await?;
            Err(refused)
        }
    }
}

/// Every server's schedule: looks every `tick` whether a checkpoint is due.
pub async fn run_signer(pool: PgPool, keys: std::sync::Arc<Keys>, name: String, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match sign_if_due(&pool, &keys, &name, Utc::now(), EVERY).await {
            Ok(_) => {}
            Err(Unverified::Failed(e)) => {
                tracing::warn!(error = %e, "signing a checkpoint failed; will retry")
            }
            Err(refused) => {
                tracing::error!(error = %refused, "not signing a checkpoint: the audit chain does not verify")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_name_is_the_public_host_and_path() {
        assert_eq!(key_name("https://cab.example.com"), "cab.example.com/audit");
        assert_eq!(
            key_name("http://localhost:8080/cab/"),
            "localhost:8080/cab/audit"
        );
        assert_eq!(key_name("cab host"), "cab-host/audit");
    }
}
