//! The harness runs end to end on a tiny load against the real broker and prints every row.
//! It asserts nothing about speed: figures on a shared machine are for people to read, and a
//! timing assertion would only make the suite flaky.

use std::process::Command;

const ROWS: [&str; 11] = [
    "enqueue one by one vs publish+confirm serial (jobs/s)",
    "enqueue_many vs publish pipelined, confirms after (jobs/s)",
    "drain no-op, concurrency 1 vs 1 channel (jobs/s)",
    "drain no-op, concurrency 4 vs 4 channels (jobs/s)",
    "latency enqueue → start, p50, idle (ms)",
    "latency enqueue → start, p99, idle (ms)",
    "latency enqueue → start, max, idle (ms)",
    "worker RSS idle, concurrency 1 (MB)",
    "worker peak RSS draining, concurrency 4 (MB)",
    "worker CPU s per 10,000 jobs, concurrency 1",
    "worker CPU s per 10,000 jobs, concurrency 4",
];

#[test]
fn the_harness_prints_every_row_on_a_small_run() {
    let output = Command::new(env!("CARGO_BIN_EXE_palermo-bench"))
        .args(["--jobs", "200", "--reps", "1", "--latency-jobs", "20"])
        .output()
        .expect("run palermo-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "palermo-bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains(
            "| measure | Palermo median (min–max) | raw lapin median (min–max) | Palermo / raw"
        ),
        "no table header:\n{stdout}"
    );
    for row in ROWS {
        let line = stdout
            .lines()
            .find(|line| line.starts_with(&format!("| {row} |")))
            .unwrap_or_else(|| panic!("no row {row:?} in:\n{stdout}"));
        // Cells: measure, Palermo, raw, ratio, goal. The ratio may be "–" when a tiny run
        // used less CPU than the kernel counts (10 ms), so only the figures are checked.
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert!(
            cells.len() >= 6 && cells[2] != "–" && cells[3] != "–",
            "row {row:?} is missing a figure: {line}"
        );
    }
}
