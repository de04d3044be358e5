//! Several broker addresses: `PALERMO_AMQP_URL` (`--amqp-url`) may list the nodes of a
//! RabbitMQ cluster, comma-separated, and every connection of Palermo goes to one that answers.
//!
//! Why here and not in a load balancer: a cluster node that dies refuses connections, and
//! the reconnect loops that already exist (worker, client, recorder, scheduler) then only
//! need the next attempt to go elsewhere. So a connect tries the addresses in turn and takes
//! the first that answers, starting at a different one each time: a per-process counter with
//! a random start, so that a fleet of workers spreads over the nodes instead of all piling
//! onto the first, and a reconnect starts past the address that just died.
//!
//! The list is parsed whole before anything connects, so a bad entry is a start-up error that
//! names its position, never a failure hours later when the other nodes are down. One URL
//! (no comma) behaves exactly as it always did. Passwords never appear in messages: every
//! address is shown [`redact`]ed.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        OnceLock,
    },
    time::Duration,
};

use lapin::{uri::AMQPUri, Connection, ConnectionProperties};
use tracing::{info, warn};

use crate::error::Error;

/// How long a connect waits for one address of a list before it tries the next (the last one
/// it tries waits as long as its caller lets it). A node that is down refuses at once; this
/// bounds a host that swallows packets. A healthy node answers in milliseconds.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(3);

/// The broker addresses of a deployment, parsed from a comma-separated list of AMQP URLs.
#[derive(Clone, Debug)]
pub struct Addresses {
    entries: Vec<Address>,
}

/// One parsed address and how it is shown.
#[derive(Clone, Debug)]
struct Address {
    uri: AMQPUri,
    /// The URL as given, without its password.
    shown: String,
}

impl Addresses {
    /// Parses `list`: one AMQP URL, or several separated by commas (each trimmed). An empty
    /// or unparsable entry is [`Error::InvalidUrl`], naming its position in the list and the
    /// entry without its password. A comma inside a password must be written `%2C`.
    pub fn parse(list: &str) -> Result<Addresses, Error> {
        let raw: Vec<&str> = list.split(',').map(str::trim).collect();
        let count = raw.len();
        let entries = raw
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let invalid = |reason: String| Error::InvalidUrl {
                    url: redact(url),
                    reason: reason.replace(url, &redact(url)),
                    position: (count > 1).then_some((i + 1, count)),
                };
                if url.is_empty() {
                    return Err(invalid("the address is empty".into()));
                }
                let uri = url.parse::<AMQPUri>().map_err(invalid)?;
                Ok(Address {
                    uri,
                    shown: redact(url),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Addresses { entries })
    }

    /// How many addresses the list has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Always false: a list has at least one address.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The addresses in the order a connect made now would try them.
    fn rotation(&self) -> impl Iterator<Item = (usize, &Address)> {
        let count = self.entries.len();
        let start = if count > 1 { spread() % count } else { 0 };
        (0..count).map(move |k| {
            let i = (start + k) % count;
            (i, &self.entries[i])
        })
    }

    /// Connects to the first address that answers, trying them in turn from a spread start;
    /// `frame_max` and `heartbeat` are the defaults for URLs that set none. The connection is
    /// named `name` in RabbitMQ. One address: its own error. Several, all failing:
    /// [`Error::NoNodeAnswered`] with each one's error.
    pub(crate) async fn connect(
        &self,
        name: &str,
        frame_max: u32,
        heartbeat: u16,
    ) -> Result<Connection, Error> {
        let count = self.entries.len();
        let mut failures = Vec::new();
        for (i, address) in self.rotation() {
            let last = failures.len() + 1 == count;
            match address.connect(name, frame_max, heartbeat, !last).await {
                Ok(connection) if count == 1 => return Ok(connection),
                Ok(connection) => {
                    info!(node = %address.shown, address = i + 1, of = count, connection = name, "connected to RabbitMQ");
                    return Ok(connection);
                }
                Err(e) if count == 1 => return Err(e),
                Err(e) => {
                    if !last {
                        warn!(node = %address.shown, address = i + 1, of = count, connection = name, error = %e, "a RabbitMQ node did not answer; trying the next address");
                    }
                    failures.push(e);
                }
            }
        }
        Err(Error::NoNodeAnswered { failures })
    }
}

impl Addresses {
    /// The lowest version among the nodes that answer (`super::version`): in a cluster
    /// halfway through a rolling upgrade, what every node can do.
    pub(crate) async fn version(&self) -> Result<super::Version, Error> {
        let mut lowest: Option<super::Version> = None;
        let mut last_error = None;
        for address in &self.entries {
            match super::version::ask(&address.uri).await {
                Ok(version) => lowest = Some(lowest.map_or(version, |l| l.min(version))),
                Err(e) => last_error = Some(e),
            }
        }
        match (lowest, last_error) {
            (Some(version), _) => Ok(version),
            (None, Some(e)) => Err(e),
            (None, None) => Err(Error::Config("no broker address".into())),
        }
    }
}

impl Address {
    /// Connects to this address, within [`NODE_TIMEOUT`] when `bounded`.
    async fn connect(
        &self,
        name: &str,
        frame_max: u32,
        heartbeat: u16,
        bounded: bool,
    ) -> Result<Connection, Error> {
        let mut uri = self.uri.clone();
        uri.query.frame_max.get_or_insert(frame_max);
        uri.query.heartbeat.get_or_insert(heartbeat);
        let props = ConnectionProperties::default().with_connection_name(name.into());
        let connect = Connection::connect_uri(uri, props);
        let connected = if bounded {
            tokio::time::timeout(NODE_TIMEOUT, connect)
                .await
                .map_err(|_| Error::ConnectTimeout {
                    url: self.shown.clone(),
                    timeout: NODE_TIMEOUT,
                })?
        } else {
            connect.await
        };
        connected.map_err(|source| Error::Connect {
            url: self.shown.clone(),
            source,
        })
    }
}

impl std::fmt::Display for Addresses {
    /// The list without passwords, comma-separated.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, address) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&address.shown)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Addresses {
    type Err = Error;

