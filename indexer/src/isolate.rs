//! Text extraction and page rendering in child processes, under a time limit and a memory
//! cap.
//!
//! A hostile PDF can make a parser loop or allocate without end; a panic net catches neither.
//! With [`Isolation`], each file's text is extracted, and its pages rendered, by worker
//! processes (the `folio` binary's hidden `extract-worker` command, which calls
//! [`worker_main`]): a worker caps its own address space with `setrlimit(RLIMIT_AS)` before
//! reading the file, and the indexer kills it when the time limit passes. (A stream that
//! inflates to 400 MB takes 828 MB of memory uncapped; under a 256 MiB cap the allocation
//! fails and the page comes back empty.) Either way the file fails alone with a named reason
//! and the batch goes on.
//!
//! - `extract-worker text PATH` answers one JSON object on stdout, `{"pages": [...]}` (each
//!   page's text and layout lines, as [`ExtractedPage`]) or `{"error": "..."}`.
//! - `extract-worker render PATH DPI MAX_PIXELS FROM` renders pages FROM.. and streams them
//!   as binary frames (see [`Frame`]), one page at a time; the indexer reads them as it
//!   embeds, so the worker draws ahead while the models work, and at most a page or two is
//!   in flight. The time limit counts only the time the indexer waits for pages. A page that
//!   kills the worker (over the memory cap, an abort) loses its image alone: a new worker
//!   goes on from the page after it.

use std::ffi::OsString;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use image::RgbImage;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::layout::ExtractedPage;
use crate::pdf;
use crate::render::{PageRenderer, RenderRun, RenderSettings, TakePage};

/// Environment variable that passes the memory cap (bytes) to the worker.
pub const MEMORY_ENV: &str = "FOLIO_WORKER_MEMORY_BYTES";

/// How to run the extraction worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolation {
    /// The worker executable.
    pub program: PathBuf,
    /// Arguments before the file path (e.g. `["extract-worker"]`).
    pub args: Vec<String>,
    /// A file whose text is not extracted within this long fails; page rendering has the
    /// same time again (counting only the time spent waiting for pages).
    pub time_limit: Duration,
    /// Each worker's address-space cap, in bytes.
    pub memory_limit: u64,
}

/// What the worker prints.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WorkerAnswer {
    Pages(Vec<ExtractedPage>),
    Error(String),
}

/// Extracts the page texts and layouts of `path` in a worker process under `iso`'s limits.
pub fn extract_isolated(iso: &Isolation, path: &Path) -> Result<Vec<ExtractedPage>, String> {
    let mut worker = Worker::start(iso, |c| {
        c.arg("text").arg(path);
    })
    .map_err(|e| format!("cannot start the extraction worker: {e}"))?;
    // Read the answer while waiting, so that a long one never blocks the worker on a full pipe.
    let stdout = worker.child.stdout.take().map(drain);
    let status = match worker.wait_for(iso.time_limit) {
        Ok(Some(status)) => status,
        Ok(None) => {
            return Err(format!(
                "text extraction took longer than the per-file limit of {} s",
                iso.time_limit.as_secs_f64()
            ));
        }
        Err(e) => return Err(format!("lost the extraction worker: {e}")),
    };
    let stdout = stdout.and_then(|t| t.join().ok()).unwrap_or_default();
    let stderr = worker.stderr();
    match serde_json::from_slice::<WorkerAnswer>(&stdout) {
        Ok(WorkerAnswer::Pages(pages)) if status.success() => Ok(pages),
        Ok(WorkerAnswer::Error(reason)) => Err(reason),
        _ => Err(failure_reason(
            "text extraction",
            iso,
            status,
            &stderr,
            path,
        )),
    }
}

