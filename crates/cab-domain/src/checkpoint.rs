//! Signed checkpoints of the audit chain: the head (sequence number, hash,
//! time) as a C2SP checkpoint, signed as a C2SP signed note with Ed25519, so
//! anyone holding the public key can check, with no database and no CAB,
//! that the chain up to that event is the one CAB vouched for.
//!
//! The checkpoint text is three lines and one extension line, each ended by
//! a newline:
//!
//! ```text
//! <origin>
//! <number of events, i.e. the sequence number of the last>
//! <base64 of that event's 32-byte hash>
//! time <UTC time, YYYY-MM-DDTHH:MM:SSZ>
//! ```
//!
//! The signed note is that text, an empty line, and a signature line
//! `— <key name> <base64(key id || signature)>`, where the signature is
//! Ed25519 over the text and the key id is the first four bytes of
//! SHA-256(key name || "\n" || 0x01 || public key). The public key is
//! published as a verifier key: `<name>+<key id, hex>+<base64(0x01 ||
//! public key)>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, NaiveDateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::audit::ChainHead;

/// The algorithm byte of an Ed25519 key in a signed note.
const ED25519: u8 = 0x01;
/// What starts a signature line: an em dash and a space.
const SIGNATURE_START: &str = "\u{2014} ";

/// A signed head of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Names the chain: which CAB's audit trail this is.
    pub origin: String,
    pub seq: i64,
    pub hash: Vec<u8>,
    /// When it was signed, to the second.
    pub time: DateTime<Utc>,
}

/// Why a checkpoint or a key was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteError(pub String);

impl std::fmt::Display for NoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoteError {}

fn fault<T>(why: impl Into<String>) -> Result<T, NoteError> {
    Err(NoteError(why.into()))
}

impl Checkpoint {
    pub fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq,
            hash: self.hash.clone(),
        }
    }

    /// The checkpoint's text, which is what is signed.
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\ntime {}\n",
            self.origin,
            self.seq,
            STANDARD.encode(&self.hash),
            self.time.format("%Y-%m-%dT%H:%M:%SZ")
        )
    }

    /// Reads a checkpoint's text.
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let Some(body) = text.strip_suffix('\n') else {
            return fault("a checkpoint ends with a newline");
        };
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, seq, hash, rest @ ..] = lines.as_slice() else {
            return fault("a checkpoint has an origin, a size and a hash line");
        };
        if origin.is_empty() {
            return fault("the checkpoint's origin is empty");
        }
        let seq = match seq.parse::<i64>() {
            Ok(n) if n >= 0 && seq.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return fault("the checkpoint's size is not a number"),
        };
        let hash = match STANDARD.decode(hash) {
            Ok(h) if h.len() == 32 => h,
            _ => return fault("the checkpoint's hash is not 32 bytes of base64"),
        };
        let time = rest
            .iter()
            .find_map(|l| l.strip_prefix("time "))
            .and_then(|t| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%SZ").ok())
            .map(|t| t.and_utc());
        let Some(time) = time else {
            return fault("the checkpoint has no time line");
        };
        Ok(Checkpoint {
            origin: (*origin).to_owned(),
            seq,
            hash,
            time,
        })
    }
}

/// The first line of an export's note. A checkpoint's second line is a
/// number and an export note's begins `origin `, so neither can be read as
/// the other.
pub const EXPORT_NOTE_TAG: &str = "cab audit export v1";

/// What CAB signs of an NDJSON export, in its trailer: what was exported,
/// how, how many rows, a digest of every byte before the trailer, and the
/// checkpoint it was cut at. The text is seven lines, each ended by a
/// newline:
///
/// ```text
/// cab audit export v1
/// origin <the checkpoint's origin>
/// trail <events or approvals>
/// filter <the filter as JSON, keys sorted, no white space>
/// rows <number of rows, decimal>
/// sha256 <SHA-256 of every byte before the trailer, lowercase hex>
/// cut <sequence number of the checkpoint's event, decimal> <its hash, lowercase hex>
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportNote {
    pub origin: String,
    pub trail: String,
    /// The filter as JSON with keys sorted and no white space.
    pub filter: String,
    pub rows: u64,
    /// Lowercase hex.
    pub sha256: String,
    pub cut: ChainHead,
}

