//! Tracing across the queue, against the real broker: the trace context of the code that
//! enqueues travels in the `traceparent` header, and the worker's `job` span carries its
//! trace id, also for a job enqueued by a job. A subscriber layer captures both sides.

mod support;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use palermo::{trace::TraceContext, Client, Options, State, Worker};
use support::{eventually, Rig, WAIT};
use tracing::{field::Field, span, Instrument, Subscriber};
use tracing_subscriber::{layer::Context, prelude::*, registry::LookupSpan, Layer};

/// What the layer saw.
#[derive(Default)]
struct Captured {
    /// job id → the `trace_id` of its `job` span.
    job_traces: HashMap<String, String>,
    /// `traceparent` values logged by enqueues, with the name of the span they ran in.
    enqueued: Vec<(String, Option<String>)>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Captured>>);

/// The `job.id` of a `job` span, kept in its extensions in case `trace_id` is recorded later.
struct JobId(String);

/// Collects the fields it is shown, as text.
#[derive(Default)]
struct Fields(HashMap<String, String>);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "job" {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let Some(job) = fields.0.remove("job.id") else {
            return;
        };
        // The worker gives the trace id at creation; a later `record` is caught below.
        if let Some(trace) = fields.0.remove("trace_id") {
            let mut captured = self.0.lock().expect("lock");
            captured.job_traces.insert(job.clone(), trace);
        }
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(JobId(job));
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        values.record(&mut fields);
        let (Some(span), Some(trace)) = (ctx.span(id), fields.0.remove("trace_id")) else {
            return;
        };
        let job = span
            .extensions()
            .get::<JobId>()
            .map(|JobId(job)| job.clone());
        if let Some(job) = job {
            let mut captured = self.0.lock().expect("lock");
            captured.job_traces.insert(job, trace);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Some(traceparent) = fields.0.remove("traceparent") {
            let traceparent = traceparent
                .trim_start_matches("Some(")
                .trim_matches(|c| c == '"' || c == ')');
            let span = ctx.event_span(event).map(|s| s.name().to_string());
            let mut captured = self.0.lock().expect("lock");
            captured.enqueued.push((traceparent.to_string(), span));
        }
    }
}

/// The process-wide capture (worker tasks run on other threads: a global subscriber).
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        tracing_subscriber::registry()
            .with(capture.clone())
            .try_init()
            .expect("the only subscriber of this test binary");
        capture
    })
}

/// The trace id the worker's `job` span carried for job `id`, once it ran.
async fn job_trace(id: uuid::Uuid) -> String {
    let id = id.to_string();
    eventually(WAIT, "the job's span recorded its trace id", || async {
        capture()
            .0
            .lock()
            .expect("lock")
            .job_traces
            .contains_key(&id)
    })
    .await;
    capture().0.lock().expect("lock").job_traces[&id].clone()
}

/// Ids of the jobs `relay` enqueued.
type Relayed = Arc<Mutex<Vec<uuid::Uuid>>>;

#[palermo::job]
async fn traced() -> anyhow::Result<()> {
    Ok(())
}

/// Enqueues a `traced` job on `queue` from inside a job; its id goes to the state.
#[palermo::job]
async fn relay(queue: String, client: State<Client>, ids: State<Relayed>) -> anyhow::Result<()> {
    let id = client
        .enqueue_with(Traced {}, Options::new().queue(&queue))
        .await?
        .id();
    ids.lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .push(id);
    Ok(())
}

#[tokio::test]
async fn the_job_span_carries_the_enqueuers_trace_id() {
    capture();
    let rig = Rig::new("trace").await;
    let relayed = Relayed::default();
    rig.start(
        Worker::builder(rig.config())
            .state(rig.client().clone())
            .state(Arc::clone(&relayed)),
    );
    let client = rig.client();

    // A request with a trace of its own (what an HTTP layer would have extracted).
    let request = TraceContext::new_root();
    let id = request
        .scope(client.enqueue_with(Traced {}, Options::new().queue(&rig.queue)))
        .instrument(tracing::info_span!("http_request"))
        .await
        .expect("enqueue")
        .id();
    assert_eq!(job_trace(id).await, request.trace_id());

    // No trace context: a fresh one per enqueue, logged in the enqueuer's span.
    let id = client
        .enqueue_with(Traced {}, Options::new().queue(&rig.queue))
        .instrument(tracing::info_span!("handler"))
        .await
        .expect("enqueue")
        .id();
    let trace = job_trace(id).await;
    assert_ne!(trace, request.trace_id());
    let logged = capture().0.lock().expect("lock").enqueued.clone();
    let (traceparent, span) = logged
        .iter()
        .find(|(traceparent, _)| traceparent.contains(&trace))
        .expect("the enqueue logged its traceparent");
    assert_eq!(span.as_deref(), Some("handler"));
    let parsed = TraceContext::parse(traceparent).expect("a W3C traceparent");
    assert_eq!(parsed.trace_id(), trace);

    // A job that enqueues a job keeps the trace.
    let id = request
        .scope(client.enqueue_with(
            Relay {
                queue: rig.queue.clone(),
            },
            Options::new().queue(&rig.queue),
        ))
        .await
        .expect("enqueue")
        .id();
    assert_eq!(job_trace(id).await, request.trace_id());
    eventually(WAIT, "the relay enqueued", || async {
        !relayed.lock().expect("lock").is_empty()
    })
    .await;
    let child = relayed.lock().expect("lock")[0];
    assert_eq!(job_trace(child).await, request.trace_id());
    rig.stop().await;
}
