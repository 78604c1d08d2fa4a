//! The search page in a real browser: `folio serve` on an empty index, two PDFs uploaded
//! through the page (task followed to `succeeded`), a search whose first card must be the
//! expected document with marked terms, and the document view: the page image, the passage's
//! boxes drawn over it (or the snippet when the hit has none), arrow keys to change page,
//! Escape to close with the focus back on the card.
//!
//! Needs `chromium` and `chromedriver` on PATH (Debian: `apt-get install chromium
//! chromium-driver`); without them the test says so and passes. It talks W3C WebDriver to
//! chromedriver over plain HTTP/1.1 with the small client below. A screenshot of the document
//! view goes to `$FOLIO_SCREENSHOT`, else to `<system temp dir>/folio-browser-test/search.png`,
//! and one of the results next to it (`search.results.png`).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine as _;
use serde_json::{Value, json};

/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// The document uploaded with a distractor, and a query (q06 in datasets/samples) whose best
/// page is its page 1.
const EXPECTED_PDF: &str = "multi_page.pdf";
const DISTRACTOR_PDF: &str = "amt_handbook_sample.pdf";
const QUERY: &str = "Who invented the typewriter and when was it patented?";

fn workspace_root() -> Result<PathBuf> {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    root.canonicalize()
        .with_context(|| format!("resolving {}", root.display()))
}

/// An executable named `name` in one of PATH's directories.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Polls `check` every 100 ms until it yields a value; `Err(state)` from it means "not yet" and
/// says what it saw, for the timeout message.
fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<std::result::Result<T, String>>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        let last = match check()? {
            Ok(v) => return Ok(v),
            Err(state) => state,
        };
        if start.elapsed() > timeout {
            bail!(
                "timed out after {:.0} s waiting for {what}; last seen: {last}",
                timeout.as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ------------------------------------------------------------------ child processes

/// A child process (in its own process group on Unix) killed with its group on drop.
struct ChildGuard {
    name: &'static str,
    child: Child,
}

impl ChildGuard {
    fn spawn(name: &'static str, mut cmd: Command) -> Result<Self> {
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({cmd:?})"))?;
        Ok(ChildGuard { name, child })
    }

    /// Fails when the process has exited.
    fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("{} exited early with {status}", self.name),
            None => Ok(()),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // The whole group: chromedriver's browser, the server's extraction workers.
        #[cfg(unix)]
        {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `max` bytes of a log file, for failure messages.
fn log_tail(path: &Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("({} unreadable: {e})", path.display()),
    }
}

// ------------------------------------------------------------------ a tiny HTTP/1.1 client

struct HttpResponse {
    status: u16,
    body: Vec<u8>,
}

impl HttpResponse {
    fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "response body is not JSON: {}",
                String::from_utf8_lossy(&self.body[..self.body.len().min(300)])
            )
        })
    }
}

/// One request on a fresh connection (`Connection: close`).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<HttpResponse> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    if body.is_some() {
        head.push_str("Content-Type: application/json; charset=utf-8\r\n");
    }
    if body.is_some() || method != "GET" {
        head.push_str(&format!("Content-Length: {}\r\n", payload.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(payload.as_bytes())?;
    stream.flush()?;

    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .with_context(|| format!("reading the answer to {method} {path}"))?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {line:?} from {addr}"))?;
    let mut length = None;
    let mut chunked = false;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().context("bad content-length")?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            }
        }
    }
    let mut body = Vec::new();
    if method == "HEAD" || status == 204 || status == 304 {
        // no body
    } else if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                .with_context(|| format!("bad chunk size {line:?}"))?;
            if size == 0 {
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            line.clear();
            reader.read_line(&mut line)?;
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        reader.read_exact(&mut body)?;
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok(HttpResponse { status, body })
}

// ------------------------------------------------------------------ folio serve

struct Server {
    addr: String,
    log: PathBuf,
    process: ChildGuard,
}

