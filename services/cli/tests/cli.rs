//! The `folio` binary as users run it: index with a JSON report, search with --json, errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod common;
use common::{check, folio, repo, s};

/// The hits of a successful `folio search --json`.
fn json_hits(out: &std::process::Output) -> anyhow::Result<Vec<Value>> {
    let v: Value = serde_json::from_str(&check(out))?;
    Ok(v["hits"].as_array().cloned().unwrap_or_default())
}

/// The system names of an evaluation's report.json, in report order.
fn system_names(report: &Path) -> anyhow::Result<Vec<String>> {
    let report: Value = serde_json::from_str(&std::fs::read_to_string(report)?)?;
    Ok(report["systems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str().map(String::from))
        .collect())
}

#[test]
fn index_report_then_search_json() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let index = tmp.path().join("idx");
    let report = tmp.path().join("report.json");
    let sample = repo("datasets/samples/multicolumn.pdf");
    let corrupt = repo("tests/data/corrupt.pdf");
    let empty = repo("tests/data/empty.pdf");
    let out = folio(&[
        "index",
        s(&sample),
        s(&corrupt),
        s(&empty),
        "--index",
        s(&index),
        "--report",
        s(&report),
    ])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Some files failed: exit status 2, the rest indexed.
    assert_eq!(
        out.status.code(),
        Some(2),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 indexed, 0 unchanged, 2 failed"),
        "{stdout}"
    );

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
    let files = report["files"].as_array().cloned().unwrap_or_default();
    assert_eq!(files.len(), 3);
    assert_eq!(files[0]["status"], "indexed");
    assert_eq!(files[0]["pages"], 3);
    assert!(files[0]["reason"].is_null());
    assert!(
        files[0]["path"]
            .as_str()
            .unwrap_or_default()
            .ends_with("multicolumn.pdf")
    );
    assert_eq!(files[1]["status"], "failed");
    assert!(files[1]["reason"].is_string());
    assert_eq!(files[2]["status"], "failed");
    assert_eq!(files[2]["reason"], "empty file (0 bytes)");

    // Again: unchanged, exit 0 when only good files are given.
    let out = folio(&["index", s(&sample), "--index", s(&index)])?;
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("unchanged"));

    let out = folio(&[
        "search",
        "--index",
        s(&index),
        "--json",
        "--k",
        "2",
        "columns of text",
    ])?;
    let hits = json_hits(&out)?;
    assert_eq!(hits.len(), 2);
    for h in &hits {
        for field in ["doc_id", "path", "snippet"] {
            assert!(h[field].is_string(), "{field} in {h}");
        }
        assert!(
            h["page"].as_u64().is_some_and(|p| (1..=3).contains(&p)),
            "{h}"
        );
        assert!(h["score"].is_f64());
        let routes = h["routes"].as_object().cloned().unwrap_or_default();
        assert!(
            !routes.is_empty() && routes.keys().all(|r| r == "bm25" || r == "dense"),
            "{h}"
        );
        assert!(
            routes.values().all(|r| r.as_u64().is_some_and(|r| r >= 1)),
            "{h}"
        );
    }

    // Human output names page, score and routes.
    let out = folio(&["search", "--index", s(&index), "columns"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("multicolumn.pdf  page") && text.contains("score"),
        "{text}"
    );

    // The perplexity detector joins detect when given a model; at threshold 0 it flags all.
    let tiny = repo("services/models/tests/fixtures/llama/tiny-llama31");
    let detect = [
        "search",
        "--index",
        s(&index),
        "--json",
        "--k",
        "2",
        "--defense",
        "detect",
        "--perplexity-model",
        s(&tiny),
        "--perplexity-threshold",
        "0",
        "columns of text",
    ];
    let out = folio(&detect)?;
    let hits = json_hits(&out)?;
    assert_eq!(hits.len(), 2);
    for h in &hits {
        assert_eq!(h["suspicion"]["detector"], "windowed-perplexity", "{h}");
    }
    // A wrong model path names it.
    let mut wrong = detect;
    wrong[9] = "/nonexistent/ppl-model";
    let out = folio(&wrong)?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ppl-model"));
    // So does the LLM injection check; at threshold 0 it flags all.
    let mut check = detect;
    check[8] = "--injection-model";
    check[10] = "--injection-threshold";
    let out = folio(&check)?;
    for h in &json_hits(&out)? {
        assert_eq!(h["suspicion"]["detector"], "injection-llm", "{h}");
    }
    Ok(())
}

