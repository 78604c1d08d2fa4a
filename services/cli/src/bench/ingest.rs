//! `folio bench ingest`: pages per second of Folio's text extraction (pdf_oxide, with layout)
//! and page rendering (hayro) over a folder of PDFs, and with `--poppler`, in the same run,
//! poppler's `pdftotext` and `pdftoppm` on the same files at the same resolution.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use folio_indexer::pdf::extract_layout;
use folio_indexer::render::{PageRenderer, RenderSettings};
use serde::Serialize;

#[derive(Args)]
pub struct IngestBenchArgs {
    /// PDF files or folders of them.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Rendering resolution.
    #[arg(long, default_value_t = 150.0)]
    dpi: f32,
    /// Also run poppler's pdftotext and pdftoppm (Debian: poppler-utils) on the same files.
    #[arg(long)]
    poppler: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// One system's totals over the files both could read.
#[derive(Serialize)]
struct System {
    name: String,
    text_s: f64,
    text_pages_per_s: f64,
    render_s: f64,
    render_pages_per_s: f64,
}

/// What happened to one file in Folio.
#[derive(Serialize)]
struct FileRun {
    path: String,
    pages: usize,
    text_s: f64,
    render_s: f64,
    /// Why the file (or some of its pages) could not be read, if so.
    error: Option<String>,
}

#[derive(Serialize)]
struct Report {
    files: usize,
    /// Pages of the files Folio (and poppler, when run) read whole: the ones the totals
    /// count.
    pages: usize,
    dpi: f32,
    systems: Vec<System>,
    runs: Vec<FileRun>,
}

pub fn ingest(args: IngestBenchArgs) -> Result<()> {
    if !(args.dpi.is_finite() && args.dpi > 0.0) {
        bail!("--dpi must be a positive number, got {}", args.dpi);
    }
    let (files, missing) = folio_indexer::collect_pdfs(&args.inputs);
    if let Some(m) = missing.first() {
        bail!(
            "{}: {}",
            m.path,
            m.reason.as_deref().unwrap_or("cannot be read")
        );
    }
    if files.is_empty() {
        bail!("no PDF files found in the given inputs");
    }
    let poppler = if args.poppler {
        Some(poppler_version()?)
    } else {
        None
    };
    let settings = RenderSettings {
        dpi: args.dpi,
        // As pdftoppm: the page at the resolution asked, however large.
        max_pixels: u64::MAX,
        ..RenderSettings::default()
    };
    let mut runs = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        eprintln!(
            "bench ingest: [{}/{}] {}",
            i + 1,
            files.len(),
            file.display()
        );
        runs.push(folio_file(file, &settings)?);
    }
    // poppler's times per file; a file poppler fails on is left out of both totals.
    let mut poppler_times: Vec<Option<(f64, f64)>> = Vec::new();
    if poppler.is_some() {
        let tmp = tempfile::tempdir()?;
        for (file, run) in files.iter().zip(runs.iter_mut()) {
            if run.error.is_some() {
                poppler_times.push(None);
                continue;
            }
            let text = timed(Command::new("pdftotext").arg("-q").arg(file).arg("-"));
            let prefix = tmp.path().join("page");
            let render = timed(
                Command::new("pdftoppm")
                    .args(["-q", "-r", &args.dpi.to_string()])
                    .arg(file)
                    .arg(&prefix),
            );
            clear(tmp.path())?;
            match (text, render) {
                (Ok(t), Ok(r)) => poppler_times.push(Some((t, r))),
                (Err(e), _) | (_, Err(e)) => {
                    run.error = Some(format!("poppler: {e}"));
                    poppler_times.push(None);
                }
            }
        }
    }
    let counted: Vec<&FileRun> = runs.iter().filter(|r| r.error.is_none()).collect();
    let pages: usize = counted.iter().map(|r| r.pages).sum();
    if pages == 0 {
        bail!("no file could be read whole: nothing to measure");
    }
    let system = |name: String, text_s: f64, render_s: f64| System {
        name,
        text_s,
        text_pages_per_s: pages as f64 / text_s,
        render_s,
        render_pages_per_s: pages as f64 / render_s,
    };
    let mut systems = vec![system(
        "Folio (pdf_oxide + layout, hayro)".into(),
        counted.iter().map(|r| r.text_s).sum(),
        counted.iter().map(|r| r.render_s).sum(),
    )];
    if let Some(version) = poppler {
        let times: Vec<(f64, f64)> = poppler_times.into_iter().flatten().collect();
        systems.push(system(
            format!("poppler {version} (pdftotext, pdftoppm to PPM)"),
            times.iter().map(|t| t.0).sum(),
            times.iter().map(|t| t.1).sum(),
        ));
    }
    let report = Report {
        files: files.len(),
        pages,
        dpi: args.dpi,
        systems,
        runs,
    };
    super::print_report(&report, args.json, print_table)
}

