//! Fills a store with fake failures, to measure `palermo failed list` on a big table:
//!
//! ```text
//! cargo run --release -p palermo-store --example fill_failures -- sqlite:/tmp/big.db 100000
//! time palermo failed list --limit 25 --queue queue-7 --database-url sqlite:/tmp/big.db
//! ```
//!
//! The failures spread over 20 queues and 50 job names, one a second back from now, with
//! errors of a few hundred bytes.

use std::time::Instant;

use palermo_store::{failures::NewFailure, Store};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: fill_failures DATABASE_URL [COUNT]")?;
    let count: usize = args
        .next()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(100_000);
    let store = Store::open(&url).await?;
    let now = palermo_store::time::now_ms();
    let started = Instant::now();
    let mut batch = Vec::with_capacity(1000);
    for i in 0..count {
        let failed_at = now - (count - i) as i64 * 1000;
        let body = format!(r#"{{"order":{i},"customer":"customer-{}"}}"#, i % 997);
        batch.push(NewFailure {
            id: uuid::Uuid::new_v4().to_string(),
            job_id: uuid::Uuid::new_v4().to_string(),
            job_name: format!("job_{}", i % 50),
            queue: format!("queue-{}", i % 20),
            source_queue: format!("queue-{}", i % 20),
            serializer: "json".into(),
            args_preview: body.clone(),
            body: body.into_bytes(),
            properties: "{}".into(),
            error_kind: "error".into(),
            error: format!(
                "upstream returned 503 for order {i}: {}",
                "service unavailable, retry later. ".repeat(8)
            ),
            backtrace: Some("   0: app::charge\n   1: palermo::worker::execute\n".repeat(10)),
            error_history: None,
            gave_up: Some("attempts_exhausted".into()),
            attempt: 15,
            max_attempts: Some(15),
            worker: format!("host-{}:{}:queue-{}", i % 4, 1000 + i % 4, i % 20),
            enqueued_at: Some(failed_at - 86_400_000),
            first_failed_at: failed_at - 86_000_000,
            failed_at,
        });
        if batch.len() == 1000 {
            store.insert_failures(&batch).await?;
            batch.clear();
        }
    }
    store.insert_failures(&batch).await?;
    store.close().await;
    println!("{count} failures in {:?}", started.elapsed());
    Ok(())
}
