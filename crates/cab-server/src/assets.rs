//! Static assets (stylesheet, scripts), embedded in the binary at build time
//! so `cab` needs no files beside it; `CAB_STATIC_DIR` may point at a folder
//! to use instead while developing. Either way the files are read once, at
//! start-up, and served from memory with a content hash in their URLs, so
//! browsers may cache them for a year and still see every change.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::state::AppState;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/static_files.rs"));
}

#[derive(Debug, Clone)]
pub struct Assets {
    files: HashMap<String, Vec<u8>>,
    /// A hash over every file, added to asset URLs as `?v=`.
    pub version: String,
}

impl Assets {
    /// The files built into the binary.
    pub fn embedded() -> Self {
        Self::from_files(
            embedded::FILES
                .iter()
                .map(|(name, bytes)| ((*name).to_owned(), bytes.to_vec()))
                .collect(),
        )
    }

    /// The files of a folder, read now (a development override).
    pub fn from_dir(dir: &Path) -> anyhow::Result<Self> {
        let mut paths = Vec::new();
        collect(dir, &mut paths)
            .with_context(|| format!("reading static assets in {}", dir.display()))?;
        let mut files = Vec::with_capacity(paths.len());
        for p in paths {
            let name = p
                .strip_prefix(dir)
                .unwrap_or(&p)
                .to_string_lossy()
                .replace('\\', "/");
            let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
            files.push((name, bytes));
        }
        Ok(Self::from_files(files))
    }

    /// Embedded files, or those of `dir` when one is given.
    pub fn load(dir: Option<&Path>) -> anyhow::Result<Self> {
        match dir {
            Some(d) => Self::from_dir(d),
            None => Ok(Self::embedded()),
        }
    }

    fn from_files(mut files: Vec<(String, Vec<u8>)>) -> Self {
        files.sort();
        let mut h = Sha256::new();
        for (name, bytes) in &files {
            h.update((name.len() as u64).to_be_bytes());
            h.update(name.as_bytes());
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        }
        Self {
            version: hex::encode(&h.finalize()[..6]),
            files: files.into_iter().collect(),
        }
    }

    pub fn url(&self, name: &str) -> String {
        format!("/static/{name}?v={}", self.version)
    }

    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(Vec::as_slice)
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `GET /static/{*path}`.
pub async fn serve(State(state): State<AppState>, UrlPath(name): UrlPath<String>) -> Response {
    match state.assets.get(&name) {
        Some(bytes) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(content_type(&name)),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ),
            ],
            bytes.to_vec(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_stylesheet_is_built_in() {
        let a = Assets::embedded();
        let css = std::str::from_utf8(a.get("app.css").unwrap()).unwrap();
        assert!(css.contains("body"));
        assert_eq!(a.version.len(), 12);
        assert!(a.get("../Cargo.toml").is_none());
    }

    #[test]
    fn a_folder_and_the_embedded_copy_of_it_have_the_same_version() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../static");
        assert_eq!(
            Assets::from_dir(&dir).unwrap().version,
            Assets::embedded().version
        );
    }
}
