//! A broker policy of a test's own on one of its queues (a length limit, `reject-publish`),
//! cleared when dropped, also when the test panics: the quorum and healing tests make the
//! broker refuse publishes this way.

use super::rabbitmqctl;

/// A policy named after its queue and applied to that queue only.
pub struct QueuePolicy(String);

impl QueuePolicy {
    /// Sets `definition` (policy JSON) on `queue`.
    pub fn set(queue: &str, definition: &str) -> QueuePolicy {
        let pattern = format!("^{}$", queue.replace('.', "\\."));
        let args = [
            "set_policy",
            "--apply-to",
            "queues",
            queue,
            &pattern,
            definition,
        ];
        let out = rabbitmqctl(&args).expect("run rabbitmqctl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        QueuePolicy(queue.to_string())
    }

    /// Whether the broker applies the policy to the queue yet.
    pub fn applied(&self) -> bool {
        let args = ["list_queues", "-q", "--no-table-headers", "name", "policy"];
        let Ok(out) = rabbitmqctl(&args) else {
            return false;
        };
        String::from_utf8_lossy(&out.stdout).lines().any(|line| {
            let mut fields = line.split_whitespace();
            fields.next() == Some(&self.0) && fields.next() == Some(&self.0)
        })
    }
}

impl Drop for QueuePolicy {
    fn drop(&mut self) {
        let _ = rabbitmqctl(&["clear_policy", &self.0]);
    }
}