/// Renders the first `limit` pages of the PDF at `path` in worker processes under `iso`'s
/// limits, handing each page to `take` as it arrives, as [`crate::render::render_document`] does
/// in-process. The time limit bounds the time spent waiting for pages (not the time `take`
/// spends on them); when it passes, the pages not yet drawn are left without an image.
pub fn render_isolated(
    iso: &Isolation,
    path: &Path,
    settings: &RenderSettings,
    limit: usize,
    take: &mut TakePage<'_>,
) -> Result<RenderRun, String> {
    let mut budget = iso.time_limit;
    let mut next = 0;
    let mut page_count = None;
    let run = |page_count, stopped| {
        Ok(RenderRun {
            page_count,
            stopped,
        })
    };
    loop {
        let mut worker = match Worker::start(iso, |c| {
            c.arg("render")
                .arg(path)
                .arg(settings.dpi.to_string())
                .arg(settings.max_pixels.to_string())
                .arg(next.to_string());
        }) {
            Ok(w) => w,
            Err(e) => {
                return run(
                    page_count,
                    Some((next, format!("cannot start the rendering worker: {e}"))),
                );
            }
        };
        let frames = worker.frames(settings.max_pixels);
        loop {
            let waiting = Instant::now();
            let frame = frames.recv_timeout(budget);
            budget = budget.saturating_sub(waiting.elapsed());
            let end = limit.min(page_count.unwrap_or(usize::MAX));
            match frame {
                Ok(Frame::Count(n)) => {
                    page_count = Some(n);
                    if next >= limit.min(n) {
                        return run(page_count, None);
                    }
                }
                Ok(Frame::Page(index, result)) if page_count.is_some() && index == next => {
                    take(index, result)?;
                    next += 1;
                    if next >= end {
                        return run(page_count, None);
                    }
                }
                Ok(Frame::Page(index, _)) => {
                    return run(
                        page_count,
                        Some((
                            next,
                            format!("the rendering worker sent page {} out of turn", index + 1),
                        )),
                    );
                }
                Ok(Frame::Fail(reason)) => return run(None, Some((next, reason))),
                Err(RecvTimeoutError::Timeout) => {
                    return run(
                        page_count,
                        Some((
                            next,
                            format!(
                                "page rendering took longer than the per-file limit of {} s",
                                iso.time_limit.as_secs_f64()
                            ),
                        )),
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // The stream ended before the last page: page `next` killed the worker
                    // (or it sent a frame that does not parse; it gets what is left of the
                    // time to exit before it is killed).
                    let waiting = Instant::now();
                    let status = worker.wait_for(budget);
                    budget = budget.saturating_sub(waiting.elapsed());
                    let reason = match status {
                        Ok(Some(status)) => {
                            failure_reason("page rendering", iso, status, &worker.stderr(), path)
                        }
                        Ok(None) => "the rendering worker's page stream broke off and it did \
                                     not exit within the per-file limit"
                            .into(),
                        Err(e) => format!("lost the rendering worker: {e}"),
                    };
                    if page_count.is_none() {
                        return run(None, Some((next, reason)));
                    }
                    take(next, Err(reason))?;
                    next += 1;
                    if next >= end {
                        return run(page_count, None);
                    }
                    break;
                }
            }
        }
    }
}

/// A running worker process, killed when dropped. Its stderr is drained by a thread so that a
/// chatty worker never blocks on a full pipe.
struct Worker {
    child: Child,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Worker {
    fn start(iso: &Isolation, args: impl FnOnce(&mut Command)) -> std::io::Result<Worker> {
        let mut command = Command::new(&iso.program);
        command
            .args(&iso.args)
            .env(MEMORY_ENV, iso.memory_limit.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        args(&mut command);
        let mut child = command.spawn()?;
        let stderr = child.stderr.take().map(drain);
        Ok(Worker { child, stderr })
    }

    /// Reads the worker's frames on a thread, at most one ahead of the receiver.
    fn frames(&mut self, max_pixels: u64) -> Receiver<Frame> {
        let (tx, rx) = sync_channel(1);
        if let Some(pipe) = self.child.stdout.take() {
            std::thread::spawn(move || {
                let mut pipe = BufReader::with_capacity(1 << 20, pipe);
                while let Ok(Some(frame)) = Frame::read(&mut pipe, max_pixels) {
                    if tx.send(frame).is_err() {
                        break;
                    }
                }
            });
        }
        rx
    }

    /// Waits up to `limit` for the worker to exit: its status, or `None` if it is still
    /// running (it is then killed when dropped).
    fn wait_for(&mut self, limit: Duration) -> std::io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait()? {
                Some(status) => return Ok(Some(status)),
                None if Instant::now() >= deadline => return Ok(None),
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// What the worker wrote on stderr (after it ended).
    fn stderr(&mut self) -> String {
        let bytes = self
            .stderr
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `pipe` to its end on a thread.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out);
        out
    })
}

/// Why a worker that ended without an answer failed: over the memory cap, or crashed.
fn failure_reason(
    what: &str,
    iso: &Isolation,
    status: ExitStatus,
    stderr: &str,
    path: &Path,
) -> String {
    if stderr.contains("memory allocation") || stderr.contains("out of memory") {
        return format!(
            "{what} exceeded the per-file memory cap of {} MiB",
            iso.memory_limit / (1024 * 1024)
        );
    }
    let last = stderr.lines().last().unwrap_or("no message").to_string();
    warn!(path = %path.display(), %status, stderr = %last, "{what} worker failed");
    format!("{what} crashed ({status}): {last}")
}

/// One message of the rendering worker. On the wire: a tag byte, then little-endian fields.
#[derive(Debug, PartialEq)]
enum Frame {
    /// `N`, u64: the document's page count; sent first.
    Count(usize),
    /// `I`, u64 index, u32 width, u32 height, width × height × 3 RGB bytes: a page image;
    /// `E`, u64 index, u32 length, UTF-8 message: a page that has no image, and why.
    Page(usize, Result<RgbImage, String>),
    /// `F`, u32 length, UTF-8 message: the document cannot be rendered at all.
    Fail(String),
}

/// Longest message a frame carries.
const MAX_MESSAGE: u32 = 64 * 1024;

impl Frame {
    fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let message = |out: &mut dyn Write, m: &str| -> std::io::Result<()> {
            let mut end = m.len().min(MAX_MESSAGE as usize);
            while !m.is_char_boundary(end) {
                end -= 1;
            }
            out.write_all(&(end as u32).to_le_bytes())?;
            out.write_all(&m.as_bytes()[..end])
        };
        match self {
            Frame::Count(n) => {
                out.write_all(b"N")?;
                out.write_all(&(*n as u64).to_le_bytes())
            }
            Frame::Page(index, Ok(img)) => {
                out.write_all(b"I")?;
                out.write_all(&(*index as u64).to_le_bytes())?;
                out.write_all(&img.width().to_le_bytes())?;
                out.write_all(&img.height().to_le_bytes())?;
                out.write_all(img.as_raw())
            }
            Frame::Page(index, Err(reason)) => {
                out.write_all(b"E")?;
                out.write_all(&(*index as u64).to_le_bytes())?;
                message(out, reason)
            }
            Frame::Fail(reason) => {
                out.write_all(b"F")?;
                message(out, reason)
            }
        }
    }

    /// The next frame, `None` at the end of the stream; an image over `max_pixels` or a
    /// malformed frame is an error (the worker is not trusted to be sane).
    fn read(input: &mut impl Read, max_pixels: u64) -> std::io::Result<Option<Frame>> {
        fn bytes<const N: usize>(input: &mut impl Read) -> std::io::Result<[u8; N]> {
            let mut b = [0; N];
            input.read_exact(&mut b)?;
            Ok(b)
        }
        let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        let message = |input: &mut dyn Read| -> std::io::Result<String> {
            let mut len = [0; 4];
            input.read_exact(&mut len)?;
            let len = u32::from_le_bytes(len);
            if len > MAX_MESSAGE {
                return Err(bad(format!("message of {len} bytes")));
            }
            let mut text = vec![0; len as usize];
            input.read_exact(&mut text)?;
            Ok(String::from_utf8_lossy(&text).into_owned())
        };
        let mut tag = [0; 1];
        if input.read(&mut tag)? == 0 {
            return Ok(None);
        }
        let index = |input: &mut dyn Read| -> std::io::Result<usize> {
            let mut b = [0; 8];
            input.read_exact(&mut b)?;
            usize::try_from(u64::from_le_bytes(b)).map_err(|_| bad("page index".into()))
        };
        Ok(Some(match tag[0] {
            b'N' => Frame::Count(index(input)?),
            b'I' => {
                let index = index(input)?;
                let (w, h) = (
                    u32::from_le_bytes(bytes(input)?),
                    u32::from_le_bytes(bytes(input)?),
                );
                if u64::from(w) * u64::from(h) > max_pixels {
                    return Err(bad(format!("image of {w} × {h} pixels")));
                }
                let mut rgb = vec![0; w as usize * h as usize * 3];
                input.read_exact(&mut rgb)?;
                let img = RgbImage::from_raw(w, h, rgb).ok_or_else(|| bad("image size".into()))?;
                Frame::Page(index, Ok(img))
            }
            b'E' => {
                let index = index(input)?;
                Frame::Page(index, Err(message(input)?))
            }
            b'F' => Frame::Fail(message(input)?),
            other => return Err(bad(format!("unknown frame tag {other}"))),
        }))
    }
}

/// The worker, given the arguments after the worker command (see the module docs): caps its
/// memory (from [`MEMORY_ENV`]), extracts or renders, prints the answer. Returns the process
/// exit code.
pub fn worker_main(args: &[OsString]) -> i32 {
    if let Some(limit) = std::env::var(MEMORY_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        && let Err(e) = rlimit::setrlimit(rlimit::Resource::AS, limit, limit)
    {
        eprintln!("cannot cap the worker's memory: {e}");
        return 3;
    }
    let arg = |i: usize| args.get(i).and_then(|a| a.to_str());
    match (arg(0), args.get(1)) {
        (Some("text"), Some(path)) if args.len() == 2 => text_worker(Path::new(path)),
        (Some("render"), Some(path)) if args.len() == 5 => {
            let parsed = (
                arg(2).and_then(|v| v.parse().ok()),
                arg(3).and_then(|v| v.parse().ok()),
                arg(4).and_then(|v| v.parse().ok()),
            );
            let (Some(dpi), Some(max_pixels), Some(from)) = parsed else {
                eprintln!("usage: render PATH DPI MAX_PIXELS FROM (numbers)");
                return 2;
            };
            let settings = RenderSettings {
                dpi,
                max_pixels,
                ..RenderSettings::default()
            };
            render_worker(Path::new(path), &settings, from)
        }
        _ => {
            eprintln!("usage: text PATH | render PATH DPI MAX_PIXELS FROM");
            2
        }
    }
}

fn text_worker(path: &Path) -> i32 {
    let answer = match std::fs::read(path) {
        Ok(bytes) => match pdf::extract_layout(bytes) {
            Ok(pages) => WorkerAnswer::Pages(pages),
            Err(e) => WorkerAnswer::Error(e.to_string()),
        },
        Err(e) => WorkerAnswer::Error(format!("cannot read: {e}")),
    };
    match serde_json::to_writer(std::io::stdout().lock(), &answer) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cannot write the answer: {e}");
            4
        }
    }
}

