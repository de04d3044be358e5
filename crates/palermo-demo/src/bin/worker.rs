//! The demo's worker: `worker --queues mail,video,default --concurrency 4`. Every job linked
//! into this binary (the demo crate's) is found automatically.

use palermo_demo::{Mailer, Webhooks};

fn main() -> std::process::ExitCode {
    palermo::cli::main(|worker| worker.state(Mailer::default()).state(Webhooks::default()))
}
