//! A worker process under measurement: started, paused and resumed with signals, read from
//! its stdout, and weighed through `/proc/PID` (its memory and CPU time only, never the
//! harness's).

// Signals and clock ticks of child processes go through libc; each call says why it is sound.
#![allow(unsafe_code)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context};
use tokio::sync::mpsc;

/// A running worker; killed if dropped before [`WorkerProcess::stop`].
pub struct WorkerProcess {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    log: PathBuf,
}

/// What `/proc` says about a process.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// Resident memory now, in MB.
    pub rss_mb: f64,
    /// Peak resident memory so far (`VmHWM`), in MB.
    pub peak_rss_mb: f64,
    /// User plus system CPU time so far, in seconds.
    pub cpu_s: f64,
}

impl WorkerProcess {
    /// Starts `exe args…` with stdout piped to the harness and stderr (the worker's logs, at
    /// the default level `info`) written to `log`.
    pub fn spawn(exe: &Path, args: &[String], log: PathBuf) -> anyhow::Result<Self> {
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("creating the worker log {}", log.display()))?;
        let mut child = Command::new(exe)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {} {}", exe.display(), args.join(" ")))?;
        let stdout = child
            .stdout
            .take()
            .context("the worker's stdout is not piped")?;
        let (tx, lines) = mpsc::unbounded_channel();
        // A plain thread: reading a pipe blocks, and it ends by itself at the worker's exit.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self { child, lines, log })
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the worker printed; an error (with the end of its log) if it exits or
    /// prints nothing for `timeout`.
    pub async fn line(&mut self, timeout: Duration) -> anyhow::Result<String> {
        match tokio::time::timeout(timeout, self.lines.recv()).await {
            Ok(Some(line)) => Ok(line),
            Ok(None) => bail!("the worker exited\n{}", self.log_tail()),
            Err(_) => bail!(
                "the worker printed nothing for {timeout:?}\n{}",
                self.log_tail()
            ),
        }
    }

    /// Fails, with the end of the log, if the worker has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait().context("waiting on the worker")? {
            None => Ok(()),
            Some(status) => bail!("the worker exited ({status})\n{}", self.log_tail()),
        }
    }

    /// Freezes the worker (SIGSTOP), so that a queue can be filled before it drains it.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal(libc::SIGSTOP)
    }

    /// Lets a paused worker run again (SIGCONT).
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal(libc::SIGCONT)
    }

    /// Memory and CPU time of the worker process, from `/proc/PID/status` and `/proc/PID/stat`.
    pub fn usage(&self) -> anyhow::Result<Usage> {
        let pid = self.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading /proc/{pid}/stat"))?;
        // An exited, unreaped worker is a zombie: it still has a /proc entry, without memory.
        if status
            .lines()
            .any(|line| line.starts_with("State:") && line.contains('Z'))
        {
            bail!("the worker exited\n{}", self.log_tail());
        }
        Ok(Usage {
            rss_mb: status_kb(&status, "VmRSS:")? / 1024.0,
            peak_rss_mb: status_kb(&status, "VmHWM:")? / 1024.0,
            cpu_s: cpu_seconds(&stat)?,
        })
    }

    /// Stops the worker the way an operator does (SIGTERM) and waits for it to exit; kills it
    /// after 15 s.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        // A paused worker would never see the SIGTERM.
        self.resume()?;
        self.signal(libc::SIGTERM)?;
        for _ in 0..1500 {
            if let Some(status) = self.child.try_wait().context("waiting on the worker")? {
                if !status.success() {
                    bail!("the worker exited with {status}\n{}", self.log_tail());
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        bail!("the worker did not stop within 15 s of SIGTERM; killed it")
    }

    fn signal(&self, signal: libc::c_int) -> anyhow::Result<()> {
        let pid = libc::pid_t::try_from(self.pid()).context("pid out of range")?;
        // SAFETY: kill(2) on the pid of a child we started and have not reaped.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("sending signal {signal} to the worker {pid}"));
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("--- end of {} ---\n{tail}", self.log.display())
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A `Name:   123 kB` line of `/proc/PID/status`, in kB.
fn status_kb(status: &str, name: &str) -> anyhow::Result<f64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .with_context(|| format!("no {name} in /proc/PID/status"))
}

/// utime + stime (fields 14 and 15 of `/proc/PID/stat`) in seconds. The fields are counted
/// after the command name, which is in parentheses and may itself contain spaces.
fn cpu_seconds(stat: &str) -> anyhow::Result<f64> {
    let after_name = stat
        .rfind(')')
        .map(|end| &stat[end + 1..])
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .context("malformed /proc/PID/stat")
    };
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if per_second <= 0 {
        bail!("sysconf(_SC_CLK_TCK) failed");
    }
    // Field 3 (state) is index 0 here, so utime (14) is index 11 and stime (15) index 12.
    Ok((ticks(11)? + ticks(12)?) / per_second as f64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn proc_fields() {
        let stat = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1 2 3";
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        assert_eq!(super::cpu_seconds(stat).expect("stat"), 300.0 / ticks);
        let status = "Name:\tx\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\n";
        assert_eq!(super::status_kb(status, "VmRSS:").expect("rss"), 1024.0);
        assert_eq!(super::status_kb(status, "VmHWM:").expect("hwm"), 2048.0);
    }
}
