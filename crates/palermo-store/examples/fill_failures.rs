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

use palermo_store::Store;

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
        batch.push(palermo_store::sample::failure(i, count, now));
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
