//! `palermo migrate`: applies the store's pending migrations. Every other command does it
//! too when it opens the store; this one does only that, for deploy scripts.

use palermo_store::Store;
use serde_json::json;

use crate::admin::Settings;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(settings: &Settings, args: Args) -> anyhow::Result<()> {
    let store = Store::connect(&settings.database_url).await?;
    let report = store.migrate().await?;
    store.close().await;
    if args.json {
        println!(
            "{}",
            json!({ "database": store.url(), "applied": report.applied, "current": report.current })
        );
    } else if report.applied.is_empty() {
        println!(
            "{} is up to date (migrations {:?})",
            store.url(),
            report.current
        );
    } else {
        println!("{}: applied migrations {:?}", store.url(), report.applied);
    }
    Ok(())
}
