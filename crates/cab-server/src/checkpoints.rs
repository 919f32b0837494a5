//! Signed checkpoints of the audit chain. CAB signs the chain's head at
//! least hourly while events arrive, and on demand (every export ends at a
//! checkpoint signed for it). Before it signs, it verifies the events since
//! the last checkpoint, so a checkpoint vouches for a chain that was intact
//! when it was signed; the audit page verifies from the latest checkpoint
//! on. Every replica runs the schedule; an advisory lock lets one sign.

use std::time::Duration;

use cab_db::checkpoints::{CheckpointRow, KeyRow, VerificationRow};
use cab_domain::audit::{AuditAction, ChainBreak, ChainHead, ChainVerifier, GENESIS_HASH};
use cab_domain::checkpoint::{self, Checkpoint, VerifierKey};
use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use serde_json::json;
use sqlx::postgres::PgRow;
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

impl From<ChainBreak> for Unverified {
    fn from(b: ChainBreak) -> Self {
        Unverified::Broken(b)
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

/// Events checked as one batch, on one worker thread. Small: a few batches
/// are in hand at once, so the server's memory stays what it was.
const VERIFY_BATCH: usize = 1000;

/// Events read by one statement: a statement stays well under a second (a
/// longer one is reported as slow), and batches run on across statements.
/// Debug builds (the tests') use a window that is not a multiple of the
/// batch, so the tests' chains of a few thousand events cross both edges.
const VERIFY_WINDOW: i64 = if cfg!(debug_assertions) {
    1_500
} else {
    50_000
};

/// One batch checked: how many events, and the stored hash of the kept
/// (external) head if the batch holds it.
type BatchChecked = Result<(u64, Option<Vec<u8>>), Unverified>;

/// Checks one batch against the stored hash of the event before it: each
/// event's hash recomputed from its fields and the hash before it, and the
/// sequence without a gap.
fn check_batch(before: &ChainHead, rows: &[PgRow], kept: Option<i64>) -> BatchChecked {
    let mut verifier = ChainVerifier::after(before);
    let mut at_kept = None;
    for row in rows {
        // A row whose fields cannot be read (a NULL role, a number out of
        // range) was written around CAB: a break, named, not a failure to
        // check.
        let (record, hash) = match cab_db::audit::decode_content(row) {
            Ok(read) => read,
            Err(e) => {
                let seq =
                    cab_db::audit::content_link(row).map_or(verifier.last_seq() + 1, |l| l.seq);
                return Err(ChainBreak {
                    seq,
                    reason: format!("its stored fields cannot be read ({e})"),
                }
                .into());
            }
        };
        verifier.check_content(&record, &hash)?;
        if kept == Some(record.seq) {
            at_kept = Some(hash);
        }
    }
    Ok((verifier.finish(None)?, at_kept))
}

/// Checks the events after `start` up to `head`: each hash recomputed from
/// the event's fields and the hash before it, the sequence without a gap,
/// the chain ending at `head`, and, if given, an `external` head (kept
/// elsewhere) on the chain. The number checked.
///
/// The events are read in order, by statements of [`VERIFY_WINDOW`]
/// events, and checked in batches on worker
/// threads, as many at once as the machine has cores: each batch links to
/// the stored hash of the event before it, which the batch before checks,
/// so together they check every link exactly as one pass would. Results are
/// taken in order, so the break reported is the first in the chain.
pub async fn verify_range(
    conn: &mut PgConnection,
    start: &ChainHead,
    head: &ChainHead,
    external: Option<&ChainHead>,
) -> Result<u64, Unverified> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8));
    let kept = external.map(|k| k.seq);
    let mut in_flight = std::collections::VecDeque::new();
    let mut checked = 0u64;
    let mut at_kept = None;
    let mut take = |done: Result<BatchChecked, tokio::task::JoinError>| -> Result<(), Unverified> {
        let (n, hash) =
            done.map_err(|e| AppError::Internal(anyhow::anyhow!("checking the chain: {e}")))??;
        checked += n;
        if hash.is_some() {
            at_kept = hash;
        }
        Ok(())
    };
    // A head behind where the check starts (a head row moved back around
    // CAB, behind a signed checkpoint) is a break too.
    if head.seq < start.seq {
        return Err(Unverified::Broken(ChainBreak {
            seq: head.seq + 1,
            reason: format!(
                "missing: the recorded head is event {} but the chain was verified up to event {}",
                head.seq, start.seq
            ),
        }));
    }
    // The stored link of the event before the next batch.
    let mut before = start.clone();
    let mut batch = Vec::with_capacity(VERIFY_BATCH);
    let mut lo = start.seq;
    loop {
        // One statement per window of event numbers: each stays short.
        let hi = head.seq.min(lo.saturating_add(VERIFY_WINDOW));
        let mut rows = cab_db::audit::content_rows(conn, lo, hi);
        let mut read = 0usize;
        loop {
            let row = rows.try_next().await?;
            let window_done = row.is_none();
            if let Some(row) = row {
                batch.push(row);
                read += 1;
            }
            // The last window, or one with no event at all: the chain stops
            // here, short of a head that claims more (the check below names
            // where), however far beyond a head row moved around CAB claims.
            let end = window_done && (hi >= head.seq || read == 0);
            if batch.len() == VERIFY_BATCH || (end && !batch.is_empty()) {
                let last = batch.last().map(cab_db::audit::content_link).transpose()?;
                let from = std::mem::replace(&mut before, last.unwrap_or_else(|| start.clone()));
                let rows = std::mem::replace(&mut batch, Vec::with_capacity(VERIFY_BATCH));
                in_flight.push_back(tokio::task::spawn_blocking(move || {
                    check_batch(&from, &rows, kept)
                }));
                if in_flight.len() > workers
                    && let Some(oldest) = in_flight.pop_front()
                {
                    take(oldest.await)?;
                }
            }
            if window_done {
                break;
            }
        }
        drop(rows);
        if hi >= head.seq || read == 0 {
            break;
        }
        lo = hi;
    }
    while let Some(next) = in_flight.pop_front() {
        take(next.await)?;
    }
    // Every batch held: `before` is the last event, checked; the chain must
    // end at the head.
    let last_seq = before.seq;
    ChainVerifier::after(&before)
        .finish(Some(head))
        .map_err(Unverified::Broken)?;
    if let Some(kept) = external {
        if kept.seq > last_seq {
            return Err(Unverified::Broken(ChainBreak {
                seq: last_seq + 1,
                reason: format!(
                    "missing: the head you recorded is event {} but the chain ends at event {}",
                    kept.seq, last_seq
                ),
            }));
        }
        if kept.seq > start.seq && at_kept.as_deref() != Some(kept.hash.as_slice()) {
            return Err(Unverified::Broken(ChainBreak {
                seq: kept.seq,
                reason: "its hash differs from the head you recorded".into(),
            }));
        }
    }
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

