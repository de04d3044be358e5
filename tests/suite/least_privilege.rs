//! Least privilege on the broker (docs/scaling.md): a vhost of the test's own and three users
//! with the documented permissions. A producer enqueues (plain, delayed and unique jobs) but
//! the broker refuses it a consumer; a worker started with the producer's user stops at
//! start-up naming the permission it lacks; the worker user runs jobs end to end; the admin
//! user records failures and retries them. The vhost and users are deleted on drop, also when
//! the test fails.

use crate::support;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use lapin::{options::BasicConsumeOptions, types::FieldTable, Connection, ConnectionProperties};
use palermo::{Options, State, Worker, WorkerConfig};
use palermo_store::{Recorder, RecorderConfig, Requeuer, Store};
use palermo_testdb::TestDb;
use support::{eventually, process, rabbitmqctl, RunningWorker, WAIT};

/// The permissions (configure, write, read) of each side, as docs/scaling.md ("Least
/// privilege on the broker") documents them; `the_documented_permissions_are_these` keeps
/// the two the same.
const PRODUCER: [&str; 3] = [".*", ".*", r"^palermo(\.(delay|qdelay|unique)\..*)?$"];
const WORKER: [&str; 3] = [".*", ".*", r"^(?!palermo\.failed$).*"];
const ADMIN: [&str; 3] = [".*", ".*", ".*"];

/// A job queue named as an application would; the vhost is the test's own.
const QUEUE: &str = "mail";

/// A vhost and its three users on the test broker, made with `rabbitmqctl`; dropping it
/// deletes them all (deleting the vhost deletes every queue and exchange in it).
struct Vhost {
    name: String,
    password: String,
}

impl Vhost {
    fn new() -> Vhost {
        let vhost = Vhost {
            name: support::unique("privs"),
            password: uuid::Uuid::new_v4().simple().to_string(),
        };
        ctl(&["add_vhost", &vhost.name]);
        for (role, [configure, write, read]) in
            [("producer", PRODUCER), ("worker", WORKER), ("admin", ADMIN)]
        {
            let user = vhost.user(role);
            ctl(&["add_user", &user, &vhost.password]);
            ctl(&[
                "set_permissions",
                "-p",
                &vhost.name,
                &user,
                configure,
                write,
                read,
            ]);
        }
        vhost
    }

    fn user(&self, role: &str) -> String {
        format!("{}.{role}", self.name)
    }

    /// The test broker's URL for `role`'s user in this vhost.
    fn url(&self, role: &str) -> String {
        let uri: lapin::uri::AMQPUri = support::amqp_url().parse().expect("test broker URL");
        format!(
            "amqp://{}:{}@{}:{}/{}",
            self.user(role),
            self.password,
            uri.authority.host,
            uri.authority.port,
            self.name
        )
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = rabbitmqctl(&["delete_vhost", &self.name]);
        for role in ["producer", "worker", "admin"] {
            let _ = rabbitmqctl(&["delete_user", &self.user(role)]);
        }
    }
}

