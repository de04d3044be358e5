//! `palermo web`: the dashboard served on its own, with the recorder running beside it in
//! the same process, so the store stays current without anyone running a CLI command.
//!
//! It binds 127.0.0.1 by default: the dashboard can retry, remove and purge jobs, so a bind
//! anyone else can reach is refused without `--auth` (or an explicit `--insecure-no-auth`
//! for a proxy that does the login).
//!
//! Stopping, as the worker does it: the first SIGINT/SIGTERM stops accepting connections,
//! lets requests in progress finish (at most [`GRACE`]) and stops the recorder, which acks
//! only what it has committed; a second signal exits at once.

use std::{future::IntoFuture, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use palermo::shutdown::{self, Shutdown, Trigger};
use palermo_web::{Credentials, WebConfig};
use tokio::{
    signal::unix::{signal, Signal, SignalKind},
    task::JoinHandle,
};
use tracing::{info, warn};

use crate::admin::Settings;

/// How long requests in progress and the recorder get to finish after the first signal.
const GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The address to serve on (port 0 picks a free one). Any address but a loopback one
    /// needs --auth or --insecure-no-auth. Defaults to 127.0.0.1:9090.
    #[arg(long, default_value = "127.0.0.1:9090")]
    bind: SocketAddr,
    /// A label for the cluster (e.g. staging), in every page's title and header. Defaults to
    /// none.
    #[arg(long)]
    env_name: Option<String>,
    /// HTTP Basic login as user:password for pages, API, actions and /metrics (/health stays
    /// open). Defaults to none: no login.
    #[arg(
        long,
        env = "PALERMO_WEB_AUTH",
        hide_env_values = true,
        value_name = "USER:PASSWORD"
    )]
    auth: Option<String>,
    /// Hide and refuse every action (retry, remove, purge). Defaults to off.
    #[arg(long)]
    read_only: bool,
    /// An origin (scheme and host, e.g. https://ops.example.com) whose POSTs are accepted
    /// besides the dashboard's own, for a reverse proxy; repeat for several. Defaults to none.
    #[arg(long = "trusted-origin", value_name = "URL")]
    trusted_origins: Vec<String>,
    /// Serve /metrics without the login, for a Prometheus without credentials. Defaults to
    /// off.
    #[arg(long)]
    metrics_public: bool,
    /// Serve on a non-loopback address without --auth (a proxy in front must do the login).
    /// Defaults to off: such a bind is refused.
    #[arg(long)]
    insecure_no_auth: bool,
    /// The recorder's failure retention by age: failures (open or resolved) that failed longer
    /// ago than this (90d, 12w) are deleted for good, and each prune is shown on the Failed
    /// page. Defaults to none: failures stay until retried or removed.
    #[arg(long, value_name = "DURATION", value_parser = palermo_store::time::parse_duration)]
    failure_max_age: Option<Duration>,
    /// The recorder's failure retention by count: only the newest N failures are kept, and
    /// each prune is shown on the Failed page. Defaults to none: no cap.
    #[arg(long, value_name = "N")]
    failure_max_count: Option<u64>,
}

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let auth = credentials(args.auth.as_deref())?;
    WebConfig::check_bind(args.bind, auth.is_some(), args.insecure_no_auth)?;
    let store = settings.store().await?;
    let config = WebConfig::new(store, settings.deployment())
        .env_name(args.env_name)
        .auth(auth)
        .read_only(args.read_only)
        .trusted_origins(args.trusted_origins)
        .metrics_public(args.metrics_public);
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let recorder = settings
        .connect_recorder_with(|config| {
            config.failure_max_age = args.failure_max_age;
            config.failure_max_count = args.failure_max_count;
        })
        .await?;

    // Until here a signal ends the process at once (nothing to finish); from here on it stops
    // it gracefully, also when it arrives the moment the URL is out.
    let signals = StopSignals::listen()?;
    let (trigger, stop) = shutdown::channel();
    let recorder = tokio::spawn(recorder.run(stop.clone()));
    let app = palermo_web::router(config).into_make_service_with_connect_info::<SocketAddr>();
    let mut requested = stop.clone();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move { requested.requested().await });
    let server = tokio::spawn(server.into_future());
    println!("palermo web: the dashboard is on http://{local}/ (Ctrl-C to stop)");
    info!(address = %local, "dashboard serving; recorder running");
    let trigger = Arc::new(trigger);
    tokio::spawn(signals.handle(trigger.clone()));
    finish(server, recorder, trigger, stop).await
}

/// Reads `--auth` / `PALERMO_WEB_AUTH` without ever echoing it (it holds a password).
fn credentials(text: Option<&str>) -> anyhow::Result<Option<Credentials>> {
    text.map(|text| {
        text.parse::<Credentials>()
            .map_err(|e| anyhow::anyhow!("--auth (or PALERMO_WEB_AUTH): {e}"))
    })
    .transpose()
}

/// Waits for the server and the recorder. Either ending on its own is an error and stops
/// the other; after a stop request both get [`GRACE`] to finish.
async fn finish(
    server: JoinHandle<std::io::Result<()>>,
    recorder: JoinHandle<palermo_store::error::Result<()>>,
    trigger: Arc<Trigger>,
    stop: Shutdown,
) -> anyhow::Result<()> {
    let both = async {
        tokio::join!(
            ended(server, "the web server", &trigger, &stop),
            ended(recorder, "the recorder", &trigger, &stop)
        )
    };
    let mut requested = stop.clone();
    let deadline = async {
        requested.requested().await;
        info!("stopping: finishing requests in progress and the recorder");
        tokio::time::sleep(GRACE).await;
    };
    tokio::select! {
        (server, recorder) = both => {
            server?;
            recorder?;
            info!("dashboard stopped");
            Ok(())
        }
        () = deadline => Err(anyhow::anyhow!(
            "requests were still running {GRACE:?} after the stop; exiting anyway"
        )),
    }
}

/// Awaits one task; if it ends although no stop was requested, stops the rest and says why.
async fn ended<E: std::fmt::Display>(
    task: JoinHandle<Result<(), E>>,
    what: &str,
    trigger: &Trigger,
    stop: &Shutdown,
) -> anyhow::Result<()> {
    let result = task.await;
    let expected = stop.is_requested();
    trigger.stop();
    match result {
        Ok(Ok(())) if expected => Ok(()),
        Ok(Ok(())) => Err(anyhow::anyhow!("{what} stopped unexpectedly")),
        Ok(Err(e)) => Err(anyhow::anyhow!("{what} failed: {e}")),
        Err(e) => Err(anyhow::anyhow!("{what} crashed: {e}")),
    }
}

/// SIGTERM and SIGINT, listened to from before the URL is printed: a signal that arrives
/// right after it must stop the dashboard gracefully, not kill it.
struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    fn listen() -> anyhow::Result<StopSignals> {
        let listen = |kind| signal(kind).context("listening for SIGINT and SIGTERM");
        Ok(StopSignals {
            term: listen(SignalKind::terminate())?,
            int: listen(SignalKind::interrupt())?,
        })
    }

    /// The first signal asks everything to stop; a second exits at once.
    async fn handle(mut self, trigger: Arc<Trigger>) {
        for count in 1.. {
            tokio::select! {
                _ = self.term.recv() => {}
                _ = self.int.recv() => {}
            }
            if count > 1 {
                warn!("second stop signal: exiting now");
                std::process::exit(130);
            }
            eprintln!("palermo web: stopping (send the signal again to exit now)");
            trigger.stop();
        }
    }
}