/// Extracts the text with layout, then renders every page, each timed.
fn folio_file(file: &Path, settings: &RenderSettings) -> Result<FileRun> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let mut run = FileRun {
        path: file.display().to_string(),
        pages: 0,
        text_s: 0.0,
        render_s: 0.0,
        error: None,
    };
    let started = Instant::now();
    let text = extract_layout(bytes.clone());
    run.text_s = started.elapsed().as_secs_f64();
    match text {
        Ok(pages) => run.pages = pages.len(),
        Err(e) => {
            run.error = Some(format!("text: {e}"));
            return Ok(run);
        }
    }
    let started = Instant::now();
    let rendered = PageRenderer::open(&bytes).map(|mut r| {
        let n = r.page_count();
        (n, r.render_range(0..n, settings))
    });
    run.render_s = started.elapsed().as_secs_f64();
    match rendered {
        Ok((n, images)) => {
            let failed = images.iter().filter(|i| i.is_err()).count();
            if n != run.pages || failed > 0 {
                run.error = Some(format!(
                    "render: {failed} of {n} pages failed; the text has {} pages",
                    run.pages
                ));
            }
        }
        Err(e) => run.error = Some(format!("render: {e}")),
    }
    Ok(run)
}

/// A peer command still running after this long is killed, and its file left out (poppler
/// loops on some malformed files).
const PEER_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs a command to its end, its output discarded; its wall time in seconds. A failure, or
/// a run past [`PEER_TIME_LIMIT`], names the command.
fn timed(command: &mut Command) -> Result<f64> {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("running {:?}", command.get_program()))?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > PEER_TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{:?} ran past {} s on {:?}",
                command.get_program(),
                PEER_TIME_LIMIT.as_secs(),
                command.get_args().collect::<Vec<_>>()
            );
        }
        std::thread::sleep(std::time::Duration::from_micros(500));
    };
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!(
            "{:?} failed ({status}) on {:?}",
            command.get_program(),
            command.get_args().collect::<Vec<_>>()
        );
    }
    Ok(seconds)
}

/// Removes the images pdftoppm wrote.
fn clear(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        std::fs::remove_file(entry?.path())?;
    }
    Ok(())
}

/// poppler's version, from `pdftotext -v`; an error that says how to install it.
fn poppler_version() -> Result<String> {
    let out = Command::new("pdftotext").arg("-v").output().context(
        "--poppler needs pdftotext and pdftoppm (Debian: apt-get install poppler-utils)",
    )?;
    let text = String::from_utf8_lossy(&out.stderr);
    Ok(text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("?")
        .to_string())
}

fn print_table(r: &Report) {
    let failed: Vec<&FileRun> = r.runs.iter().filter(|f| f.error.is_some()).collect();
    println!(
        "{} files, {} pages in the files every system read whole (the pages counted); \
         rendering at {} dpi; one thread; wall time per file, summed (poppler's includes \
         starting its process)",
        r.files, r.pages, r.dpi
    );
    println!();
    println!("| system | text pages/s | render pages/s |");
    println!("|---|---:|---:|");
    for s in &r.systems {
        println!(
            "| {} | {:.1} | {:.1} |",
            s.name, s.text_pages_per_s, s.render_pages_per_s
        );
    }
    if let [folio, poppler] = r.systems.as_slice() {
        println!();
        println!(
            "Folio / poppler: {:.2}x text, {:.2}x rendering",
            folio.text_pages_per_s / poppler.text_pages_per_s,
            folio.render_pages_per_s / poppler.render_pages_per_s
        );
    }
    for f in failed {
        println!(
            "left out: {}: {}",
            f.path,
            f.error.as_deref().unwrap_or_default()
        );
    }
}