/// How often one of the servers checks the whole chain and every signed
/// checkpoint. The audit page checks only from the latest checkpoint on;
/// this catches, within a day, a rewrite of older events by someone going
/// around CAB, and the page shows its outcome.
pub const WHOLE_CHECK_EVERY: Duration = Duration::from_secs(24 * 60 * 60);

/// How old the latest whole check may be before the audit page says the
/// daily check has stopped: two of its days, so one missed run (a deploy,
/// a restart at the wrong hour) does not raise it.
pub const WHOLE_CHECK_OVERDUE: chrono::Duration = chrono::Duration::days(2);

/// Who ran a whole check.
pub const BY_SCHEDULE: &str = "schedule";
pub const BY_COMMAND: &str = "command";

fn finding(refused: &Unverified) -> (i64, String) {
    match refused {
        Unverified::Broken(b) => (b.seq, b.to_string()),
        Unverified::BadCheckpoint { seq, .. } => (*seq, refused.to_string()),
        Unverified::Failed(_) => (0, refused.to_string()),
    }
}

/// Checks the whole chain against its head (and an `external` head, if
/// given), then every signed checkpoint. The outcome, to be recorded, and
/// the head verified when the chain holds. Fails only when the check could
/// not be made (the database unreachable), never for what it finds.
pub async fn check_whole(
    pool: &PgPool,
    external: Option<&ChainHead>,
    run_by: &str,
) -> Result<(VerificationRow, Option<ChainHead>), AppError> {
    let started_at = Utc::now();
    let mut row = VerificationRow {
        started_at,
        finished_at: started_at,
        run_by: run_by.to_owned(),
        head_seq: 0,
        events: 0,
        checkpoints: 0,
        finding: None,
    };
    let mut verified = None;
    match verify_whole(pool, external).await {
        Ok((checked, head)) => {
            row.events = i64::try_from(checked).unwrap_or(i64::MAX);
            row.head_seq = head.seq;
            verified = Some(head);
            let mut conn = pool.acquire().await?;
            match verify_all(&mut conn).await {
                Ok(n) => row.checkpoints = i64::try_from(n).unwrap_or(i64::MAX),
                Err(Unverified::Failed(e)) => return Err(e),
                Err(refused) => row.finding = Some(finding(&refused)),
            }
        }
        Err(Unverified::Failed(e)) => return Err(e),
        Err(broken) => {
            let mut conn = pool.acquire().await?;
            row.head_seq = cab_db::audit::head(&mut conn).await?.seq;
            row.finding = Some(finding(&broken));
        }
    }
    row.finished_at = Utc::now();
    Ok((row, verified))
}