    fn from_str(list: &str) -> Result<Self, Error> {
        Addresses::parse(list)
    }
}

/// Where the next connect of this process starts in a list: a counter from a random start.
fn spread() -> usize {
    static SEED: OnceLock<usize> = OnceLock::new();
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let seed = *SEED.get_or_init(|| uuid::Uuid::new_v4().as_u128() as usize);
    seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The URL, or each URL of a comma-separated list, without its password, for messages.
pub fn redact(url: &str) -> String {
    url.split(',').map(redact_one).collect::<Vec<_>>().join(",")
}

/// Everything between the user name and the `@` becomes `***`: after `scheme://`, or after
/// `scheme:` in a URL that lacks the slashes (still refused, but shown without its password).
fn redact_one(url: &str) -> String {
    let start = url
        .find("://")
        .map(|scheme| scheme + 3)
        .or_else(|| url.find(':').map(|scheme| scheme + 1));
    match (start, url.rfind('@')) {
        (Some(start), Some(at)) if at >= start => {
            let userinfo = &url[start..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..start], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(list: &str) -> String {
        Addresses::parse(list).expect_err(list).to_string()
    }

    #[test]
    fn redact_hides_the_password() {
        assert_eq!(
            redact("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(redact("amqp://host"), "amqp://host");
        assert_eq!(
            redact("amqp://a:pw1@h1,amqp://h2,amqps://b:pw2@h3/v"),
            "amqp://a:***@h1,amqp://h2,amqps://b:***@h3/v"
        );
    }

    #[test]
    fn a_list_parses_with_whitespace_around_its_entries() {
        let list = Addresses::parse(
            " amqp://guest:pw@127.0.0.1:5681/%2f ,amqp://127.0.0.1:5682,\tamqps://h3 ",
        )
        .expect("parses");
        assert_eq!(list.len(), 3);
        assert_eq!(list.entries[1].uri.authority.port, 5682);
        assert_eq!(list.entries[0].uri.authority.userinfo.password, "pw");
        assert_eq!(
            list.to_string(),
            "amqp://guest:***@127.0.0.1:5681/%2f,amqp://127.0.0.1:5682,amqps://h3"
        );
        let one = Addresses::parse(crate::DEFAULT_AMQP_URL).expect("the default");
        assert_eq!(one.len(), 1);
        assert_eq!(one.to_string(), "amqp://guest:***@127.0.0.1:5672/%2f");
    }

    #[test]
    fn an_empty_entry_names_its_position() {
        assert_eq!(
            error("amqp://x,,amqp://y"),
            r#"invalid AMQP URL "" (address 2 of 3 in the list): the address is empty"#
        );
        assert!(error("amqp://x,").contains("address 2 of 2"));
        assert!(error(" , amqp://x").contains("address 1 of 2"));
        assert_eq!(error(""), r#"invalid AMQP URL "": the address is empty"#);
    }

    #[test]
    fn a_bad_entry_is_refused_without_its_password() {
        let message = error("amqp://a,http://user:hunter2@host/");
        assert!(
            message.starts_with(
                r#"invalid AMQP URL "http://user:***@host/" (address 2 of 2 in the list): "#
            ),
            "{message}"
        );
        assert!(message.contains("scheme"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        let message = error("mailto:user:hunter2@host");
        assert!(!message.contains("hunter2"), "{message}");
        // One URL: the message it always had, without a position.
        let message = error("amqp://guest:hunter2@host:notaport");
        assert!(
            message.starts_with(r#"invalid AMQP URL "amqp://guest:***@host:notaport": "#),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn connects_start_at_a_different_address_each_time() {
        let list = Addresses::parse("amqp://a,amqp://b,amqp://c").expect("parses");
        let firsts: Vec<usize> = (0..6)
            .map(|_| list.rotation().next().expect("one").0)
            .collect();
        for pair in firsts.windows(2) {
            assert_eq!(pair[1], (pair[0] + 1) % 3, "{firsts:?}");
        }
        let order: Vec<usize> = list.rotation().map(|(i, _)| i).collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2], "every address once: {order:?}");
    }
}
