//! The deployment files in `deploy/` against the binary they run: the Helm chart lints and
//! renders (with `helm` from `scripts/setup-helm.sh`, which `.ci/run` calls), and every
//! `folio` flag and `FOLIO_*` variable the chart and the compose files use is one the binary
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

/// The `FOLIO_*` names in a text.
fn folio_vars(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| t.starts_with("FOLIO_"))
}

/// The Secret and key an environment variable of a rendered container is taken from
/// (`valueFrom.secretKeyRef`), if it is.
fn secret_env<'a>(doc: &'a str, var: &str) -> Option<(&'a str, &'a str)> {
    let rest = doc.split_once(&format!("- name: {var}\n"))?.1;
    let mut lines = rest.lines().map(str::trim);
    (lines.next()? == "valueFrom:" && lines.next()? == "secretKeyRef:").then_some(())?;
    let name = lines.next()?.strip_prefix("name: ")?;
    let key = lines.next()?.strip_prefix("key: ")?;
    Some((name, key.trim_matches('"')))
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
        for var in folio_vars(text) {
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

    // The PostgreSQL store: the URLs come from a Secret, and nothing mounts a volume.
    let set = "postgres.enabled=true,postgres.url=postgres://u:p@db/folio,\
               postgres.readUrls={postgres://u:p@r1/folio}";
    let lint = Command::new(&helm)
        .args(["lint", "--strict", "--set", set])
        .arg(repo("deploy/helm/folio"))
        .output()?;
    assert!(
        lint.status.success(),
        "{}",
        String::from_utf8_lossy(&lint.stdout)
    );
    let pg = render(&helm, &[set])?.map_err(|e| anyhow::anyhow!("{e}"))?;
    let pg_kinds = kinds(&pg);
    assert!(
        !pg_kinds.iter().any(|k| k == "PersistentVolumeClaim"),
        "no index claim on PostgreSQL: {pg_kinds:?}"
    );
    let docs = documents(&pg);
    let deployment = doc(&docs, "Deployment")?;
    let job = doc(&docs, "Job")?;
    for (what, text) in [
        ("the query Deployment", deployment),
        ("the indexer Job", job),
    ] {
        assert_eq!(
            secret_env(text, "FOLIO_STORE"),
            Some(("demo-folio-postgres", "uri")),
            "{what}: FOLIO_STORE from the chart's Secret\n{text}"
        );
        assert_eq!(
            secret_env(text, "FOLIO_READ_URLS"),
            Some(("demo-folio-postgres", "FOLIO_READ_URLS")),
            "{what}: FOLIO_READ_URLS from the chart's Secret\n{text}"
        );
        assert!(!text.contains("--index"), "{what} passes --index\n{text}");
    }
    for absent in [
        "persistentVolumeClaim",
        "initContainers",
        "mountPath: /data",
    ] {
        assert!(
            !deployment.contains(absent),
            "the query Deployment is stateless on PostgreSQL, yet has {absent}\n{deployment}"
        );
    }
    let secret = docs
        .iter()
        .find(|(k, d)| k == "Secret" && d.contains("name: demo-folio-postgres"))
        .map(|(_, d)| d.as_str())
        .ok_or_else(|| anyhow::anyhow!("no Secret demo-folio-postgres rendered"))?;
    assert!(
        secret.contains("\"uri\": \"postgres://u:p@db/folio\"")
            && secret.contains("FOLIO_READ_URLS: \"postgres://u:p@r1/folio\""),
        "{secret}"
    );
    for var in folio_vars(deployment) {
        assert!(serve_help.contains(var), "{var} is not read by folio serve");
    }
    let index_help = help("index")?;
    for var in folio_vars(job) {
        assert!(index_help.contains(var), "{var} is not read by folio index");
    }
    assert_flags_exist(deployment, "serve", "the query Deployment on PostgreSQL")?;
    assert_flags_exist(job, "index", "the indexer Job on PostgreSQL")?;

    // The URL from a Secret the user manages (CloudNativePG's `<cluster>-app`): the chart then
    // creates no Secret of its own for it.
    let existing = render(
        &helm,
        &["postgres.enabled=true,postgres.existingSecret=pg-app"],
    )?
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    assert!(
        !existing.contains("name: demo-folio-postgres"),
        "{existing}"
    );
    let docs = documents(&existing);
    let deployment = doc(&docs, "Deployment")?;
    assert_eq!(
        secret_env(deployment, "FOLIO_STORE"),
        Some(("pg-app", "uri"))
    );
    assert_eq!(secret_env(deployment, "FOLIO_READ_URLS"), None);
    // PostgreSQL without a URL is refused with the reason.
    let err = render(&helm, &["postgres.enabled=true"])?
        .err()
        .unwrap_or_default();
    assert!(err.contains("postgres.url"), "{err}");
    Ok(())
}

/// A compose file's services as (name, the lines of its block).
type Services = Vec<(String, String)>;

/// The services of a compose file, found by line scanning: each key indented two spaces under
/// the top-level `services:`.
fn compose_services(compose: &str) -> Services {
    let mut services: Services = Vec::new();
    let mut inside = false;
    for line in compose.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') {
            inside = line == "services:";
            continue;
        }
        if !inside {
            continue;
        }
        let key = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':'));
        match key {
            Some(name) if !name.starts_with(' ') && !name.contains(' ') => {
                services.push((name.to_string(), String::new()));
            }
            _ => {
                if let Some((_, block)) = services.last_mut() {
                    block.push_str(line);
                    block.push('\n');
                }
            }
        }
    }
    services
}

