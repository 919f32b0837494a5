//! How exports are written: CSV cells a spreadsheet cannot mistake for a
//! formula, and NDJSON that ends with a trailer line vouching for every
//! byte before it.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::approval::LevelRule;
use crate::audit::{ChainHead, canonical_json};
use crate::checkpoint::ExportNote;

/// Appends one CSV cell (RFC 4180), neutralised against formula injection:
/// a cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return
/// gets a leading `'`, so a spreadsheet shows it as text instead of running
/// it. A cell holding a comma, a quote or a line break is quoted, its quotes
/// doubled.
pub fn csv_cell(out: &mut Vec<u8>, cell: &str) {
    let risky = matches!(
        cell.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    );
    let quoted = cell
        .bytes()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
    if quoted {
        out.push(b'"');
    }
    if risky {
        out.push(b'\'');
    }
    for b in cell.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    if quoted {
        out.push(b'"');
    }
}

/// Appends one CSV record: the cells separated by commas, ended by CRLF.
pub fn csv_record<S: AsRef<str>>(out: &mut Vec<u8>, cells: &[S]) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        csv_cell(out, cell.as_ref());
    }
    out.extend_from_slice(b"\r\n");
}

/// Counts an NDJSON export's rows and hashes every byte written, for the
/// trailer line that ends it.
#[derive(Default)]
pub struct NdjsonDigest {
    rows: u64,
    hash: Sha256,
}

impl NdjsonDigest {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a line before the rows (what the export holds): hashed, not
    /// counted.
    pub fn preamble(&mut self, line: &[u8]) {
        self.hash.update(line);
    }

    /// Takes one row's line (its newline included) as written.
    pub fn row(&mut self, line: &[u8]) {
        self.rows += 1;
        self.hash.update(line);
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Ends the digest: the rows counted and the SHA-256 of every byte
    /// taken.
    pub fn finish(self) -> Digested {
        Digested {
            rows: self.rows,
            sha256: hex::encode(self.hash.finalize()),
        }
    }
}

/// An NDJSON export's rows and digest, for its trailer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digested {
    pub rows: u64,
    /// Lowercase hex.
    pub sha256: String,
}

impl Digested {
    /// What CAB signs of the export: `origin` its checkpoint's, `trail`
    /// `events` or `approvals`, the filter as the header gives it, and the
    /// head it was cut at.
    pub fn note(
        &self,
        origin: &str,
        trail: &str,
        filter: &serde_json::Map<String, serde_json::Value>,
        cut: &ChainHead,
    ) -> ExportNote {
        ExportNote {
            origin: origin.to_owned(),
            trail: trail.to_owned(),
            filter: canonical_json(&serde_json::Value::Object(filter.clone())),
            rows: self.rows,
            sha256: self.sha256.clone(),
            cut: cut.clone(),
        }
    }

    /// The trailer line, newline included: the number of rows, the SHA-256
    /// (lowercase hex) of every byte before the trailer, the head of the
    /// chain the export was cut at with its signed checkpoint (a C2SP signed
    /// note; null when none could be signed), and the signed note of the
    /// export itself (null likewise).
    pub fn trailer(
        &self,
        cut: &ChainHead,
        note: Option<&str>,
        export_note: Option<&str>,
    ) -> Vec<u8> {
        let line = json!({
            "trailer": {
                "rows": self.rows,
                "sha256": self.sha256,
                "checkpoint": { "seq": cut.seq, "hash": hex::encode(&cut.hash), "note": note },
                "export_note": export_note,
            }
        });
        let mut out = line.to_string().into_bytes();
        out.push(b'\n');
        out
    }
}

