// A periodic job's arguments are built by `Default`; `SystemTime` has none.
#[palermo::job(cron = "0 0 3 * * *")]
async fn nightly(since: std::time::SystemTime) -> anyhow::Result<()> {
    let _ = since;
    Ok(())
}

fn main() {}
