//! Two jobs with one wire name in one binary: the worker refuses to start and names both.

mod billing {
    #[palermo::job(name = "charge")]
    pub async fn charge_card(cents: u64) -> anyhow::Result<()> {
        let _ = cents;
        Ok(())
    }
}

mod legacy {
    #[palermo::job]
    pub async fn charge(cents: u64) -> anyhow::Result<()> {
        let _ = cents;
        Ok(())
    }
}

#[test]
fn two_jobs_with_one_name_stop_the_worker_at_start_up() {
    let err = palermo::Worker::builder(palermo::WorkerConfig::new(["default"]))
        .build()
        .err()
        .expect("duplicate names must be refused");
    let message = err.to_string();
    assert!(message.contains("\"charge\""), "{message}");
    assert!(message.contains("tests/duplicate_names.rs:4"), "{message}");
    assert!(message.contains("tests/duplicate_names.rs:12"), "{message}");
}
