//! RabbitMQ's `consumer_timeout` closing the channel of a running job: the worker logs it when
//! it happens, naming the job and saying how to raise the limit; the slot consumes again on a
//! new channel; the redelivered job, which had run to its end, is recognised and not run twice.
//!
//! The broker-wide limit is 30 minutes and cannot be lowered under the other tests, and
//! RabbitMQ 3.10 has no per-queue limit (the `x-consumer-timeout` argument came in 3.12). So
//! the test sets the limit of the one channel running its job to 1 ms, through `rabbitmqctl
//! eval`, and runs that channel's periodic check: the broker then closes the channel through
//! its real consumer-timeout path. It skips loudly where the broker's internals differ.
//! Disruptive (it reaches into the broker), so it runs after the other tests, alone.

use crate::support;

use std::time::Duration;

use support::{
    eventually,
    process::{enqueue_sleep, read_log, Running},
    rabbitmqctl, Rig,
};

const WAIT: Duration = Duration::from_secs(30);

/// How long the job whose channel times out runs. It must outlast the two `rabbitmqctl`
/// calls that find and shorten its channel's limit (about 1 s on a quiet machine, several
/// on a busy CI host: with 3 s the job once finished first and nothing timed out).
const LONG_JOB_MS: u64 = 15_000;

/// The pid of the channel consuming `queue`, as `rabbitmqctl list_consumers` prints it.
fn consumer_channel(queue: &str) -> Option<String> {
    let columns = ["queue_name", "channel_pid"];
    let out = rabbitmqctl(
        &[
            &["list_consumers", "-q", "--no-table-headers"][..],
            &columns,
        ]
        .concat(),
    )
    .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some(queue)).then(|| fields.next().map(str::to_string))?
        })
}

/// Makes the broker time out the delivery held by `channel` now; `Err` with the reason when
/// this broker cannot be made to.
fn time_out(channel: &str) -> Result<(), String> {
    // The channel process's state is a gen_server2 state around a `#ch{}` record whose
    // first field, `#conf{}`, holds the consumer timeout read at the channel's start.
    let eval = format!(
        "P = rabbit_misc:string_to_pid(\"{channel}\"), \
         {{ok, T}} = application:get_env(rabbit, consumer_timeout), \
         sys:replace_state(P, fun(S) -> Ch = element(4, S), C = element(2, Ch), \
         [I | _] = [N || N <- lists:seq(1, tuple_size(C)), element(N, C) =:= T], \
         setelement(4, S, setelement(2, Ch, setelement(I, C, 1))) end), P ! tick, ok."
    );
    let out = rabbitmqctl(&["eval", &eval]).map_err(|e| e.to_string())?;
    match String::from_utf8_lossy(&out.stdout).trim() {
        "ok" => Ok(()),
        _ => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
    }
}

#[tokio::test]
#[ignore = "disruptive: makes RabbitMQ close a channel; run by scripts/test.sh after the other tests"]
async fn a_channel_closed_by_consumer_timeout_is_logged_and_the_slot_consumes_again() {
    let rig = Rig::new("ctimeout").await;
    let queue = &rig.queue;
    let path = rig.temp_file("worker.log");
    let long = enqueue_sleep(rig.client(), queue, LONG_JOB_MS).await;
    let worker = Running::spawn(&rig.worker_args(), &path);
    eventually(WAIT, "the long job is running", || async {
        read_log(&path).contains(&format!("sleep_ms: sleeping {LONG_JOB_MS} ms"))
    })
    .await;

    let channel = consumer_channel(queue).expect("the worker's channel");
    if let Err(why) = time_out(&channel) {
        eprintln!(
            "\n!!! SKIPPED: cannot shorten a channel's consumer_timeout on this RabbitMQ \
             ({why}); the consumer_timeout path is untested here !!!\n"
        );
        assert!(worker.stop(WAIT).await.success());
        return;
    }
    assert!(
        !read_log(&path).contains("job done"),
        "the long job ended before its channel's limit was shortened; nothing was tested"
    );
    eventually(
        WAIT,
        "the consumer_timeout is logged with the job",
        || async {
            read_log(&path).lines().any(|line| {
                line.contains("consumer_timeout closed the channel")
                    && line.contains(&long.to_string())
                    && line.contains("rabbitmq.conf")
            })
        },
    )
    .await;
    // The slot consumes again on a new channel. The long job ran to its end but its ack
    // died with the channel, so the broker redelivers it; this worker remembers the run and
    // acks the redelivery without running it twice. Then a new job runs.
    let quick = enqueue_sleep(rig.client(), queue, 1).await;
    eventually(
        WAIT,
        "the redelivery was recognised and the new job ran",
        || async {
            let text = read_log(&path);
            let lines_with = |id: uuid::Uuid, what: &str| {
                let id = id.to_string();
                text.lines()
                    .filter(|l| l.contains(what) && l.contains(&id))
                    .count()
            };
            lines_with(long, "job done") == 1
                && lines_with(long, "already ran here") == 1
                && lines_with(quick, "job done") == 1
        },
    )
    .await;
    let text = read_log(&path);
    assert!(text.contains("consuming again on a new channel"), "{text}");
    assert_eq!(rig.ready(queue).await, 0);
    assert_eq!(rig.ready(&rig.failed).await, 0);
    assert!(worker.stop(WAIT).await.success());
}