#[test]
fn errors_are_clear_and_exit_nonzero() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = folio(&["search", "--index", s(tmp.path()), "x"])?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a Folio index"), "{err}");

    // A read-only node does not create the index it should serve.
    let missing = tmp.path().join("none-yet");
    let out = folio(&["serve", "--index", s(&missing), "--read-only"])?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no Folio index at") && err.contains("read-only"),
        "{err}"
    );
    assert!(!missing.exists());

    let out = folio(&[
        "index",
        s(&repo("datasets/samples/multicolumn.pdf")),
        "--index",
        s(&tmp.path().join("i")),
        "--embedder",
        "/no/such/model",
    ])?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/no/such/model") && err.contains("not found"),
        "{err}"
    );

    let out = folio(&[
        "index",
        s(&tmp.path().join("nothing-here")),
        "--index",
        s(&tmp.path().join("j")),
    ])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("no such file or directory"), "{text}");
    Ok(())
}

#[test]
fn a_reader_that_stops_early_ends_the_output_quietly() -> anyhow::Result<()> {
    let fixtures = repo("eval/tests/fixtures/metrics");
    let mut child = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(["eval", "metrics", "--qrels"])
        .arg(fixtures.join("qrels.txt"))
        .arg("--run")
        .arg(fixtures.join("run.txt"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    // Close the reading end before anything is printed, as `| head -0` would.
    drop(child.stdout.take());
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    Ok(())
}

#[test]
fn eval_metrics_prints_a_table_or_json_with_the_names_given() -> anyhow::Result<()> {
    let fixtures = repo("eval/tests/fixtures/metrics");
    let qrels = fixtures.join("qrels.txt");
    let run = fixtures.join("run.txt");
    let out = folio(&[
        "eval",
        "metrics",
        "--qrels",
        s(&qrels),
        "--run",
        s(&run),
        "--metric",
        "ndcg@10,P@5",
        "--json",
    ])?;
    let v: Value = serde_json::from_str(&check(&out))?;
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("expected.json"))?)?;
    let want = expected["pytrec_eval"]["mean"]["ndcg@10"]
        .as_f64()
        .unwrap_or(-1.0);
    assert!(
        (v["mean"]["ndcg@10"].as_f64().unwrap_or(0.0) - want).abs() < 1e-6,
        "{v}"
    );
    assert!(v["mean"]["P@5"].is_f64(), "names are kept as given: {v}");
    assert_eq!(v["per_query"].as_object().map(|o| o.len()), Some(25));

    let out = folio(&["eval", "metrics", "--qrels", s(&qrels), "--run", s(&run)])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    let header = text.lines().next().unwrap_or_default();
    for name in ["query", "ndcg@10", "recall@100", "mrr@10", "map", "p@5"] {
        assert!(header.contains(name), "{header}");
    }
    assert!(text.lines().any(|l| l.starts_with("all ")), "{text}");

    let out = folio(&[
        "eval",
        "metrics",
        "--qrels",
        s(&qrels),
        "--run",
        s(&run),
        "--metric",
        "ndcg@ten",
    ])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown metric \"ndcg@ten\""));
    let out = folio(&[
        "eval",
        "metrics",
        "--qrels",
        s(&qrels),
        "--run",
        s(&fixtures.join("run_dup.txt")),
    ])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listed twice"));
    Ok(())
}