impl ExportNote {
    /// The note's text, which is what is signed.
    pub fn text(&self) -> String {
        format!(
            "{EXPORT_NOTE_TAG}\norigin {}\ntrail {}\nfilter {}\nrows {}\nsha256 {}\ncut {} {}\n",
            self.origin,
            self.trail,
            self.filter,
            self.rows,
            self.sha256,
            self.cut.seq,
            hex::encode(&self.cut.hash)
        )
    }

    /// Reads an export note's text.
    pub fn parse(text: &str) -> Result<ExportNote, NoteError> {
        let Some(body) = text.strip_suffix('\n') else {
            return fault("an export note ends with a newline");
        };
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.first() != Some(&EXPORT_NOTE_TAG) {
            return fault(format!(
                "not the note of an export: its first line is not \"{EXPORT_NOTE_TAG}\""
            ));
        }
        let [_, origin, trail, filter, rows, sha256, cut] = lines.as_slice() else {
            return fault("an export note is seven lines");
        };
        let field = |line: &'_ str, name: &str| -> Result<String, NoteError> {
            match line.strip_prefix(name).and_then(|v| v.strip_prefix(' ')) {
                Some(v) if !v.is_empty() => Ok(v.to_owned()),
                _ => fault(format!("the export note's line \"{name} …\" is missing")),
            }
        };
        let number = |v: &str, what: &str| -> Result<u64, NoteError> {
            match v.parse::<u64>() {
                Ok(n) if v.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
                _ => fault(format!("the export note's {what} is not a number")),
            }
        };
        let sha256 = field(sha256, "sha256")?;
        if hex::decode(&sha256).map_or(true, |d| d.len() != 32) || sha256 != sha256.to_lowercase() {
            return fault("the export note's sha256 is not 32 bytes of lowercase hex");
        }
        let cut = field(cut, "cut")?;
        let Some((seq, hash)) = cut.split_once(' ') else {
            return fault("the export note's cut is a sequence number and a hash");
        };
        let seq = i64::try_from(number(seq, "cut")?)
            .map_err(|_| NoteError("the export note's cut is not a number".into()))?;
        let hash = match hex::decode(hash) {
            Ok(h) if h.len() == 32 && hash == hash.to_lowercase() => h,
            _ => return fault("the export note's cut hash is not 32 bytes of lowercase hex"),
        };
        Ok(ExportNote {
            origin: field(origin, "origin")?,
            trail: field(trail, "trail")?,
            filter: field(filter, "filter")?,
            rows: number(&field(rows, "rows")?, "rows")?,
            sha256,
            cut: ChainHead { seq, hash },
        })
    }
}

/// The key id of an Ed25519 key in a signed note.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ED25519]);
    h.update(public_key);
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Whether `name` may name a key: not empty, no white space, no `+`.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// The verifier key that publishes a public key.
pub fn verifier_key(name: &str, public_key: &[u8; 32]) -> String {
    let mut key = vec![ED25519];
    key.extend_from_slice(public_key);
    format!(
        "{name}+{}+{}",
        hex::encode(key_id(name, public_key)),
        STANDARD.encode(key)
    )
}

/// A published verifier key, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    pub name: String,
    pub id: [u8; 4],
    pub public_key: [u8; 32],
}

impl VerifierKey {
    /// The key's name and id, `NAME+KEYID`: which key, without the key.
    pub fn named(&self) -> String {
        format!("{}+{}", self.name, hex::encode(self.id))
    }

    pub fn parse(s: &str) -> Result<VerifierKey, NoteError> {
        let s = s.trim();
        // The key's base64 may itself hold a `+`.
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return fault("a verifier key is NAME+KEYID+KEY");
        };
        if !valid_key_name(name) {
            return fault("the verifier key's name is not a key name");
        }
        let key = STANDARD
            .decode(key)
            .map_err(|_| NoteError("the verifier key's key is not base64".into()))?;
        let public_key: [u8; 32] = match key.split_first() {
            Some((&ED25519, rest)) => rest
                .try_into()
                .map_err(|_| NoteError("the verifier key is not an Ed25519 key".into()))?,
            _ => return fault("the verifier key is not an Ed25519 key"),
        };
        let expected = key_id(name, &public_key);
        if hex::decode(id).ok().as_deref() != Some(expected.as_slice()) {
            return fault("the verifier key's id does not match its name and key");
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            id: expected,
            public_key,
        })
    }
}

