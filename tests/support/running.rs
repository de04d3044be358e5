//! A worker running inside the test process, stopped gracefully by [`RunningWorker::stop`] or,
//! when a test fails first, aborted on drop so that it does not outlive its test (or declare
//! its queues again after the test's cleanup deleted them).

use palermo::shutdown;

type Outcome = Result<(), palermo::Error>;

/// A worker task of this test.
pub struct RunningWorker {
    trigger: shutdown::Trigger,
    handle: Option<tokio::task::JoinHandle<Outcome>>,
}

impl RunningWorker {
    /// Builds the worker (panics on an invalid configuration) and runs it on a task.
    pub fn start_with(builder: palermo::WorkerBuilder) -> RunningWorker {
        let worker = builder.build().expect("worker config");
        let (trigger, shutdown) = shutdown::channel();
        let handle = tokio::spawn(async move {
            let result = worker.run(shutdown).await;
            if let Err(e) = &result {
                eprintln!("test worker stopped with an error: {e}");
            }
            result
        });
        RunningWorker {
            trigger,
            handle: Some(handle),
        }
    }

    /// Stops it gracefully and waits; panics if it ended with an error.
    pub async fn stop(mut self) {
        self.trigger.stop();
        if let Some(handle) = self.handle.take() {
            handle
                .await
                .expect("worker task")
                .expect("worker ended with an error");
        }
    }
}

impl Drop for RunningWorker {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.trigger.stop();
            handle.abort();
        }
    }
}