#[test]
fn eval_retrieval_writes_runs_report_and_charts() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = tmp.path().join("out");
    let dataset = repo("eval/tests/fixtures/beir-tiny");
    let args = [
        "eval",
        "retrieval",
        "--dataset",
        s(&dataset),
        "--out",
        s(&out),
        "--fusion",
        "rrf,weighted",
    ];
    let stdout = check(&folio(&args)?);
    assert!(stdout.contains("8 documents, 4 queries"), "{stdout}");
    let names = system_names(&out.join("report.json"))?;
    assert_eq!(names, ["bm25", "dense", "rrf", "weighted"]);
    for name in &names {
        assert!(out.join(format!("runs/{name}.trec")).is_file());
    }
    assert!(out.join("report.md").is_file() && out.join("plots/ndcg_at_10.svg").is_file());
    // Reusing the index: nothing is embedded again.
    let again = folio(&args)?;
    assert!(again.status.success());
    let report: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json"))?)?;
    assert_eq!(report["documents_indexed"], 0);

    // A re-ranker under defenses, on the first two judged queries, with the LLM injection
    // check among the detectors.
    let tiny = repo("services/models/tests/fixtures/llama/tiny-llama31");
    let defended = folio(&[
        "eval",
        "retrieval",
        "--dataset",
        s(&dataset),
        "--out",
        s(&out),
        "--rerank",
        "pointwise",
        "--ranker",
        s(&tiny),
        "--defenses",
        "none,all",
        "--injection-model",
        s(&tiny),
        "--max-queries",
        "2",
    ])?;
    let stdout = check(&defended);
    assert!(stdout.contains("8 documents, 2 queries"), "{stdout}");
    let names = system_names(&out.join("report.json"))?;
    assert_eq!(
        names,
        [
            "bm25",
            "dense",
            "rrf",
            "rrf+all",
            "rrf+pointwise",
            "rrf+pointwise+all"
        ]
    );

    let bad = folio(&[
        "eval",
        "retrieval",
        "--dataset",
        s(&dataset),
        "--out",
        s(&out),
        "--fusion",
        "borda",
    ])?;
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown fusion \"borda\""));
    let missing = folio(&[
        "eval",
        "retrieval",
        "--dataset",
        s(&tmp.path().join("nope")),
        "--out",
        s(&out),
    ])?;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no such dataset"));
    let not_a_dataset = folio(&[
        "eval",
        "retrieval",
        "--dataset",
        s(tmp.path()),
        "--out",
        s(&out),
    ])?;
    assert_eq!(not_a_dataset.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&not_a_dataset.stderr).contains("neither a BEIR dataset"));
    Ok(())
}

#[test]
fn demo_indexes_the_samples_and_answers_every_sample_query() -> anyhow::Result<()> {
    // Run from the repository root, as the README's first command does.
    let out = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(["demo", "--k", "1"])
        .current_dir(repo(""))
        .output()?;
    let text = check(&out);
    assert!(
        text.contains("6 indexed, 0 unchanged, 0 failed; 30 pages"),
        "{text}"
    );
    let queries = std::fs::read_to_string(repo("datasets/samples/queries.jsonl"))?
        .lines()
        .count();
    // Each sample query, then the first one again, re-ranked by the default LLM ranker.
    assert_eq!(text.matches("\nquery q").count(), queries + 1, "{text}");
    assert_eq!(
        text.matches("\n  1. ").count(),
        queries + 1,
        "one hit per query, then the re-ranked list: {text}"
    );
    let (_, reranked) = text
        .split_once("re-ranked by the default LLM ranker")
        .ok_or_else(|| anyhow::anyhow!("no re-ranking section: {text}"))?;
    assert_eq!(reranked.matches("  rerank ").count(), 5, "{reranked}");
    assert!(!reranked.contains("degraded"), "{reranked}");
    for system in ["bm25", "dense", "rrf"] {
        assert!(
            text.contains(&format!("  {system:<6} nDCG@10 ")),
            "{system}: {text}"
        );
    }
    Ok(())
}

