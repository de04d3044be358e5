//! How long the dashboard takes to render its heaviest pages with a big failures table: the
//! overview and the Failed list (first page, an older page through its cursor, a queue
//! filter, a text search), with 100,000 stored failures, on SQLite and on PostgreSQL.
//!
//! ```text
//! cargo run --release -p palermo-web --example render_bench [-- FAILURES [REQUESTS]]
//! ```
//!
//! Each backend gets a fresh store (a temporary SQLite file; a PostgreSQL database created on
//! `PALERMO_BENCH_POSTGRES_URL`, defaulting to postgres://postgres@127.0.0.1:5432/postgres,
//! and dropped afterwards) filled with `FAILURES` fake failures (defaults to 100,000: 20
//! queues, 50 jobs, one a second back from now). Every page is requested through the router
//! in process (`tower::ServiceExt::oneshot`, no socket), a few times to warm up and then
//! `REQUESTS` times (defaults to 30) one after another; the table shows the median and the
//! slowest. PostgreSQL is timed twice: right after the bulk insert, and after the
//! `VACUUM ANALYZE` that autovacuum would run soon after. Queue depths come from the broker at `PALERMO_AMQP_URL` (defaults to the local
//! one), as in production.

use std::time::{Duration, Instant};

use axum::{body::Body, Router};
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use palermo_store::{sample, Store};
use sqlx::{any::AnyPoolOptions, Executor as _};
use tower::ServiceExt as _;

type Error = Box<dyn std::error::Error + Send + Sync>;

const WARM_UP: usize = 3;

/// One row of the table.
struct Timing {
    backend: &'static str,
    page: String,
    median: Duration,
    slowest: Duration,
    bytes: usize,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let count: usize = args
        .next()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(100_000);
    let requests: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(30);
    let amqp_url =
        std::env::var("PALERMO_AMQP_URL").unwrap_or_else(|_| palermo::DEFAULT_AMQP_URL.into());
    let mut timings = Vec::new();

    let file = std::env::temp_dir().join(format!("palermo-render-{}.db", uuid::Uuid::new_v4()));
    let sqlite = format!("sqlite:{}", file.display());
    let result = bench("sqlite", &sqlite, &amqp_url, count, requests).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    timings.extend(result?);