fn render_worker(path: &Path, settings: &RenderSettings, from: usize) -> i32 {
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let mut send = |frame: Frame| frame.write(&mut out).and_then(|()| out.flush());
    let opened = std::fs::read(path)
        .map_err(|e| format!("cannot read: {e}"))
        .and_then(|bytes| PageRenderer::open(&bytes).map_err(|e| e.to_string()));
    let mut renderer = match opened {
        Ok(r) => r,
        Err(reason) => return i32::from(send(Frame::Fail(reason)).is_err()) * 4,
    };
    if send(Frame::Count(renderer.page_count())).is_err() {
        return 4;
    }
    let mut sent = Ok(());
    renderer.render_each(from..renderer.page_count(), settings, |index, result| {
        sent = send(Frame::Page(index, result.map_err(|e| e.to_string())));
        sent.is_ok()
    });
    match sent {
        Ok(()) => 0,
        // The indexer stopped reading (it had what it wanted, or its time ran out).
        Err(_) => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_carries_the_layout_exactly() -> Result<(), Box<dyn std::error::Error>> {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/samples/multicolumn.pdf");
        let pages = pdf::extract_layout(std::fs::read(path)?)?;
        assert!(pages.iter().all(|p| !p.lines.is_empty()));
        let json = serde_json::to_vec(&WorkerAnswer::Pages(pages.clone()))?;
        match serde_json::from_slice::<WorkerAnswer>(&json)? {
            WorkerAnswer::Pages(back) => assert_eq!(back, pages),
            WorkerAnswer::Error(e) => return Err(e.into()),
        }
        // A page without lines leaves the field out.
        let old = br#"{"pages":[{"text":"one page"}]}"#;
        match serde_json::from_slice::<WorkerAnswer>(old)? {
            WorkerAnswer::Pages(back) => {
                assert_eq!(back, [ExtractedPage::text_only("one page".into())])
            }
            WorkerAnswer::Error(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// A shell command that writes `frames` to stdout.
    fn printf(frames: &[Frame]) -> String {
        let mut bytes = Vec::new();
        for f in frames {
            f.write(&mut bytes).expect("in memory");
        }
        let escaped: String = bytes.iter().map(|b| format!("\\{b:03o}")).collect();
        format!("printf '{escaped}'")
    }

    /// An "isolation" whose worker is `sh -c script`: the script sees the worker arguments as
    /// $1.. (`render PATH DPI MAX_PIXELS FROM`, so $5 is the first page asked for).
    fn fake(script: &str, time_limit: Duration) -> Isolation {
        Isolation {
            program: "sh".into(),
            args: vec!["-c".into(), script.into(), "worker".into()],
            time_limit,
            memory_limit: 1 << 30,
        }
    }

    fn pixel(value: u8) -> RgbImage {
        RgbImage::from_pixel(1, 1, image::Rgb([value; 3]))
    }

    /// A page handed over: its index, and its image's one value or its error.
    type Seen = (usize, Result<u8, String>);

    /// Runs `iso`'s worker over `limit` pages, calling `each` as each page is taken.
    fn render(
        iso: &Isolation,
        limit: usize,
        mut each: impl FnMut(usize),
    ) -> (RenderRun, Vec<Seen>) {
        let mut seen = Vec::new();
        let run = render_isolated(
            iso,
            Path::new("doc.pdf"),
            &RenderSettings::default(),
            limit,
            &mut |index, result| {
                each(index);
                seen.push((index, result.map(|img| img.get_pixel(0, 0).0[0])));
                Ok(())
            },
        )
        .expect("take never refuses");
        (run, seen)
    }

    #[test]
    fn frames_round_trip_and_bad_ones_are_refused() -> std::io::Result<()> {
        let frames = [
            Frame::Count(3),
            Frame::Page(
                0,
                Ok(RgbImage::from_fn(3, 2, |x, y| {
                    image::Rgb([x as u8, y as u8, 7])
                })),
            ),
            Frame::Page(1, Err("page 2 cannot be rendered: é".into())),
            Frame::Fail("encrypted".into()),
        ];
        let mut wire = Vec::new();
        for f in &frames {
            f.write(&mut wire)?;
        }
        let mut input = wire.as_slice();
        for f in frames {
            assert_eq!(Frame::read(&mut input, 6)?, Some(f));
        }
        assert_eq!(Frame::read(&mut input, 6)?, None);
        // An image over the pixel cap, an unknown tag, a cut frame: errors, not allocations.
        let mut big = Vec::new();
        Frame::Page(0, Ok(RgbImage::new(3, 3))).write(&mut big)?;
        assert!(Frame::read(&mut big.as_slice(), 8).is_err());
        assert!(Frame::read(&mut b"Z".as_slice(), 8).is_err());
        assert!(Frame::read(&mut &big[..20], 9).is_err());
        Ok(())
    }

    #[test]
    fn a_page_that_kills_the_worker_loses_its_image_alone() {
        // The first worker sends page 1 and dies on page 2; the next one starts at page 3.
        let first = printf(&[Frame::Count(3), Frame::Page(0, Ok(pixel(10)))]);
        let second = printf(&[Frame::Count(3), Frame::Page(2, Ok(pixel(30)))]);
        let script = format!(
            "if [ \"$5\" = 0 ]; then {first}; echo boom >&2; exit 9; \
             elif [ \"$5\" = 2 ]; then {second}; else exit 1; fi"
        );
        let (run, seen) = render(&fake(&script, Duration::from_secs(30)), 3, |_| {});
        assert_eq!(
            run,
            RenderRun {
                page_count: Some(3),
                stopped: None
            }
        );
        assert_eq!(
            seen,
            [
                (0, Ok(10)),
                (
                    1,
                    Err("page rendering crashed (exit status: 9): boom".into())
                ),
                (2, Ok(30)),
            ]
        );
        // Over the memory cap (Rust's allocator aborts with this message): named so.
        let script = format!(
            "{}; echo 'memory allocation of 4294967296 bytes failed' >&2; kill -ABRT $$",
            printf(&[Frame::Count(1)])
        );
        let (_, seen) = render(&fake(&script, Duration::from_secs(30)), 1, |_| {});
        assert_eq!(
            seen,
            [(
                0,
                Err("page rendering exceeded the per-file memory cap of 1024 MiB".into())
            )]
        );
    }

    #[test]
    fn the_time_limit_counts_only_the_wait_for_pages() {
        // A worker that stalls after the count: the pages are left without images in time.
        let script = format!("{}; sleep 20", printf(&[Frame::Count(2)]));
        let started = Instant::now();
        let (run, seen) = render(&fake(&script, Duration::from_millis(300)), 2, |_| {});
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(seen.is_empty());
        assert_eq!(run.page_count, Some(2));
        assert_eq!(
            run.stopped,
            Some((
                0,
                "page rendering took longer than the per-file limit of 0.3 s".into()
            ))
        );
        // A worker that sends a frame that does not parse, then hangs: no wait past the limit.
        let script = format!("{}; printf Z; sleep 20", printf(&[Frame::Count(2)]));
        let started = Instant::now();
        let (run, seen) = render(&fake(&script, Duration::from_millis(300)), 2, |_| {});
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(run.page_count, Some(2));
        assert!(
            matches!(&seen[..], [(0, Err(why))] if why.contains("broke off")),
            "{seen:?}"
        );
        // Pages that come quickly, taken slowly: the taking is not the renderer's time.
        let pages: Vec<Frame> = std::iter::once(Frame::Count(3))
            .chain((0..3).map(|i| Frame::Page(i, Ok(pixel(i as u8)))))
            .collect();
        let iso = fake(&printf(&pages), Duration::from_millis(400));
        let (run, seen) = render(&iso, 3, |_| std::thread::sleep(Duration::from_millis(250)));
        assert_eq!(
            run,
            RenderRun {
                page_count: Some(3),
                stopped: None
            }
        );
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn a_document_that_does_not_open_and_a_short_one_are_reported() {
        let iso = fake(
            &printf(&[Frame::Fail("encrypted: the PDF needs a password".into())]),
            Duration::from_secs(30),
        );
        let (run, seen) = render(&iso, 4, |_| {});
        assert!(seen.is_empty());
        assert_eq!(
            run,
            RenderRun {
                page_count: None,
                stopped: Some((0, "encrypted: the PDF needs a password".into()))
            }
        );
        // The renderer sees 1 page of the 2 asked for: the run ends after it, with the count.
        let iso = fake(
            &printf(&[Frame::Count(1), Frame::Page(0, Ok(pixel(5)))]),
            Duration::from_secs(30),
        );
        let (run, seen) = render(&iso, 2, |_| {});
        assert_eq!(
            run,
            RenderRun {
                page_count: Some(1),
                stopped: None
            }
        );
        assert_eq!(seen, [(0, Ok(5))]);
        // A worker that cannot start at all.
        let mut iso = fake("", Duration::from_secs(1));
        iso.program = "/nonexistent/folio".into();
        let (run, _) = render(&iso, 2, |_| {});
        assert!(
            matches!(run.stopped, Some((0, ref why)) if why.starts_with("cannot start the rendering worker"))
        );
    }
}