#[test]
fn delete_removes_documents_from_every_route() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let index = tmp.path().join("idx");
    let a = repo("datasets/samples/multicolumn.pdf");
    let b = repo("datasets/samples/multi_page.pdf");
    assert!(
        folio(&["index", s(&a), s(&b), "--index", s(&index)])?
            .status
            .success()
    );
    let paths_found = |query: &str| -> anyhow::Result<Vec<String>> {
        let out = folio(&["search", query, "--index", s(&index), "--json", "--k", "50"])?;
        let v: Value = serde_json::from_slice(&out.stdout)?;
        Ok(v["hits"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h["path"].as_str().map(String::from))
            .collect())
    };
    let before = paths_found("the")?;
    assert!(
        before.iter().any(|p| p.ends_with("multicolumn.pdf")),
        "{before:?}"
    );

    // By path; an unknown id alongside makes it a partial success (exit 2).
    let out = folio(&["delete", "--index", s(&index), s(&a), "0123456789abcdef"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("removed") && text.contains("not found  0123456789abcdef"),
        "{text}"
    );
    let after = paths_found("the")?;
    assert!(!after.is_empty());
    assert!(
        after.iter().all(|p| p.ends_with("multi_page.pdf")),
        "{after:?}"
    );

    // By document id, as search prints it.
    let out = folio(&["search", "the", "--index", s(&index), "--json", "--k", "1"])?;
    let v: Value = serde_json::from_slice(&out.stdout)?;
    let id = v["hits"][0]["doc_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let out = folio(&["delete", "--index", s(&index), &id])?;
    check(&out);
    assert!(paths_found("the")?.is_empty());

    // Nothing found at all: exit 1, index unchanged. Re-indexing a deleted file indexes it again.
    assert_eq!(
        folio(&["delete", "--index", s(&index), s(&a)])?
            .status
            .code(),
        Some(1)
    );
    let out = folio(&["index", s(&a), "--index", s(&index)])?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 indexed"));
    Ok(())
}

#[test]
fn page_embedders_index_page_images_and_answer_image_queries() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let index = tmp.path().join("idx");
    let sample = repo("datasets/samples/multicolumn.pdf");
    let fixtures = repo("services/models/tests/fixtures/qwen2vl");
    let gme = format!("gme:{}", s(&fixtures.join("tiny-qwen2vl")));
    let colqwen = fixtures.join("tiny-colqwen2-lora");
    let out = folio(&[
        "index",
        s(&sample),
        "--index",
        s(&index),
        "--page-embedder",
        &gme,
        "--page-embedder",
        s(&colqwen),
        "--page-image-tokens",
        "32",
    ])?;
    check(&out);
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(index.join("MANIFEST.json"))?)?;
    assert_eq!(manifest["page_vectors"], 3);
    assert_eq!(manifest["late_pages"], 3);
    assert_eq!(manifest["page"]["embedder"]["id"], "tiny-qwen2vl");
    assert_eq!(manifest["late"]["embedder"]["kind"], "multi");

    // An image-only query: the page embedders are the index's own, loaded from the manifest.
    let image = fixtures.join("images/normal.png");
    let out = folio(&[
        "search",
        "--image",
        s(&image),
        "--index",
        s(&index),
        "--k",
        "3",
        "--json",
    ])?;
    let hits = json_hits(&out)?;
    assert_eq!(hits.len(), 3);
    for h in &hits {
        assert_eq!(h["routes"].as_object().map(|r| r.len()), Some(1), "{h}");
        assert!(h["routes"]["page"].is_u64(), "{h}");
    }
    // A text query also runs the late-interaction route.
    let out = folio(&["search", "column", "--index", s(&index), "--json"])?;
    let response: Value = serde_json::from_slice(&out.stdout)?;
    assert!(response["hits"][0]["routes"]["late"].is_u64(), "{response}");

    // Bad inputs name their cause.
    let out = folio(&["search", "--image", "/no/such.png", "--index", s(&index)])?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such.png"));
    let out = folio(&["search", "--image", s(&sample), "--index", s(&index)])?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a PNG or JPEG"));
    let out = folio(&[
        "index",
        s(&sample),
        "--index",
        s(&tmp.path().join("other")),
        "--page-embedder",
        s(&colqwen),
        "--page-embedder",
        s(&colqwen),
    ])?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("two multi-vector page embedders"));
    Ok(())
}

