//! The security rules, each on its own: no state change on GET, the cross-origin check on
//! every POST (with and without Sec-Fetch-Site, same origin accepted, trusted origins), the
//! Basic login (pages, API, actions, metrics; metrics_public), and read-only mode.

use crate::support;

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
};
use base64::Engine;
use palermo_web::{Credentials, CredentialsError};
use support::*;

async fn seeded() -> (palermo_store::Store, TestDb) {
    let (store, db) = store("sqlite").await;
    let queue = unique("security");
    store
        .insert_failures(&[failure("s-1", &queue, "send_email", "boom", "{}", now_ms())])
        .await
        .expect("insert");
    (store, db)
}

fn status_of(store: &palermo_store::Store, id: &str) -> impl std::future::Future<Output = String> {
    let (store, id) = (store.clone(), id.to_string());
    async move {
        store
            .failure(&id)
            .await
            .expect("read")
            .expect("exists")
            .failure
            .status
    }
}

fn remove_request(headers: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::post("/failed/remove")
        .header(header::HOST, "dash.test")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .body(Body::from("id=s-1&confirmed=1"))
        .expect("request")
}

#[tokio::test]
async fn cross_origin_posts_are_refused_and_same_origin_accepted() {
    let (store, db) = seeded().await;
    let router =
        palermo_web::router(config(&store).trusted_origins(vec!["https://ops.example.com".into()]));
    let refused = [
        vec![
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ],
        vec![
            ("sec-fetch-site", "same-site"),
            ("origin", "http://other.dash.test"),
        ],
        // An old browser: no Sec-Fetch-Site, an Origin that is not this host.
        vec![("origin", "https://evil.example")],
    ];
    for headers in refused {
        let answer = send(&router, remove_request(&headers)).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{headers:?}");
        assert!(answer.body.contains("came from another site"), "{answer:?}");
        assert_eq!(
            status_of(&store, "s-1").await,
            "failed",
            "{headers:?} changed something"
        );
    }
    let api = Request::post("/api/failed/remove")
        .header(header::HOST, "dash.test")
        .header("sec-fetch-site", "cross-site")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"ids":["s-1"]}"#))
        .expect("request");
    let answer = send(&router, api).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(answer.json()["error"]
        .as_str()
        .is_some_and(|e| e.contains("another site")));

    // Same origin: by Sec-Fetch-Site, or (old browser) by Origin matching Host, or trusted.
    for (id, headers) in [
        ("a", vec![("sec-fetch-site", "same-origin")]),
        ("b", vec![("origin", "http://dash.test")]),
        (
            "c",
            vec![
                ("origin", "https://ops.example.com"),
                ("sec-fetch-site", "cross-site"),
            ],
        ),
    ] {
        let fid = format!("s-{id}");
        store
            .insert_failures(&[failure(&fid, "q", "j", "e", "{}", now_ms())])
            .await
            .expect("insert");
        let request = Request::post("/failed/remove")
            .header(header::HOST, "dash.test")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        let request = headers.iter().fold(request, |r, (n, v)| r.header(*n, *v));
        let answer = send(
            &router,
            request
                .body(Body::from(format!("id={fid}&confirmed=1")))
                .expect("request"),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::SEE_OTHER,
            "{headers:?}: {}",
            answer.body
        );
        assert_eq!(status_of(&store, &fid).await, "removed");
    }
    store.close().await;
    db.remove().await;
}

