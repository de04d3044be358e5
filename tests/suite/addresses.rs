//! Several broker addresses (issue 13): `PALERMO_AMQP_URL` as a comma-separated list. On the
//! main broker, a list whose first addresses are dead (closed ports) still serves a client, a
//! worker, the recorder and the CLI; connects spread over the addresses; a bad entry is a
//! start-up error naming its position, without the password, in the library and the CLI.

use crate::admin_support;
use crate::support;

use std::{
    collections::HashSet,
    process::Command,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use admin_support::{palermo_bin, stderr, stdout, Admin};
use palermo::{Client, Error, Options, State, Worker};
use support::{amqp_url, eventually, queue_type, unique, Rig, WAIT};

/// Closed ports on this machine: a node that is down refuses the connection at once.
const DEAD: [&str; 2] = [
    "amqp://guest:secret-1@127.0.0.1:1/%2f",
    "amqp://guest:secret-2@127.0.0.1:2/%2f",
];

/// Two dead addresses, then the test broker.
fn dead_first() -> String {
    format!("{},{},{}", DEAD[0], DEAD[1], amqp_url())
}

#[palermo::job(name = "addresses_counted")]
async fn counted(n: u64, seen: State<Arc<AtomicUsize>>) -> anyhow::Result<()> {
    let _ = n;
    seen.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[tokio::test]
async fn a_list_whose_first_nodes_are_dead_serves_clients_and_workers() {
    let rig = Rig::new("addr").await;
    let list = dead_first();
    // Connects start at a different address each time: three in a row start at each one.
    for n in 0..3 {
        let client = Client::connect_with(&palermo::ClientConfig::new(palermo::Deployment {
            queue_type: queue_type(),
            ..palermo::Deployment::new(list.as_str())
        }))
        .await
        .expect("a live address answers");
        client
            .enqueue_with(Counted { n }, Options::new().queue(&rig.queue))
            .await
            .expect("enqueued");
        client.close().await.expect("closed");
    }
    let seen = Arc::new(AtomicUsize::new(0));
    let mut config = rig.config();
    config.deployment.amqp_url = list;
    rig.start(Worker::builder(config).state(seen.clone()));
    eventually(WAIT, "the worker runs the three jobs", || {
        let seen = seen.clone();
        async move { seen.load(Ordering::SeqCst) == 3 }
    })
    .await;
    rig.stop().await;
}

#[tokio::test]
async fn connects_spread_over_the_addresses() {
    // Two addresses of the same broker that differ in the heartbeat they ask for, so that the
    // connection shows which one it went to (the broker settles on the lower value, 60 s).
    let base = amqp_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    let list = format!("{base}{sep}heartbeat=17,{base}{sep}heartbeat=19");
    let mut heartbeats = Vec::new();
    // Twelve connects in a row take every other address. The other tests of this binary make
    // five connects through a list (a single URL does not move the rotation), which could
    // shift it in at most five of the eleven gaps: both addresses are taken whatever runs
    // beside this test.
    for _ in 0..12 {
        let connection = palermo::admin::broker::connect(&list, "test: spread")
            .await
            .expect("connect");
        heartbeats.push(connection.configuration().heartbeat());
        let _ = connection.close(200, "done".into()).await;
    }
    let taken: HashSet<_> = heartbeats.iter().copied().collect();
    assert_eq!(taken, HashSet::from([17, 19]), "{heartbeats:?}");
}

#[tokio::test]
async fn a_list_of_dead_nodes_says_what_each_answered_without_passwords() {
    let list = DEAD.join(",");
    let Err(err) = Client::connect(&list).await else {
        panic!("connected to closed ports");
    };
    let Error::NoNodeAnswered { failures } = &err else {
        panic!("not NoNodeAnswered: {err}");
    };
    assert_eq!(failures.len(), 2, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("127.0.0.1:1/") && message.contains("127.0.0.1:2/"),
        "{message}"
    );
    assert!(!message.contains("secret"), "{message}");
}

#[tokio::test]
async fn a_bad_entry_is_a_start_up_error_naming_its_position() {
    let expected = r#"invalid AMQP URL "" (address 2 of 3 in the list): the address is empty"#;
    let Err(err) = Client::connect("amqp://guest:secret@x,,amqp://y").await else {
        panic!("a list with an empty entry connected");
    };
    assert_eq!(err.to_string(), expected);
    let mut config = palermo::WorkerConfig::new([unique("addr")]);
    config.deployment.amqp_url = "amqp://guest:secret@x,,amqp://y".into();
    let Err(err) = Worker::builder(config).build() else {
        panic!("a worker with an empty address was built");
    };
    assert_eq!(err.to_string(), expected);
    let message = Client::connect(&format!("{},http://guest:secret@h/", amqp_url()))
        .await
        .err()
        .map(|e| e.to_string())
        .expect("http is not AMQP");
    assert!(
        message.starts_with(
            r#"invalid AMQP URL "http://guest:***@h/" (address 2 of 2 in the list): "#
        ),
        "{message}"
    );
}

#[test]
fn the_cli_refuses_a_bad_list_before_anything_else() {
    for command in ["queues", "web", "schedules"] {
        let out = Command::new(palermo_bin())
            .args(["--amqp-url", "amqp://guest:secret@x,,amqp://y", command])
            .env_remove("PALERMO_AMQP_URL")
            .env("PALERMO_DATABASE_URL", "sqlite::memory:")
            .output()
            .expect("run palermo");
        let err = stderr(&out);
        assert!(!out.status.success(), "palermo {command} succeeded: {err}");
        assert_eq!(
            err.trim(),
            r#"error: invalid AMQP URL "" (address 2 of 3 in the list): the address is empty"#,
            "palermo {command}"
        );
    }
}

#[tokio::test]
async fn the_recorder_and_the_cli_take_a_live_address_of_the_list() {
    let admin = Admin::new("sqlite", "addr").await;
    let mut command = admin.command(&["queues", "--json"]);
    command.env("PALERMO_AMQP_URL", dead_first());
    let out = command.output().expect("run palermo queues");
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert!(report.is_object() || report.is_array(), "{report}");

    let scheduler = unique("addr");
    let mut command = admin.command(&["schedules", "--scheduler-queue", &scheduler]);
    command.env("PALERMO_AMQP_URL", dead_first());
    let out = command.output().expect("run palermo schedules");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("no scheduler has been active"),
        "{}",
        stdout(&out)
    );
}