/// What a quorum rule asks for, in words: "2 CAB approvals and an accepting
/// security assessment".
pub fn describe_rule(rule: &LevelRule) -> String {
    let approvals = match rule.approvals {
        0 => "no CAB approval".to_owned(),
        1 => "1 CAB approval".to_owned(),
        n => format!("{n} CAB approvals"),
    };
    if rule.assessment {
        format!("{approvals} and an accepting security assessment")
    } else {
        approvals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(s: &str) -> String {
        let mut out = Vec::new();
        csv_cell(&mut out, s);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn formula_openers_are_neutralised() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(cell("+1"), "'+1");
        assert_eq!(cell("-1"), "'-1");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("\tcmd"), "'\tcmd");
        assert_eq!(cell("\rcmd"), "\"'\rcmd\"");
        assert_eq!(cell("a=b"), "a=b");
        assert_eq!(cell(" =1"), " =1");
        assert_eq!(cell(""), "");
    }

    #[test]
    fn separators_and_quotes_are_quoted() {
        assert_eq!(cell("plain text"), "plain text");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(cell("back\rslash"), "\"back\rslash\"");
        assert_eq!(cell("{\"a\":1}"), "\"{\"\"a\"\":1}\"");
    }

    #[test]
    fn a_record_ends_with_crlf() {
        let mut out = Vec::new();
        csv_record(&mut out, &["a", "=b", "c,d"]);
        assert_eq!(out, b"a,'=b,\"c,d\"\r\n");
    }

    #[test]
    fn the_trailer_vouches_for_what_preceded_it() {
        let mut d = NdjsonDigest::new();
        d.preamble(b"{\"export\":{}}\n");
        d.row(b"{\"a\":1}\n");
        d.row(b"{\"b\":2}\n");
        assert_eq!(d.rows(), 2);
        let cut = ChainHead {
            seq: 7,
            hash: vec![0xab; 32],
        };
        let digested = d.finish();
        let line = digested.trailer(
            &cut,
            Some("origin\n7\nq80=\n\n\u{2014} k x\n"),
            Some("signed"),
        );
        assert_eq!(line.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&line).expect("json");
        let expected = hex::encode(Sha256::digest(b"{\"export\":{}}\n{\"a\":1}\n{\"b\":2}\n"));
        assert_eq!(v["trailer"]["rows"], 2);
        assert_eq!(v["trailer"]["sha256"], expected.as_str());
        assert_eq!(v["trailer"]["checkpoint"]["seq"], 7);
        assert_eq!(v["trailer"]["checkpoint"]["hash"], "ab".repeat(32));
        assert_eq!(
            v["trailer"]["checkpoint"]["note"],
            "origin\n7\nq80=\n\n\u{2014} k x\n"
        );
        assert_eq!(v["trailer"]["export_note"], "signed");
        let mut filter = serde_json::Map::new();
        filter.insert("to".into(), json!("2026-01-31"));
        filter.insert("actor".into(), json!("erin"));
        let note = digested.note("cab.test/audit", "events", &filter, &cut);
        assert_eq!(note.rows, 2);
        assert_eq!(note.sha256, expected);
        assert_eq!(note.filter, r#"{"actor":"erin","to":"2026-01-31"}"#);
        assert_eq!(
            (note.origin.as_str(), note.trail.as_str()),
            ("cab.test/audit", "events")
        );
        assert_eq!(note.cut, cut);
        let empty = NdjsonDigest::new().finish().trailer(&cut, None, None);
        let v: serde_json::Value = serde_json::from_slice(&empty).expect("json");
        assert_eq!(v["trailer"]["rows"], 0);
        assert!(v["trailer"]["checkpoint"]["note"].is_null());
        assert!(v["trailer"]["export_note"].is_null());
        assert_eq!(
            v["trailer"]["sha256"],
            hex::encode(Sha256::digest(b"")).as_str()
        );
    }

    #[test]
    fn rules_are_told_in_words() {
        let rule = |approvals, assessment| LevelRule {
            approvals,
            assessment,
        };
        assert_eq!(describe_rule(&rule(0, false)), "no CAB approval");
        assert_eq!(describe_rule(&rule(1, false)), "1 CAB approval");
        assert_eq!(
            describe_rule(&rule(2, true)),
            "2 CAB approvals and an accepting security assessment"
        );
    }
}
