//! The harness runs end to end on a tiny load against the real broker and prints every row.
//! It asserts nothing about speed: figures on a shared machine are for people to read, and a
//! timing assertion would only make the suite flaky.

use std::process::Command;

const ROWS: [&str; 19] = [
    "enqueue one by one vs publish+confirm serial (jobs/s)",
    "enqueue_many vs publish pipelined, confirms after (jobs/s)",
    "drain no-op, concurrency 1 vs 1 channel (jobs/s)",
    "drain no-op, concurrency 4 vs 4 channels (jobs/s)",
    "drain no-op, concurrency 1, prefetch 10 vs 1 channel, prefetch 10 (jobs/s)",
    "drain no-op, concurrency 1, prefetch 100 vs 1 channel, prefetch 100 (jobs/s)",
    "drain no-op, 1 worker process × concurrency 4 vs 1 raw process × 4 channels (jobs/s)",
    "drain no-op, 2 worker processes × concurrency 4 vs 2 raw processes × 4 channels (jobs/s)",
    "drain no-op, 4 worker processes × concurrency 4 vs 4 raw processes × 4 channels (jobs/s)",
    "job sleeping 5 ms, concurrency 1 vs 1 channel (jobs/s)",
    "job sleeping 5 ms, concurrency 16 vs 16 channels (jobs/s)",
    "job sleeping 5 ms, concurrency 64 vs 64 channels (jobs/s)",
    "latency enqueue → start, p50, idle (ms)",
    "latency enqueue → start, p99, idle (ms)",
    "latency enqueue → start, max, idle (ms)",
    "worker RSS idle, concurrency 1 (MB)",
    "worker peak RSS draining, concurrency 4 (MB)",
    "worker CPU s per 10,000 jobs, concurrency 1",
    "worker CPU s per 10,000 jobs, concurrency 4",
];

/// The rows that also measure raw lapin with a channel-wide (global) QoS.
const WITH_GLOBAL_QOS: [&str; 2] = [ROWS[2], ROWS[3]];

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
            "| measure | Palermo median (min–max) | raw lapin median (min–max) | Palermo / raw, paired median (min–max) | raw lapin, global QoS, median (min–max) |"
        ),
        "no table header:\n{stdout}"
    );
    for row in ROWS {
        let line = stdout
            .lines()
            .find(|line| line.starts_with(&format!("| {row} |")))
            .unwrap_or_else(|| panic!("no row {row:?} in:\n{stdout}"));
        // Cells: measure, Palermo, raw, ratio, raw global QoS, ratio, goal. A ratio may be
        // "–" when a tiny run used less CPU than the kernel counts (10 ms), so only the
        // figures are checked.
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert!(
            cells.len() >= 8 && cells[2] != "–" && cells[3] != "–",
            "row {row:?} is missing a figure: {line}"
        );
        if WITH_GLOBAL_QOS.contains(&row) {
            assert_ne!(
                cells[5], "–",
                "row {row:?} has no global-QoS figure: {line}"
            );
        }
    }
}