/// Signs a checkpoint: the signed note.
pub fn sign(checkpoint: &Checkpoint, name: &str, key: &SigningKey) -> String {
    sign_text(&checkpoint.text(), name, key)
}

/// Signs any note text (it ends with a newline): the signed note.
pub fn sign_text(text: &str, name: &str, key: &SigningKey) -> String {
    let public = key.verifying_key().to_bytes();
    let signature = key.sign(text.as_bytes());
    let mut blob = key_id(name, &public).to_vec();
    blob.extend_from_slice(&signature.to_bytes());
    format!(
        "{text}\n{SIGNATURE_START}{name} {}\n",
        STANDARD.encode(blob)
    )
}

/// Checks a signed note against a verifier key and reads its checkpoint.
/// Signature lines by other keys are passed over; one by this key must
/// verify.
pub fn open(note: &str, key: &VerifierKey) -> Result<Checkpoint, NoteError> {
    Checkpoint::parse(&open_text(note, key)?)
}

/// Checks a signed note against a verifier key and gives its text.
pub fn open_text(note: &str, key: &VerifierKey) -> Result<String, NoteError> {
    open_text_any(note, std::slice::from_ref(key))
}

/// Checks a signed note against any of several verifier keys (those from
/// before and after a rotation) and gives its text: one signature line by
/// one of them must be there, and every one by them must verify.
/// Signature lines by other keys are passed over.
pub fn open_text_any(note: &str, keys: &[VerifierKey]) -> Result<String, NoteError> {
    open_text_signed(note, keys).map(|(text, _)| text)
}

