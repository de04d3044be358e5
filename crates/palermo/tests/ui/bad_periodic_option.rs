#[palermo::job(every = "30s", catch_up = "sometimes")]
async fn tidy() -> anyhow::Result<()> {
    Ok(())
}

#[palermo::job(every = "100ms")]
async fn too_often() -> anyhow::Result<()> {
    Ok(())
}

#[palermo::job(tz = "Europe/Rome")]
async fn zone_without_schedule() -> anyhow::Result<()> {
    Ok(())
}

fn main() {}
