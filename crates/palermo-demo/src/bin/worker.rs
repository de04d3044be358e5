//! The demo's worker: `worker --queues mail,video,default --concurrency 4`. Every job linked
//! into this binary (the demo crate's) is found automatically; [`JobLines`] logs each job
//! that succeeded at info, so the terminal shows one line per job done or failed.

use palermo_demo::{JobLines, Mailer, Webhooks};

fn main() -> std::process::ExitCode {
    palermo::cli::main(|worker| {
        worker
            .state(Mailer::default())
            .state(Webhooks::default())
            .middleware(JobLines)
    })
}
