#[palermo::job]
fn send_email(to: String) -> anyhow::Result<()> {
    let _ = to;
    Ok(())
}

fn main() {}
