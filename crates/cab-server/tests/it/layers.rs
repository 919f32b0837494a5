//! The server's layers, read from its source: the JSON API (`api/`) and the
//! pages (`ui/`) both sit on the services (every other module) and never
//! borrow from each other, and no service reaches up into either.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Imports that cross the layers today, each to be removed. An entry whose
/// import is gone fails the test until it is taken out of this list, so the
/// list only shrinks.
const ALLOWED: &[&str] = &[];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Api,
    Ui,
    Service,
}

fn layer_of(file: &str) -> Option<Layer> {
    if file == "lib.rs" {
        None
    } else if file.starts_with("api/") {
        Some(Layer::Api)
    } else if file.starts_with("ui/") {
        Some(Layer::Ui)
    } else {
        Some(Layer::Service)
    }
}

/// The module path of a source file: `ui/changes/form.rs` is
/// `ui::changes::form`, `api/mod.rs` is `api`, `lib.rs` is the crate root.
fn module_of(file: &str) -> Vec<String> {
    let stem = file.strip_suffix(".rs").unwrap_or(file);
    let mut parts: Vec<String> = stem.split('/').map(str::to_owned).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Sep,
    Open,
    Close,
    Comma,
    Other,
}

fn tokens(source: &str) -> Vec<Token> {
    let code: String = source
        .lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n");
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
            continue;
        }
        if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push(Token::Sep);
            i += 2;
            continue;
        }
        match c {
            '{' => out.push(Token::Open),
            '}' => out.push(Token::Close),
            ',' => out.push(Token::Comma),
            c if c.is_whitespace() => {}
            _ => out.push(Token::Other),
        }
        i += 1;
    }
    out
}

/// The paths named from `at` on (after a `::`), each joined to `base`: a
/// single path, or every path of a `{…}` group, nested groups included.
fn paths_from(toks: &[Token], at: usize, base: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let mut path = base.to_vec();
    let mut i = at;
    loop {
        match toks.get(i) {
            Some(Token::Ident(name)) => {
                path.push(name.clone());
                i += 1;
                if toks.get(i) == Some(&Token::Sep) {
                    i += 1;
                    continue;
                }
                out.push(path);
                return i;
            }
            Some(Token::Open) => {
                i += 1;
                loop {
                    match toks.get(i) {
                        Some(Token::Close) => return i + 1,
                        Some(Token::Comma) => i += 1,
                        Some(_) => i = paths_from(toks, i, &path, out),
                        None => return i,
                    }
                }
            }
            _ => {
                out.push(path);
                return i;
            }
        }
    }
}

/// Every path the source names through `crate::` or `super::`, as a path
/// from the crate root.
fn named_paths(module: &[String], source: &str) -> Vec<Vec<String>> {
    let toks = tokens(source);
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let preceded_by_sep = i > 0 && toks[i - 1] == Token::Sep;
        let base = match &toks[i] {
            Token::Ident(w) if w == "crate" && !preceded_by_sep => Some((Vec::new(), i + 1)),
            Token::Ident(w) if w == "super" && !preceded_by_sep => {
                let mut base = module.to_vec();
                base.pop();
                let mut j = i + 1;
                while toks.get(j) == Some(&Token::Sep)
                    && toks.get(j + 1) == Some(&Token::Ident("super".into()))
                {
                    base.pop();
                    j += 2;
                }
                Some((base, j))
            }
            _ => None,
        };
        match base {
            Some((base, j)) if toks.get(j) == Some(&Token::Sep) => {
                i = paths_from(&toks, j + 1, &base, &mut out);
            }
            _ => i += 1,
        }
    }
    out
}

/// The imports of one file that cross the layers, as `file -> target`.
fn crossings(file: &str, source: &str) -> BTreeSet<String> {
    let Some(from) = layer_of(file) else {
        return BTreeSet::new();
    };
    named_paths(&module_of(file), source)
        .into_iter()
        .filter(|path| {
            let to = match path.first().map(String::as_str) {
                Some("api") => Layer::Api,
                Some("ui") => Layer::Ui,
                _ => return false,
            };
            from != to
        })
        .map(|path| {
            let target: Vec<&str> = path.iter().take(2).map(String::as_str).collect();
            format!("{file} -> {}", target.join("::"))
        })
        .collect()
}

fn sources(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, path));
        }
    }
}

#[test]
fn api_pages_and_services_import_only_downwards() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    assert!(
        files.iter().any(|(f, _)| f == "api/changes/mod.rs") && files.len() > 20,
        "the server's sources were not found under {}",
        root.display()
    );
    let mut found = BTreeSet::new();
    for (file, path) in &files {
        found.extend(crossings(file, &std::fs::read_to_string(path).unwrap()));
    }
    let allowed: BTreeSet<String> = ALLOWED.iter().map(|s| (*s).to_owned()).collect();
    let forbidden: Vec<&String> = found.difference(&allowed).collect();
    let gone: Vec<&String> = allowed.difference(&found).collect();
    assert!(
        forbidden.is_empty(),
        "imports across the layers (api/ and ui/ use the services, never each other; services use neither): {forbidden:#?}"
    );
    assert!(
        gone.is_empty(),
        "these crossings are gone: take them out of ALLOWED in tests/it/layers.rs: {gone:#?}"
    );
}

#[test]
fn the_scan_sees_every_form_of_import() {
    let source = r#"
        use crate::{audit_log, api::changes::ListQuery};
        use crate::{ui::{self, Viewer}};
        use super::super::ui::form;
        // use crate::api::comment;
        fn f() { crate::api::decisions::still_needed(); super::super::super::api::me::get(); }
    "#;
    let found = crossings("ui/changes/form.rs", source);
    assert_eq!(
        found,
        BTreeSet::from([
            "ui/changes/form.rs -> api::changes".to_owned(),
            "ui/changes/form.rs -> api::decisions".to_owned(),
            "ui/changes/form.rs -> api::me".to_owned(),
        ])
    );
    assert_eq!(
        crossings(
            "api/decisions.rs",
            "use super::super::ui; use super::changes::ChangeOut;"
        ),
        BTreeSet::from(["api/decisions.rs -> ui".to_owned()])
    );
    assert_eq!(
        crossings(
            "ui/mod.rs",
            "use super::api::changes::page; use self::api::x;"
        ),
        BTreeSet::from(["ui/mod.rs -> api::changes".to_owned()])
    );
    assert_eq!(
        crossings("queues.rs", "use crate::{changes, ui::words::People};"),
        BTreeSet::from(["queues.rs -> ui::words".to_owned()])
    );
    assert_eq!(
        crossings("db/health.rs", "crate::ui::error_page(&state)"),
        BTreeSet::from(["db/health.rs -> ui::error_page".to_owned()])
    );
    assert!(crossings("lib.rs", "pub mod api; use crate::ui::x;").is_empty());
}
