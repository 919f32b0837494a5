//! Checking an NDJSON export of the audit events with nothing but the file
//! and CAB's public keys: every event's hash, the chain's continuity (for an
//! export of every event), the trailer's row count and SHA-256, the signed
//! checkpoint it ends at, and CAB's signed note of the export as a whole
//! (its filter, rows, digest and cut), which makes a filtered export
//! exactly what CAB exported; and, given an earlier checkpoint, that this
//! export extends it.
//!
//! What can be checked of an event line alone (its fields are the bytes
//! hashed, its hash is theirs) is [`examine`], which any thread may run;
//! what links the lines (the chain, the order, the digest of the file, the
//! trailer) is [`ExportVerifier::take`], in the order of the file.
//! [`check_stream`] runs the first on worker threads over batches of lines
//! while the reading thread does the second, in bounded memory.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Mutex, mpsc};

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::audit::{ChainBreak, ChainHead, GENESIS_HASH, JsonText, canonical_json, chain_hash};
use crate::checkpoint::{self, Checkpoint, ExportNote, VerifierKey};

/// Where and why an export does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportBreak {
    /// The line of the file, counting from 1.
    pub line: u64,
    pub reason: String,
}

impl std::fmt::Display for ExportBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ExportBreak {}

/// What a verified export holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub rows: u64,
    /// Whether the export was filtered: then each event's hash was checked,
    /// but not the links between them.
    pub filtered: bool,
    /// The signed checkpoint the export ends at.
    pub checkpoint: Checkpoint,
    /// Which of the keys given signed the checkpoint (their positions).
    pub checkpoint_signers: Vec<usize>,
    /// Which of them signed the export's own note.
    pub note_signers: Vec<usize>,
}

/// A string of a line, borrowed from it where it holds no escape.
#[derive(Debug)]
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

impl Text<'_> {
    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventLine<'a> {
    seq: i64,
    #[serde(borrow)]
    occurred_at: Text<'a>,
    #[serde(borrow)]
    actor_id: Option<Text<'a>>,
    #[serde(borrow)]
    actor_username: Option<Text<'a>>,
    #[allow(dead_code)]
    #[serde(borrow)]
    actor_name: Option<Text<'a>>,
    #[serde(borrow)]
    actor_roles: Vec<Text<'a>>,
    #[serde(borrow)]
    action: Text<'a>,
    #[allow(dead_code)]
    #[serde(borrow)]
    action_label: Text<'a>,
    #[serde(borrow)]
    entity_type: Text<'a>,
    #[serde(borrow)]
    entity_id: Option<Text<'a>>,
    #[serde(borrow)]
    payload: JsonText<'a>,
    #[serde(borrow)]
    request_id: Option<Text<'a>>,
    #[serde(borrow)]
    client_addr: Option<Text<'a>>,
    #[serde(borrow)]
    prev_hash: Text<'a>,
    #[serde(borrow)]
    hash: Text<'a>,
    #[serde(borrow)]
    canonical: Text<'a>,
}

#[derive(Deserialize)]
struct TrailerCheckpoint {
    seq: i64,
    hash: String,
    note: Option<String>,
}

#[derive(Deserialize)]
struct Trailer {
    rows: u64,
    sha256: String,
    checkpoint: TrailerCheckpoint,
    /// CAB's signed note of the export as a whole.
    export_note: Option<String>,
}

#[derive(Deserialize)]
struct TrailerLine {
    trailer: Trailer,
}

/// What an event line says of itself, checked alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLink {
    pub seq: i64,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
    pub alone: Alone,
}

/// Whether an event holds together alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alone {
    /// Its fields are the bytes hashed, and its hash is theirs.
    Sound,
    /// Its fields differ from the bytes that were hashed.
    Edited,
    /// Its hash is not SHA-256 of its previous hash and its bytes.
    Unhashed,
}

/// A line as [`examine`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Examined {
    /// An event line; or why it cannot be read as one though it is shaped
    /// like one.
    Event(Result<EventLink, String>),
    /// Not an event line (the header, the trailer, or neither), with why it
    /// is not one.
    Other(String),
}

fn hex32(s: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok().map(|()| out)
}

/// Reads the items of canonical bytes one at a time (see
/// [`crate::audit::AuditRecord::canonical_bytes`]).
struct Items<'c>(&'c [u8]);

impl<'c> Items<'c> {
    fn item(&mut self) -> Option<&'c [u8]> {
        let (len, rest) = self.0.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
        if rest.len() < len {
            return None;
        }
        let (item, rest) = rest.split_at(len);
        self.0 = rest;
        Some(item)
    }

    /// An optional item: `None` when malformed, `Some(None)` when absent.
    fn optional(&mut self) -> Option<Option<&'c [u8]>> {
        let (&flag, rest) = self.0.split_first()?;
        self.0 = rest;
        match flag {
            0 => Some(None),
            1 => self.item().map(Some),
            _ => None,
        }
    }

    fn is(&mut self, expected: &[u8]) -> bool {
        self.item() == Some(expected)
    }

    fn is_opt(&mut self, expected: Option<&Text<'_>>) -> bool {
        self.optional() == Some(expected.map(Text::bytes))
    }
}

