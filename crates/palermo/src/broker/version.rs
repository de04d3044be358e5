//! The broker's version, for the one setting that depends on it: priorities on quorum
//! queues, which RabbitMQ orders from 4.0 on and 3.x refuses (`crate::broker::priority`).
//!
//! RabbitMQ names its version in the `server-properties` of `connection.start`, the first
//! frame of every AMQP connection. lapin reads that frame and drops it, so this opens a short
//! connection of its own to the address Palermo would use: it sends the protocol header,
//! reads `connection.start` and closes the socket. The broker logs that connection as closed
//! before its handshake ("client unexpectedly closed TCP connection"), which is why it is
//! asked only where a decision may need it: by a worker with priority queues on quorum
//! queues, and by a client of quorum queues when it connects (its priority queues are
//! given after that, by a method that cannot wait on the network).
//! An `amqps://` address is not asked (that would need a TLS handshake of its own): its
//! version is unknown, and the setting that needs it is refused with a message saying so.

use std::{
    io::{Read, Write},
    net::{TcpStream, ToSocketAddrs},
    time::Duration,
};

use lapin::{
    protocol::{connection::AMQPMethod, AMQPClass},
    types::AMQPValue,
    uri::{AMQPScheme, AMQPUri},
};

use crate::error::Error;

/// How long asking one address may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// A RabbitMQ version, as the broker names it (`4.0.5`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    /// Reads `4.0.5` (a suffix such as `+rc.1` after the numbers is ignored).
    pub fn parse(text: &str) -> Option<Version> {
        let mut numbers = text.split(['.', '+', '-', '~']).map(str::parse::<u32>);
        let major = numbers.next()?.ok()?;
        let minor = numbers.next()?.ok()?;
        let patch = numbers.next().and_then(Result::ok).unwrap_or(0);
        Some(Version {
            major,
            minor,
            patch,
        })
    }

    /// Whether quorum queues deliver by message priority (RabbitMQ 4.0 and later: two
    /// levels, priority 5 and above before the rest).
    pub fn orders_quorum_queues(self) -> bool {
        self.major >= 4
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The version of the broker at `uri` (see the module doc); an error says why it is unknown.
pub(crate) async fn ask(uri: &AMQPUri) -> Result<Version, Error> {
    if uri.scheme == AMQPScheme::AMQPS {
        return Err(Error::Config(
            "the broker's version is not asked over amqps://".into(),
        ));
    }
    let address = (uri.authority.host.clone(), uri.authority.port);
    let asked = tokio::task::spawn_blocking(move || read_start(address))
        .await
        .map_err(|e| Error::Config(format!("asking the broker's version: {e}")))?;
    asked.map_err(|e| Error::Config(format!("asking the broker's version: {e}")))
}

/// Sends the AMQP 0-9-1 protocol header to `address` and reads the version out of the
/// `connection.start` frame that answers it.
fn read_start(address: (String, u16)) -> std::io::Result<Version> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let target = address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| invalid("the host has no address"))?;
    let mut socket = TcpStream::connect_timeout(&target, TIMEOUT)?;
    socket.set_read_timeout(Some(TIMEOUT))?;
    socket.write_all(b"AMQP\x00\x00\x09\x01")?;
    // A frame: type (1 byte), channel (2), payload size (4), payload, 0xCE.
    let mut header = [0u8; 7];
    socket.read_exact(&mut header)?;
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
    if header[0] != 1 || size > 64 * 1024 {
        return Err(invalid("the broker did not answer with connection.start"));
    }
    let mut payload = vec![0u8; size];
    socket.read_exact(&mut payload)?;
    let Ok((_, AMQPClass::Connection(AMQPMethod::Start(start)))) =
        lapin::protocol::parse_class(payload.as_slice())
    else {
        return Err(invalid("the broker did not answer with connection.start"));
    };
    let version = match start.server_properties.inner().get("version") {
        Some(AMQPValue::LongString(text)) => Version::parse(&text.to_string()),
        Some(AMQPValue::ShortString(text)) => Version::parse(text.as_str()),
        _ => None,
    };
    version.ok_or_else(|| invalid("the broker names no version it understands"))
}

#[cfg(test)]
mod tests {
    use super::Version;

    #[test]
    fn versions_parse_and_order() {
        let v = |t| Version::parse(t).expect(t);
        assert_eq!(v("4.0.5").to_string(), "4.0.5");
        assert!(v("3.10.8") < v("3.13.0") && v("3.13.0") < v("4.0.5"));
        assert_eq!(v("4.1.0+rc.1"), v("4.1.0"));
        assert_eq!(v("4.2"), v("4.2.0"));
        assert!(Version::parse("x.y").is_none());
        assert!(!v("3.13.7").orders_quorum_queues() && v("4.0.5").orders_quorum_queues());
    }
}
