//! Static assets: served from `CAB_STATIC_DIR` with a content hash in their
//! URLs, so browsers may cache them for a year and still see every change.

use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct Assets {
    pub dir: PathBuf,
    /// A hash over every file, added to asset URLs as `?v=`.
    pub version: String,
}

impl Assets {
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let mut files = Vec::new();
        collect(dir, &mut files)
            .with_context(|| format!("reading static assets in {}", dir.display()))?;
        files.sort();
        let mut h = Sha256::new();
        for f in &files {
            h.update(
                f.strip_prefix(dir)
                    .unwrap_or(f)
                    .to_string_lossy()
                    .as_bytes(),
            );
            h.update(std::fs::read(f)?);
        }
        Ok(Self {
            dir: dir.to_owned(),
            version: hex::encode(&h.finalize()[..6]),
        })
    }

    pub fn url(&self, name: &str) -> String {
        format!("/static/{name}?v={}", self.version)
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