/// Whether the line's fields are exactly the canonical bytes' items.
fn fields_are(e: &EventLine<'_>, canonical: &[u8]) -> bool {
    let mut c = Items(canonical);
    let mut payload = Vec::new();
    let same = c.is(b"cab-audit-v1")
        && c.is(e.seq.to_string().as_bytes())
        && c.is(e.occurred_at.bytes())
        && c.is_opt(e.actor_id.as_ref())
        && c.is_opt(e.actor_username.as_ref())
        && c.is(e.actor_roles.len().to_string().as_bytes())
        && e.actor_roles.iter().all(|r| c.is(r.bytes()))
        && c.is(e.action.bytes())
        && c.is(e.entity_type.bytes())
        && c.is_opt(e.entity_id.as_ref())
        && c.item().is_some_and(|item| {
            e.payload.write_canonical(&mut payload);
            item == payload.as_slice()
        })
        && c.is_opt(e.request_id.as_ref())
        && c.is_opt(e.client_addr.as_ref());
    same && c.0.is_empty()
}

/// Checks what an event line says of itself: that its hashes are hashes,
/// its canonical bytes base64, its fields those bytes' items, and its hash
/// SHA-256 of its previous hash and those bytes. Needs nothing but the line,
/// so lines may be examined in any order, on any thread.
pub fn examine(bytes: &[u8]) -> Examined {
    let e: EventLine = match serde_json::from_slice(bytes) {
        Ok(e) => e,
        Err(err) => return Examined::Other(err.to_string()),
    };
    let (Some(prev_hash), Some(hash)) = (hex32(e.prev_hash.bytes()), hex32(e.hash.bytes())) else {
        return Examined::Event(Err("a hash is not 32 bytes of hex".into()));
    };
    let Ok(canonical) = base64::engine::general_purpose::STANDARD.decode(e.canonical.bytes())
    else {
        return Examined::Event(Err("the canonical bytes are not base64".into()));
    };
    let alone = if !fields_are(&e, &canonical) {
        Alone::Edited
    } else if chain_hash(&prev_hash, &canonical) != hash {
        Alone::Unhashed
    } else {
        Alone::Sound
    };
    Examined::Event(Ok(EventLink {
        seq: e.seq,
        prev_hash,
        hash,
        alone,
    }))
}

/// Checks an export fed to it line by line, in the order of the file.
pub struct ExportVerifier {
    keys: Vec<VerifierKey>,
    from: Option<Checkpoint>,
    digest: Sha256,
    line: u64,
    rows: u64,
    filtered: Option<bool>,
    /// The header's filter as JSON, keys sorted.
    filter: String,
    last: Option<ChainHead>,
    /// Whether the earlier checkpoint's event was met, with its hash.
    met_from: bool,
    done: Option<Verified>,
}

impl ExportVerifier {
    /// `keys`: CAB's checkpoint keys, any of which may have signed (those
    /// from before and after a rotation); `from`: an earlier checkpoint
    /// this export must extend.
    pub fn new(keys: Vec<VerifierKey>, from: Option<Checkpoint>) -> Self {
        ExportVerifier {
            keys,
            from,
            digest: Sha256::new(),
            line: 0,
            rows: 0,
            filtered: None,
            filter: String::new(),
            last: None,
            met_from: false,
            done: None,
        }
    }

    fn fault<T>(&self, reason: impl Into<String>) -> Result<T, ExportBreak> {
        Err(ExportBreak {
            line: self.line,
            reason: reason.into(),
        })
    }

    /// Takes the next line, its newline included.
    pub fn line(&mut self, bytes: &[u8]) -> Result<(), ExportBreak> {
        self.take(bytes, examine(bytes))
    }

