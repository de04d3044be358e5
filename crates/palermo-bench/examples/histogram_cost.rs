//! What a worker's run-time and wait histograms cost per job (docs/performance.md): the time
//! of one `Histogram::record` (a binary search over 20 bounds and two relaxed atomic adds),
//! alone and with 4 threads recording into the same histogram at once (every slot of a
//! worker running the same job: the worst case for the shared cache line), beside two plain
//! relaxed adds (what the processed/failed counters already cost). No broker needed:
//!
//! ```text
//! cargo run --release -p palermo-bench --example histogram_cost
//! ```

use std::{
    hint::black_box,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use palermo::admin::timing::Histogram;

const RECORDS: u64 = 10_000_000;

/// Observations spread over the buckets as job times are: mostly short, some long.
fn observation(i: u64) -> Duration {
    Duration::from_micros((i * 7919) % 400_000)
}

fn per_record(threads: u64, work: impl Fn(u64) + Send + Sync + 'static) -> f64 {
    let work = Arc::new(work);
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let work = Arc::clone(&work);
            std::thread::spawn(move || {
                for i in 0..RECORDS {
                    work(i + t);
                }
            })
        })
        .collect();
    for handle in handles {
        let _ = handle.join();
    }
    started.elapsed().as_nanos() as f64 / RECORDS as f64
}

fn main() {
    for threads in [1, 4] {
        let histogram = Arc::new(Histogram::default());
        let h = Arc::clone(&histogram);
        let recorded = per_record(threads, move |i| h.record(black_box(observation(i))));
        let counters = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let c = Arc::clone(&counters);
        let added = per_record(threads, move |i| {
            c.0.fetch_add(1, Ordering::Relaxed);
            c.1.fetch_add(black_box(i) & 1, Ordering::Relaxed);
        });
        assert_eq!(histogram.count(), RECORDS * threads);
        println!(
            "{threads} thread(s): Histogram::record {recorded:.1} ns per record per thread; two counter adds {added:.1} ns"
        );
    }
}
