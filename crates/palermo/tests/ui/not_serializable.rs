struct Connection;

#[palermo::job]
async fn use_connection(conn: Connection) -> anyhow::Result<()> {
    let _ = conn;
    Ok(())
}

fn main() {}