impl Server {
    fn start(tmp: &Path, root: &Path) -> Result<Self> {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let log = tmp.join("server.log");
        let out = File::create(&log)?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_folio"));
        cmd.arg("serve")
            .arg("--index")
            .arg(tmp.join("index"))
            .args(["--addr", &addr])
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let mut server = Server {
            addr,
            log,
            process: ChildGuard::spawn("folio serve", cmd)?,
        };
        let addr = server.addr.clone();
        let log = server.log.clone();
        wait_for("GET /readyz to answer 200", Duration::from_secs(60), || {
            server
                .process
                .check_running()
                .with_context(|| format!("server log:\n{}", log_tail(&log, 4000)))?;
            Ok(
                match http(&addr, "GET", "/readyz", None, Duration::from_secs(5)) {
                    Ok(r) if r.status == 200 => Ok(()),
                    Ok(r) => Err(format!("status {}", r.status)),
                    Err(e) => Err(format!("{e:#}")),
                },
            )
        })?;
        Ok(server)
    }

    fn get_json(&self, path: &str) -> Result<Value> {
        let r = http(&self.addr, "GET", path, None, Duration::from_secs(30))?;
        ensure!(
            r.status == 200,
            "GET {path}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        let r = http(
            &self.addr,
            "POST",
            path,
            Some(body),
            Duration::from_secs(60),
        )?;
        ensure!(
            r.status == 200,
            "POST {path}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }
}

// ------------------------------------------------------------------ WebDriver

struct Browser {
    addr: String,
    session: String,
    log: PathBuf,
    // Dropped after `Drop::drop` ends the session: kills chromedriver (and what is left of
    // the browser).
    _driver: ChildGuard,
}

impl Browser {
    fn start(chromium: &Path, chromedriver: &Path, tmp: &Path) -> Result<Self> {
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let log = tmp.join("chromedriver.log");
        let mut cmd = Command::new(chromedriver);
        cmd.arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut driver = ChildGuard::spawn("chromedriver", cmd)?;
        wait_for("chromedriver to be ready", Duration::from_secs(20), || {
            driver.check_running()?;
            Ok(
                match http(&addr, "GET", "/status", None, Duration::from_secs(5)) {
                    Ok(r) if r.status == 200 => {
                        let ready = r.json()?["value"]["ready"].as_bool() == Some(true);
                        if ready {
                            Ok(())
                        } else {
                            Err("not ready".into())
                        }
                    }
                    Ok(r) => Err(format!("status {}", r.status)),
                    Err(e) => Err(format!("{e:#}")),
                },
            )
        })?;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_string_lossy(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--window-size=1280,900", "--disable-dev-shm-usage"],
            },
        }}});
        let r = http(
            &addr,
            "POST",
            "/session",
            Some(&capabilities),
            Duration::from_secs(60),
        )?;
        let answer = r.json()?;
        let session = answer["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| {
                anyhow!(
                    "chromedriver did not start a session ({}): {}\nchromedriver log:\n{}",
                    r.status,
                    answer["value"]["message"],
                    log_tail(&log, 3000)
                )
            })?
            .to_owned();
        Ok(Browser {
            addr,
            session,
            log,
            _driver: driver,
        })
    }

    /// A command on the session; answers its `value`, or fails with WebDriver's error.
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let full = format!("/session/{}{path}", self.session);
        // chromedriver wants a JSON object on every POST, even an empty one.
        let body = match (method, body) {
            ("POST", None) => Some(json!({})),
            (_, b) => b,
        };
        let r = http(
            &self.addr,
            method,
            &full,
            body.as_ref(),
            Duration::from_secs(60),
        )
        .with_context(|| format!("WebDriver {method} {path}"))?;
        let answer = r.json()?;
        let value = answer.get("value").cloned().unwrap_or(Value::Null);
        if r.status != 200 {
            bail!(
                "WebDriver {method} {path}: {} {}: {}",
                r.status,
                value["error"].as_str().unwrap_or("error"),
                value["message"]
                    .as_str()
                    .unwrap_or_default()
                    .lines()
                    .next()
                    .unwrap_or_default()
            );
        }
        Ok(value)
    }

    fn goto(&self, url: &str) -> Result<()> {
        self.cmd("POST", "/url", Some(json!({ "url": url })))?;
        Ok(())
    }

    fn elements_from(&self, base: &str, css: &str) -> Result<Vec<String>> {
        let found = self.cmd(
            "POST",
            &format!("{base}/elements"),
            Some(json!({"using": "css selector", "value": css})),
        )?;
        Ok(found
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn elements(&self, css: &str) -> Result<Vec<String>> {
        self.elements_from("", css)
    }

    fn elements_in(&self, element: &str, css: &str) -> Result<Vec<String>> {
        self.elements_from(&format!("/element/{element}"), css)
    }

    /// The first element matching `css`, waiting up to `timeout` for one.
    fn element(&self, css: &str, timeout: Duration) -> Result<String> {
        wait_for(&format!("an element {css}"), timeout, || {
            Ok(self
                .elements(css)?
                .into_iter()
                .next()
                .ok_or_else(|| "none yet".to_owned()))
        })
    }

    fn click(&self, element: &str) -> Result<()> {
        self.cmd("POST", &format!("/element/{element}/click"), None)?;
        Ok(())
    }

    fn send_keys(&self, element: &str, text: &str) -> Result<()> {
        self.cmd(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )?;
        Ok(())
    }

    fn text(&self, element: &str) -> Result<String> {
        Ok(self
            .cmd("GET", &format!("/element/{element}/text"), None)?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    fn displayed(&self, element: &str) -> Result<bool> {
        Ok(self
            .cmd("GET", &format!("/element/{element}/displayed"), None)?
            .as_bool()
            .unwrap_or(false))
    }

    /// The element's rectangle: x, y, width, height in CSS pixels.
    fn rect(&self, element: &str) -> Result<[f64; 4]> {
        let r = self.cmd("GET", &format!("/element/{element}/rect"), None)?;
        let get = |k: &str| r[k].as_f64().unwrap_or(0.0);
        Ok([get("x"), get("y"), get("width"), get("height")])
    }

    fn script(&self, js: &str) -> Result<Value> {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
    }

    /// Presses and releases one key (a WebDriver key code such as `\u{E014}`, ArrowRight).
    fn press(&self, key: &str) -> Result<()> {
        self.cmd(
            "POST",
            "/actions",
            Some(
                json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]}]}),
            ),
        )?;
        Ok(())
    }

    fn screenshot(&self, path: &Path) -> Result<()> {
        let data = self.cmd("GET", "/screenshot", None)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .map_err(|e| anyhow!("decoding the screenshot: {e}"))?;
        ensure!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session, which closes the browser; chromedriver is killed after.
        let _ = http(
            &self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
            Duration::from_secs(10),
        );
    }
}

