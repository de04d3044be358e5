#[palermo::job(queue = "mail", retries = 3)]
async fn send_email(to: String) -> anyhow::Result<()> {
    let _ = to;
    Ok(())
}

fn main() {}
