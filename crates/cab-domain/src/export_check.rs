//! Checking an NDJSON export of the audit events with nothing but the file
//! and CAB's public key: every event's hash, the chain's continuity (for an
//! export of every event), the trailer's row count and SHA-256, and the
//! signed checkpoint it ends at; and, given an earlier checkpoint, that this
//! export extends it. One line at a time, in constant memory.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::audit::{AuditRecord, ChainHead, ChainVerifier, StoredEvent, chain_hash};
use crate::checkpoint::{self, Checkpoint, VerifierKey};

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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventLine {
    seq: i64,
    occurred_at: String,
    actor_id: Option<Uuid>,
    actor_username: Option<String>,
    #[allow(dead_code)]
    actor_name: Option<String>,
    actor_roles: Vec<String>,
    action: String,
    #[allow(dead_code)]
    action_label: String,
    entity_type: String,
    entity_id: Option<String>,
    payload: Value,
    request_id: Option<String>,
    client_addr: Option<String>,
    prev_hash: String,
    hash: String,
    canonical: String,
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
}

#[derive(Deserialize)]
struct TrailerLine {
    trailer: Trailer,
}

/// Checks an export fed to it line by line.
pub struct ExportVerifier {
    key: VerifierKey,
    from: Option<Checkpoint>,
    digest: Sha256,
    line: u64,
    rows: u64,
    filtered: Option<bool>,
    chain: ChainVerifier,
    last: Option<ChainHead>,
    /// Whether the earlier checkpoint's event was met, with its hash.
    met_from: bool,
    done: Option<Verified>,
}

fn hex32(s: &str) -> Option<Vec<u8>> {
    hex::decode(s).ok().filter(|b| b.len() == 32)
}

impl ExportVerifier {
    /// `from`: an earlier checkpoint this export must extend.
    pub fn new(key: VerifierKey, from: Option<Checkpoint>) -> Self {
        ExportVerifier {
            key,
            from,
            digest: Sha256::new(),
            line: 0,
            rows: 0,
            filtered: None,
            chain: ChainVerifier::new(),
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
        self.line += 1;
        if self.done.is_some() {
            return self.fault("there is more after the trailer");
        }
        if !bytes.ends_with(b"\n") {
            return self.fault("the line does not end with a newline: the file is cut short");
        }
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
            self.digest.update(bytes);
            return Ok(());
        }
        if value.get("trailer").is_some() {
            return self.trailer(bytes);
        }
        self.event(bytes)?;
        self.digest.update(bytes);
        Ok(())
    }

    fn event(&mut self, bytes: &[u8]) -> Result<(), ExportBreak> {
        let e: EventLine = match serde_json::from_slice(bytes) {
            Ok(e) => e,
            Err(err) => return self.fault(format!("not an event: {err}")),
        };
        let (Some(prev_hash), Some(hash)) = (hex32(&e.prev_hash), hex32(&e.hash)) else {
            return self.fault("a hash is not 32 bytes of hex");
        };
        use base64::Engine;
        let Ok(canonical) = base64::engine::general_purpose::STANDARD.decode(&e.canonical) else {
            return self.fault("the canonical bytes are not base64");
        };
        let Ok(occurred_at) = DateTime::parse_from_rfc3339(&e.occurred_at) else {
            return self.fault("the time is not a time");
        };
        let stored = StoredEvent {
            record: AuditRecord {
                seq: e.seq,
                occurred_at: occurred_at.with_timezone(&Utc),
                actor_id: e.actor_id,
                actor_username: e.actor_username,
                actor_roles: e.actor_roles,
                action: e.action,
                entity_type: e.entity_type,
                entity_id: e.entity_id,
                payload: e.payload,
                request_id: e.request_id,
                client_addr: e.client_addr,
            },
            prev_hash,
            hash,
            canonical,
        };
        let seq = stored.record.seq;
        if self.filtered == Some(true) {
            // Alone: its fields are the bytes hashed, and the hash is theirs.
            if stored.record.canonical_bytes() != stored.canonical {
                return self.fault(format!(
                    "event {seq}: its fields differ from the bytes that were hashed (edited)"
                ));
            }
            if chain_hash(&stored.prev_hash, &stored.canonical).as_slice() != stored.hash {
                return self.fault(format!("event {seq}: its hash does not match its content"));
            }
            if self.last.as_ref().is_some_and(|l| l.seq >= seq) {
                return self.fault(format!("event {seq} is out of order"));
            }
        } else if let Err(b) = self.chain.check(&stored) {
            return self.fault(b.to_string());
        }
        if let Some(from) = &self.from
            && from.seq == seq
        {
            if from.hash != stored.hash {
                return self.fault(format!(
                    "event {seq} differs from the earlier checkpoint: this export does not extend it"
                ));
            }
            self.met_from = true;
        }
        self.rows += 1;
        self.last = Some(ChainHead {
            seq,
            hash: stored.hash,
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
        let cp = match checkpoint::open(&note, &self.key) {
            Ok(cp) => cp,
            Err(e) => return self.fault(format!("the checkpoint: {e}")),
        };
        if cp.seq != t.checkpoint.seq || hex32(&t.checkpoint.hash).as_deref() != Some(&cp.hash[..])
        {
            return self.fault("the trailer's head differs from its signed checkpoint");
        }
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
        });
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::seal;
    use crate::export::NdjsonDigest;
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
        let trailer = digest.trailer(&cp.head(), Some(&note));
        lines.push(String::from_utf8(trailer).expect("utf-8"));
        lines
    }

    fn check(lines: &[String], from: Option<Checkpoint>) -> Result<Verified, ExportBreak> {
        let mut v = ExportVerifier::new(verifier(), from);
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
            VerifierKey::parse(&checkpoint::verifier_key(
                NAME,
                &SigningKey::from_bytes(&[6; 32]).verifying_key().to_bytes(),
            ))
            .expect("key"),
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
}
