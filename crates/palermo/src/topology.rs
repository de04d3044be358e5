//! The broker objects Palermo uses, and the one place that declares them.
//!
//! Every job goes through the durable direct exchange `palermo`, with the queue name as
//! routing key. Publishers and workers both declare a queue and its binding before using it
//! (declaring again with the same arguments is harmless), so no message is dropped because no
//! worker has started yet.

use lapin::{
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
    Channel, ExchangeKind,
};

use crate::error::Error;

/// The exchange every job is published to.
pub const EXCHANGE: &str = "palermo";
/// Where jobs go when they fail for good; the admin side records them from here.
pub const FAILED_QUEUE: &str = "palermo.failed";
/// Longest queue name accepted, in bytes (AMQP allows 255; the rest is kept for suffixes).
pub const MAX_QUEUE_NAME: usize = 200;

/// Checks a queue name; the error says what to change.
pub fn validate_queue_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a queue name cannot be empty".into());
    }
    if name.len() > MAX_QUEUE_NAME {
        return Err(format!(
            "queue name {name:?} is {} bytes long; the limit is {MAX_QUEUE_NAME}",
            name.len()
        ));
    }
    if name.starts_with("amq.") {
        return Err(format!(
            "queue name {name:?} starts with \"amq.\", which RabbitMQ reserves"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':')))
    {
        return Err(format!(
            "queue name {name:?} contains {bad:?}; use letters, digits and . _ - :"
        ));
    }
    Ok(())
}

/// Declares the `palermo` exchange.
pub async fn declare_exchange(channel: &Channel) -> Result<(), Error> {
    channel
        .exchange_declare(
            EXCHANGE.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(Error::broker("exchange.declare"))
}

/// Declares a durable job queue and binds it to the exchange under its own name.
pub async fn declare_queue(channel: &Channel, queue: &str) -> Result<(), Error> {
    validate_queue_name(queue).map_err(Error::Config)?;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .map_err(Error::broker("queue.declare"))?;
    channel
        .queue_bind(
            queue.into(),
            EXCHANGE.into(),
            queue.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(Error::broker("queue.bind"))
}

#[cfg(test)]
mod tests {
    use super::validate_queue_name;

    #[test]
    fn queue_names() {
        assert!(validate_queue_name("mail").is_ok());
        assert!(validate_queue_name("video.hd-1:x_y").is_ok());
        for bad in ["", "amq.x", "a b", "é", &"q".repeat(201)] {
            assert!(validate_queue_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
