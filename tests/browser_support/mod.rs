//! A real browser for the dashboard's tests: Debian's `chromium`, headless, driven over
//! WebDriver by `chromedriver` on a free port of 127.0.0.1, with a fresh profile that is
//! deleted afterwards.
//!
//! The test never skips quietly: when either program is missing it fails and says to run
//! `scripts/chromium.sh` (which `scripts/test.sh` runs). Only a developer's machine may opt
//! out with `PALERMO_SKIP_BROWSER_TESTS=1`; CI (`CI` set) refuses the opt-out.
#![allow(dead_code)]

use std::{
    net::TcpListener,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{elements::Element, Client, ClientBuilder, Locator};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Chromium's flags: headless, no sandbox (tests run as root), and nothing that reaches the
/// network or updates itself.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// Whether the browser tests should run here; panics when they cannot and may not be skipped.
pub fn available() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|path| !Path::new(path).exists())
        .collect();
    let opt_out = std::env::var("PALERMO_SKIP_BROWSER_TESTS").is_ok_and(|v| v == "1");
    if opt_out {
        assert!(
            std::env::var_os("CI").is_none(),
            "PALERMO_SKIP_BROWSER_TESTS is for local development only; CI runs the browser tests"
        );
        eprintln!("PALERMO_SKIP_BROWSER_TESTS=1: NOT running the dashboard's browser test");
        return false;
    }
    assert!(
        missing.is_empty(),
        "{} missing: run scripts/chromium.sh (installs Debian's chromium and chromium-driver)",
        missing.join(" and ")
    );
    true
}

/// A chromedriver process and one browser session in a fresh profile.
pub struct Browser {
    pub client: Client,
    driver: Child,
    profile: PathBuf,
    log: PathBuf,
}

impl Browser {
    /// Starts chromedriver on a free port, waits until it is ready, and opens a session with
    /// a window of `width` × `height` and Chromium's `extra` flags (e.g. `--force-dark-mode`).
    pub async fn start(width: u32, height: u32, extra: &[&str]) -> Browser {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("chromedriver-{port}.log"));
        // In a process group of its own, so that Drop can end chromedriver and every Chromium
        // process it started at once, even when a test fails before closing the session.
        let driver = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = std::env::temp_dir().join(format!("chromium-{}", uuid::Uuid::new_v4()));
        Browser {
            client: connect(port, &profile, width, height, extra).await,
            driver,
            profile,
            log,
        }
    }

    /// Ends the session, chromedriver and the profile.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
        // Drop stops chromedriver and deletes the profile.
    }

    /// Saves a screenshot of the window as `target/screenshots/NAME.png`; its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = target_dir().join("screenshots");
        std::fs::create_dir_all(&dir).expect("create target/screenshots");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }

    /// Waits up to `within` for an element matching the CSS `selector`.
    pub async fn element(&self, selector: &str, within: Duration) -> Element {
        self.client
            .wait()
            .at_most(within)
            .for_element(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("no {selector} on the page within {within:?}: {e}"))
    }

    /// The visible text of the element matching `selector`, waiting up to `within` for it.
    /// An element found just before the page is replaced (a form's redirect, a live refresh)
    /// goes stale: it is looked up again within `within`.
    pub async fn text(&self, selector: &str, within: Duration) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.element(selector, left).await.text().await {
                Ok(text) => return text,
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("the text of {selector} (trying again): {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("the text of {selector}: {e}"),
            }
        }
    }

    /// Runs `script` in the page and returns its value.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("running {script:?} in the page: {e}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group of our own child, not yet reaped.
        unsafe { libc::kill(-(self.driver.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
        if std::thread::panicking() {
            eprintln!("chromedriver's log: {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Opens a session, retrying while chromedriver is starting (up to 20 s).
async fn connect(port: u16, profile: &Path, width: u32, height: u32, extra: &[&str]) -> Client {
    let mut args: Vec<String> = FLAGS.iter().chain(extra).map(|f| f.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    args.push(format!("--window-size={width},{height}"));
    let capabilities = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!("a JSON object")
    };
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return client,
            Err(e) if Instant::now() > deadline => {
                panic!("cannot open a Chromium session through chromedriver on {url}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Cargo's target directory (`CARGO_TARGET_DIR` or `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}