/// The schedule's whole check: when the latest (by anyone) is `every` old
/// or there is none, one server checks and records the outcome; the
/// others, holding no lock, pass. The check recorded, if this call made it.
pub async fn check_whole_if_due(
    pool: &PgPool,
    now: DateTime<Utc>,
    every: Duration,
) -> Result<Option<VerificationRow>, AppError> {
    let every = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::days(1));
    let mut lock = pool.begin().await?;
    // A check dated ahead of now (a fast clock, or a row written around
    // CAB) is not believed: it is due all the same.
    let due = cab_db::checkpoints::try_lock_whole_check(&mut lock).await?
        && cab_db::checkpoints::latest_verification(&mut lock)
            .await?
            .is_none_or(|l| {
                l.finished_at + every <= now || l.finished_at > now + chrono::Duration::minutes(5)
            });
    if !due {
        lock.rollback().await?;
        return Ok(None);
    }
    // Checked on other connections, in a snapshot of their own; the lock
    // stays held meanwhile, and the outcome is recorded under it.
    let checked = check_whole(pool, None, BY_SCHEDULE).await;
    let row = match checked {
        Ok((row, _)) => row,
        Err(e) => {
            lock.rollback().await?;
            return Err(e);
        }
    };
    // Recorded on a connection of its own: the lock's transaction sat idle
    // through the check, and a database that ends idle transactions may
    // have ended it; the record must not go with it.
    let recorded = async {
        let mut conn = pool.acquire().await?;
        cab_db::checkpoints::record_verification(&mut conn, &row).await
    }
    .await;
    if let Err(e) = lock.rollback().await {
        tracing::warn!(error = %e, "ending the whole check's lock failed");
    }
    recorded?;
    match &row.finding {
        // Recorded and shown on the audit page; the log stays for trouble.
        None => tracing::debug!(
            events = row.events,
            checkpoints = row.checkpoints,
            "the whole audit chain and every checkpoint verified"
        ),
        Some((seq, why)) => {
            tracing::error!(seq, finding = %why, "the whole audit chain does not verify")
        }
    }
    Ok(Some(row))
}

/// Every server's schedule: looks every `tick` whether a checkpoint is due,
/// then whether the whole chain's check is.
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
        if let Err(e) = check_whole_if_due(&pool, Utc::now(), WHOLE_CHECK_EVERY).await {
            tracing::warn!(error = %e, "checking the whole audit chain failed; will retry");
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
