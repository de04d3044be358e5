//! The Python examples (examples/python) as child processes. They need python3 with pika
//! (`scripts/python.sh`, which scripts/test.sh runs); without them a test fails and says so,
//! it never skips.

use std::process::Command;

/// Runs `python3 examples/python/SCRIPT ARGS` and returns its stdout; panics, saying what to
/// fix, when python3 or pika is missing or the script fails.
pub fn run(script: &str, args: &[&str]) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/python/");
    let output = Command::new("python3")
        .arg(format!("{path}{script}"))
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}): run scripts/python.sh to install it and pika")
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named 'pika'"),
        "pika is not installed: run scripts/python.sh (pip install pika)\n{stderr}"
    );
    assert!(
        output.status.success(),
        "{script} failed ({}):\n{stderr}",
        output.status
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
