//! The failure record: what a failed run adds to a job's headers. The worker writes it
//! (`worker/failure.rs`, on a retry and on the failed queue alike) and the admin side's
//! recorder reads it back from `palermo.failed`; both go through [`FailureRecord`], so the
//! header names and their meaning live in one place. Reading is lenient: a message published
//! by hand or by another language still gives a record, with neutral values where headers
//! are missing.

use lapin::types::FieldTable;

use super::{get_int, get_str, header, put_int, put_str, truncate_bytes};

/// Why a delivery did not succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The job returned an error.
    Error,
    /// The job panicked.
    Panic,
    /// The job ran past its timeout and was cancelled.
    Timeout,
    /// The message is not a valid Palermo job (headers, properties).
    Malformed,
    /// No job of that name is linked into this worker.
    UnknownJob,
    /// The body could not be decoded into the job's arguments.
    Undecodable,
    /// The same run of the same job id arrived again after it succeeded.
    Duplicate,
    /// It came back too many times without a run finishing (see `worker/poison.rs`).
    Poison,
}

impl FailureKind {
    /// The value of the `x-palermo-error-kind` header.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Error => "error",
            FailureKind::Panic => "panic",
            FailureKind::Timeout => "timeout",
            FailureKind::Malformed => "malformed",
            FailureKind::UnknownJob => "unknown_job",
            FailureKind::Undecodable => "undecodable",
            FailureKind::Poison => "poison",
            FailureKind::Duplicate => "duplicate",
        }
    }

    /// Whether another attempt may succeed: a run that failed may, a message that cannot be
    /// run at all (malformed, unknown, undecodable) will not.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            FailureKind::Error | FailureKind::Panic | FailureKind::Timeout
        )
    }
}

/// Why a failed job goes to the failed queue rather than to a retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GaveUp {
    /// It failed on its last attempt.
    AttemptsExhausted,
    /// The job returned `JobError::fail_now`.
    FailNow,
    /// The message cannot be run ([`FailureKind::is_retryable`] is false).
    NotRetryable,
}

impl GaveUp {
    /// The value of the `x-palermo-gave-up` header.
    pub fn as_str(self) -> &'static str {
        match self {
            GaveUp::AttemptsExhausted => "attempts_exhausted",
            GaveUp::FailNow => "fail_now",
            GaveUp::NotRetryable => "not_retryable",
        }
    }
}

/// The failure headers of one failed run, as the worker writes them and the recorder reads
/// them. The fields marked "failed queue only" are written when the job goes to
/// `palermo.failed`, not on a retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureRecord {
    /// `x-palermo-error-kind`: a [`FailureKind`] name; `unknown` when missing.
    pub kind: String,
    /// `x-palermo-error`: the error, at most [`super::ERROR_MAX_BYTES`].
    pub error: String,
    /// `x-palermo-failed-at`, ms since the epoch.
    pub failed_at: i64,
    /// `x-palermo-first-failed-at`, ms since the epoch: the first failed attempt's.
    pub first_failed_at: i64,
    /// `x-palermo-worker`: the identity of the worker that ran it.
    pub worker: String,
    /// `x-palermo-failure-id` (failed queue only): the record's stable id.
    pub failure_id: Option<String>,
    /// `x-palermo-gave-up` (failed queue only): a [`GaveUp`] name.
    pub gave_up: Option<String>,
    /// `x-palermo-backtrace` (failed queue only), at most [`super::BACKTRACE_MAX_BYTES`].
    pub backtrace: Option<String>,
    /// `x-palermo-source-queue` (failed queue only): the queue it was consumed from.
    pub source_queue: Option<String>,
}

impl FailureRecord {
    /// Writes the record into `headers` (cutting the error and backtrace to their limits).
    pub fn write(&self, headers: &mut FieldTable) {
        put_str(headers, header::ERROR_KIND, &self.kind);
        put_str(
            headers,
            header::ERROR,
            truncate_bytes(&self.error, super::ERROR_MAX_BYTES),
        );
        put_int(headers, header::FAILED_AT, self.failed_at);
        put_int(headers, header::FIRST_FAILED_AT, self.first_failed_at);
        put_str(headers, header::WORKER, &self.worker);
        let optional = [
            (header::FAILURE_ID, &self.failure_id, usize::MAX),
            (header::GAVE_UP, &self.gave_up, usize::MAX),
            (
                header::BACKTRACE,
                &self.backtrace,
                super::BACKTRACE_MAX_BYTES,
            ),
            (header::SOURCE_QUEUE, &self.source_queue, usize::MAX),
        ];
        for (name, value, max) in optional {
            if let Some(value) = value {
                put_str(headers, name, truncate_bytes(value, max));
            }
        }
    }

    /// Reads the record in `headers`, leniently: a missing or mistyped header gets a neutral
    /// value (`now` for a missing failure time).
    pub fn read(headers: &FieldTable, now: i64) -> FailureRecord {
        let text = |name| get_str(headers, name).ok().flatten();
        let failed_at = get_int(headers, header::FAILED_AT)
            .ok()
            .flatten()
            .unwrap_or(now);
        FailureRecord {
            kind: text(header::ERROR_KIND).unwrap_or_else(|| "unknown".into()),
            error: text(header::ERROR).unwrap_or_default(),
            failed_at,
            first_failed_at: get_int(headers, header::FIRST_FAILED_AT)
                .ok()
                .flatten()
                .unwrap_or(failed_at),
            worker: text(header::WORKER).unwrap_or_default(),
            failure_id: text(header::FAILURE_ID).filter(|id| !id.trim().is_empty()),
            gave_up: text(header::GAVE_UP),
            backtrace: text(header::BACKTRACE),
            source_queue: text(header::SOURCE_QUEUE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written() {
        let record = FailureRecord {
            kind: FailureKind::Timeout.as_str().into(),
            error: "timed out after 1s".into(),
            failed_at: 20,
            first_failed_at: 10,
            worker: "host:1:mail".into(),
            failure_id: Some("f-1".into()),
            gave_up: Some(GaveUp::AttemptsExhausted.as_str().into()),
            backtrace: None,
            source_queue: Some("mail".into()),
        };
        let mut headers = FieldTable::default();
        record.write(&mut headers);
        assert_eq!(FailureRecord::read(&headers, 99), record);

        let bare = FailureRecord::read(&FieldTable::default(), 99);
        assert_eq!(
            (bare.kind.as_str(), bare.failed_at, bare.first_failed_at),
            ("unknown", 99, 99)
        );
        assert_eq!(bare.failure_id, None);
    }
}
