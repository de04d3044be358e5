//! Helpers of the dashboard tests: the real `palermo web` as a child process on a free port
//! of 127.0.0.1 (its URL read from what it prints), and a plain HTTP GET.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use crate::admin_support::Admin;

/// A running `palermo web`; killed when dropped, so none outlives its test.
pub struct Dashboard {
    child: Child,
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub url: String,
    /// Its log (stderr, level info).
    pub log: PathBuf,
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dashboard {
    /// Starts `palermo web ARGS` (binding 127.0.0.1:0 unless ARGS say) against `admin` and waits (up to 60 s:
    /// the first call builds the binary) until it prints its URL.
    pub fn start(admin: &Admin, args: &[&str]) -> Dashboard {
        let log = std::env::temp_dir().join(format!("palermo-web-{}.log", uuid::Uuid::new_v4()));
        let mut all = vec!["web"];
        if !args.contains(&"--bind") {
            all.extend(["--bind", "127.0.0.1:0"]);
        }
        all.extend_from_slice(args);
        let mut child = admin
            .command(&all)
            .env_remove("PALERMO_WEB_AUTH")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(&log).expect("dashboard log file"),
            ))
            .spawn()
            .expect("spawn palermo web");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut dashboard = Dashboard {
            child,
            url: String::new(),
            log,
        };
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "palermo web printed no URL; its log:\n{}",
                    dashboard.log_text()
                )
            });
        let start = line
            .find("http://")
            .unwrap_or_else(|| panic!("no URL in {line:?}"));
        let url = line[start..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .trim_end_matches('/');
        dashboard.url = url.to_string();
        dashboard
    }

    /// Its exit status once it has exited on its own.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET url + path`: its status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        get(&format!("{}{path}", self.url))
    }

    /// SIGTERM, then waits up to `within` for it to exit; its exit status.
    pub fn stop(mut self, within: Duration) -> ExitStatus {
        // SAFETY: kill(2) on our own child, not yet reaped (`Dashboard` owns it).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "palermo web did not stop within {within:?}; its log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A plain HTTP/1.1 GET of `url` (`http://host:port/path`): its status and body.
pub fn get(url: &str) -> (u16, String) {
    get_with(url, &[])
}

/// [`get`] with extra request headers.
pub fn get_with(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = TcpStream::connect(host).unwrap_or_else(|e| panic!("connect {host}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}\r\n"
    )
    .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}
