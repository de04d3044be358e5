//! What every handler shares: the configuration, the store and the broker side.

use std::sync::Arc;

use palermo_store::{queues::BrokerAdmin, Store};

use crate::WebConfig;

/// The handlers' state (cheap to clone).
#[derive(Clone, Debug)]
pub(crate) struct App(Arc<Inner>);

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: WebConfig,
    pub(crate) broker: BrokerAdmin,
}

impl App {
    pub(crate) fn new(config: WebConfig) -> App {
        let broker = BrokerAdmin::new(
            config.amqp_url.clone(),
            config.queue_type,
            config.failed_queue.clone(),
        );
        App(Arc::new(Inner { config, broker }))
    }

    pub(crate) fn store(&self) -> &Store {
        &self.0.config.store
    }

    pub(crate) fn broker(&self) -> &BrokerAdmin {
        &self.0.broker
    }

    pub(crate) fn config(&self) -> &WebConfig {
        &self.0.config
    }
}
