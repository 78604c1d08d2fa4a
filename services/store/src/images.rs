//! Page images and thumbnails, kept next to the generations and shared by them:
//!
//! ```text
//! <index>/images/<doc_id>/<page>.png         the rendered page
//!                        <page>.thumb.png   its thumbnail
//! ```
//!
//! A document's images depend only on its content (its id is the content hash), so they are
//! written once, when the document is indexed, and never rewritten by later generations. They
//! are written through a temporary file and a rename, so a reader sees a whole image or none;
//! they are not part of the crash-safety promise (a lost image can be rendered again from the
//! PDF). A commit removes the images of documents in neither the new nor the previous
//! generation.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use folio_core::{DocId, PageKey};
use tracing::warn;

use crate::{StoreError, io_err};

pub(crate) const DIR: &str = "images";

/// Which image of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageImageKind {
    /// The page as rendered for indexing.
    Page,
    /// A small version for result lists.
    Thumbnail,
}

/// Document ids become directory names: only ASCII letters, digits, `-` and `_` are allowed.
fn safe(doc: &DocId) -> bool {
    !doc.0.is_empty()
        && doc
            .0
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Where a page's image of `kind` lives in the index `dir` (whether or not it exists); `None`
/// for a document id that cannot be a directory name.
pub fn page_image_path(dir: &Path, key: &PageKey, kind: PageImageKind) -> Option<PathBuf> {
    if !safe(&key.doc_id) {
        return None;
    }
    let name = match kind {
        PageImageKind::Page => format!("{}.png", key.page),
        PageImageKind::Thumbnail => format!("{}.thumb.png", key.page),
    };
    Some(dir.join(DIR).join(&key.doc_id.0).join(name))
}

/// Writes one image of a page (PNG bytes), replacing any older one.
pub(crate) fn write(
    dir: &Path,
    key: &PageKey,
    kind: PageImageKind,
    png: &[u8],
) -> Result<(), StoreError> {
    let path = page_image_path(dir, key, kind).ok_or_else(|| {
        StoreError::Invalid(format!(
            "document id {:?} cannot name a directory",
            key.doc_id.0
        ))
    })?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, png).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))
}

/// Removes the image folders of documents not in `keep`; failures are logged.
pub(crate) fn collect_garbage(dir: &Path, keep: &BTreeSet<&DocId>) {
    let Ok(entries) = std::fs::read_dir(dir.join(DIR)) else {
        return;
    };
    for entry in entries.flatten() {
        let id = DocId(entry.file_name().to_string_lossy().into_owned());
        if keep.contains(&id) {
            continue;
        }
        if let Err(e) = std::fs::remove_dir_all(entry.path()) {
            warn!(path = %entry.path().display(), error = %e, "cannot remove page images");
        }
    }
}
