//! The hostile files the ingestion issue names, built here byte by byte so that each is
//! exactly the fault it is named after: encrypted, truncated, broken xref, a page tree that
//! contains itself, a content stream that inflates to 256 MiB, 10,000 pages and zero pages.
//! Each must come back from `extract_layout` as pages or as its named reason; none may unwind.
//! `FOLIO_HOSTILE_DIR=DIR` also writes them to DIR (to index them by hand with
//! `folio index DIR --report`).

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};

use flate2::Compression;
use flate2::write::ZlibEncoder;
use folio_indexer::pdf::{PdfError, extract_layout};

mod common;
use common::pdf;

fn stream(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut s = format!("<< {dict} /Length {} >>\nstream\n", data.len()).into_bytes();
    s.extend_from_slice(data);
    s.extend_from_slice(b"\nendstream");
    s
}

const FONT: &str = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>";

/// `pages` pages, each showing "page N" (objects: catalog, pages, font, then a page and its
/// content stream for each).
fn pages_pdf(pages: usize) -> Vec<u8> {
    let kids: Vec<String> = (0..pages).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
    let mut objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        format!(
            "<< /Type /Pages /Kids [{}] /Count {pages} >>",
            kids.join(" ")
        )
        .into_bytes(),
        FONT.as_bytes().to_vec(),
    ];
    for i in 0..pages {
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
                5 + 2 * i
            )
            .into_bytes(),
        );
        let text = format!("BT /F1 12 Tf 72 720 Td (page {}) Tj ET", i + 1);
        objects.push(stream("", text.as_bytes()));
    }
    pdf(&objects)
}

/// One page whose content stream inflates to `bytes` of spaces after a line of text.
fn bomb_pdf(bytes: usize) -> Vec<u8> {
    let mut z = ZlibEncoder::new(Vec::new(), Compression::best());
    let _ = z.write_all(b"BT /F1 12 Tf 72 720 Td (inflated) Tj ET\n");
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..bytes / chunk.len() {
        let _ = z.write_all(&chunk);
    }
    let data = z.finish().unwrap_or_default();
    pdf(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>".to_vec(),
        FONT.as_bytes().to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents 5 0 R >>".to_vec(),
        stream("/Filter /FlateDecode", &data),
    ])
}

/// A page tree whose only kid is itself.
fn recursive_pdf() -> Vec<u8> {
    pdf(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [2 0 R] /Count 1 >>".to_vec(),
    ])
}

fn zero_pages_pdf() -> Vec<u8> {
    pdf(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [] /Count 0 >>".to_vec(),
    ])
}

/// A good file whose `startxref` points into the middle of nowhere.
fn broken_xref_pdf() -> Vec<u8> {
    let good = pages_pdf(3);
    let at = good
        .windows(10)
        .rposition(|w| w == b"startxref\n")
        .unwrap_or(good.len());
    let mut out = good[..at].to_vec();
    out.extend_from_slice(b"startxref\n77\n%%EOF\n");
    out
}

fn truncated_pdf() -> Vec<u8> {
    let good = pages_pdf(3);
    good[..good.len() / 2].to_vec()
}

fn page_texts(pages: &[folio_indexer::layout::ExtractedPage]) -> Vec<String> {
    pages.iter().map(|p| p.text.trim().to_string()).collect()
}

#[test]
fn each_named_fault_indexes_or_fails_with_its_reason() {
    let encrypted =
        std::fs::read(folio_tests_data("encrypted.pdf")).unwrap_or_else(|e| panic!("{e}"));
    let set: Vec<(&str, Vec<u8>)> = vec![
        ("encrypted", encrypted),
        ("truncated", truncated_pdf()),
        ("broken-xref", broken_xref_pdf()),
        ("recursive-object", recursive_pdf()),
        // The control: the same construction, 1 MiB inflated.
        ("inflating-stream", bomb_pdf(1 << 20)),
        ("zip-bomb-stream", bomb_pdf(256 << 20)),
        ("10k-pages", pages_pdf(10_000)),
        ("zero-pages", zero_pages_pdf()),
    ];
    if let Some(dir) = std::env::var_os("FOLIO_HOSTILE_DIR") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        for (name, bytes) in &set {
            std::fs::write(dir.join(format!("{name}.pdf")), bytes)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    for (name, bytes) in set {
        let size = bytes.len();
        let outcome = catch_unwind(AssertUnwindSafe(|| extract_layout(bytes)))
            .unwrap_or_else(|_| panic!("{name}: extract_layout unwound"));
        println!(
            "{name} ({size} bytes): {}",
            match &outcome {
                Ok(pages) => format!("{} pages", pages.len()),
                Err(e) => format!("failed: {e}"),
            }
        );
        match (name, outcome) {
            ("encrypted", Err(e)) => assert!(matches!(e, PdfError::Encrypted), "{e}"),
            ("zero-pages", Err(e)) => assert!(matches!(e, PdfError::NoPages), "{e}"),
            ("recursive-object", Err(e)) => {
                assert!(matches!(e, PdfError::NoPages | PdfError::Damaged(_)), "{e}")
            }
            ("truncated", Ok(pages)) => {
                // pdf_oxide rebuilds the cross-reference table by scanning for objects: the
                // page tree survives, the content streams cut off leave their pages empty.
                let texts = page_texts(&pages);
                assert_eq!(texts, ["page 1", "", ""], "{name}");
            }
            ("broken-xref", Ok(pages)) => {
                assert_eq!(page_texts(&pages), ["page 1", "page 2", "page 3"], "{name}");
            }
            ("inflating-stream", Ok(pages)) => {
                assert_eq!(page_texts(&pages), ["inflated"], "{name}")
            }
            ("zip-bomb-stream", Ok(pages)) => {
                // The same stream as above, 256 times longer: pdf_oxide stops inflating it,
                // and the page indexes without text.
                assert_eq!(page_texts(&pages), [""], "{name}")
            }
            ("10k-pages", Ok(pages)) => {
                let texts = page_texts(&pages);
                assert_eq!(texts.len(), 10_000);
                assert_eq!(texts[0], "page 1");
                assert_eq!(texts[9_999], "page 10000");
            }
            (name, Ok(pages)) => panic!("{name}: unexpectedly {} pages", pages.len()),
            (name, Err(e)) => panic!("{name}: unexpectedly failed: {e}"),
        }
    }
}

fn folio_tests_data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(name)
}
