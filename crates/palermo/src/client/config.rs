//! How a [`crate::Client`] connects and waits: its deployment, and its own limits. One typed value
//! with documented defaults and a `validate()` that [`crate::Client::connect_with`] calls, so a
//! client refuses the settings a worker refuses (the same deployment and reconnect checks).

use std::time::Duration;

use crate::{deployment::Deployment, error::Error, retry::Backoff, serializer::Format};

/// How long an enqueue waits, by default, for the broker to take and confirm a job:
/// [`ClientConfig::publish_timeout`].
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// The settings of [`crate::Client::connect_with`].
///
/// ```no_run
/// use std::time::Duration;
/// use palermo::{Client, ClientConfig, Deployment, Priorities};
///
/// # async fn run() -> Result<(), palermo::Error> {
/// let config = ClientConfig {
///     deployment: Deployment {
///         priorities: Priorities::default().with("reports", 10),
///         ..Deployment::new("amqp://guest:guest@rabbit:5672/%2f")
///     },
///     publish_timeout: Duration::from_secs(2),
///     ..ClientConfig::default()
/// };
/// let client = Client::connect_with(&config).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The broker, queue type, priority queues... that every client, worker and admin tool
    /// of the deployment shares ([`Deployment`]). Defaults to [`Deployment::default`].
    pub deployment: Deployment,
    /// How long an enqueue waits for the broker to take and confirm a job, including a wait
    /// for a resource alarm to clear; past it the enqueue returns [`Error::Blocked`] (the
    /// broker blocks publishers) or [`Error::ConfirmTimeout`]. It does not include a
    /// reconnect, which `reconnect_wait` bounds. More than zero; defaults to
    /// [`DEFAULT_PUBLISH_TIMEOUT`] (10 s).
    pub publish_timeout: Duration,
    /// How long an enqueue that finds the connection down keeps trying to reconnect before
    /// it returns [`Error::Unavailable`]; zero makes one quick attempt. A clone can have its
    /// own ([`crate::Client::with_reconnect_wait`]). Defaults to 5 s.
    pub reconnect_wait: Duration,
    /// The delays between reconnect attempts within `reconnect_wait`: `base`, doubling up
    /// to `max` (at most 10 minutes), each plus `jitter`, as [`crate::WorkerConfig::reconnect`].
    /// Defaults to 250 ms doubling up to 5 s, plus 0–25 %.
    pub reconnect: Backoff,
    /// The serializer of jobs that do not choose their own (`#[job(format = ..)]`).
    /// Defaults to JSON.
    pub format: Format,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            deployment: Deployment::default(),
            publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
            reconnect_wait: Duration::from_secs(5),
            reconnect: crate::reconnect::DEFAULT_BACKOFF,
            format: Format::default(),
        }
    }
}

impl ClientConfig {
    /// The default client settings for `deployment`.
    pub fn new(deployment: Deployment) -> Self {
        Self {
            deployment,
            ..Self::default()
        }
    }

    /// Checks the settings; the error says what to change.
    pub fn validate(&self) -> Result<(), Error> {
        self.deployment.validate()?;
        if self.publish_timeout.is_zero() {
            return Err(Error::Config(
                "the publish timeout is zero; every enqueue would time out (10 s is the default)"
                    .into(),
            ));
        }
        crate::reconnect::validate(&self.reconnect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Client;

    #[test]
    fn validate_refuses_what_a_worker_refuses() {
        assert!(ClientConfig::default().validate().is_ok());
        let mut config = ClientConfig::default();
        config.reconnect.max = Duration::from_secs(3600);
        let client = config.validate().expect_err("an hour");
        let mut worker = crate::WorkerConfig::new(["mail"]);
        worker.reconnect = config.reconnect;
        let worker = worker.validate().expect_err("an hour");
        assert_eq!(client.to_string(), worker.to_string());
        let config = ClientConfig {
            publish_timeout: Duration::ZERO,
            ..ClientConfig::default()
        };
        let err = config.validate().expect_err("zero");
        assert!(err.to_string().contains("publish timeout"), "{err}");
        let mut config = ClientConfig::default();
        config.deployment.failed_queue = "bad name".into();
        let err = config.validate().expect_err("deployment");
        assert!(err.to_string().contains("--failed-queue"), "{err}");
    }

    #[tokio::test]
    async fn connect_with_validates_before_connecting() {
        let mut config = ClientConfig::new(Deployment::new("amqp://127.0.0.1:1/%2f"));
        config.reconnect.jitter = 2.0;
        let err = Client::connect_with(&config).await.err().expect("refused");
        assert!(err.to_string().contains("jitter"), "{err}");
    }
}