/// As [`open_text_any`], and which of `keys` signed it (their positions,
/// in the order of the signature lines).
pub fn open_text_signed(
    note: &str,
    keys: &[VerifierKey],
) -> Result<(String, Vec<usize>), NoteError> {
    let Some((text, signatures)) = note.split_once("\n\n") else {
        return fault("a signed note is its text, an empty line, and its signatures");
    };
    let text = format!("{text}\n");
    if signatures.is_empty() || !signatures.ends_with('\n') {
        return fault("the note's signatures end with a newline");
    }
    let mut found = Vec::new();
    for line in signatures
        .strip_suffix('\n')
        .unwrap_or(signatures)
        .split('\n')
    {
        let Some(rest) = line.strip_prefix(SIGNATURE_START) else {
            return fault("a signature line starts with an em dash and a space");
        };
        let Some((name, blob)) = rest.split_once(' ') else {
            return fault("a signature line names its key and gives its signature");
        };
        let Ok(blob) = STANDARD.decode(blob) else {
            return fault("a signature is not base64");
        };
        let Some((at, key)) = keys
            .iter()
            .enumerate()
            .find(|(_, k)| name == k.name && blob.len() >= 4 && blob[..4] == k.id)
        else {
            continue;
        };
        let verifying = VerifyingKey::from_bytes(&key.public_key)
            .map_err(|_| NoteError("the verifier key is not a valid Ed25519 key".into()))?;
        let Ok(signature) = Signature::from_slice(&blob[4..]) else {
            return fault("the signature is not an Ed25519 signature");
        };
        if verifying.verify(text.as_bytes(), &signature).is_err() {
            return fault(
                "the signature does not verify: the note was altered or signed by another key",
            );
        }
        found.push(at);
    }
    if found.is_empty() {
        let names: Vec<String> = keys.iter().map(VerifierKey::named).collect();
        return fault(match keys {
            [one] => format!("the note carries no signature by the key {}", one.name),
            _ => format!(
                "the note carries no signature by any of the keys {}",
                names.join(", ")
            ),
        });
    }
    Ok((text, found))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_bytes(&[byte; 32])
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "cab.example.com/audit".into(),
            seq: 1234,
            hash: (0u8..32).collect(),
            time: DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
                .expect("time")
                .with_timezone(&Utc),
        }
    }

    fn verifier(name: &str, k: &SigningKey) -> VerifierKey {
        VerifierKey::parse(&verifier_key(name, &k.verifying_key().to_bytes())).expect("key")
    }

    #[test]
    fn the_text_is_the_c2sp_checkpoint_lines() {
        let c = checkpoint();
        assert_eq!(
            c.text(),
            "cab.example.com/audit\n1234\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\ntime 2026-11-24T10:00:00Z\n"
        );
        assert_eq!(Checkpoint::parse(&c.text()), Ok(c.clone()));
        assert_eq!(c.head().seq, 1234);
        // The empty chain's checkpoint has size 0.
        let empty = Checkpoint { seq: 0, ..c };
        assert_eq!(Checkpoint::parse(&empty.text()).map(|e| e.seq), Ok(0));
    }

    #[test]
    fn malformed_texts_are_refused() {
        let good = checkpoint().text();
        for bad in [
            good.trim_end().to_owned(),
            "origin\n12\n".to_owned(),
            good.replacen("1234", "-1", 1),
            good.replacen("1234", "+12", 1),
            good.replacen("1234", "twelve", 1),
            good.replacen("AAEC", "AAE", 1),
            good.replacen(
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                "AAECAw==",
                1,
            ),
            good.replacen("time 2026-11-24T10:00:00Z\n", "", 1),
            good.replacen("time 2026", "tame 2026", 1),
            good.replacen("cab.example.com/audit", "", 1),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_signed_note_opens_with_its_key_only() {
        let k = key(7);
        let name = "cab.example.com/audit";
        let note = sign(&checkpoint(), name, &k);
        assert!(note.starts_with(&checkpoint().text()));
        assert!(note.contains("\n\n\u{2014} cab.example.com/audit "));
        assert!(note.ends_with('\n'));
        assert_eq!(open(&note, &verifier(name, &k)), Ok(checkpoint()));

        // Another key of the same name, or the same key under another name.
        let stranger = open(&note, &verifier(name, &key(8))).expect_err("refused");
        assert!(stranger.0.contains("no signature by the key"), "{stranger}");
        assert!(open(&note, &verifier("other/name", &k)).is_err());

        // An altered checkpoint no longer verifies.
        let altered = note.replacen("1234", "1235", 1);
        let e = open(&altered, &verifier(name, &k)).expect_err("refused");
        assert!(e.0.contains("does not verify"), "{e}");
        // The signature line under another name is not this key's, even
        // with this key's id and a good signature.
        let renamed = note.replacen(
            "\u{2014} cab.example.com/audit ",
            "\u{2014} other.example.com/audit ",
            1,
        );
        let e = open(&renamed, &verifier(name, &k)).expect_err("refused");
        assert!(e.0.contains("no signature by the key"), "{e}");
        // A line under this name too short to hold a key id is passed over;
        // one holding the key id and no signature is refused.
        let short = format!("{}\n\u{2014} {name} AAE=\n", checkpoint().text());
        let e = open(&short, &verifier(name, &k)).expect_err("refused");
        assert!(e.0.contains("no signature by the key"), "{e}");
        let id_only = format!(
            "{}\n\u{2014} {name} {}\n",
            checkpoint().text(),
            STANDARD.encode(key_id(name, &k.verifying_key().to_bytes()))
        );
        let e = open(&id_only, &verifier(name, &k)).expect_err("refused");
        assert!(e.0.contains("not an Ed25519 signature"), "{e}");
        // Nor does a signature line in the wrong shape.
        for bad in [
            note.replacen("\n\n", "\n", 1),
            note.replacen('\u{2014}', "-", 1),
            note.trim_end().to_owned(),
            note.replacen(" cab.example.com/audit ", " cab.example.com/audit", 1),
        ] {
            assert!(open(&bad, &verifier(name, &k)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn any_text_signs_and_opens() {
        let k = key(7);
        let note = sign_text("a manifest\nline two\n", "cab/audit", &k);
        assert_eq!(
            open_text(&note, &verifier("cab/audit", &k)),
            Ok("a manifest\nline two\n".to_owned())
        );
        assert!(
            open(&note, &verifier("cab/audit", &k)).is_err(),
            "not a checkpoint"
        );
        let altered = note.replacen("two", "2", 1);
        assert!(open_text(&altered, &verifier("cab/audit", &k)).is_err());
    }

    #[test]
    fn another_signers_line_is_passed_over() {
        let k = key(7);
        let note = sign(&checkpoint(), "cab/audit", &k);
        let other = sign(&checkpoint(), "witness", &key(9));
        let other_line = other.split("\n\n").nth(1).expect("signature");
        let both = format!("{note}{other_line}");
        assert_eq!(open(&both, &verifier("cab/audit", &k)), Ok(checkpoint()));
        assert_eq!(open(&both, &verifier("witness", &key(9))), Ok(checkpoint()));
    }

    #[test]
    fn verifier_keys_read_back_and_are_checked() {
        let k = key(3);
        let public = k.verifying_key().to_bytes();
        let text = verifier_key("cab/audit", &public);
        let parsed = VerifierKey::parse(&format!(" {text}\n")).expect("key");
        assert_eq!(parsed.name, "cab/audit");
        assert_eq!(parsed.public_key, public);
        assert_eq!(parsed.id, key_id("cab/audit", &public));
        // The id binds the name and the key.
        assert_ne!(key_id("cab/audit", &public), key_id("cab/audit2", &public));
        let (name, rest) = text.split_once('+').expect("plus");
        for bad in [
            format!("other+{rest}"),
            format!("{name}+00000000+{}", rest.split_once('+').expect("plus").1),
            format!("{text}+extra"),
            "cab/audit".to_owned(),
            format!(
                "{name}+{}+{}",
                hex::encode(key_id(name, &public)),
                STANDARD.encode([&[2u8][..], &public[..]].concat())
            ),
            format!("{name}+{}+bm90IGEga2V5", hex::encode(key_id(name, &public))),
        ] {
            assert!(VerifierKey::parse(&bad).is_err(), "{bad}");
        }
        assert!(valid_key_name("cab.example.com:8080/audit"));
        assert!(!valid_key_name("has space"));
        assert!(!valid_key_name("a+b"));
        assert!(!valid_key_name(""));
    }

    fn export_note() -> ExportNote {
        ExportNote {
            origin: "cab.example.com/audit".into(),
            trail: "events".into(),
            filter: r#"{"action":"auth.login_failed"}"#.into(),
            rows: 4,
            sha256: "ab".repeat(32),
            cut: ChainHead {
                seq: 1234,
                hash: (0u8..32).collect(),
            },
        }
    }

    #[test]
    fn an_export_note_is_seven_lines_and_reads_back() {
        let n = export_note();
        assert_eq!(
            n.text(),
            format!(
                "cab audit export v1\norigin cab.example.com/audit\ntrail events\nfilter {{\"action\":\"auth.login_failed\"}}\nrows 4\nsha256 {}\ncut 1234 {}\n",
                "ab".repeat(32),
                hex::encode((0u8..32).collect::<Vec<u8>>())
            )
        );
        assert_eq!(ExportNote::parse(&n.text()), Ok(n.clone()));
        let empty = ExportNote {
            filter: "{}".into(),
            rows: 0,
            ..n
        };
        assert_eq!(ExportNote::parse(&empty.text()), Ok(empty));
    }

    #[test]
    fn an_export_note_and_a_checkpoint_are_never_taken_for_each_other() {
        let k = key(7);
        let name = "cab.example.com/audit";
        let e = Checkpoint::parse(&export_note().text()).expect_err("not a checkpoint");
        assert!(e.0.contains("size is not a number"), "{e}");
        let e = ExportNote::parse(&checkpoint().text()).expect_err("not an export note");
        assert_eq!(
            e.0,
            "not the note of an export: its first line is not \"cab audit export v1\""
        );
        let signed = sign_text(&export_note().text(), name, &k);
        assert!(open(&signed, &verifier(name, &k)).is_err());
        let text = open_text(&signed, &verifier(name, &k)).expect("signed");
        assert_eq!(ExportNote::parse(&text), Ok(export_note()));
    }

    #[test]
    fn malformed_export_notes_are_refused() {
        let good = export_note().text();
        let hash = hex::encode((0u8..32).collect::<Vec<u8>>());
        for (bad, words) in [
            (good.trim_end().to_owned(), "ends with a newline"),
            (
                good.replacen("cab audit export v1", "cab audit export v2", 1),
                "first line",
            ),
            (good.replacen("rows 4\n", "", 1), "seven lines"),
            (format!("{good}extra\n"), "seven lines"),
            (
                good.replacen("origin cab", "origin: cab", 1),
                "\"origin …\"",
            ),
            (
                good.replacen("origin cab.example.com/audit", "origin ", 1),
                "\"origin …\"",
            ),
            (good.replacen("trail events", "trail", 1), "\"trail …\""),
            (good.replacen("filter {", "filters {", 1), "\"filter …\""),
            (good.replacen("rows 4", "count 4", 1), "\"rows …\""),
            (
                good.replacen("rows 4", "rows +4", 1),
                "rows is not a number",
            ),
            (
                good.replacen("rows 4", "rows -4", 1),
                "rows is not a number",
            ),
            (
                good.replacen("rows 4", "rows four", 1),
                "rows is not a number",
            ),
            (good.replacen("sha256 ab", "sha256 AB", 1), "sha256 is not"),
            (
                good.replacen("sha256 abab", "sha256 ab", 1),
                "sha256 is not",
            ),
            (good.replacen("sha256 ", "digest ", 1), "\"sha256 …\""),
            (
                good.replacen("cut 1234 ", "cut 1234-", 1),
                "a sequence number and a hash",
            ),
            (good.replacen("cut 1234", "cut x", 1), "cut is not a number"),
            (
                good.replacen("cut 1234", "cut 9223372036854775808", 1),
                "cut is not a number",
            ),
            (good.replacen(&hash, &hash[2..], 1), "cut hash is not"),
            (
                good.replacen(&hash, &hash.to_uppercase(), 1),
                "cut hash is not",
            ),
            (good.replacen("cut ", "head ", 1), "\"cut …\""),
        ] {
            let e = ExportNote::parse(&bad).expect_err(&bad);
            assert!(e.0.contains(words), "{bad:?}: {e}");
        }
        // The largest event number there can be reads back.
        let mut n = export_note();
        n.cut.seq = i64::MAX;
        assert_eq!(ExportNote::parse(&n.text()), Ok(n));
    }

    #[test]
    fn a_note_opens_under_any_of_several_keys() {
        let (old, new) = (key(7), key(8));
        let name = "cab.example.com/audit";
        let keys = [verifier(name, &old), verifier(name, &new)];
        let by_old = sign(&checkpoint(), name, &old);
        let by_new = sign(&checkpoint(), name, &new);
        assert_eq!(open_text_any(&by_old, &keys), Ok(checkpoint().text()));
        assert_eq!(open_text_any(&by_new, &keys), Ok(checkpoint().text()));
        assert!(open_text_any(&by_new, &keys[..1]).is_err());
        assert_eq!(
            open_text_signed(&by_old, &keys).map(|(_, s)| s),
            Ok(vec![0])
        );
        assert_eq!(
            open_text_signed(&by_new, &keys).map(|(_, s)| s),
            Ok(vec![1])
        );
        // Neither key: both are named.
        let stranger = sign(&checkpoint(), name, &key(9));
        let e = open_text_any(&stranger, &keys).expect_err("refused");
        assert_eq!(
            e.0,
            format!(
                "the note carries no signature by any of the keys {name}+{}, {name}+{}",
                hex::encode(keys[0].id),
                hex::encode(keys[1].id)
            )
        );
        let e = open_text_any(&stranger, &[]).expect_err("refused");
        assert!(e.0.contains("no signature by any of the keys"), "{e}");
        // A bad signature by one of them is refused even beside a good one.
        let altered = by_old.replacen("1234", "1235", 1);
        let good_line = by_new.split("\n\n").nth(1).expect("signature");
        let both = format!("{altered}{good_line}");
        let e = open_text_any(&both, &keys).expect_err("refused");
        assert!(e.0.contains("does not verify"), "{e}");
    }
}