#[test]
fn hnsw_and_bm25_settings_are_recorded_and_changing_them_rebuilds_the_index() -> anyhow::Result<()>
{
    let tmp = tempfile::tempdir()?;
    let index = tmp.path().join("idx");
    let sample = repo("datasets/samples/2305.03393v1-pg9.pdf");
    let manifest = || -> anyhow::Result<Value> {
        Ok(serde_json::from_str(&std::fs::read_to_string(
            index.join("MANIFEST.json"),
        )?)?)
    };
    let out = folio(&[
        "index",
        s(&sample),
        "--index",
        s(&index),
        "--ann-storage",
        "f16",
        "--ann-metric",
        "ip",
    ])?;
    check(&out);
    let m = manifest()?;
    assert_eq!(m["ann"]["storage"], "f16");
    assert_eq!(m["ann"]["metric"], "inner_product");
    assert_eq!(m["ann"]["m"], 16);
    // Same files, new graph degree: a new generation, the other settings kept.
    let out = folio(&["index", s(&sample), "--index", s(&index), "--hnsw-m", "8"])?;
    check(&out);
    let m = manifest()?;
    assert_eq!(m["generation"], 2);
    assert_eq!(m["ann"]["m"], 8);
    assert_eq!(m["ann"]["storage"], "f16");
    let out = folio(&[
        "search",
        "table structure recognition",
        "--index",
        s(&index),
        "--ef-search",
        "16",
        "--json",
    ])?;
    let response: Value = serde_json::from_slice(&out.stdout)?;
    assert!(
        response["hits"][0]["routes"]["dense"].is_u64(),
        "{response}"
    );
    // BM25 settings the same way: kept with the index, the others left as they were.
    let out = folio(&[
        "index",
        s(&sample),
        "--index",
        s(&index),
        "--bm25-analyzer",
        "plain",
        "--bm25-k1",
        "0.9",
    ])?;
    check(&out);
    let m = manifest()?;
    assert_eq!(m["generation"], 3);
    assert_eq!(m["bm25"]["analyzer"], "plain");
    assert_eq!(m["bm25"]["k1"], 0.9);
    assert_eq!(m["bm25"]["b"], 0.75);
    assert_eq!(m["ann"]["m"], 8);
    // Nonsense settings are refused with the reason; a database refuses BM25 settings
    // before it is even reached.
    let out = folio(&["index", s(&sample), "--index", s(&index), "--hnsw-m", "1"])?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("M must be between 2 and 256"));
    let out = folio(&["index", s(&sample), "--index", s(&index), "--bm25-b", "1.5"])?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("b must be between 0 and 1"));
    let unreachable = "postgres://postgres@127.0.0.1:1/postgres";
    let out = folio(&[
        "index",
        s(&sample),
        "--store",
        unreachable,
        "--bm25-k1",
        "1",
    ])?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bm25-* options"));

    // Re-indexing the unchanged file into a collection, with tags, embeds nothing but
    // records them; searches filter by them.
    let out = folio(&[
        "index",
        s(&sample),
        "--index",
        s(&index),
        "--collection",
        "papers",
        "--tag",
        "tables",
    ])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("0 indexed, 1 unchanged"), "{stdout}");
    let hits = |extra: &[&str]| -> anyhow::Result<usize> {
        let mut args = vec!["search", "table", "--index", s(&index), "--json"];
        args.extend(extra);
        let out = folio(&args)?;
        let v: Value = serde_json::from_slice(&out.stdout)?;
        Ok(v["hits"].as_array().map_or(0, Vec::len))
    };
    assert!(hits(&["--in-collection", "papers", "--with-tag", "tables"])? > 0);
    assert_eq!(hits(&["--in-collection", "slides"])?, 0);
    assert_eq!(hits(&["--with-tag", "tables", "--with-tag", "other"])?, 0);
    Ok(())
}

