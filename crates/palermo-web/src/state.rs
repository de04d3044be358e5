//! What every handler shares: the configuration, the store, the broker side, and the hourly
//! chart, which is cached for [`HOURS_CACHE_MS`]: it sums a week of minute statistics, and
//! several browsers refreshing the overview every few seconds would otherwise recompute
//! the same week each time.

use std::sync::{Arc, Mutex};

use palermo_store::{queues::BrokerAdmin, series::Series, Store};

use crate::{error::WebError, WebConfig};

/// How many days the hourly chart covers.
pub(crate) const CHART_DAYS: u32 = 7;

/// How long the hourly series is reused, ms.
pub(crate) const HOURS_CACHE_MS: i64 = 30_000;

/// The handlers' state (cheap to clone).
#[derive(Clone, Debug)]
pub(crate) struct App(Arc<Inner>);

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: WebConfig,
    pub(crate) broker: BrokerAdmin,
    /// The hourly series and when it was read.
    hours: Mutex<Option<(i64, Series)>>,
}

impl App {
    pub(crate) fn new(config: WebConfig) -> App {
        let broker = BrokerAdmin::new(config.deployment.clone());
        App(Arc::new(Inner {
            config,
            broker,
            hours: Mutex::new(None),
        }))
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

    /// Processed and failed per hour over the chart's days, at most [`HOURS_CACHE_MS`] old
    /// (the current hour's bar may lag by that much).
    pub(crate) async fn hours_series(&self, now: i64) -> Result<Series, WebError> {
        let cached = match self.0.hours.lock() {
            Ok(held) => held.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if let Some((at, series)) = cached.filter(|(at, _)| now - at < HOURS_CACHE_MS && now >= *at)
        {
            tracing::trace!(age_ms = now - at, "hourly series from the cache");
            return Ok(series);
        }
        let series = self.store().hours_series(now, CHART_DAYS).await?;
        match self.0.hours.lock() {
            Ok(mut held) => *held = Some((now, series.clone())),
            Err(poisoned) => *poisoned.into_inner() = Some((now, series.clone())),
        }
        Ok(series)
    }
}