// ------------------------------------------------------------------ the test

const ARROW_LEFT: &str = "\u{E012}";
const ARROW_RIGHT: &str = "\u{E014}";
const ESCAPE: &str = "\u{E00C}";

#[test]
fn search_page_in_a_browser() -> Result<()> {
    let (Some(chromium), Some(chromedriver)) = (on_path("chromium"), on_path("chromedriver"))
    else {
        eprintln!(
            "skipping the browser test: `chromium` and `chromedriver` must both be on PATH \
             (Debian: apt-get install chromium chromium-driver)"
        );
        return Ok(());
    };
    let root = workspace_root()?;
    let model = root.join("models/all-MiniLM-L6-v2");
    ensure!(
        model.is_dir(),
        "{} is missing: run scripts/fetch-models.sh first",
        model.display()
    );
    let started = Instant::now();
    let tmp = tempfile::tempdir()?;
    let server = Server::start(tmp.path(), &root)?;
    let browser = Browser::start(&chromium, &chromedriver, tmp.path())?;
    let outcome = drive(&browser, &server, &root);
    // On failure: the error first, then what the page, the server and chromedriver said.
    let result = outcome.map_err(|e| {
        let page = browser
            .script(
                "const t = (s) => { const n = document.querySelector(s); return n ? n.innerText.trim() : '(none)'; };\
                 return `#status: ${t('#status')}\n#task-status: ${t('#task-status')}\n#results-summary: ${t('#results-summary')}`;",
            )
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .unwrap_or_else(|e| format!("(page state unavailable: {e:#})"));
        anyhow!(
            "{e:#}\n\n--- page state ---\n{page}\n\n--- server log ({}), last lines ---\n{}\n\n--- chromedriver log: {}",
            server.log.display(),
            log_tail(&server.log, 4000),
            browser.log.display()
        )
    });
    eprintln!("browser test took {:.1} s", started.elapsed().as_secs_f64());
    if result.is_err() {
        // The processes are stopped by their guards; the logs and the index stay for a look.
        drop(browser);
        drop(server);
        eprintln!("kept {} for inspection", tmp.keep().display());
    }
    result
}