    let admin = std::env::var("PALERMO_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("palermo_render_{}", uuid::Uuid::new_v4().simple());
    let (base, _) = admin
        .rsplit_once('/')
        .ok_or("PALERMO_BENCH_POSTGRES_URL needs a database name")?;
    let postgres = format!("{base}/{name}");
    database(&admin, &format!("CREATE DATABASE {name}")).await?;
    let result = bench("postgres", &postgres, &amqp_url, count, requests).await;
    database(
        &admin,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await?;
    timings.extend(result?);

    print_table(count, requests, &timings);
    Ok(())
}

/// Fills a store at `url` and times every page on it.
async fn bench(
    backend: &'static str,
    url: &str,
    amqp_url: &str,
    count: usize,
    requests: usize,
) -> Result<Vec<Timing>, Error> {
    let store = Store::open(url).await?;
    let filled = fill(&store, count).await?;
    eprintln!("{backend}: {count} failures stored in {filled:?}");
    let app = palermo_web::router(palermo_web::WebConfig::new(
        store.clone(),
        palermo::Deployment::new(amqp_url),
    ));
    let first = get(&app, "/failed").await?;
    let older = older_link(&first).ok_or("the Failed page has no link to older failures")?;
    let pages = [
        ("/".to_string(), "overview"),
        ("/failed".to_string(), "failed, first page"),
        (older, "failed, an older page"),
        ("/failed?queue=queue-7".to_string(), "failed, one queue"),
        ("/failed?q=order%204242".to_string(), "failed, text search"),
    ];
    let mut timings = time_pages(&app, backend, &pages, requests).await?;
    if store.backend() == palermo_store::Backend::Postgres {
        // What autovacuum does soon after a bulk insert: visibility map and statistics, which
        // COUNT(*) and the planner rely on. Both states are shown: right after a burst of
        // failures is when an operator looks.
        database(url, "VACUUM ANALYZE").await?;
        timings.extend(time_pages(&app, "postgres, vacuumed", &pages, requests).await?);
    }
    store.close().await;
    Ok(timings)
}

/// Times each of `pages` (path, name).
async fn time_pages(
    app: &Router,
    backend: &'static str,
    pages: &[(String, &str)],
    requests: usize,
) -> Result<Vec<Timing>, Error> {
    let mut timings = Vec::new();
    for (path, page) in pages {
        let (median, slowest, bytes) = time_page(app, path, requests).await?;
        timings.push(Timing {
            backend,
            page: page.to_string(),
            median,
            slowest,
            bytes,
        });
    }
    Ok(timings)
}

/// Stores `count` fake failures in batches of 1,000; how long it took.
async fn fill(store: &Store, count: usize) -> Result<Duration, Error> {
    let now = palermo_store::time::now_ms();
    let started = Instant::now();
    let all: Vec<usize> = (0..count).collect();
    for chunk in all.chunks(1000) {
        let batch: Vec<_> = chunk
            .iter()
            .map(|&i| sample::failure(i, count, now))
            .collect();
        store.insert_failures(&batch).await?;
    }
    Ok(started.elapsed())
}

/// Requests `path` [`WARM_UP`] + `requests` times; the median, the slowest and the size.
async fn time_page(
    app: &Router,
    path: &str,
    requests: usize,
) -> Result<(Duration, Duration, usize), Error> {
    for _ in 0..WARM_UP {
        get(app, path).await?;
    }
    let mut times = Vec::with_capacity(requests);
    let mut bytes = 0;
    for _ in 0..requests.max(1) {
        let started = Instant::now();
        bytes = get(app, path).await?.len();
        times.push(started.elapsed());
    }
    times.sort();
    Ok((times[times.len() / 2], times[times.len() - 1], bytes))
}

/// The body of `GET path`, which must answer 200.
async fn get(app: &Router, path: &str) -> Result<String, Error> {
    let request = Request::get(path).body(Body::empty())?;
    let response = app.clone().oneshot(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    if status != StatusCode::OK {
        return Err(format!("GET {path}: {status}: {body}").into());
    }
    Ok(body)
}

/// The href of the Failed page's "Older" link, made absolute.
fn older_link(page: &str) -> Option<String> {
    let at = page.find("id=\"page-older\"")?;
    let tag_start = page[..at].rfind('<')?;
    let tag = &page[tag_start..];
    let href = tag.split("href=\"").nth(1)?.split('"').next()?;
    let href = href.replace("&amp;", "&");
    Some(format!(
        "/{}",
        href.trim_start_matches("./").trim_start_matches('/')
    ))
}

/// Runs one SQL statement on the database at `url`.
async fn database(url: &str, statement: &str) -> Result<(), Error> {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    pool.execute(statement).await?;
    pool.close().await;
    Ok(())
}

fn print_table(count: usize, requests: usize, timings: &[Timing]) {
    println!("\nrender time, {count} stored failures, median and slowest of {requests} requests");
    println!(
        "| {:<18} | {:<22} | {:>10} | {:>10} | {:>8} |",
        "store", "page", "median ms", "slowest ms", "KiB"
    );
    println!(
        "|{:-<20}|{:-<24}|{:->12}|{:->12}|{:->10}|",
        "", "", "", "", ""
    );
    for t in timings {
        println!(
            "| {:<18} | {:<22} | {:>10.2} | {:>10.2} | {:>8.1} |",
            t.backend,
            t.page,
            t.median.as_secs_f64() * 1000.0,
            t.slowest.as_secs_f64() * 1000.0,
            t.bytes as f64 / 1024.0
        );
    }
}
