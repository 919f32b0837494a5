//! A change's state has one writer: every transition is decided by
//! `cab_domain::lifecycle::next` and written by
//! `cab_db::changes::write_state`. This reads the SQL in the source and in
//! the compiled query metadata (`.sqlx/`) and fails if any other statement
//! sets `changes.state`.

use std::path::{Path, PathBuf};

/// Whether a statement updates the `changes` table's `state` column.
fn sets_change_state(sql: &str) -> bool {
    let flat = sql
        .to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    flat.match_indices("update changes ").any(|(at, _)| {
        let rest = &flat[at..];
        let set = rest.find(" where ").map_or(rest, |end| &rest[..end]);
        set.contains(" set state =") || set.contains(", state =") || set.contains(",state =")
    })
}

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_check_finds_what_it_looks_for() {
    assert!(sets_change_state(
        "UPDATE changes SET state = $2, revision = $3 WHERE id = $1"
    ));
    assert!(sets_change_state(
        "update  changes\n SET updated_at = $3,\n state = $2 WHERE id = $1"
    ));
    assert!(!sets_change_state(
        "UPDATE changes SET review_note = $2 WHERE state = 'submitted'"
    ));
    assert!(!sets_change_state(
        "UPDATE standard_templates SET state = $2 WHERE id = $1"
    ));
}

#[test]
fn only_write_state_sets_a_changes_state() {
    let mut sources = Vec::new();
    for krate in ["cab-db", "cab-server", "cab-domain"] {
        files(
            &workspace().join("crates").join(krate).join("src"),
            "rs",
            &mut sources,
        );
    }
    let writers: Vec<String> = sources
        .iter()
        .filter(|p| sets_change_state(&std::fs::read_to_string(p).unwrap()))
        .map(|p| {
            p.strip_prefix(workspace())
                .unwrap_or(p)
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(
        writers.len(),
        1,
        "source files with SQL that sets changes.state: {writers:?}"
    );
    let store = std::fs::read_to_string(workspace().join("crates/cab-db/src/changes.rs")).unwrap();
    let at = store
        .find("pub async fn write_state(")
        .expect("write_state is in cab-db");
    let body = &store[at..];
    let body = &body[..body.find("\n}\n").unwrap()];
    assert!(sets_change_state(body), "write_state writes the state");
    let rest = store.replacen(body, "", 1);
    assert!(
        !sets_change_state(&rest),
        "cab-db/src/changes.rs sets changes.state outside write_state"
    );

    // The compiled queries agree: one statement in the metadata sets it.
    let mut metadata = Vec::new();
    files(&workspace().join(".sqlx"), "json", &mut metadata);
    let statements: Vec<String> = metadata
        .iter()
        .filter_map(|p| {
            let doc: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            doc["query"].as_str().map(str::to_owned)
        })
        .filter(|q| sets_change_state(q))
        .collect();
    assert_eq!(
        statements.len(),
        1,
        "statements that set changes.state: {statements:#?}"
    );

    // And a change is filed as a draft, whatever the caller says.
    let inserts: Vec<String> = metadata
        .iter()
        .filter_map(|p| {
            let doc: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            doc["query"].as_str().map(str::to_owned)
        })
        .filter(|q| {
            let flat = q
                .to_lowercase()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            flat.contains("insert into changes ") || flat.contains("insert into changes(")
        })
        .collect();
    assert!(
        !inserts.is_empty(),
        "the statement that files a change is in the metadata"
    );
    // The demo's history (cab_db::demo::lay_history) lays down past
    // changes as they ended; it is marked, and it is the only exception.
    let history = "-- demo history: changes as they ended";
    assert_eq!(
        inserts.iter().filter(|q| q.starts_with(history)).count(),
        1,
        "the demo's history is one marked statement"
    );
    for q in inserts.iter().filter(|q| !q.starts_with(history)) {
        assert!(
            q.contains("'draft'"),
            "a change is filed as a draft, never in a state given to it: {q}"
        );
    }
}
