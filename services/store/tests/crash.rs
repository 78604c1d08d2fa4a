//! Crash safety: a writer process that commits one document per generation is SIGKILLed at
//! random moments, again and again over the same index. After every kill the index must open,
//! be at a generation at least as new as the last one acknowledged, and hold every document
//! whose commit was acknowledged (and, since each commit adds one document, exactly as many
//! documents as its generation number).
//!
//! 20 kills run in the test suite. Soak with more:
//! `FOLIO_CRASH_ROUNDS=500 cargo test -p folio-store --test crash -- --nocapture`
//! (`FOLIO_CRASH_SEED` replays a run; the seed is printed).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use folio_core::testing::HashEmbedder;
use folio_core::{DocId, Document, Embedder, Page, PageKey, Passage};
use folio_store::{CommitOutcome, Store, StoreWriter};

const CHILD_ENV: &str = "FOLIO_CRASH_CHILD_DIR";

fn doc_id(i: u64) -> DocId {
    DocId(format!("{i:016x}"))
}

/// Commits documents 0, 1, 2, ... one generation each, printing `ACK <i> <generation>` after
/// each commit returns, until killed.
fn write_forever(dir: &Path) -> anyhow::Result<()> {
    let embedder = HashEmbedder::new(32);
    let mut out = std::io::stdout();
    // libtest has printed `test crash_child ... ` without a newline: start a fresh line.
    writeln!(out, "\nREADY")?;
    out.flush()?;
    loop {
        let mut writer = StoreWriter::open(dir, embedder.info(), None)?;
        let i = writer.document_count() as u64;
        let id = doc_id(i);
        let mut pages = Vec::new();
        let mut passages = Vec::new();
        let mut vectors = Vec::new();
        for page in 1..=8u32 {
            let text = format!(
                "document {i} page {page} alpha beta gamma {}",
                "delta ".repeat(40)
            );
            let key = PageKey {
                doc_id: id.clone(),
                page,
            };
            vectors.push(embedder.embed(&text));
            passages.push(Passage {
                id: 0,
                page: key.clone(),
                char_start: 0,
                char_end: text.chars().count() as u32,
                text: text.clone(),
                boxes: Vec::new(),
            });
            pages.push(Page { key, text });
        }
        let doc = Document {
            doc_id: id,
            path: format!("/crash/{i}.pdf"),
            content_hash: format!("{i:064x}"),
            pages: 8,
            bytes: 1,
            meta: Default::default(),
        };
        writer.put_document(doc, pages, passages, vectors)?;
        if let CommitOutcome::Published { generation } = writer.commit()? {
            writeln!(out, "ACK {i} {generation}")?;
            out.flush()?;
        }
    }
}

/// The writer, when this test binary is started as the child process.
#[test]
#[ignore = "started by sigkilled_writers_never_lose_acknowledged_commits"]
fn crash_child() -> anyhow::Result<()> {
    let dir = std::env::var(CHILD_ENV)?;
    write_forever(Path::new(&dir))
}

/// xorshift64: enough randomness for kill delays, reproducible from the seed.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn sigkilled_writers_never_lose_acknowledged_commits() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("FOLIO_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("FOLIO_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    println!("crash test: {rounds} kills, FOLIO_CRASH_SEED={seed}");
    let mut rng = seed;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("index");
    let exe = std::env::current_exe()?;
    let mut acked_total: Option<(u64, u64)> = None; // (last doc, its generation)
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let (lines_tx, lines) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        // The kill clock starts when the child is ready, not when it is spawned: on a loaded
        // machine process start-up alone can outlast the longest delay. The first round also
        // waits for one acknowledged commit, so that every later round has data to lose.
        let wait_for = if round == 0 { "ACK" } else { "READY" };
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.starts_with(wait_for);
                    seen.push(line);
                    if hit {
                        break;
                    }
                }
                Err(_) => {
                    child.kill()?;
                    child.wait()?;
                    anyhow::bail!("round {round}: the writer printed no {wait_for} in 120 s");
                }
            }
        }
        let delay = 20 + next(&mut rng) % 400;
        std::thread::sleep(Duration::from_millis(delay));
        child.kill()?; // SIGKILL on Unix
        child.wait()?;
        reader
            .join()
            .map_err(|_| anyhow::anyhow!("stdout reader panicked"))?;
        seen.extend(lines.try_iter());
        for line in seen {
            let mut parts = line.split_whitespace();
            if parts.next() != Some("ACK") {
                continue;
            }
            let doc: u64 = parts.next().unwrap_or_default().parse()?;
            let generation: u64 = parts.next().unwrap_or_default().parse()?;
            acked_total = Some((doc, generation));
        }
        let Some((last_doc, last_generation)) = acked_total else {
            continue; // killed before the first commit: nothing was promised yet
        };
        let store = Store::open(&dir).map_err(|e| {
            anyhow::anyhow!("round {round} (seed {seed}): index does not open: {e}")
        })?;
        let generation = store.manifest().generation;
        assert!(
            generation >= last_generation,
            "round {round} (seed {seed}): generation {generation} older than acknowledged {last_generation}"
        );
        for i in 0..=last_doc {
            assert!(
                store.documents().contains_key(&doc_id(i)),
                "round {round} (seed {seed}): acknowledged document {i} lost"
            );
        }
        assert_eq!(
            store.documents().len() as u64,
            generation,
            "round {round} (seed {seed})"
        );
        assert!(
            !store.bm25_search("alpha", 3, None)?.is_empty(),
            "round {round}: BM25 empty"
        );
    }
    let (last_doc, _) =
        acked_total.ok_or_else(|| anyhow::anyhow!("no commit in {rounds} rounds"))?;
    println!(
        "crash test: {} documents acknowledged over {rounds} kills",
        last_doc + 1
    );
    Ok(())
}
