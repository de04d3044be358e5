//! The command line reads times and durations in the project's one grammar: `--in 1w` is a
//! duration like `--since 1w`, a leap day is a date, and a date that does not exist is
//! refused with a message instead of sliding into the next month.

use crate::admin_support::{stderr, Admin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_and_durations_are_read_by_one_grammar_and_impossible_dates_refused() {
    let admin = Admin::new("sqlite", "times").await;

    // Each is refused while the arguments are read, before anything is published.
    let refused: [(&[&str], &str); 4] = [
        (
            &["enqueue", "job", "--at", "2024-02-31T08:00:00Z"],
            "not a valid time",
        ),
        (&["enqueue", "job", "--in", "1x"], "1h30m"),
        (
            &["failed", "list", "--since", "2023-02-29"],
            "2023-02-29 is not a date",
        ),
        (
            &["failed", "list", "--since", "2024-02-31"],
            "2024-02-31 is not a date",
        ),
    ];
    for (args, expected) in refused {
        let out = admin.palermo(args);
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = stderr(&out);
        assert!(err.contains(expected), "{args:?}: {err}");
    }

    // `--in 1w` reads: the command gets as far as the queue name, which is what it refuses.
    let out = admin.palermo(&["enqueue", "job", "--queue", "amq.reserved", "--in", "1w"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("amq.") && !err.contains("--in"), "{err}");

    for since in ["1w", "1h30m", "2024-02-29", "2024-02-29T12:00:00+01:00"] {
        let list = admin.json(&["failed", "list", "--since", since]);
        assert_eq!(list["total"], 0, "--since {since}: {list}");
    }
}