/// Everything the test does through the page.
fn drive(browser: &Browser, server: &Server, root: &Path) -> Result<()> {
    let base = format!("http://{}", server.addr);
    browser.goto(&format!("{base}/"))?;
    browser.element("#search-form #q", Duration::from_secs(10))?;

    // Upload two PDFs through the page and follow the task to its end.
    let samples = root.join("datasets/samples");
    let files: Vec<String> = [EXPECTED_PDF, DISTRACTOR_PDF]
        .iter()
        .map(|name| samples.join(name).to_string_lossy().into_owned())
        .collect();
    let input = browser.element("#upload-form #upload-file", Duration::from_secs(5))?;
    browser.send_keys(&input, &files.join("\n"))?;
    let submit = browser.element("#upload-form button[type=submit]", Duration::from_secs(5))?;
    browser.click(&submit)?;
    let task_status = browser.element("#task-status", Duration::from_secs(5))?;
    wait_for(
        "#task-status to say succeeded",
        Duration::from_secs(120),
        || {
            let state = browser
                .script("return document.querySelector('#task-status').dataset.state || '';")?;
            let state = state.as_str().unwrap_or_default();
            let text = browser.text(&task_status)?;
            match state {
                "succeeded" => Ok(Ok(text)),
                "failed" | "error" => bail!("the indexing task failed: {text}"),
                _ => Ok(Err(format!("state {state:?}: {text}"))),
            }
        },
    )?;
    let file_states = browser.script(
        "return [...document.querySelectorAll('#task-status .task-files li')].map(li => li.textContent);",
    )?;
    let file_states: Vec<&str> = file_states
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    ensure!(
        file_states.len() == 2 && file_states.iter().all(|s| s.contains("indexed")),
        "both PDFs should be indexed, the page says {file_states:?}"
    );

    // The document the query should find, as the API names it.
    let listing = server.get_json("/v1/documents?limit=50")?;
    let expected = listing["documents"]
        .as_array()
        .and_then(|docs| {
            docs.iter().find(|d| {
                d["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(EXPECTED_PDF))
            })
        })
        .ok_or_else(|| anyhow!("GET /v1/documents does not list {EXPECTED_PDF}: {listing}"))?;
    let expected_id = expected["doc_id"].as_str().unwrap_or_default().to_owned();
    let expected_title = expected["title"].as_str().unwrap_or_default().to_owned();
    ensure!(
        !expected_id.is_empty() && !expected_title.is_empty(),
        "document without id or title: {expected}"
    );

    // Search from the page.
    let q = browser.element("#q", Duration::from_secs(5))?;
    browser.send_keys(&q, QUERY)?;
    browser.click(&browser.element("#search-form button[type=submit]", Duration::from_secs(5))?)?;
    let cards = wait_for("result cards", Duration::from_secs(30), || {
        let cards = browser.elements("#results .card")?;
        Ok(if cards.is_empty() {
            Err("no .card yet".to_owned())
        } else {
            Ok(cards)
        })
    })?;
    let first = &cards[0];
    let title = browser.text(
        browser
            .elements_in(first, ".title")?
            .first()
            .ok_or_else(|| anyhow!("the first card has no .title"))?,
    )?;
    ensure!(
        title.trim() == expected_title.trim(),
        "the first card should be {EXPECTED_PDF} (title {expected_title:?}), it is titled {title:?}"
    );
    let marks = browser.elements_in(first, "mark")?;
    ensure!(
        !marks.is_empty(),
        "the first card's snippet has no <mark>: {:?}",
        browser.text(first)?
    );
    ensure!(
        !browser.text(&marks[0])?.trim().is_empty(),
        "an empty <mark>"
    );
    wait_for(
        "the first card's thumbnail to load",
        Duration::from_secs(20),
        || {
            let ok = browser.script(
                "const i = document.querySelector('#results .card .thumb img');\
                 return !!i && i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0;",
            )?;
            Ok(if ok == Value::Bool(true) {
                Ok(())
            } else {
                Err("not loaded".to_owned())
            })
        },
    )?;

    // The same search through the API says which page and boxes the viewer must show.
    let api = server.post_json("/v1/search", &json!({"query": QUERY, "k": 10}))?;
    let hit = &api["hits"][0];
    ensure!(
        hit["doc_id"].as_str() == Some(expected_id.as_str()),
        "the API's first hit is not {EXPECTED_PDF}: {hit}"
    );
    let hit_page = hit["page"].as_u64().unwrap_or(0);
    let boxes = hit["passage"]["boxes"].as_array().map_or(0, |b| b.len());

    // Open the hit: the page image with the passage highlighted.
    let results_shot = screenshot_path().with_extension("results.png");
    browser.screenshot(&results_shot)?;
    browser.click(first)?;
    let viewer = browser.element("#viewer", Duration::from_secs(5))?;
    wait_viewer_page(browser, &viewer, hit_page)?;
    let highlights = browser.elements("#viewer .highlight")?;
    if boxes > 0 {
        ensure!(
            highlights.len() == boxes,
            "the hit has {boxes} boxes but the viewer draws {} highlights",
            highlights.len()
        );
        let image = browser.rect(&browser.element("#viewer img", Duration::from_secs(1))?)?;
        for h in &highlights {
            let [x, y, w, hgt] = browser.rect(h)?;
            ensure!(
                w > 0.0 && hgt > 0.0,
                "a highlight of zero size ({w} x {hgt})"
            );
            ensure!(
                x >= image[0] - 1.0
                    && y >= image[1] - 1.0
                    && x + w <= image[0] + image[2] + 1.0
                    && y + hgt <= image[1] + image[3] + 1.0,
                "highlight {:?} lies outside the page image {image:?}",
                [x, y, w, hgt]
            );
        }
    } else {
        eprintln!("the hit has no boxes (no layout for the page): checking the snippet instead");
        let snippet = browser.element("#viewer-snippet", Duration::from_secs(1))?;
        ensure!(
            browser.displayed(&snippet)?,
            "without boxes the viewer should show the snippet"
        );
    }
    let shot = screenshot_path();
    browser.screenshot(&shot)?;
    println!("screenshot: {}", shot.display());
    println!("screenshot of the results: {}", results_shot.display());

    // Keyboard: the next page has no highlight, back again has, Escape closes and gives the
    // focus back to the card.
    let pages = browser
        .script("return Number(document.querySelector('#viewer').dataset.pages || 0);")?
        .as_u64()
        .unwrap_or(0);
    if pages > hit_page {
        browser.press(ARROW_RIGHT)?;
        wait_viewer_page(browser, &viewer, hit_page + 1)?;
        let n = browser.elements("#viewer .highlight")?.len();
        ensure!(n == 0, "page {} shows {n} highlights", hit_page + 1);
        browser.press(ARROW_LEFT)?;
        wait_viewer_page(browser, &viewer, hit_page)?;
        let n = browser.elements("#viewer .highlight")?.len();
        ensure!(
            n == boxes,
            "back on page {hit_page}: {n} highlights, {boxes} expected"
        );
    }
    browser.press(ESCAPE)?;
    wait_for("Escape to close the viewer", Duration::from_secs(5), || {
        Ok(if browser.displayed(&viewer)? {
            Err("still open".to_owned())
        } else {
            Ok(())
        })
    })?;
    let refocused = browser
        .script("return document.activeElement === document.querySelector('#results .card');")?;
    ensure!(
        refocused == Value::Bool(true),
        "closing the viewer should return the focus to the card"
    );
    Ok(())
}

/// Waits until the viewer is shown with page `page` loaded.
fn wait_viewer_page(browser: &Browser, viewer: &str, page: u64) -> Result<()> {
    wait_for(
        &format!("#viewer to show page {page} loaded"),
        Duration::from_secs(20),
        || {
            if !browser.displayed(viewer)? {
                return Ok(Err("#viewer not displayed".to_owned()));
            }
            let s = browser.script(
                "const v = document.querySelector('#viewer'); const i = v.querySelector('img');\
                 return {page: Number(v.dataset.page), loaded: v.dataset.loaded,\
                         image: !!i && i.src.startsWith('blob:') && i.complete && i.naturalWidth > 0,\
                         counter: (document.querySelector('#viewer-counter') || {}).textContent};",
            )?;
            if s["loaded"] == "error" {
                bail!("the viewer could not load page {page}: {s}");
            }
            Ok(
                if s["page"].as_u64() == Some(page)
                    && s["loaded"] == "true"
                    && s["image"] == Value::Bool(true)
                {
                    Ok(())
                } else {
                    Err(s.to_string())
                },
            )
        },
    )
}

fn screenshot_path() -> PathBuf {
    std::env::var_os("FOLIO_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("folio-browser-test/search.png"))
}