#[test]
fn a_file_over_the_time_limit_fails_with_the_reason() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let index = tmp.path().join("idx");
    let sample = repo("datasets/samples/2305.03393v1-pg9.pdf");
    // Text extraction runs in a worker process; a limit no extraction can meet fails every
    // file with the reason, and the run still ends normally.
    let out = folio(&[
        "index",
        s(&sample),
        "--index",
        s(&index),
        "--file-time-limit",
        "0.000001",
    ])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("longer than the per-file limit"),
        "{stdout}"
    );
    // Within the limits, the worker's text is what in-process extraction gives.
    let isolated = tmp.path().join("isolated");
    let in_process = tmp.path().join("in-process");
    for (dir, limit) in [(&isolated, "60"), (&in_process, "0")] {
        let out = folio(&[
            "index",
            s(&sample),
            "--index",
            s(dir),
            "--file-time-limit",
            limit,
        ])?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pages = |dir: &Path| -> anyhow::Result<String> {
        let m: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("MANIFEST.json"))?)?;
        let generation = m["generation"].as_u64().unwrap_or_default();
        Ok(std::fs::read_to_string(
            dir.join(format!("gen-{generation:06}")).join("pages.jsonl"),
        )?)
    };
    assert_eq!(pages(&isolated)?, pages(&in_process)?);
    // The rendering worker's page images are the in-process renderer's, byte for byte.
    let images = |dir: &Path| -> anyhow::Result<Vec<(PathBuf, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut stack = vec![dir.join("images")];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d)? {
                let path = entry?.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push((path.strip_prefix(dir)?.to_path_buf(), std::fs::read(&path)?));
                }
            }
        }
        out.sort();
        Ok(out)
    };
    let from_worker = images(&isolated)?;
    assert!(from_worker.len() >= 2, "a page image and a thumbnail");
    assert_eq!(from_worker, images(&in_process)?);
    Ok(())
}

#[test]
fn a_collection_split_into_shards_answers_as_one_index_does() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let whole = tmp.path().join("whole");
    let shards: Vec<_> = (0..3)
        .map(|i| tmp.path().join(format!("shard{i}")))
        .collect();
    let shard_args: Vec<&str> = shards.iter().flat_map(|d| ["--shard", s(d)]).collect();
    let pdfs = [
        "multicolumn.pdf",
        "multi_page.pdf",
        "amt_handbook_sample.pdf",
        "2305.03393v1-pg9.pdf",
        "redp5110_sampled.pdf",
    ]
    .map(|f| repo(&format!("datasets/samples/{f}")));
    let files: Vec<&str> = pdfs.iter().map(|p| s(p)).collect();

    check(&folio(
        &[&["index", "--index", s(&whole)], &files[..]].concat(),
    )?);
    let out = folio(&[&["index"], &shard_args[..], &files[..]].concat())?;
    check(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("5 indexed"));
    // Every shard got documents (5 documents over 3 shards could, by chance, leave one
    // empty; these do not).
    for d in &shards {
        let docs = std::fs::read_dir(d)?.count();
        assert!(docs > 0, "{} is empty", d.display());
    }

    let pages = |out: &std::process::Output| -> anyhow::Result<Vec<(String, u64)>> {
        Ok(json_hits(out)?
            .iter()
            .map(|h| {
                (
                    h["doc_id"].as_str().unwrap_or_default().to_string(),
                    h["page"].as_u64().unwrap_or_default(),
                )
            })
            .collect())
    };
    for query in ["aircraft maintenance", "table structure recognition"] {
        let search =
            |store: &[&str]| folio(&[&["search", query, "--json", "--k", "5"], store].concat());
        // Dense scores are the same in every shard; BM25's term statistics are each shard's
        // own, so the fused lists may differ a little below the top.
        let (a, b) = (search(&["--index", s(&whole)])?, search(&shard_args)?);
        let (a, b) = (pages(&a)?, pages(&b)?);
        assert!(!b.is_empty());
        assert_eq!(a[0], b[0], "{query}");
        let shared = a.iter().filter(|p| b.contains(p)).count();
        assert!(shared >= 4, "{query}: {a:?} against {b:?}");
    }

    // Delete through the shards by path; an unknown id makes it a partial success.
    let out = folio(
        &[
            &["delete"],
            &shard_args[..],
            &[files[0], "0123456789abcdef"],
        ]
        .concat(),
    )?;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = folio(&[&["search", "the", "--json", "--k", "50"], &shard_args[..]].concat())?;
    let paths: Vec<String> = json_hits(&out)?
        .iter()
        .filter_map(|h| h["path"].as_str().map(String::from))
        .collect();
    assert!(!paths.is_empty());
    assert!(
        paths.iter().all(|p| !p.ends_with("multicolumn.pdf")),
        "{paths:?}"
    );

    // Bad combinations are named.
    for (args, expected) in [
        (
            vec![
                "search",
                "x",
                "--shard",
                s(&shards[0]),
                "--index",
                s(&whole),
            ],
            "cannot be used with",
        ),
        (
            vec!["search", "x", "--shard", "postgres://h/db,not-a-url"],
            "is not a PostgreSQL URL",
        ),
        (
            vec![
                "search",
                "x",
                "--shard",
                s(&shards[0]),
                "--store",
                "postgres://h/db",
            ],
            "not both",
        ),
    ] {
        let out = folio(&args)?;
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    Ok(())
}

