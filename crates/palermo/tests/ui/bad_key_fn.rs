#[palermo::job(concurrency = 1, key_fn = "region_of")]
async fn sync_account(account_id: u64) -> anyhow::Result<()> {
    let _ = account_id;
    Ok(())
}

fn main() {}
