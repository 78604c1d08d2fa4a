//! Folio's metrics against trec_eval 9.0.8 (through pytrec_eval) and ranx, on the fixture made
//! by `scripts/reference/metrics_fixture.py`: 29 queries with score ties, float32-equal scores,
//! graded and negative labels, queries without relevant documents, queries only in the run or
//! only in the qrels. Every value must equal pytrec_eval's to 1e-6, and ranx's wherever the
//! fixture does not list a documented disagreement between the two tools.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use folio_eval::metrics::{parse_metrics, read_run};
use folio_eval::{EvalOptions, Evaluation, Metric, evaluate};
use serde_json::Value;

const TOLERANCE: f64 = 1e-6;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/metrics")
        .join(name)
}

fn expected() -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&std::fs::read_to_string(fixture(
        "expected.json",
    ))?)?)
}

fn metric_names(expected: &Value) -> anyhow::Result<Vec<(String, Metric)>> {
    let names: Vec<&str> = expected["metric_map"]
        .as_object()
        .ok_or_else(|| anyhow::anyhow!("no metric_map"))?
        .keys()
        .map(String::as_str)
        .collect();
    Ok(parse_metrics(&names.join(","))?)
}

fn run_eval(
    qrels_file: &str,
    options: EvalOptions,
    metrics: &[(String, Metric)],
) -> anyhow::Result<Evaluation> {
    let qrels = folio_datasets::read_qrels(&fixture(qrels_file))?;
    let run = read_run(&fixture("run.txt"))?;
    let kinds: Vec<Metric> = metrics.iter().map(|(_, m)| *m).collect();
    Ok(evaluate(&qrels, &run, &kinds, options))
}

fn close(a: f64, b: &Value) -> bool {
    b.as_f64().is_some_and(|b| (a - b).abs() <= TOLERANCE)
}

#[test]
fn per_query_and_mean_equal_pytrec_eval() -> anyhow::Result<()> {
    let expected = expected()?;
    let metrics = metric_names(&expected)?;
    assert!(metrics.len() >= 16);
    let reference = &expected["pytrec_eval"];
    for qrels_file in ["qrels.txt", "qrels_beir.tsv"] {
        let e = run_eval(qrels_file, EvalOptions::default(), &metrics)?;
        let per_query = reference["per_query"]
            .as_object()
            .ok_or_else(|| anyhow::anyhow!("no per_query"))?;
        assert_eq!(e.per_query.len(), per_query.len(), "evaluated queries");
        assert_eq!(e.queries, per_query.len());
        let mut checked = 0;
        for (qid, values) in &e.per_query {
            for ((name, _), v) in metrics.iter().zip(values) {
                let want = &per_query[qid][name];
                assert!(
                    close(*v, want),
                    "{qrels_file} {qid} {name}: folio {v} pytrec_eval {want}"
                );
                checked += 1;
            }
        }
        for ((name, _), v) in metrics.iter().zip(&e.mean) {
            let want = &reference["mean"][name];
            assert!(
                close(*v, want),
                "{qrels_file} mean {name}: folio {v} pytrec_eval {want}"
            );
        }
        println!(
            "{qrels_file}: {checked} per-query values and {} means equal pytrec_eval",
            metrics.len()
        );
    }
    Ok(())
}

#[test]
fn complete_mode_equals_trec_eval_dash_c() -> anyhow::Result<()> {
    let expected = expected()?;
    let metrics = metric_names(&expected)?;
    let e = run_eval(
        "qrels.txt",
        EvalOptions {
            complete: true,
            ..EvalOptions::default()
        },
        &metrics,
    )?;
    assert_eq!(
        Some(e.queries as u64),
        expected["ranx"]["evaluated_queries"]
            .as_u64()
            .or(Some(e.queries as u64))
    );
    for ((name, _), v) in metrics.iter().zip(&e.mean) {
        let want = &expected["pytrec_eval"]["mean_complete"][name];
        assert!(
            close(*v, want),
            "mean_complete {name}: folio {v} trec_eval -c {want}"
        );
    }
    Ok(())
}

#[test]
fn agrees_with_ranx_except_where_the_tools_disagree() -> anyhow::Result<()> {
    let expected = expected()?;
    let metrics = metric_names(&expected)?;
    let disagreements: HashSet<(String, String)> = expected["disagreements"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| {
            Some((
                d["metric"].as_str()?.to_string(),
                d["qid"].as_str()?.to_string(),
            ))
        })
        .collect();
    let e = run_eval("qrels.txt", EvalOptions::default(), &metrics)?;
    let ranx = &expected["ranx"]["per_query"];
    let mut compared = 0;
    for (qid, values) in &e.per_query {
        for ((name, _), v) in metrics.iter().zip(values) {
            if disagreements.contains(&(name.clone(), qid.clone())) {
                continue;
            }
            let want = &ranx[qid][name];
            assert!(close(*v, want), "{qid} {name}: folio {v} ranx {want}");
            compared += 1;
        }
    }
    assert!(compared > 300, "only {compared} values compared with ranx");
    Ok(())
}

#[test]
fn a_duplicated_document_is_refused_like_trec_eval() {
    let err = read_run(&fixture("run_dup.txt"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("line 4") && err.contains("d8") && err.contains("single-2"),
        "{err}"
    );
}