#[test]
fn bench_scale_runs_end_to_end_on_a_small_corpus() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    // 260 rows of 384 floats, each with a text; the last 20 are the queries.
    let (rows, dim) = (260usize, 384usize);
    let mut bytes = Vec::with_capacity(rows * dim * 4);
    let mut texts = String::new();
    for r in 0..rows {
        for c in 0..dim {
            let x = (((r * 31 + c * 17) % 97) as f32 / 97.0) - 0.5;
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        texts.push_str(&format!(
            "passage {r} about topic{} and word{}\n",
            r % 7,
            r % 13
        ));
    }
    let vectors = tmp.path().join("v.f32");
    let text_file = tmp.path().join("v.txt");
    std::fs::write(&vectors, bytes)?;
    std::fs::write(&text_file, texts)?;
    let out = folio(&[
        "bench",
        "scale",
        "--vectors",
        s(&vectors),
        "--texts",
        s(&text_file),
        "--passages",
        "600",
        "--queries",
        "20",
        "--recall-queries",
        "20",
        "--clients",
        "2",
        "--seconds",
        "0.3",
        "--backends",
        "embedded",
        "--dir",
        s(tmp.path()),
        "--json",
    ])?;
    let report: Value = serde_json::from_str(&check(&out))?;
    let run = &report["runs"][0];
    assert_eq!(run["backend"], "embedded", "{report}");
    assert_eq!(run["passages"], 600);
    assert_eq!(run["documents"], 60);
    // 600 rows are scanned exactly: recall is 1.
    assert_eq!(run["recall_at_10"], 1.0, "{run}");
    for route in ["dense", "lexical"] {
        assert!(
            run[route]["qps"].as_f64().unwrap_or_default() > 0.0,
            "{run}"
        );
        assert_eq!(run[route]["errors"], 0, "{run}");
    }
    assert!(run["disk_bytes"].as_u64().unwrap_or_default() > 0);
    // The work directory is cleaned up.
    let left: Vec<_> = std::fs::read_dir(tmp.path())?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // A missing input is named.
    let out = folio(&[
        "bench",
        "scale",
        "--vectors",
        "/no/such.f32",
        "--texts",
        s(&text_file),
    ])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such.f32"));
    Ok(())
}