/// Runs `rabbitmqctl ARGS`; panics with its output when it fails.
fn ctl(args: &[&str]) {
    let out = rabbitmqctl(args).expect("run rabbitmqctl");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[derive(Default)]
struct Seen {
    ran: AtomicUsize,
}

#[palermo::job(queue = "mail", max_attempts = 1)]
async fn send_mail(to: String, seen: State<Arc<Seen>>) -> anyhow::Result<()> {
    seen.ran.fetch_add(1, Ordering::SeqCst);
    if to == "nobody" {
        anyhow::bail!("no such mailbox: {to}");
    }
    Ok(())
}

#[palermo::job(queue = "mail", unique = "1m")]
async fn send_digest(day: String, seen: State<Arc<Seen>>) -> anyhow::Result<()> {
    let _ = day;
    seen.ran.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// Messages ready in `queue`, seen by the admin user.
async fn ready(admin: &Connection, queue: &str) -> u32 {
    palermo::admin::topology::inspect(admin, queue)
        .await
        .expect("inspect")
        .map_or(0, |depth| depth.ready)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_enqueues_but_the_broker_refuses_it_a_consumer() {
    let vhost = Vhost::new();
    let producer = palermo::Client::connect(&vhost.url("producer"))
        .await
        .expect("the producer connects");
    producer
        .enqueue(SendMail { to: "ada".into() })
        .await
        .expect("a plain enqueue");
    producer
        .enqueue_with(
            SendMail { to: "bob".into() },
            Options::new().delay(Duration::from_secs(1)),
        )
        .await
        .expect("a delayed enqueue (declares the delay layout)");
    let first = producer
        .enqueue(SendDigest {
            day: "monday".into(),
        })
        .await
        .expect("a unique enqueue (declares and publishes to its lock)");
    let again = producer
        .enqueue(SendDigest {
            day: "monday".into(),
        })
        .await
        .expect("a unique enqueue again (reads the lock)");
    assert_eq!(again.id(), first.id(), "the lock holds the first job");

    let admin = Connection::connect(&vhost.url("admin"), ConnectionProperties::default())
        .await
        .expect("the admin connects");
    eventually(
        WAIT,
        "the plain, unique and delayed jobs in the queue",
        || async { ready(&admin, QUEUE).await == 3 },
    )
    .await;

    // The producer may not consume its jobs: the broker says so.
    let connection = Connection::connect(&vhost.url("producer"), ConnectionProperties::default())
        .await
        .expect("the producer connects");
    let channel = connection.create_channel().await.expect("channel");
    let refused = channel
        .basic_consume(
            QUEUE.into(),
            "thief".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map(|_| ())
        .map_err(palermo::Error::broker("basic.consume"));
    let Err(palermo::Error::AccessRefused { refusal, .. }) = &refused else {
        panic!("consuming as the producer: {refused:?}");
    };
    assert_eq!(refusal.permission.as_deref(), Some("read"));
    assert_eq!(
        refusal.resource.as_deref(),
        Some(format!("queue '{QUEUE}' in vhost '{}'", vhost.name).as_str())
    );
    assert_eq!(ready(&admin, QUEUE).await, 3, "nothing was taken");
    let _ = connection.close(200, "done".into()).await;
    let _ = admin.close(200, "done".into()).await;
    producer.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_the_producer_user_stops_at_start_up_naming_the_permission() {
    let vhost = Vhost::new();
    let log = std::env::temp_dir().join(format!("{}.worker.log", vhost.name));
    let url = vhost.url("producer");
    let worker = process::Running::spawn_with_env(
        &["--queues", QUEUE],
        &[("PALERMO_AMQP_URL", url.as_str())],
        &log,
    );
    let status = worker.wait(WAIT).await;
    let stderr = process::read_log(&log);
    let _ = std::fs::remove_file(&log);
    assert_eq!(
        status.code(),
        Some(1),
        "exit status {status:?}; log:\n{stderr}"
    );
    // The worker consumes nothing: it fails reading the cancellations stream, which it does
    // when it connects, before its slots ask to consume.
    let expected = format!(
        "error: the broker refused access: read on queue 'palermo.control.cancellations' in vhost '{}' for user '{}' (ACCESS_REFUSED during basic.consume (cancellations)): check the user's permissions",
        vhost.name,
        vhost.user("producer")
    );
    assert!(stderr.contains(&expected), "{expected:?} not in:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_user_runs_jobs_and_the_admin_user_records_and_retries_them() {
    let vhost = Vhost::new();
    let producer = palermo::Client::connect(&vhost.url("producer"))
        .await
        .expect("the producer connects");
    let seen = Arc::new(Seen::default());
    let mut config = WorkerConfig::new([QUEUE]);
    config.deployment.amqp_url = vhost.url("worker");
    config.concurrency = 2;
    let worker = RunningWorker::start_with(Worker::builder(config).state(seen.clone()));
    producer
        .enqueue(SendMail { to: "ada".into() })
        .await
        .expect("enqueue");
    producer
        .enqueue(SendMail {
            to: "nobody".into(),
        })
        .await
        .expect("enqueue");
    producer
        .enqueue_with(
            SendMail { to: "bob".into() },
            Options::new().delay(Duration::from_secs(1)),
        )
        .await
        .expect("enqueue delayed");
    producer
        .enqueue(SendDigest {
            day: "monday".into(),
        })
        .await
        .expect("enqueue unique");
    eventually(WAIT, "the four jobs ran", || async {
        seen.ran.load(Ordering::SeqCst) == 4
    })
    .await;
    worker.stop().await;

    // The admin side: the recorder reads the failed and events queues, a retry publishes.
    let db = TestDb::new("sqlite").await;
    let store = Store::open(&db.url).await.expect("store");
    let config = RecorderConfig {
        deployment: palermo::Deployment::new(vhost.url("admin")),
        ..RecorderConfig::default()
    };
    let recorder = Recorder::connect(store, config).await.expect("recorder");
    let drained = recorder.drain().await.expect("drain");
    assert_eq!(drained.new_failures, 1);
    let workers = recorder.store().workers().await.expect("workers");
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert_eq!(workers[0].status, "stopped");
    let ids = recorder
        .store()
        .failure_ids(&palermo_store::Filter::default(), 10)
        .await
        .expect("ids");
    let deployment = palermo::Deployment::new(vhost.url("admin"));
    let mut requeuer = Requeuer::new(
        recorder.store(),
        recorder.connection(),
        "admin",
        &deployment,
    )
    .await
    .expect("requeuer");
    requeuer.retry(&ids).await.expect("retry");
    drop(requeuer);
    assert_eq!(ready(recorder.connection(), QUEUE).await, 1);
    recorder.store().close().await;
    producer.close().await.expect("close");
}

/// docs/scaling.md shows the commands with these same regexes.
#[test]
fn the_documented_permissions_are_these() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/scaling.md"))
        .expect("docs/scaling.md");
    let mut found = Vec::new();
    for line in docs.lines() {
        let Some(rest) = line.trim().strip_prefix("rabbitmqctl set_permissions -p ") else {
            continue;
        };
        let quoted: Vec<&str> = rest.split('\'').skip(1).step_by(2).collect();
        let user = rest.split_whitespace().nth(1).unwrap_or_default();
        found.push((user.to_string(), quoted));
    }
    let of = |suffix: &str| -> Vec<&str> {
        found
            .iter()
            .find(|(user, _)| user.ends_with(suffix))
            .map(|(_, regexes)| regexes.clone())
            .unwrap_or_else(|| panic!("no set_permissions for a *{suffix} user in {found:?}"))
    };
    assert_eq!(of("-producer"), PRODUCER);
    assert_eq!(of("-worker"), WORKER);
    assert_eq!(of("-admin"), ADMIN);
}