    /// Takes the next line, its newline included, as [`examine`] found it.
    pub fn take(&mut self, bytes: &[u8], examined: Examined) -> Result<(), ExportBreak> {
        self.line += 1;
        if self.done.is_some() {
            return self.fault("there is more after the trailer");
        }
        if !bytes.ends_with(b"\n") {
            return self.fault("the line does not end with a newline: the file is cut short");
        }
        let why_not = match (self.filtered, examined) {
            (Some(_), Examined::Event(Ok(link))) => {
                self.event(&link)?;
                self.digest.update(bytes);
                return Ok(());
            }
            (Some(_), Examined::Event(Err(reason))) => return self.fault(reason),
            (_, Examined::Other(why)) => why,
            (None, Examined::Event(_)) => String::new(),
        };
        let value: Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) => return self.fault(format!("not JSON: {e}")),
        };
        if self.filtered.is_none() {
            let Some(export) = value.get("export") else {
                return self.fault("the first line says what the export holds");
            };
            if export.get("trail").and_then(Value::as_str) != Some("events") {
                return self.fault("this is not an export of the audit events");
            }
            let filtered = export
                .get("filter")
                .and_then(Value::as_object)
                .is_none_or(|f| !f.is_empty());
            self.filtered = Some(filtered);
            self.filter = canonical_json(export.get("filter").unwrap_or(&Value::Null));
            self.digest.update(bytes);
            return Ok(());
        }
        if value.get("trailer").is_some() {
            return self.trailer(bytes);
        }
        self.fault(format!("not an event: {why_not}"))
    }

    fn event(&mut self, e: &EventLink) -> Result<(), ExportBreak> {
        let seq = e.seq;
        if self.filtered == Some(true) {
            // Alone: its fields are the bytes hashed, and the hash is theirs.
            match e.alone {
                Alone::Edited => {
                    return self.fault(format!(
                        "event {seq}: its fields differ from the bytes that were hashed (edited)"
                    ));
                }
                Alone::Unhashed => {
                    return self.fault(format!("event {seq}: its hash does not match its content"));
                }
                Alone::Sound => {}
            }
            if self.last.as_ref().is_some_and(|l| l.seq >= seq) {
                return self.fault(format!("event {seq} is out of order"));
            }
        } else {
            let (next, prev) = match &self.last {
                Some(l) => (l.seq + 1, l.hash.as_slice()),
                None => (1, &GENESIS_HASH[..]),
            };
            let reason = if seq != next {
                Some(format!(
                    "expected sequence number {next} here; events are missing or out of order"
                ))
            } else if e.prev_hash[..] != *prev {
                Some("its previous-hash does not match the hash of the event before it".into())
            } else {
                match e.alone {
                    Alone::Edited => Some(
                        "its stored fields differ from the bytes that were hashed (edited)".into(),
                    ),
                    Alone::Unhashed => Some("its hash does not match its content".into()),
                    Alone::Sound => None,
                }
            };
            if let Some(reason) = reason {
                return self.fault(ChainBreak { seq, reason }.to_string());
            }
        }
        if let Some(from) = &self.from
            && from.seq == seq
        {
            if from.hash != e.hash {
                return self.fault(format!(
                    "event {seq} differs from the earlier checkpoint: this export does not extend it"
                ));
            }
            self.met_from = true;
        }
        self.rows += 1;
        self.last = Some(ChainHead {
            seq,
            hash: e.hash.to_vec(),
        });
        Ok(())
    }

    fn trailer(&mut self, bytes: &[u8]) -> Result<(), ExportBreak> {
        let t: TrailerLine = match serde_json::from_slice(bytes) {
            Ok(t) => t,
            Err(e) => return self.fault(format!("not a trailer: {e}")),
        };
        let t = t.trailer;
        if t.rows != self.rows {
            return self.fault(format!(
                "the trailer counts {} rows but the export holds {}",
                t.rows, self.rows
            ));
        }
        let digest = hex::encode(std::mem::take(&mut self.digest).finalize());
        if t.sha256 != digest {
            return self.fault("the SHA-256 of the lines before the trailer differs from the trailer's: lines were changed, added or removed");
        }
        let Some(note) = t.checkpoint.note else {
            return self.fault("the export ends at no signed checkpoint (the chain did not verify when it was made)");
        };
        let (cp, checkpoint_signers) = match checkpoint::open_text_signed(&note, &self.keys)
            .and_then(|(text, by)| Ok((Checkpoint::parse(&text)?, by)))
        {
            Ok(signed) => signed,
            Err(e) => return self.fault(format!("the checkpoint: {e}")),
        };
        if cp.seq != t.checkpoint.seq
            || hex32(t.checkpoint.hash.as_bytes()).map(|h| h.to_vec()) != Some(cp.hash.clone())
        {
            return self.fault("the trailer's head differs from its signed checkpoint");
        }
        let note_signers = self.signed_as_a_whole(t.export_note.as_deref(), &digest, &cp)?;
        if self.filtered == Some(false) {
            let reached = self.last.clone().unwrap_or(ChainHead {
                seq: 0,
                hash: Vec::new(),
            });
            if reached.seq != cp.seq {
                return self.fault(format!(
                    "the chain ends at event {} but the signed checkpoint is at event {}",
                    reached.seq, cp.seq
                ));
            }
            if reached.hash != cp.hash {
                return self.fault(format!(
                    "event {} differs from the one the signed checkpoint names: another history",
                    cp.seq
                ));
            }
        }
        if let Some(from) = &self.from {
            if from.origin != cp.origin {
                return self.fault("the earlier checkpoint is of another chain");
            }
            if from.seq > cp.seq {
                return self.fault(format!(
                    "the earlier checkpoint (event {}) is beyond this export's (event {})",
                    from.seq, cp.seq
                ));
            }
            if !self.met_from {
                return self.fault(format!(
                    "this export does not hold event {}, the earlier checkpoint's",
                    from.seq
                ));
            }
        }
        self.done = Some(Verified {
            rows: self.rows,
            filtered: self.filtered == Some(true),
            checkpoint: cp,
            checkpoint_signers,
            note_signers,
        });
        Ok(())
    }

    /// The export's own note: signed by CAB, and saying of the file what
    /// the file is: its origin, trail, filter, rows, digest and cut.
    fn signed_as_a_whole(
        &self,
        note: Option<&str>,
        digest: &str,
        cp: &Checkpoint,
    ) -> Result<Vec<usize>, ExportBreak> {
        let Some(note) = note else {
            return self.fault(
                "the trailer carries no signed note of the export: nothing vouches for the file as a whole (an export made before CAB signed exports as a whole has none: export it again)",
            );
        };
        let (n, signers) = match checkpoint::open_text_signed(note, &self.keys)
            .and_then(|(text, by)| Ok((ExportNote::parse(&text)?, by)))
        {
            Ok(signed) => signed,
            Err(e) => return self.fault(format!("the export's note: {e}")),
        };
        if n.origin != cp.origin {
            return self.fault(format!(
                "the export's note is of {}, its checkpoint of {}",
                n.origin, cp.origin
            ));
        }
        if n.trail != "events" {
            return self.fault(format!(
                "the export's note was signed for an export of the {}, not of the events",
                n.trail
            ));
        }
        if n.filter != self.filter {
            return self.fault(format!(
                "the export's note was signed for the filter {}, but the first line says {}",
                n.filter, self.filter
            ));
        }
        if n.rows != self.rows {
            return self.fault(format!(
                "CAB signed an export of {} rows but the file holds {}: rows were added or removed",
                n.rows, self.rows
            ));
        }
        if n.sha256 != digest {
            return self.fault("the SHA-256 of the lines before the trailer differs from the one CAB signed: lines were changed, added or removed");
        }
        if n.cut != cp.head() {
            return self.fault(format!(
                "the export's note was signed for a cut at event {}, its checkpoint is at event {}",
                n.cut.seq, cp.seq
            ));
        }
        Ok(signers)
    }

    /// Ends the check: the file must have ended with its trailer.
    pub fn finish(self) -> Result<Verified, ExportBreak> {
        match self.done {
            Some(v) => Ok(v),
            None => Err(ExportBreak {
                line: self.line,
                reason: "the file ends without its trailer: it is cut short".into(),
            }),
        }
    }
}