fn service<'a>(services: &'a [(String, String)], name: &str) -> anyhow::Result<&'a str> {
    services
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, b)| b.as_str())
        .ok_or_else(|| anyhow::anyhow!("no service {name}"))
}

/// Checks a compose file in `deploy/`: the services that run `folio` (those merging the
/// `*folio` anchor) pass only flags their subcommand takes and set only `FOLIO_*` variables it
/// reads; every file of the repository it mounts is there, and its shell scripts parse. Returns
/// the services, and the names of the `folio` ones.
fn check_compose(file: &str) -> anyhow::Result<(Services, Vec<String>)> {
    let compose = std::fs::read_to_string(repo(&format!("deploy/{file}")))?;
    let services = compose_services(&compose);
    let mut folio_services = Vec::new();
    for (name, block) in &services {
        if !block.contains("<<: *folio") {
            continue;
        }
        let line = block
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("command: ["))
            .ok_or_else(|| anyhow::anyhow!("{file}: {name} has no `command: [...]`"))?;
        let list = line.trim_start_matches("command: [");
        let sub = list.split([',', ']']).next().unwrap_or_default().trim();
        assert_flags_exist(line, sub, &format!("{file} `{line}`"))?;
        let help = help(sub)?;
        for var in block
            .lines()
            .filter_map(|l| l.trim().split_once(':'))
            .map(|(key, _)| key)
            .filter(|key| key.starts_with("FOLIO_"))
        {
            assert!(
                help.contains(var),
                "{file}: {name} sets {var}, which `folio {sub}` does not read"
            );
        }
        folio_services.push(name.clone());
    }
    // Bind mounts of the repository's files (`./pdfs` is the user's).
    for source in compose
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- ./"))
        .filter_map(|l| l.split(':').next())
        .filter(|s| *s != "pdfs")
    {
        let path = repo(&format!("deploy/{source}"));
        assert!(path.exists(), "{file} mounts ./{source}, which is missing");
        // Where there is a bash to ask.
        if source.ends_with(".sh")
            && let Ok(out) = Command::new("bash").arg("-n").arg(&path).output()
        {
            assert!(
                out.status.success(),
                "{source}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok((services, folio_services))
}

#[test]
fn the_compose_files_use_only_real_flags_and_files() -> anyhow::Result<()> {
    let (_, folio_services) = check_compose("compose.yaml")?;
    assert_eq!(folio_services, ["indexer", "writer", "query"]);

    let (services, folio_services) = check_compose("compose.postgres.yaml")?;
    let names: Vec<&str> = services.iter().map(|(n, _)| n.as_str()).collect();
    for name in ["primary", "replica", "indexer", "query"] {
        assert!(
            names.contains(&name),
            "compose.postgres.yaml: no {name} in {names:?}"
        );
    }
    assert_eq!(folio_services, ["indexer", "query"]);
    // The replica runs its entrypoint script, mounted from deploy/postgres/.
    let replica = service(&services, "replica")?;
    let entrypoint = replica
        .lines()
        .find_map(|l| l.trim().strip_prefix("entrypoint: "))
        .ok_or_else(|| anyhow::anyhow!("the replica has no entrypoint\n{replica}"))?;
    let mount = replica
        .lines()
        .find_map(|l| l.trim().strip_prefix("- ./postgres/replica-entrypoint.sh:"))
        .ok_or_else(|| anyhow::anyhow!("the replica does not mount its script\n{replica}"))?;
    let target = mount.split(':').next().unwrap_or_default();
    assert!(
        entrypoint.contains(&format!("\"{target}\"")),
        "the replica's entrypoint {entrypoint} does not run {target}"
    );
    assert!(repo("deploy/postgres/replica-entrypoint.sh").is_file());
    // The primary's init script is where the image's entrypoint runs it.
    let primary = service(&services, "primary")?;
    assert!(
        primary.contains("- ./postgres/primary-init.sh:/docker-entrypoint-initdb.d/"),
        "{primary}"
    );
    // The query nodes keep nothing: no volume, a read-only root filesystem, --read-only.
    let query = service(&services, "query")?;
    assert!(
        !query.contains("volumes:")
            && query.contains("read_only: true")
            && query.contains("--read-only"),
        "{query}"
    );
    for var in ["FOLIO_STORE", "FOLIO_READ_URLS"] {
        assert!(
            query.contains(&format!("{var}: ")),
            "the query nodes miss {var}\n{query}"
        );
    }
    Ok(())
}
