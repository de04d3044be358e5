//! Publishing a received job again: to a delay queue (a retry, a snooze), back to its queue
//! (a counted redelivery), or, from the admin side, back from the failed queue (a requeue).
//! Every republish keeps the job's identity and drops what would break the new copy; this is
//! the one place that says which properties and headers survive.

use lapin::{types::FieldTable, BasicProperties};

use super::header;

/// Headers a requeue from the failed queue drops: what the failure and the automatic retries
/// added (RabbitMQ's dead-lettering headers are dropped by [`without`] anyway).
const REQUEUE_DROPS: &[&str] = &[
    header::FAILURE_ID,
    header::ERROR,
    header::ERROR_KIND,
    header::BACKTRACE,
    header::FAILED_AT,
    header::FIRST_FAILED_AT,
    header::WORKER,
    header::SOURCE_QUEUE,
    header::ERROR_HISTORY,
    header::NEXT_RUN_AT,
    header::SNOOZES,
    header::WAITING_FOR,
    header::GAVE_UP,
    header::REDELIVERIES,
    header::HEADERS_CUT,
    "x-delivery-count",
];

/// `headers` without `names` and without the headers RabbitMQ adds when it dead-letters a
/// message (`x-death`...), which grow with every pass through the delay queues.
pub fn without(headers: &FieldTable, names: &[&str]) -> FieldTable {
    let mut map = headers.inner().clone();
    map.retain(|name, _| {
        let name = name.as_str();
        !names.contains(&name)
            && name != "x-death"
            && !name.starts_with("x-first-death-")
            && !name.starts_with("x-last-death-")
    });
    FieldTable::from(map)
}

/// The properties for publishing a received job again, with new headers. `expiration` is
/// dropped (a per-message TTL would cut a delay short) and so is `user_id` (the broker
/// refuses a message whose user is not the publisher's).
pub fn republished(original: &BasicProperties, mut headers: FieldTable) -> BasicProperties {
    super::fit_headers(&mut headers, super::HEADERS_BUDGET);
    let mut props = BasicProperties::default()
        .with_headers(headers)
        .with_delivery_mode(2);
    // Every property but `expiration` and `user_id` (and the headers, given) is kept.
    macro_rules! keep {
        ($($get:ident => $set:ident),* $(,)?) => {
            $(if let Some(value) = original.$get().clone() {
                props = props.$set(value);
            })*
        };
    }
    keep!(
        content_type => with_content_type,
        content_encoding => with_content_encoding,
        correlation_id => with_correlation_id,
        reply_to => with_reply_to,
        message_id => with_message_id,
        kind => with_type,
        app_id => with_app_id,
        cluster_id => with_cluster_id,
        priority => with_priority,
        timestamp => with_timestamp,
    );
    props
}

/// The properties of a job requeued from the failed queue: `original` without the failure
/// and retry headers, at attempt 1, with `x-palermo-requeues` counted up (a new run of the
/// same job id, which workers that remember its earlier runs must run) and an `app_id`.
pub fn requeued(original: &BasicProperties) -> BasicProperties {
    let mut headers = without(super::headers(original), REQUEUE_DROPS);
    super::put_int(&mut headers, header::ATTEMPT, 1);
    let requeues = super::get_int(&headers, header::REQUEUES)
        .ok()
        .flatten()
        .unwrap_or(0);
    super::put_int(&mut headers, header::REQUEUES, requeues.saturating_add(1));
    let app_id = original
        .app_id()
        .clone()
        .unwrap_or_else(|| super::APP_ID.into());
    republished(original, headers).with_app_id(app_id)
}

#[cfg(test)]
mod tests {
    use lapin::types::AMQPValue;

    use super::*;
    use crate::wire;

    #[test]
    fn republishing_drops_what_would_break_a_delay() {
        let mut headers = FieldTable::default();
        wire::put_str(&mut headers, "x-death", "...");
        wire::put_str(&mut headers, "x-first-death-queue", "palermo.delay.retry.0");
        wire::put_str(&mut headers, header::JOB, "send_email");
        wire::put_str(&mut headers, header::BACKTRACE, "old");
        let kept = without(&headers, &[header::BACKTRACE]);
        let names: Vec<&str> = kept.inner().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, [header::JOB]);

        let original = BasicProperties::default()
            .with_expiration("1000".into())
            .with_user_id("someone".into())
            .with_message_id("id".into())
            .with_priority(3)
            .with_timestamp(17);
        let props = republished(&original, kept);
        assert_eq!(props.expiration(), &None);
        assert_eq!(props.user_id(), &None);
        assert_eq!(props.message_id().as_ref().map(|s| s.as_str()), Some("id"));
        assert_eq!(props.priority(), &Some(3));
        assert_eq!(props.timestamp(), &Some(17));
        assert_eq!(props.delivery_mode(), &Some(2));
        assert!(matches!(
            props
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get(header::JOB)),
            Some(AMQPValue::LongString(_))
        ));
    }

    #[test]
    fn a_requeue_drops_failure_headers_and_starts_at_attempt_one() {
        let mut headers = FieldTable::default();
        wire::put_str(&mut headers, header::JOB, "send_email");
        wire::put_str(&mut headers, header::ERROR, "boom");
        wire::put_str(&mut headers, "x-first-death-queue", "palermo.delay.retry.0");
        wire::put_int(&mut headers, header::ATTEMPT, 5);
        wire::put_int(&mut headers, header::REQUEUES, 1);
        wire::put_str(&mut headers, "x-tenant", "acme");
        let original = BasicProperties::default()
            .with_message_id("job-1".into())
            .with_user_id("someone".into())
            .with_expiration("1000".into())
            .with_headers(headers);
        let props = requeued(&original);
        let headers = wire::headers(&props);
        assert_eq!(wire::get_int(headers, header::ATTEMPT), Ok(Some(1)));
        assert_eq!(wire::get_int(headers, header::REQUEUES), Ok(Some(2)));
        assert_eq!(wire::get_str(headers, header::ERROR), Ok(None));
        assert_eq!(wire::get_str(headers, "x-first-death-queue"), Ok(None));
        assert_eq!(wire::get_str(headers, "x-tenant"), Ok(Some("acme".into())));
        assert_eq!(
            props.message_id().as_ref().map(|m| m.as_str()),
            Some("job-1")
        );
        assert_eq!(props.app_id().as_ref().map(|m| m.as_str()), Some("palermo"));
        assert!(props.user_id().is_none() && props.expiration().is_none());
        assert_eq!(props.delivery_mode(), &Some(2));
    }
}
