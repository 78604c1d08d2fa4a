//! Page text from PDF bytes, with a named reason for every failure.
//!
//! The extractor is pdf_oxide (see ARCHITECTURE.md for why not lopdf). Every call runs behind a
//! `catch_unwind` so that a parser panic fails one file, not the batch; that net is the last
//! one, not the plan: known failure modes (empty, not a PDF, encrypted, no pages) are detected
//! first.
//!
//! [`extract_layout`] also lays each page's text out on the page (lines and blocks with
//! boxes, see [`crate::layout`]); [`extract_pages`] keeps the text only.

use std::panic::{AssertUnwindSafe, catch_unwind};

use pdf_oxide::document::PdfDocument;
use thiserror::Error;
use tracing::warn;

use crate::layout::{self, ExtractedPage};

/// Why a file yields no pages.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PdfError {
    /// The file has no bytes.
    #[error("empty file (0 bytes)")]
    Empty,
    /// The file does not start like a PDF.
    #[error("not a PDF (no %PDF- header)")]
    NotPdf,
    /// The file is encrypted and does not open with an empty password.
    #[error("encrypted: the PDF needs a password")]
    Encrypted,
    /// The PDF has no pages.
    #[error("the PDF has no pages")]
    NoPages,
    /// The PDF structure is broken beyond what the parser repairs.
    #[error("damaged PDF: {0}")]
    Damaged(String),
    /// The parser crashed on this file.
    #[error("PDF parser crashed: {0}")]
    Crashed(String),
}

/// The text of each page, in page order (index 0 = page 1). Pages whose text cannot be
/// extracted come back empty, with a warning logged; if no page at all can be read, the file
/// fails.
pub fn extract_pages(bytes: Vec<u8>) -> Result<Vec<String>, PdfError> {
    extract_layout(bytes).map(|pages| pages.into_iter().map(|p| p.text).collect())
}

/// The text of each page with its layout, in page order (index 0 = page 1); the text is what
/// [`extract_pages`] gives. A page whose layout cannot be worked out (its geometry is unusable,
/// or the layout code panics) keeps its text with no lines.
pub fn extract_layout(bytes: Vec<u8>) -> Result<Vec<ExtractedPage>, PdfError> {
    if bytes.is_empty() {
        return Err(PdfError::Empty);
    }
    // The header may follow some junk; readers accept it within the first KiB.
    let head = &bytes[..bytes.len().min(1024)];
    if !head.windows(5).any(|w| w == b"%PDF-") {
        return Err(PdfError::NotPdf);
    }
    match catch_unwind(AssertUnwindSafe(|| extract_unguarded(bytes))) {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(PdfError::Crashed(message))
        }
    }
}

fn extract_unguarded(bytes: Vec<u8>) -> Result<Vec<ExtractedPage>, PdfError> {
    let doc = PdfDocument::from_bytes(bytes).map_err(|e| classify(&e))?;
    if doc.is_encrypted() && !matches!(doc.authenticate(b""), Ok(true)) {
        return Err(PdfError::Encrypted);
    }
    let count = doc.page_count().map_err(|e| classify(&e))?;
    if count == 0 {
        return Err(PdfError::NoPages);
    }
    let mut pages = Vec::with_capacity(count);
    let mut first_error = None;
    let mut failed = 0;
    for i in 0..count {
        match doc.extract_text(i) {
            Ok(mut text) => {
                let lines =
                    catch_unwind(AssertUnwindSafe(|| layout::page_layout(&doc, i, &mut text)))
                        .unwrap_or_else(|_| {
                            warn!(
                                page = i + 1,
                                "the page layout crashed; its text has no boxes"
                            );
                            Vec::new()
                        });
                pages.push(ExtractedPage { text, lines });
            }
            Err(e) => {
                warn!(page = i + 1, error = %e, "cannot extract page text");
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
                pages.push(ExtractedPage::default());
            }
        }
    }
    if failed == count {
        return Err(PdfError::Damaged(format!(
            "no page text could be read: {}",
            first_error.unwrap_or_default()
        )));
    }
    Ok(pages)
}

fn classify(e: &pdf_oxide::error::Error) -> PdfError {
    match e {
        pdf_oxide::error::Error::EncryptedPdf => PdfError::Encrypted,
        other => PdfError::Damaged(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_non_pdf_bytes_are_named() {
        assert_eq!(extract_pages(Vec::new()), Err(PdfError::Empty));
        assert_eq!(
            extract_pages(b"hello, I am a text file".to_vec()),
            Err(PdfError::NotPdf)
        );
    }

    #[test]
    fn truncated_pdf_fails_without_panicking() {
        let r = extract_pages(b"%PDF-1.7\n1 0 obj << /Type /Catalog".to_vec());
        assert!(r.is_err(), "{r:?}");
    }
}
