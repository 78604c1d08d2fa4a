//! `folio eval geo` end to end with the tiny random Llama as ranker and attacker: on a
//! catalog, on a retrieval scenario built from a BEIR dataset and a run, and report-only.

use std::path::Path;

mod common;
use common::{check, folio, repo};

fn tiny_llama() -> String {
    repo("services/models/tests/fixtures/llama/tiny-llama31")
        .display()
        .to_string()
}

fn lines(path: &Path) -> anyhow::Result<usize> {
    Ok(std::fs::read_to_string(path)?.lines().count())
}

#[test]
fn catalogs_run_end_to_end_and_resume() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("geo");
    let catalog = repo("../shared/data/geo-catalogs/cameras.jsonl");
    let args = [
        "eval",
        "geo",
        "--scenarios",
        catalog.to_str().unwrap_or_default(),
        "--ranker",
        &tiny_llama(),
        "--attacks",
        "template:injection,template:keyword-stuffing,gcg",
        "--gcg-steps",
        "1",
        "--gcg-suffix",
        "3",
        "--gcg-candidates",
        "4",
        "--defenses",
        "none,all",
        "--trials",
        "1",
        "--max-scenarios",
        "2",
        "--out",
        out.to_str().unwrap_or_default(),
    ];
    let stdout = check(&folio(&args)?);
    // 2 scenarios x 1 trial x (clean + 3 attacks) x 2 defenses.
    assert_eq!(lines(&out.join("trials.jsonl"))?, 16);
    assert!(stdout.contains("| gcg | all |"), "{stdout}");
    for f in [
        "report.md",
        "report.json",
        "promotion.svg",
        "roc-windowed-perplexity.svg",
        "roc-injection-llm.svg",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    // Everything is recorded: a rerun does no trial.
    let stdout = check(&folio(&args)?);
    assert!(
        stdout.contains("0 trial records written now, 16 already done"),
        "{stdout}"
    );
    // Report-only rewrites the report.
    std::fs::remove_file(out.join("report.md"))?;
    let mut report_only = args.to_vec();
    report_only.push("--report-only");
    check(&folio(&report_only)?);
    assert!(out.join("report.md").is_file());
    Ok(())
}

#[test]
fn a_retrieval_scenario_comes_from_a_dataset_and_its_run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("mini");
    std::fs::create_dir_all(data.join("qrels"))?;
    let docs = [
        ("d1", "Coffee", "Espresso is brewed under pressure."),
        ("d2", "Tea", "Green tea is steamed, black tea oxidised."),
        ("d3", "Beans", "Arabica beans grow at altitude."),
        ("d4", "Milk", "Steamed milk makes a latte."),
    ];
    let corpus: Vec<String> = docs
        .iter()
        .map(|(id, title, text)| {
            serde_json::json!({"_id": id, "title": title, "text": text}).to_string()
        })
        .collect();
    std::fs::write(data.join("corpus.jsonl"), corpus.join("\n"))?;
    std::fs::write(
        data.join("queries.jsonl"),
        r#"{"_id": "q1", "text": "how is espresso made"}"#,
    )?;
    std::fs::write(
        data.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td3\t2\n",
    )?;
    let run = dir.path().join("run.trec");
    std::fs::write(
        &run,
        "q1 Q0 d1 1 4.0 t\nq1 Q0 d2 2 3.0 t\nq1 Q0 d3 3 2.0 t\nq1 Q0 d4 4 1.0 t\n",
    )?;
    let out = dir.path().join("geo");
    let stdout = check(&folio(&[
        "eval",
        "geo",
        "--scenarios",
        data.to_str().unwrap_or_default(),
        "--run",
        run.to_str().unwrap_or_default(),
        "--ranker",
        &tiny_llama(),
        "--attacks",
        "template:injection",
        "--defenses",
        "none,harden",
        "--trials",
        "2",
        "--out",
        out.to_str().unwrap_or_default(),
    ])?);
    assert!(
        stdout.contains("1 scenarios x 2 trials, ranker pointwise/"),
        "{stdout}"
    );
    let records = std::fs::read_to_string(out.join("trials.jsonl"))?;
    assert_eq!(records.lines().count(), 8);
    // The target is the best-judged relevant document not ranked first: d3.
    let first: serde_json::Value =
        serde_json::from_str(records.lines().next().unwrap_or_default())?;
    assert_eq!(first["scenario"], "mini/q1");
    let order: Vec<usize> = serde_json::from_value(first["order"].clone())?;
    let target = first["target_position"].as_u64().unwrap_or(99) as usize;
    assert_eq!(order[target], 2);

    // A dataset without --run is refused with the reason.
    let bad = folio(&[
        "eval",
        "geo",
        "--scenarios",
        data.to_str().unwrap_or_default(),
        "--ranker",
        &tiny_llama(),
        "--out",
        out.to_str().unwrap_or_default(),
    ])?;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("needs --run"));
    Ok(())
}