#[tokio::test]
async fn get_never_changes_state() {
    let (store, db) = seeded().await;
    let router = palermo_web::router(config(&store));
    for path in [
        "/failed/retry?id=s-1&confirmed=1",
        "/failed/remove?id=s-1&confirmed=1",
        "/failed/remove-all?confirmed=1",
        "/api/failed/remove",
    ] {
        let answer = send(&router, get(path)).await;
        // The action paths read as ids on GET (no failure "retry"): 404, or 405 where no GET exists.
        assert!(
            matches!(
                answer.status,
                StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
            ),
            "{path}: {}",
            answer.status
        );
    }
    let purge = send(&router, get("/queues/anything/purge?confirmed=1")).await;
    assert_eq!(purge.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(status_of(&store, "s-1").await, "failed");
    store.close().await;
    db.remove().await;
}

fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

#[tokio::test]
async fn the_login_protects_pages_api_actions_and_metrics() {
    let (store, db) = seeded().await;
    let credentials: Credentials = "ada:s3cret:with-colon".parse().expect("credentials");
    let router = palermo_web::router(config(&store).auth(Some(credentials.clone())));
    for path in [
        "/",
        "/failed",
        "/failed/s-1",
        "/queues",
        "/workers",
        "/api/overview",
        "/api/failed",
        "/metrics",
    ] {
        let answer = send(&router, get(path)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(
            answer
                .header("www-authenticate")
                .starts_with("Basic realm="),
            "{path}"
        );
        let wrong = get(path);
        let (mut parts, body) = wrong.into_parts();
        parts.headers.insert(
            header::AUTHORIZATION,
            basic("ada", "s3cret").parse().expect("header"),
        );
        let answer = send(&router, Request::from_parts(parts, body)).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{path}: wrong password accepted"
        );
    }
    assert_eq!(
        send(&router, get("/health")).await.status,
        StatusCode::OK,
        "health stays open"
    );
    let refused = send(&router, post_form("/failed/remove", "id=s-1&confirmed=1")).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&store, "s-1").await, "failed");

    let mut request = post_form("/failed/remove", "id=s-1&confirmed=1");
    request.headers_mut().insert(
        header::AUTHORIZATION,
        basic("ada", "s3cret:with-colon").parse().expect("header"),
    );
    let answer = send(&router, request).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let detail = store.failure("s-1").await.expect("read").expect("exists");
    assert_eq!(
        detail.actions.last().map(|a| a.actor.as_str()),
        Some("web:ada"),
        "the audit names the user"
    );

    let public = palermo_web::router(config(&store).auth(Some(credentials)).metrics_public(true));
    let metrics = send(&public, get("/metrics")).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert_eq!(
        send(&public, get("/api/overview")).await.status,
        StatusCode::UNAUTHORIZED
    );
    store.close().await;
    db.remove().await;
}

#[test]
fn credentials_are_checked_when_read() {
    assert_eq!(
        "nocolon".parse::<Credentials>(),
        Err(CredentialsError::NoColon)
    );
    assert_eq!(
        ":pw".parse::<Credentials>(),
        Err(CredentialsError::EmptyUser)
    );
    assert_eq!(
        "ada:".parse::<Credentials>(),
        Err(CredentialsError::EmptyPassword)
    );
    assert!(
        !format!("{:?}", "ada:pw".parse::<Credentials>()).contains("pw\""),
        "the password is not in Debug"
    );
}

#[tokio::test]
async fn the_loopback_rule() {
    let (store, db) = seeded().await;
    let open = config(&store);
    assert!(open
        .validate_bind("127.0.0.1:9090".parse().expect("addr"), false)
        .is_ok());
    assert!(open
        .validate_bind("[::1]:9090".parse().expect("addr"), false)
        .is_ok());
    let refused = open.validate_bind("0.0.0.0:9090".parse().expect("addr"), false);
    assert!(refused.is_err_and(|e| e.to_string().contains("--auth")));
    assert!(open
        .validate_bind("0.0.0.0:9090".parse().expect("addr"), true)
        .is_ok());
    let login = config(&store).auth(Some("a:b".parse().expect("credentials")));
    assert!(login
        .validate_bind("0.0.0.0:9090".parse().expect("addr"), false)
        .is_ok());
    assert!(config(&store)
        .trusted_origins(vec!["ops.example.com/path".into()])
        .validate()
        .is_err());
    store.close().await;
    db.remove().await;
}

#[tokio::test]
async fn read_only_hides_and_refuses_actions() {
    let (store, db) = seeded().await;
    let router = palermo_web::router(config(&store).read_only(true));
    for path in ["/failed", "/failed/s-1"] {
        let page = send(&router, get(path)).await;
        assert_eq!(page.status, StatusCode::OK);
        for button in [
            "retry-selected",
            "retry-all",
            "remove-all",
            "retry-one",
            "select-failure",
            "remove-one",
        ] {
            assert!(
                !page.body.contains(button),
                "{path}: {button} shown in read-only mode"
            );
        }
        assert!(page.body.contains("read-only-badge"));
    }
    for (path, body) in [
        ("/failed/retry", "id=s-1&confirmed=1"),
        ("/failed/remove", "id=s-1&confirmed=1"),
        ("/failed/remove-all", "confirmed=1"),
        ("/queues/anything/purge", "confirmed=1"),
    ] {
        let answer = send(&router, post_form(path, body)).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}");
        assert!(answer.body.contains("read-only"), "{path}");
    }
    let api = send(
        &router,
        post_json("/api/failed/remove", serde_json::json!({"ids": ["s-1"]})),
    )
    .await;
    assert_eq!(api.status, StatusCode::FORBIDDEN);
    assert!(api.json()["error"]
        .as_str()
        .is_some_and(|e| e.contains("read-only")));
    assert_eq!(status_of(&store, "s-1").await, "failed");
    store.close().await;
    db.remove().await;
}
