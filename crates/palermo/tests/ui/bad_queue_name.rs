#[palermo::job(queue = "mail queue")]
async fn send_email(to: String) -> anyhow::Result<()> {
    let _ = to;
    Ok(())
}

fn main() {}
