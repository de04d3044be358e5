//! Catching a job's panic with its message and backtrace, so it is reported like an error
//! and the worker keeps running.
//!
//! The panic hook runs on the panicking thread while the job's future is being polled, so a
//! task-local set around the job is in scope there: the hook leaves the backtrace in it.

use std::{
    any::Any, backtrace::Backtrace, cell::RefCell, future::Future, panic::AssertUnwindSafe,
    sync::Once,
};

use futures_lite::FutureExt;

tokio::task_local! {
    static BACKTRACE: RefCell<Option<String>>;
}

/// A caught panic.
#[derive(Debug)]
pub struct Panicked {
    /// The panic message.
    pub message: String,
    /// Where it happened.
    pub backtrace: Option<String>,
}

/// Installs the hook that records backtraces of job panics (once per process). Panics
/// outside jobs still go to the previous hook.
pub fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_job = BACKTRACE
                .try_with(|slot| {
                    *slot.borrow_mut() = Some(format!("{info}\n{}", Backtrace::force_capture()));
                })
                .is_ok();
            if !in_job {
                previous(info);
            }
        }));
    });
}

/// Runs `future`, turning a panic into [`Panicked`].
pub async fn catch<F: Future>(future: F) -> Result<F::Output, Panicked> {
    BACKTRACE
        .scope(RefCell::new(None), async {
            match AssertUnwindSafe(future).catch_unwind().await {
                Ok(output) => Ok(output),
                Err(payload) => Err(Panicked {
                    message: message(payload.as_ref()),
                    backtrace: BACKTRACE.with(|slot| slot.borrow_mut().take()),
                }),
            }
        })
        .await
}

fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_panic_becomes_a_message_and_a_backtrace() {
        super::install_hook();
        let caught = super::catch(async { panic!("boom {}", 42) })
            .await
            .expect_err("panicked");
        assert_eq!(caught.message, "boom 42");
        assert!(caught.backtrace.expect("backtrace").contains("boom 42"));
        assert_eq!(super::catch(async { 7 }).await.expect("no panic"), 7);
    }
}
