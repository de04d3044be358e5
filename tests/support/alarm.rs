//! RabbitMQ's disk alarm on demand, for the disruptive tests only: the free-space limit is
//! raised above the free space (the broker then blocks every publisher), and the guard puts
//! back the limit it found, also while a panic unwinds, and waits for the alarm to clear.
//! Raising an alarm disturbs every other test on the broker: run these under
//! `flock -x /tmp/palermo-broker.lock` (scripts/test.sh runs the disruptive tests alone).

use std::time::{Duration, Instant};

use super::rabbitmqctl;

/// A limit no disk here has free: the alarm goes off at once.
const IMPOSSIBLE_LIMIT: &str = "100000GB";
/// How long raising or clearing the alarm may take to show.
const SETTLE: Duration = Duration::from_secs(20);

/// The raised disk alarm; dropping it restores the limit found before and waits until the
/// alarm is gone.
#[must_use = "the alarm clears when the guard is dropped"]
pub struct DiskAlarm {
    previous: String,
    raised: bool,
}

fn eval(expression: &str) -> String {
    let out = rabbitmqctl(&["eval", expression]).expect("run rabbitmqctl eval");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether the broker has a disk alarm on now.
pub fn disk_alarm_on() -> bool {
    eval("rabbit_alarm:get_alarms().").contains("disk")
}

fn wait_alarm(on: bool) {
    let deadline = Instant::now() + SETTLE;
    while disk_alarm_on() != on {
        assert!(
            Instant::now() < deadline,
            "the disk alarm did not turn {on} in {SETTLE:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn set_limit(limit: &str) {
    let out = rabbitmqctl(&["set_disk_free_limit", limit]).expect("run rabbitmqctl");
    assert!(
        out.status.success(),
        "set_disk_free_limit {limit}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl DiskAlarm {
    /// Raises the disk alarm and waits until the broker reports it.
    pub fn raise() -> DiskAlarm {
        let previous = eval("rabbit_disk_monitor:get_disk_free_limit().");
        let previous = if previous.parse::<u64>().is_ok() {
            previous
        } else {
            "50MB".to_string()
        };
        let alarm = DiskAlarm {
            previous,
            raised: true,
        };
        set_limit(IMPOSSIBLE_LIMIT);
        wait_alarm(true);
        alarm
    }

    /// Clears the alarm now (the limit found before) and waits until the broker reports it
    /// gone; the moment it was seen gone.
    pub fn clear(&mut self) -> Instant {
        if self.raised {
            set_limit(&self.previous);
            self.raised = false;
            wait_alarm(false);
        }
        Instant::now()
    }
}

impl Drop for DiskAlarm {
    fn drop(&mut self) {
        if self.raised {
            // Never panic in a drop that may run during an unwind: report and go on.
            let _ = rabbitmqctl(&["set_disk_free_limit", &self.previous]);
            let deadline = Instant::now() + SETTLE;
            while disk_alarm_on() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if disk_alarm_on() {
                eprintln!("[alarm guard] the disk alarm is still on; run rabbitmqctl set_disk_free_limit 50MB");
            }
        }
    }
}
