//! Cron parsing, time zones, intervals, catch-up and tick ids.

use chrono::{DateTime, TimeZone, Utc};

use super::{job_id, CatchUp, Periodic};

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test time")
        .with_timezone(&Utc)
}

#[test]
fn cron_has_seconds_and_defaults_to_utc() {
    let p = Periodic::cron("five", "0 */5 * * * *").expect("valid");
    assert_eq!(
        p.next_after(utc("2026-01-10T10:02:30Z")),
        Some(utc("2026-01-10T10:05:00Z"))
    );
    assert_eq!(
        p.next_after(utc("2026-01-10T10:05:00Z")),
        Some(utc("2026-01-10T10:10:00Z")),
        "strictly after"
    );
    let every_second = Periodic::cron("s", "* * * * * *").expect("valid");
    assert_eq!(
        every_second.next_after(utc("2026-01-10T10:00:00.400Z")),
        Some(utc("2026-01-10T10:00:01Z"))
    );
}

#[test]
fn invalid_cron_and_names_say_what_is_wrong() {
    let err = Periodic::cron("bad", "not cron").expect_err("invalid");
    assert!(err.to_string().contains("seconds first"), "{err}");
    assert!(Periodic::cron("", "* * * * * *").is_err());
    assert!(Periodic::cron("a\nb", "* * * * * *").is_err());
    let err = Periodic::cron("x", "* * * * * *")
        .and_then(|p| p.tz("Mars/Olympus"))
        .expect_err("zone");
    assert!(err.to_string().contains("Mars/Olympus"), "{err}");
}

#[test]
fn time_zones_follow_daylight_saving() {
    let p = Periodic::cron("nightly", "0 0 3 * * *")
        .and_then(|p| p.tz("Europe/Rome"))
        .expect("valid");
    // Winter: Rome is UTC+1; summer: UTC+2.
    assert_eq!(
        p.next_after(utc("2026-01-10T12:00:00Z")),
        Some(utc("2026-01-11T02:00:00Z"))
    );
    assert_eq!(
        p.next_after(utc("2026-07-10T12:00:00Z")),
        Some(utc("2026-07-11T01:00:00Z"))
    );
    let utc_one = Periodic::cron("n", "0 0 3 * * *").expect("valid");
    assert_eq!(
        utc_one.next_after(utc("2026-07-10T12:00:00Z")),
        Some(utc("2026-07-11T03:00:00Z"))
    );
}

#[test]
fn every_ticks_on_multiples_of_the_interval() {
    let p = Periodic::every("half", "30s").expect("valid");
    assert_eq!(
        p.next_after(utc("2026-01-10T10:00:12Z")),
        Some(utc("2026-01-10T10:00:30Z"))
    );
    assert_eq!(
        p.next_after(utc("2026-01-10T10:00:30Z")),
        Some(utc("2026-01-10T10:01:00Z"))
    );
    assert!(Periodic::every("x", "1h30m").is_ok());
    assert!(Periodic::every("x", "soon").is_err());
    assert!(Periodic::every("x", "500ms").is_err());
    let err = Periodic::every("x", "30s")
        .and_then(|p| p.tz("Europe/Rome"))
        .expect_err("tz on every");
    assert!(err.to_string().contains("cron"), "{err}");
}

#[test]
fn catch_up_policies() {
    let base = Periodic::every("m", "1m").expect("valid");
    let (after, until) = (utc("2026-01-10T10:00:00Z"), utc("2026-01-10T10:03:30Z"));
    let all = base.clone().catch_up(CatchUp::All).missed(after, until);
    assert_eq!(
        all,
        vec![
            utc("2026-01-10T10:01:00Z"),
            utc("2026-01-10T10:02:00Z"),
            utc("2026-01-10T10:03:00Z")
        ]
    );
    assert_eq!(base.missed(after, until), vec![utc("2026-01-10T10:03:00Z")]);
    assert!(base
        .clone()
        .catch_up(CatchUp::None)
        .missed(after, until)
        .is_empty());
    assert!(base.missed(after, after).is_empty());
    assert_eq!("all".parse::<CatchUp>().ok(), Some(CatchUp::All));
    assert!("some".parse::<CatchUp>().is_err());
}

#[test]
fn tick_ids_are_deterministic() {
    let tick = Utc
        .timestamp_millis_opt(1_700_000_000_000)
        .single()
        .expect("t");
    assert_eq!(job_id("a", tick), job_id("a", tick));
    assert_ne!(job_id("a", tick), job_id("b", tick));
    assert_ne!(
        job_id("a", tick),
        job_id("a", tick + chrono::Duration::seconds(1))
    );
    assert_eq!(job_id("a", tick).get_version_num(), 5);
}