#[test]
fn bench_bm25_scores_a_beir_dataset_and_names_bad_input() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("tiny");
    std::fs::create_dir_all(data.join("qrels"))?;
    let corpus = [
        ("d1", "Zebra stripes", "Why zebras have stripes."),
        ("d2", "Lion manes", "Manes of male lions darken with age."),
        ("d3", "Torque", "Torque wrench settings for bicycles."),
        ("d4", "Misc", "Nothing about any of the above."),
    ];
    let lines: Vec<String> = corpus
        .iter()
        .map(|(id, title, text)| {
            serde_json::json!({"_id": id, "title": title, "text": text}).to_string()
        })
        .collect();
    std::fs::write(data.join("corpus.jsonl"), lines.join("\n") + "\n")?;
    std::fs::write(
        data.join("queries.jsonl"),
        "{\"_id\": \"q1\", \"text\": \"stripe\"}\n\
         {\"_id\": \"q2\", \"text\": \"lion mane\"}\n\
         {\"_id\": \"q3\", \"text\": \"wrench torque\"}\n",
    )?;
    std::fs::write(
        data.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq3\td3\t1\n",
    )?;
    let bench = |extra: &[&str]| -> anyhow::Result<Value> {
        let mut args = vec![
            "bench",
            "bm25",
            "--dataset",
            s(&data),
            "--repeat",
            "1",
            "--json",
        ];
        args.extend(extra);
        Ok(serde_json::from_str(&check(&folio(&args)?))?)
    };
    let report = bench(&[])?;
    let folio_row = &report["systems"][0];
    assert_eq!(report["docs"], 4, "{report}");
    assert_eq!(report["queries"], 3);
    // Each query's one relevant document ranks first.
    assert_eq!(folio_row["ndcg_10"], 1.0, "{report}");
    assert!(folio_row["qps"].as_f64().unwrap_or_default() > 0.0);
    assert!(folio_row["index_bytes"].as_u64().unwrap_or_default() > 0);

    // With k1 and b other than tantivy's, and the plain analyser: "stripe" no longer
    // matches "stripes", so q1 finds nothing.
    let report = bench(&["--analyzer", "plain", "--k1", "0.9", "--b", "0.4"])?;
    let ndcg = report["systems"][0]["ndcg_10"].as_f64().unwrap_or_default();
    assert!((ndcg - 2.0 / 3.0).abs() < 1e-9, "{report}");

    for (args, named) in [
        (vec!["--analyzer", "klingon"], "klingon"),
        (vec!["--b", "2"], "b must be between 0 and 1"),
    ] {
        let mut all = vec!["bench", "bm25", "--dataset", s(&data)];
        all.extend(args);
        let out = folio(&all)?;
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{err}");
    }
    let out = folio(&["bench", "bm25", "--dataset", "/no/such/dataset"])?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/dataset"));
    Ok(())
}

#[test]
fn bench_ingest_measures_text_and_rendering_and_names_bad_input() -> anyhow::Result<()> {
    let sample = repo("datasets/samples/multi_page.pdf");
    let out = folio(&["bench", "ingest", s(&sample), "--dpi", "50", "--json"])?;
    let report: Value = serde_json::from_str(&check(&out))?;
    assert_eq!(report["files"], 1, "{report}");
    let pages = report["pages"].as_u64().unwrap_or_default();
    assert!(pages >= 3, "{report}");
    assert_eq!(report["runs"][0]["pages"], pages);
    let folio_row = &report["systems"][0];
    for key in ["text_pages_per_s", "render_pages_per_s"] {
        assert!(
            folio_row[key].as_f64().unwrap_or_default() > 0.0,
            "{report}"
        );
    }

    // A file that is not a PDF cannot be measured, and says why; so does a missing one.
    let tmp = tempfile::tempdir()?;
    let fake = tmp.path().join("fake.pdf");
    std::fs::write(&fake, b"not a pdf")?;
    let out = folio(&["bench", "ingest", s(&fake)])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to measure"));
    let out = folio(&["bench", "ingest", "/no/such/folder"])?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/folder"));
    let out = folio(&["bench", "ingest", s(&sample), "--dpi", "0"])?;
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dpi"));
    Ok(())
}
