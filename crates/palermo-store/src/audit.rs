//! Who did what to failures, read back for people: the latest action on each failure, so
//! that "already retried" can say by whom. The rows are written with each retry and removal
//! (see [`crate::actions`]); the whole history of a job is in [`crate::FailureDetail`].

use std::collections::HashMap;

use crate::{error::Result, failures::Action, Store};

impl Store {
    /// The latest retry or removal of each of these failures (ids without one are absent).
    pub async fn last_actions(&self, ids: &[String]) -> Result<HashMap<String, Action>> {
        let mut found = HashMap::new();
        for id in ids {
            if found.contains_key(id) {
                continue;
            }
            let actions = self.actions("failure_id = $1", id).await?;
            if let Some(action) = actions.into_iter().last() {
                found.insert(id.clone(), action);
            }
        }
        Ok(found)
    }
}
