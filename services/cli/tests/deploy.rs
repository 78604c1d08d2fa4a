//! The deployment files in `deploy/` against the binary they run: the Helm chart lints and
//! renders (with `helm` from `scripts/setup-helm.sh`, which `.ci/run` calls), and every
//! `folio` flag and `FOLIO_*` variable the chart and the compose file use is one the binary
//! takes, so the files cannot drift from the CLI unnoticed.

use std::path::PathBuf;
use std::process::Command;

mod common;
use common::{folio, repo};

/// `helm`: $FOLIO_HELM, else the repo's venv, else one on the PATH.
fn helm() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("FOLIO_HELM").map(PathBuf::from),
        Some(repo(".venv-helm/bin/helm")),
        Some(PathBuf::from("helm")),
    ];
    candidates.into_iter().flatten().find(|h| {
        Command::new(h)
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn render(helm: &PathBuf, set: &[&str]) -> anyhow::Result<Result<String, String>> {
    let mut cmd = Command::new(helm);
    cmd.args(["template", "demo"])
        .arg(repo("deploy/helm/folio"));
    for s in set {
        cmd.args(["--set", s]);
    }
    let out = cmd.output()?;
    Ok(match out.status.success() {
        true => Ok(String::from_utf8(out.stdout)?),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    })
}

/// The rendered documents as (kind, text).
fn documents(rendered: &str) -> Vec<(String, String)> {
    rendered
        .split("\n---")
        .filter_map(|doc| {
            let kind = doc
                .lines()
                .find_map(|l| l.strip_prefix("kind: "))?
                .trim()
                .to_string();
            Some((kind, doc.to_string()))
        })
        .collect()
}

fn kinds(rendered: &str) -> Vec<String> {
    let mut k: Vec<String> = documents(rendered).into_iter().map(|(k, _)| k).collect();
    k.sort();
    k
}

fn doc<'a>(docs: &'a [(String, String)], kind: &str) -> anyhow::Result<&'a str> {
    docs.iter()
        .find(|(k, _)| k == kind)
        .map(|(_, d)| d.as_str())
        .ok_or_else(|| anyhow::anyhow!("no {kind} rendered"))
}

/// The `--flags` among a document's list items (`- --index`) or inline lists, comments
/// left out.
fn flags(text: &str) -> Vec<String> {
    let code: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let mut out: Vec<String> = code
        .join("\n")
        .split(|c: char| c.is_whitespace() || matches!(c, '[' | ']' | ',' | '"'))
        .filter(|t| t.starts_with("--") && t.len() > 2)
        .map(String::from)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `folio <command> --help`.
fn help(command: &str) -> anyhow::Result<String> {
    let out = folio(&[command, "--help"])?;
    anyhow::ensure!(out.status.success(), "folio {command} --help failed");
    Ok(String::from_utf8(out.stdout)?)
}

fn assert_flags_exist(text: &str, command: &str, origin: &str) -> anyhow::Result<()> {
    let help = help(command)?;
    for flag in flags(text) {
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "{origin} passes {flag}, which `folio {command}` does not take"
        );
    }
    Ok(())
}

#[test]
fn the_chart_lints_renders_and_uses_only_real_flags() -> anyhow::Result<()> {
    let Some(helm) = helm() else {
        eprintln!("skipped: no helm (run scripts/setup-helm.sh, or set FOLIO_HELM)");
        return Ok(());
    };
    let lint = Command::new(&helm)
        .args(["lint", "--strict"])
        .arg(repo("deploy/helm/folio"))
        .output()?;
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stdout)
    );

    let rendered = render(&helm, &[])?.map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(
        kinds(&rendered),
        [
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Job",
            "PersistentVolumeClaim",
            "PodDisruptionBudget",
            "Secret",
            "Service"
        ]
    );
    let docs = documents(&rendered);
    let deployment = doc(&docs, "Deployment")?;
    assert!(deployment.contains("path: /readyz"), "{deployment}");
    assert!(deployment.contains("path: /healthz"), "{deployment}");
    assert!(
        deployment.contains("readOnly: true"),
        "the index is mounted read-only"
    );
    let config = doc(&docs, "ConfigMap")?;
    assert!(config.contains("FOLIO_READ_ONLY: \"true\""), "{config}");
    // Every variable the nodes get is one `folio serve` reads.
    let serve_help = help("serve")?;
    for text in [config, doc(&docs, "Secret")?] {
        for var in text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|t| t.starts_with("FOLIO_"))
        {
            assert!(serve_help.contains(var), "{var} is not read by folio serve");
        }
    }
    assert_flags_exist(deployment, "serve", "the query Deployment")?;
    assert_flags_exist(doc(&docs, "Job")?, "index", "the indexer Job")?;
    // The autoscaler and the disruption budget point at the query nodes.
    let hpa = doc(&docs, "HorizontalPodAutoscaler")?;
    assert!(hpa.contains("name: demo-folio-query"), "{hpa}");
    let pdb = doc(&docs, "PodDisruptionBudget")?;
    assert!(pdb.contains("app.kubernetes.io/component: query"), "{pdb}");

    // Fixed replicas without the autoscaler; keys from an existing Secret; no indexer.
    let custom = render(
        &helm,
        &[
            "query.autoscaling.enabled=false",
            "query.replicas=3",
            "apiKeys.existingSecret=my-keys",
            "indexer.enabled=false",
            "query.extraArgs={--ranker,/opt/folio/models/SmolLM2-135M-Instruct-GGUF}",
        ],
    )?
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let custom_kinds = kinds(&custom);
    for absent in ["HorizontalPodAutoscaler", "Secret", "Job"] {
        assert!(
            !custom_kinds.iter().any(|k| k == absent),
            "{absent} rendered"
        );
    }
    let docs = documents(&custom);
    let deployment = doc(&docs, "Deployment")?;
    assert!(deployment.contains("replicas: 3") && deployment.contains("name: my-keys"));
    assert_flags_exist(deployment, "serve", "query.extraArgs")?;

    // An indexer without its source claim is refused with the reason.
    let err = render(&helm, &["indexer.sourceClaim="])?
        .err()
        .unwrap_or_default();
    assert!(err.contains("indexer.sourceClaim"), "{err}");
    Ok(())
}

#[test]
fn the_compose_file_uses_only_real_flags() -> anyhow::Result<()> {
    let compose = std::fs::read_to_string(repo("deploy/compose.yaml"))?;
    let mut commands = 0;
    for line in compose.lines().map(str::trim) {
        let Some(list) = line.strip_prefix("command: [") else {
            continue;
        };
        let sub = list.split([',', ']']).next().unwrap_or_default().trim();
        assert_flags_exist(line, sub, &format!("compose `{line}`"))?;
        commands += 1;
    }
    assert_eq!(commands, 3, "indexer, writer and query");
    Ok(())
}