/// The lines of a batch, each with its newline (the last one of a file may
/// have none).
fn lines(batch: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = batch;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |at| at + 1);
        let (line, tail) = rest.split_at(end);
        rest = tail;
        Some(line)
    })
}

/// Reads into `buf` until it holds `want` bytes or the input ends; whether
/// it ended.
fn fill(input: &mut impl Read, buf: &mut Vec<u8>, want: usize) -> std::io::Result<bool> {
    while buf.len() < want {
        let start = buf.len();
        buf.resize(want, 0);
        match input.read(&mut buf[start..]) {
            Ok(0) => {
                buf.truncate(start);
                return Ok(true);
            }
            Ok(n) => buf.truncate(start + n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => buf.truncate(start),
            Err(e) => {
                buf.truncate(start);
                return Err(e);
            }
        }
    }
    Ok(false)
}

/// Whether the oldest of the `held` batches is to be taken now: when more
/// than twice as many as the workers are held (which bounds the memory the
/// check takes whatever the file's size), or when the file has ended.
fn take_now(held: usize, workers: usize, ended: bool) -> bool {
    held > 2 * workers || (ended && held > 0)
}

type Job = (Arc<Vec<u8>>, mpsc::SyncSender<Vec<Examined>>);
/// A batch sent to the workers, and where their findings will come.
type Pending = (Arc<Vec<u8>>, mpsc::Receiver<Vec<Examined>>);

/// Checks a whole export read from `input`: batches of about `batch` bytes
/// of whole lines are examined on `workers` threads while this one takes
/// them in the order of the file (the chain, the digest, the trailer), so
/// the first line that does not verify is the one reported, as line by
/// line. At most twice as many batches as workers, and one more, are held
/// at once.
pub fn check_stream(
    input: impl Read,
    mut verifier: ExportVerifier,
    batch: usize,
    workers: usize,
) -> std::io::Result<Result<Verified, ExportBreak>> {
    let (batch, workers) = (batch.max(1), workers.max(1));
    let (jobs, queue) = mpsc::sync_channel::<Job>(workers);
    let queue = Arc::new(Mutex::new(queue));
    let fed = std::thread::scope(|scope| {
        for _ in 0..workers {
            let queue = Arc::clone(&queue);
            scope.spawn(move || {
                loop {
                    let job = match queue.lock() {
                        Ok(q) => q.recv(),
                        Err(_) => return,
                    };
                    let Ok((bytes, reply)) = job else { return };
                    let _ = reply.send(lines(&bytes).map(examine).collect());
                }
            });
        }
        let fed = feed(input, &mut verifier, &jobs, batch, workers);
        // The workers end once the batches sent are done.
        drop(jobs);
        fed
    })?;
    Ok(fed.and_then(|()| verifier.finish()))
}

/// Reads the batches, hands them to the workers, and takes what they found
/// in order.
fn feed(
    mut input: impl Read,
    verifier: &mut ExportVerifier,
    jobs: &mpsc::SyncSender<Job>,
    batch: usize,
    workers: usize,
) -> std::io::Result<Result<(), ExportBreak>> {
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut carry = Vec::new();
    loop {
        let mut buf = std::mem::take(&mut carry);
        let want = buf.len() + batch;
        let ended = fill(&mut input, &mut buf, want)?;
        if !ended {
            // Whole lines only; the rest begins the next batch.
            match memchr::memrchr(b'\n', &buf) {
                Some(end) => carry = buf.split_off(end + 1),
                None => {
                    carry = buf;
                    continue;
                }
            }
        }
        if !buf.is_empty() {
            let bytes = Arc::new(buf);
            let (reply, answer) = mpsc::sync_channel(1);
            jobs.send((Arc::clone(&bytes), reply))
                .map_err(|_| std::io::Error::other("the checking threads stopped"))?;
            pending.push_back((bytes, answer));
        }
        while take_now(pending.len(), workers, ended) {
            let Some((bytes, answer)) = pending.pop_front() else {
                break;
            };
            let examined = answer
                .recv()
                .map_err(|_| std::io::Error::other("a checking thread stopped"))?;
            for (line, e) in lines(&bytes).zip(examined) {
                if let Err(b) = verifier.take(line, e) {
                    return Ok(Err(b));
                }
            }
        }
        if ended {
            return Ok(Ok(()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditRecord, StoredEvent, seal};
    use crate::export::NdjsonDigest;
    use chrono::DateTime;
    use ed25519_dalek::SigningKey;
    use serde_json::json;

    const NAME: &str = "cab.test/audit";

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[5; 32])
    }

    fn verifier() -> VerifierKey {
        VerifierKey::parse(&checkpoint::verifier_key(
            NAME,
            &key().verifying_key().to_bytes(),
        ))
        .expect("key")
    }

    fn line(e: &StoredEvent) -> String {
        use base64::Engine;
        let r = &e.record;
        let mut v = json!({
            "seq": r.seq,
            "occurred_at": crate::audit::format_time(r.occurred_at),
            "actor_id": r.actor_id,
            "actor_username": r.actor_username,
            "actor_name": null,
            "actor_roles": r.actor_roles,
            "action": r.action,
            "action_label": "x",
            "entity_type": r.entity_type,
            "entity_id": r.entity_id,
            "payload": r.payload,
            "request_id": r.request_id,
            "client_addr": r.client_addr,
            "prev_hash": hex::encode(&e.prev_hash),
            "hash": hex::encode(&e.hash),
            "canonical": base64::engine::general_purpose::STANDARD.encode(&e.canonical),
        })
        .to_string();
        v.push('\n');
        v
    }

    fn chain(n: i64) -> Vec<StoredEvent> {
        let mut prev = crate::audit::GENESIS_HASH.to_vec();
        (1..=n)
            .map(|seq| {
                let e = seal(
                    AuditRecord {
                        seq,
                        occurred_at: DateTime::from_timestamp(1_800_000_000 + seq, 0)
                            .expect("time"),
                        actor_id: None,
                        actor_username: Some("erin".into()),
                        actor_roles: vec!["engineer".into()],
                        action: "change.created".into(),
                        entity_type: "change".into(),
                        entity_id: Some(format!("c{seq}")),
                        payload: json!({"n": seq, "title": "=1+1"}),
                        request_id: None,
                        client_addr: None,
                    },
                    &prev,
                );
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    /// An export of `events` as CAB writes it, ending at a checkpoint of
    /// `at` (the last event by default).
    fn export(events: &[StoredEvent], filter: Value, at: Option<&StoredEvent>) -> Vec<String> {
        let mut lines = vec![format!(
            "{}\n",
            json!({"export": {"trail": "events", "filter": filter}})
        )];
        let mut digest = NdjsonDigest::new();
        digest.preamble(lines[0].as_bytes());
        for e in events {
            let l = line(e);
            digest.row(l.as_bytes());
            lines.push(l);
        }
        let at = at.or(events.last()).expect("an event");
        let cp = Checkpoint {
            origin: NAME.into(),
            seq: at.record.seq,
            hash: at.hash.clone(),
            time: DateTime::from_timestamp(1_900_000_000, 0).expect("time"),
        };
        let note = checkpoint::sign(&cp, NAME, &key());
        let digested = digest.finish();
        let Value::Object(filter) = filter else {
            panic!("a filter is an object")
        };
        let signed = checkpoint::sign_text(
            &digested.note(NAME, "events", &filter, &cp.head()).text(),
            NAME,
            &key(),
        );
        let trailer = digested.trailer(&cp.head(), Some(&note), Some(&signed));
        lines.push(String::from_utf8(trailer).expect("utf-8"));
        lines
    }

    fn check(lines: &[String], from: Option<Checkpoint>) -> Result<Verified, ExportBreak> {
        let mut v = ExportVerifier::new(vec![verifier()], from);
        for l in lines {
            v.line(l.as_bytes())?;
        }
        v.finish()
    }

    #[test]
    fn a_whole_export_verifies() {
        let events = chain(5);
        let v = check(&export(&events, json!({}), None), None).expect("verifies");
        assert_eq!(v.rows, 5);
        assert!(!v.filtered);
        assert_eq!(v.checkpoint.seq, 5);
        assert_eq!((v.checkpoint_signers, v.note_signers), (vec![0], vec![0]));
    }

    #[test]
    fn each_kind_of_tampering_names_its_line() {
        let events = chain(5);
        let good = export(&events, json!({}), None);
        let fails_at = |lines: Vec<String>, line: u64, words: &str| {
            let e = check(&lines, None).expect_err("refused");
            assert_eq!(e.line, line, "{e}");
            assert!(e.reason.contains(words), "{e}");
        };
        // A field edited on a line.
        let mut edited = good.clone();
        edited[3] = edited[3].replace("\"erin\"", "\"mallory\"");
        fails_at(edited, 4, "edited");
        // A line dropped: the next one's link breaks.
        let mut dropped = good.clone();
        dropped.remove(2);
        fails_at(dropped, 3, "expected sequence number 2");
        // A line added at the end (the trailer's count and digest disagree).
        let mut added = good.clone();
        let extra = chain(6).pop().expect("event");
        added.insert(6, line(&extra));
        fails_at(added, 8, "counts 5 rows");
        // The trailer's digest does not match a changed header.
        let mut header = good.clone();
        header[0] = format!(
            "{}\n",
            json!({"export": {"trail": "events", "filter": {}, "x": 1}})
        );
        fails_at(header, 7, "SHA-256");
        // Cut short: no trailer, or a last line without its newline.
        fails_at(good[..6].to_vec(), 6, "cut short");
        let mut cut = good[..6].to_vec();
        cut[5] = cut[5].trim_end().to_owned();
        fails_at(cut, 6, "newline");
        // Something after the trailer.
        let mut after = good.clone();
        after.push("{}\n".into());
        fails_at(after, 8, "after the trailer");
        // The signed note altered.
        let mut note = good.clone();
        note[6] = note[6].replace("\\n5\\n", "\\n4\\n");
        fails_at(note, 7, "checkpoint");
        // Not an export of events.
        let mut other = good.clone();
        other[0] = format!(
            "{}\n",
            json!({"export": {"trail": "approvals", "filter": {}}})
        );
        fails_at(other, 1, "not an export of the audit events");
        fails_at(good[1..].to_vec(), 1, "first line");
    }

    #[test]
    fn a_trailer_or_checkpoint_that_does_not_match_the_chain_is_caught() {
        let events = chain(5);
        let good = export(&events, json!({}), None);
        // The trailer's head edited: it no longer says what the note says.
        let mut lying = good.clone();
        lying[6] = lying[6].replace("\"seq\":5", "\"seq\":4");
        let e = check(&lying, None).expect_err("refused");
        assert_eq!(e.to_string(), format!("line 7: {}", e.reason));
        assert!(e.reason.contains("trailer's head differs"), "{e}");
        // A checkpoint CAB signed of another event 5 (another history).
        let other = StoredEvent {
            hash: events[3].hash.clone(),
            ..events[4].clone()
        };
        let forked = export(&events, json!({}), Some(&other));
        let e = check(&forked, None).expect_err("refused");
        assert!(
            e.reason
                .contains("event 5 differs from the one the signed checkpoint names"),
            "{e}"
        );
        // An earlier checkpoint at the export's own end is extended.
        let same = Checkpoint {
            origin: NAME.into(),
            seq: 5,
            hash: events[4].hash.clone(),
            time: DateTime::from_timestamp(1_850_000_000, 0).expect("time"),
        };
        assert!(check(&good, Some(same)).is_ok());
    }

    #[test]
    fn a_checkpoint_short_of_the_chain_is_caught() {
        let events = chain(5);
        let lines = export(&events, json!({}), Some(&events[3]));
        let e = check(&lines, None).expect_err("refused");
        assert!(
            e.reason
                .contains("ends at event 5 but the signed checkpoint is at event 4"),
            "{e}"
        );
        // Under another key the note does not open.
        let mut v = ExportVerifier::new(
            vec![
                VerifierKey::parse(&checkpoint::verifier_key(
                    NAME,
                    &SigningKey::from_bytes(&[6; 32]).verifying_key().to_bytes(),
                ))
                .expect("key"),
            ],
            None,
        );
        let lines = export(&events, json!({}), None);
        let mut last = Ok(());
        for l in &lines {
            last = v.line(l.as_bytes());
            if last.is_err() {
                break;
            }
        }
        assert!(
            last.expect_err("refused")
                .reason
                .contains("no signature by the key")
        );
    }

    #[test]
    fn a_filtered_export_checks_each_event_alone() {
        let events = chain(6);
        let some: Vec<StoredEvent> = events.iter().step_by(2).cloned().collect();
        let lines = export(&some, json!({"actor": "erin"}), Some(&events[5]));
        let v = check(&lines, None).expect("verifies");
        assert!(v.filtered);
        assert_eq!(v.rows, 3);
        let mut edited = lines.clone();
        edited[2] = edited[2].replace("\"c3\"", "\"c4\"");
        let e = check(&edited, None).expect_err("refused");
        assert!(e.reason.contains("edited"), "{e}");
        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        let e = check(&swapped, None).expect_err("refused");
        assert!(
            e.reason.contains("SHA-256") || e.reason.contains("out of order"),
            "{e}"
        );
    }

    #[test]
    fn a_later_export_extends_an_earlier_checkpoint() {
        let events = chain(8);
        let earlier = Checkpoint {
            origin: NAME.into(),
            seq: 5,
            hash: events[4].hash.clone(),
            time: DateTime::from_timestamp(1_850_000_000, 0).expect("time"),
        };
        let later = export(&events, json!({}), None);
        assert!(check(&later, Some(earlier.clone())).is_ok());
        // A rewritten history does not pass through the earlier checkpoint.
        let forged = Checkpoint {
            hash: vec![9; 32],
            ..earlier.clone()
        };
        let e = check(&later, Some(forged)).expect_err("refused");
        assert!(e.reason.contains("does not extend"), "{e}");
        // An export that stops before the earlier checkpoint.
        let short = export(&events[..4], json!({}), None);
        let e = check(&short, Some(earlier.clone())).expect_err("refused");
        assert!(e.reason.contains("beyond this export"), "{e}");
        // Another chain's checkpoint.
        let stranger = Checkpoint {
            origin: "other/audit".into(),
            ..earlier
        };
        let e = check(&later, Some(stranger)).expect_err("refused");
        assert!(e.reason.contains("another chain"), "{e}");
    }

    /// One event's line as a JSON object, to edit.
    fn fields(e: &StoredEvent) -> serde_json::Map<String, Value> {
        match serde_json::from_str(&line(e)).expect("json") {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn examined(m: &serde_json::Map<String, Value>) -> Examined {
        examine(format!("{}\n", Value::Object(m.clone())).as_bytes())
    }

    fn alone(m: &serde_json::Map<String, Value>) -> Alone {
        match examined(m) {
            Examined::Event(Ok(link)) => link.alone,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn examine_finds_each_field_that_is_not_the_one_hashed() {
        let events = chain(3);
        let good = fields(&events[1]);
        let Examined::Event(Ok(link)) = examined(&good) else {
            panic!("an event")
        };
        assert_eq!(link.seq, 2);
        assert_eq!(link.alone, Alone::Sound);
        assert_eq!(link.hash.to_vec(), events[1].hash);
        assert_eq!(link.prev_hash.to_vec(), events[0].hash);
        for (field, value) in [
            ("seq", json!(3)),
            ("occurred_at", json!("2027-01-15T08:00:01.000001Z")),
            ("actor_id", json!("00000000-0000-0000-0000-000000000001")),
            ("actor_username", json!("mallory")),
            ("actor_username", Value::Null),
            ("actor_roles", json!(["engineer", "admin"])),
            ("actor_roles", json!(["admin"])),
            ("actor_roles", json!([])),
            ("action", json!("change.edited")),
            ("entity_type", json!("release")),
            ("entity_id", json!("c3")),
            ("entity_id", Value::Null),
            ("payload", json!({"n": 2, "title": "=1+2"})),
            ("payload", json!({"n": 2})),
            ("payload", json!({"n": 2, "title": "=1+1", "x": null})),
            ("request_id", json!("r-1")),
            ("client_addr", json!("10.0.0.1")),
        ] {
            let mut m = good.clone();
            m.insert(field.into(), value.clone());
            assert_eq!(alone(&m), Alone::Edited, "{field} = {value}");
        }
        // The readable fields are not the bytes hashed, however well hidden.
        let mut m = good.clone();
        m.insert("actor_name".into(), json!("Someone Else"));
        m.insert("action_label".into(), json!("Anything"));
        assert_eq!(alone(&m), Alone::Sound, "not hashed, not checked");
        // The payload is compared as canonical JSON: order and spaces aside.
        let spaced = line(&events[1]).replace(
            "\"payload\":{\"n\":2,\"title\":\"=1+1\"}",
            "\"payload\": {\"title\": \"\\u003d1+1\", \"n\": 2}",
        );
        assert_ne!(spaced, line(&events[1]));
        assert!(matches!(
            examine(spaced.as_bytes()),
            Examined::Event(Ok(EventLink {
                alone: Alone::Sound,
                ..
            }))
        ));
        // A hash that is not SHA-256 of the previous hash and the bytes.
        for field in ["hash", "prev_hash"] {
            let mut m = good.clone();
            m.insert(field.into(), json!(hex::encode([7u8; 32])));
            assert_eq!(alone(&m), Alone::Unhashed, "{field}");
        }
        // Canonical bytes that say more, or begin otherwise, than the fields.
        use base64::engine::general_purpose::STANDARD;
        let rehashed = |canonical: Vec<u8>| {
            let mut m = good.clone();
            m.insert("canonical".into(), json!(STANDARD.encode(&canonical)));
            m.insert(
                "hash".into(),
                json!(hex::encode(chain_hash(&events[0].hash, &canonical))),
            );
            alone(&m)
        };
        assert_eq!(rehashed(events[1].canonical.clone()), Alone::Sound);
        let mut longer = events[1].canonical.clone();
        longer.push(0);
        assert_eq!(rehashed(longer), Alone::Edited);
        let mut retagged = events[1].canonical.clone();
        retagged[4] = b'C';
        assert_eq!(rehashed(retagged), Alone::Edited);
        let short = events[1].canonical[..events[1].canonical.len() - 1].to_vec();
        assert_eq!(rehashed(short), Alone::Edited);
        // What cannot be read as an event at all.
        let mut m = good.clone();
        m.insert("hash".into(), json!("abc"));
        assert_eq!(
            examined(&m),
            Examined::Event(Err("a hash is not 32 bytes of hex".into()))
        );
        let mut m = good.clone();
        m.insert("prev_hash".into(), json!(hex::encode([1u8; 31])));
        assert!(matches!(examined(&m), Examined::Event(Err(_))));
        let mut m = good.clone();
        m.insert("canonical".into(), json!("not base64!"));
        assert_eq!(
            examined(&m),
            Examined::Event(Err("the canonical bytes are not base64".into()))
        );
        let mut m = good.clone();
        m.insert("extra".into(), json!(1));
        assert!(matches!(examined(&m), Examined::Other(why) if why.contains("extra")));
        assert!(matches!(examine(b"{\"trailer\":{}}\n"), Examined::Other(_)));
    }

    #[test]
    fn canonical_items_are_read_exactly() {
        let mut c = Items(&[0, 0, 0, 2, b'h', b'i', 1, 0, 0, 0, 1, b'x', 0, 2]);
        assert_eq!(c.item(), Some(&b"hi"[..]));
        assert_eq!(c.optional(), Some(Some(&b"x"[..])));
        assert_eq!(c.optional(), Some(None));
        // A flag other than 0 or 1.
        assert_eq!(c.optional(), None);
        assert_eq!(c.optional(), None, "nothing left");
        // A length beyond the bytes, or no length at all.
        assert_eq!(Items(&[0, 0, 0, 3, b'a', b'b']).item(), None);
        assert_eq!(Items(&[0, 0, 0]).item(), None);
        assert_eq!(Items(&[0, 0, 0, 0]).item(), Some(&b""[..]));
        assert_eq!(Items(&[1, 0, 0, 0]).optional(), None);
        let mut c = Items(&[0, 0, 0, 1, b'a', 0, 0, 0, 1, b'b']);
        assert!(c.is(b"a"));
        assert!(!c.is(b"a"));
    }

    /// An export's bytes, and what checking it line by line says.
    fn whole_file(lines: &[String]) -> (Vec<u8>, Result<Verified, ExportBreak>) {
        (lines.concat().into_bytes(), check(lines, None))
    }

    /// Hands out a few bytes at a time, and is interrupted now and then.
    struct Trickle<'a> {
        bytes: &'a [u8],
        calls: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(3) {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(self.bytes.len()).min(5);
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    #[test]
    fn checking_in_batches_on_threads_says_what_line_by_line_says() {
        let events = chain(9);
        let good = export(&events, json!({}), None);
        let mut files = vec![whole_file(&good)];
        let mut edited = good.clone();
        edited[4] = edited[4].replace("\"erin\"", "\"mallory\"");
        // Two faults: the first one is reported.
        edited[7] = edited[7].replace("\"erin\"", "\"mallory\"");
        files.push(whole_file(&edited));
        let mut dropped = good.clone();
        dropped.remove(6);
        files.push(whole_file(&dropped));
        let mut cut = good[..8].to_vec();
        cut[7] = cut[7].trim_end().to_owned();
        files.push(whole_file(&cut));
        let mut after = good.clone();
        after.push("{}\n".into());
        files.push(whole_file(&after));
        files.push(whole_file(&good[..5]));
        files.push(whole_file(&[]));
        let some: Vec<StoredEvent> = events.iter().step_by(3).cloned().collect();
        files.push(whole_file(&export(
            &some,
            json!({"actor": "erin"}),
            Some(&events[8]),
        )));
        let mut not_json = good.clone();
        not_json[3] = "{\"seq\": \n".into();
        files.push(whole_file(&not_json));
        for (bytes, expected) in &files {
            for batch in [1, 10, 700, 1 << 20] {
                for workers in [1, 2, 3] {
                    let got = check_stream(
                        &bytes[..],
                        ExportVerifier::new(vec![verifier()], None),
                        batch,
                        workers,
                    )
                    .expect("read");
                    assert_eq!(&got, expected, "batch {batch}, {workers} workers");
                }
            }
            let trickle = Trickle { bytes, calls: 0 };
            let got = check_stream(trickle, ExportVerifier::new(vec![verifier()], None), 64, 2)
                .expect("read");
            assert_eq!(&got, expected);
        }
        assert!(files[0].1.is_ok());
        assert_eq!(files[1].1.as_ref().map_err(|e| e.line), Err(5));
    }

    #[test]
    fn batches_are_held_up_to_twice_the_workers_then_all_taken_at_the_end() {
        assert!(!take_now(0, 2, false));
        assert!(!take_now(4, 2, false));
        assert!(take_now(5, 2, false));
        assert!(!take_now(2, 1, false));
        assert!(take_now(3, 1, false));
        assert!(take_now(1, 2, true));
        assert!(take_now(5, 2, true));
        assert!(!take_now(0, 2, true));
    }

    /// `lines` with the trailer's `export_note` set to `note`.
    fn with_export_note(lines: &[String], note: Value) -> Vec<String> {
        let mut lines = lines.to_vec();
        let last = lines.pop().expect("a trailer");
        let mut t: Value = serde_json::from_str(&last).expect("json");
        t["trailer"]["export_note"] = note;
        lines.push(format!("{t}\n"));
        lines
    }

    #[test]
    fn the_exports_note_must_say_of_the_file_what_it_holds() {
        let events = chain(6);
        let some: Vec<StoredEvent> = events.iter().step_by(2).cloned().collect();
        let good = export(&some, json!({"actor": "erin"}), Some(&events[5]));
        assert!(check(&good, None).expect("verifies").filtered);
        let t: Value = serde_json::from_str(good.last().expect("trailer")).expect("json");
        let signed = t["trailer"]["export_note"].as_str().expect("a note");
        let right = ExportNote::parse(&checkpoint::open_text(signed, &verifier()).expect("opens"))
            .expect("reads");
        let refused = |note: Value, words: &str| {
            let e = check(&with_export_note(&good, note), None).expect_err("refused");
            assert_eq!(e.line, good.len() as u64, "{e}");
            assert!(e.reason.contains(words), "{words}: {e}");
        };
        let resigned = |n: ExportNote| json!(checkpoint::sign_text(&n.text(), NAME, &key()));
        refused(Value::Null, "no signed note of the export");
        let stranger = SigningKey::from_bytes(&[9; 32]);
        refused(
            json!(checkpoint::sign_text(&right.text(), NAME, &stranger)),
            "the export's note",
        );
        // A checkpoint's note is not an export's.
        refused(
            t["trailer"]["checkpoint"]["note"].clone(),
            "the export's note",
        );
        refused(
            resigned(ExportNote {
                origin: "elsewhere.example/audit".into(),
                ..right.clone()
            }),
            "the export's note is of elsewhere.example/audit",
        );
        refused(
            resigned(ExportNote {
                trail: "approvals".into(),
                ..right.clone()
            }),
            "not of the events",
        );
        refused(
            resigned(ExportNote {
                filter: "{}".into(),
                ..right.clone()
            }),
            "signed for the filter {}",
        );
        refused(
            resigned(ExportNote {
                rows: right.rows + 1,
                ..right.clone()
            }),
            "CAB signed an export of 4 rows but the file holds 3",
        );
        refused(
            resigned(ExportNote {
                sha256: "0".repeat(64),
                ..right.clone()
            }),
            "differs from the one CAB signed",
        );
        refused(
            resigned(ExportNote {
                cut: ChainHead {
                    seq: 5,
                    hash: events[4].hash.clone(),
                },
                ..right.clone()
            }),
            "a cut at event 5, its checkpoint is at event 6",
        );
        assert!(check(&with_export_note(&good, resigned(right)), None).is_ok());
    }

    #[test]
    fn a_file_that_cannot_be_read_is_an_error_not_a_verdict() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk on fire"))
            }
        }
        let e = check_stream(Broken, ExportVerifier::new(vec![verifier()], None), 100, 2)
            .expect_err("an error");
        assert_eq!(e.to_string(), "disk on fire");
        let mut buf = b"ab".to_vec();
        assert!(!fill(&mut &b"cdef"[..], &mut buf, 4).expect("read"));
        assert_eq!(buf, b"abcd");
        assert!(fill(&mut &b""[..], &mut buf, 8).expect("read"));
        assert_eq!(buf, b"abcd");
        assert_eq!(
            lines(b"a\nb\n\nc").collect::<Vec<_>>(),
            vec![&b"a\n"[..], b"b\n", b"\n", b"c"]
        );
    }
}
