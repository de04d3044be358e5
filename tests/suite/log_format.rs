//! `--log-format json`: a real worker process logs one JSON object per line, with the job
//! span's fields (`job.id`, `job.name`, `queue`, `attempt`, `trace_id`) on the lines of a run.

use crate::support;

use std::time::Duration;

use support::{
    eventually,
    process::{enqueue_sleep, read_log, Running},
    Rig, WAIT,
};

#[tokio::test]
async fn json_logs_carry_the_job_span() {
    let rig = Rig::new("logjson").await;
    let log = rig.temp_file("worker.log");
    let mut args = rig.worker_args().to_vec();
    args.extend(["--log-format", "json"]);
    let worker = Running::spawn(&args, &log);
    rig.wait_consuming().await;
    let id = enqueue_sleep(rig.client(), &rig.queue, 0).await.to_string();
    eventually(WAIT, "the job's done line", || async {
        read_log(&log).contains("job done")
    })
    .await;
    worker.stop(Duration::from_secs(10)).await;

    let text = read_log(&log);
    // Every line the logger wrote is JSON (the job prints one plain line of its own).
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|line| !line.starts_with("sleep_ms:"))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let done = lines
        .iter()
        .find(|line| line["fields"]["message"] == "job done")
        .expect("a job done line");
    let span = &done["span"];
    assert_eq!(span["name"], "job");
    assert_eq!(span["job.id"], id.as_str());
    assert_eq!(span["job.name"], "sleep_ms");
    assert_eq!(span["queue"], rig.queue.as_str());
    assert_eq!(span["attempt"], 1);
    let trace = span["trace_id"].as_str().expect("a trace id");
    assert_eq!(trace.len(), 32, "{trace}");
}
