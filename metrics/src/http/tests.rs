use super::*;
use crate::labels::{Labels, Sample, Series};
use crate::remote_write::encode_write_request;
use crate::storage::{Storage, StorageConfig};
use crate::tenant::Limits;
use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;

fn app_with(storage: Arc<Storage>, tenancy: bool) -> Router {
    let metrics_store = storage.clone();
    let metrics: MetricsSource = Arc::new(move || metrics_store.exposition().unwrap_or_default());
    router(
        storage,
        ApiConfig {
            tenancy,
            ..ApiConfig::default()
        },
        metrics,
    )
}

fn app() -> (Router, Arc<Storage>) {
    let storage = Arc::new(Storage::open(StorageConfig::default()).unwrap());
    (app_with(storage.clone(), true), storage)
}

fn series(name: &str, extra: &[(&str, &str)], samples: &[(i64, f64)]) -> Series {
    let mut pairs = vec![("__name__", name)];
    pairs.extend_from_slice(extra);
    Series {
        labels: Labels::from_pairs(pairs).unwrap(),
        samples: samples.iter().map(|&(t, v)| Sample { t, v }).collect(),
    }
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

fn push_req(tenant: Option<&str>, body: Vec<u8>) -> Request<Body> {
    let mut b = Request::post("/api/v1/push")
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0");
    if let Some(t) = tenant {
        b = b.header(TENANT_HEADER, t);
    }
    b.body(Body::from(body)).unwrap()
}

fn get_req(tenant: Option<&str>, uri: &str) -> Request<Body> {
    let mut b = Request::get(uri);
    if let Some(t) = tenant {
        b = b.header(TENANT_HEADER, t);
    }
    b.body(Body::empty()).unwrap()
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn now() -> i64 {
    now_ms()
}

#[tokio::test]
async fn push_and_query_two_tenants() {
    let (app, _) = app();
    let t = now() - 60_000;
    let a = encode_write_request(&[series("up", &[("job", "a")], &[(t, 1.0)])]);
    let b = encode_write_request(&[
        series("up", &[("job", "b")], &[(t, 2.0)]),
        series("other", &[], &[(t, 3.0)]),
    ]);
    assert_eq!(
        send(&app, push_req(Some("team-a"), a)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(&app, push_req(Some("team-b"), b)).await.0,
        StatusCode::NO_CONTENT
    );

    let (status, _, body) = send(&app, get_req(Some("team-a"), "/api/v1/query?query=up")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v = json(&body);
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"]["result"][0]["metric"]["job"], "a");
    assert_eq!(v["data"]["result"][0]["value"][1], "1");

    // POST form body works too, and tenant b sees only its own data.
    let req = Request::post("/api/v1/query")
        .header(TENANT_HEADER, "team-b")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(Body::from("query=sum(%7B__name__%3D~%22.%2B%22%7D)"))
        .unwrap();
    let (status, _, body) = send(&app, req).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json(&body)["data"]["result"][0]["value"][1], "5");

    let uri = format!(
        "/api/v1/query_range?query=up&start={}&end={}&step=15s",
        (t - 30_000) / 1000,
        (t + 30_000) / 1000
    );
    let (status, _, body) = send(&app, get_req(Some("team-b"), &uri)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v = json(&body);
    assert_eq!(v["data"]["resultType"], "matrix");
    assert_eq!(v["data"]["result"][0]["metric"]["job"], "b");
    assert!(
        !v["data"]["result"][0]["values"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let (_, _, body) = send(&app, get_req(Some("team-b"), "/api/v1/labels")).await;
    assert_eq!(json(&body)["data"], serde_json::json!(["__name__", "job"]));
    let (_, _, body) = send(
        &app,
        get_req(Some("team-b"), "/api/v1/label/__name__/values"),
    )
    .await;
    assert_eq!(json(&body)["data"], serde_json::json!(["other", "up"]));
    let (_, _, body) = send(
        &app,
        get_req(Some("team-a"), "/api/v1/label/__name__/values"),
    )
    .await;
    assert_eq!(json(&body)["data"], serde_json::json!(["up"]));
    let (status, _, body) = send(&app, get_req(Some("team-b"), "/api/v1/series?match[]=up")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        json(&body)["data"],
        serde_json::json!([{"__name__": "up", "job": "b"}])
    );
    let (status, _, body) = send(&app, get_req(Some("team-b"), "/api/v1/series")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, _, body) = send(&app, get_req(None, "/api/v1/status/buildinfo")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["status"], "success");
    let (status, _, body) = send(&app, get_req(None, "/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("weft_tsdb_head_series{tenant=\"team-b\"} 2"),
        "{body}"
    );
}

#[tokio::test]
async fn tenancy_rules() {
    let (app, _) = app();
    let (status, _, body) = send(&app, get_req(None, "/api/v1/query?query=up")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json(&body)["status"], "error");
    for bad in ["..", ".", "a/b", "../../etc"] {
        let (status, _, body) = send(&app, get_req(Some(bad), "/api/v1/query?query=up")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        let body = encode_write_request(&[series("up", &[], &[(now(), 1.0)])]);
        assert_eq!(
            send(&app, push_req(Some(bad), body)).await.0,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    assert_eq!(
        send(&app, push_req(None, encode_write_request(&[])))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    // With tenancy off, requests without the header use "anonymous".
    let storage = Arc::new(Storage::open(StorageConfig::default()).unwrap());
    let open = app_with(storage.clone(), false);
    let body = encode_write_request(&[series("up", &[], &[(now(), 1.0)])]);
    assert_eq!(
        send(&open, push_req(None, body)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        storage.tenants().unwrap(),
        vec![TenantId::new(ANONYMOUS).unwrap()]
    );
}

#[tokio::test]
async fn path_traversal_creates_nothing_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let storage = Arc::new(
        Storage::open(StorageConfig {
            dir: Some(data.clone()),
            ..StorageConfig::default()
        })
        .unwrap(),
    );
    let app = app_with(storage, true);
    let body = encode_write_request(&[series("up", &[], &[(now(), 1.0)])]);
    assert_eq!(
        send(&app, push_req(Some("../escape"), body.clone()))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        send(&app, push_req(Some("ok"), body)).await.0,
        StatusCode::NO_CONTENT
    );
    let entries: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, vec!["data"]);
    let tenants: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(tenants, vec!["ok"]);
}

#[tokio::test]
async fn bad_pushes_get_the_right_status_and_write_nothing() {
    let (app, storage) = app();
    let t = now();
    let tid = TenantId::new("t").unwrap();
    let good = encode_write_request(&[series("up", &[], &[(t, 1.0)])]);
    // Wrong Content-Type and remote-write 2.0 are 415.
    let req = Request::post("/api/v1/push")
        .header(TENANT_HEADER, "t")
        .header("Content-Type", "application/json")
        .body(Body::from(good.clone()))
        .unwrap();
    assert_eq!(send(&app, req).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let req = Request::post("/api/v1/push")
        .header(TENANT_HEADER, "t")
        .header(
            "Content-Type",
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        )
        .body(Body::from(good.clone()))
        .unwrap();
    assert_eq!(send(&app, req).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let req = Request::post("/api/v1/push")
        .header(TENANT_HEADER, "t")
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "gzip")
        .body(Body::from(good.clone()))
        .unwrap();
    assert_eq!(send(&app, req).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Not snappy, truncated.
    let (status, _, msg) = send(
        &app,
        push_req(Some("t"), b"\xff\xff\xff\xff\xffnot snappy".to_vec()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("snappy"), "{msg}");
    let (status, _, msg) = send(&app, push_req(Some("t"), good[..good.len() - 2].to_vec())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("truncated"), "{msg}");
    // Far future.
    let future = encode_write_request(&[series("up", &[], &[(t + 3_600_000, 1.0)])]);
    let (status, _, msg) = send(&app, push_req(Some("t"), future)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("future"), "{msg}");
    assert!(
        storage
            .select(&tid, &[], i64::MIN, i64::MAX)
            .unwrap()
            .is_empty()
    );
    // NaN and Inf are accepted as in Prometheus.
    let special = encode_write_request(&[series(
        "up",
        &[],
        &[(t - 2, f64::NAN), (t - 1, f64::INFINITY), (t, 1.0)],
    )]);
    assert_eq!(
        send(&app, push_req(Some("t"), special)).await.0,
        StatusCode::NO_CONTENT
    );
    // Out of order: 400, and the new series in the same batch is not written.
    let ooo = encode_write_request(&[
        series("fresh", &[], &[(t, 1.0)]),
        series("up", &[], &[(t - 60_000, 1.0)]),
    ]);
    let (status, _, msg) = send(&app, push_req(Some("t"), ooo)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(msg.contains("out of order"), "{msg}");
    let all = storage.select(&tid, &[], i64::MIN, i64::MAX).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].samples.len(), 3);
}

#[tokio::test]
async fn rate_limit_is_429_with_retry_after() {
    let limits = Limits {
        ingestion_rate: 1.0,
        ingestion_burst: 2.0,
        ..Limits::default()
    };
    let storage = Arc::new(
        Storage::open(StorageConfig {
            limits,
            ..StorageConfig::default()
        })
        .unwrap(),
    );
    let app = app_with(storage, true);
    let t = now();
    let body = encode_write_request(&[series(
        "up",
        &[],
        &[(t - 3, 1.0), (t - 2, 1.0), (t - 1, 1.0)],
    )]);
    let (status, headers, _) = send(&app, push_req(Some("t"), body)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "1");
}

#[tokio::test]
async fn query_errors_use_the_prometheus_shape() {
    let (app, _) = app();
    let (status, _, body) = send(&app, get_req(Some("t"), "/api/v1/query?query=sum(")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let v = json(&body);
    assert_eq!(v["status"], "error");
    assert_eq!(v["errorType"], "bad_data");
    assert!(v["error"].as_str().unwrap().contains("query"), "{body}");
    assert_eq!(v.as_object().unwrap().len(), 3);
    let (status, _, body) = send(
        &app,
        get_req(
            Some("t"),
            "/api/v1/query_range?query=up&start=0&end=100000&step=1",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("11000 points"),
        "{body}"
    );
    let (status, _, _) = send(
        &app,
        get_req(
            Some("t"),
            "/api/v1/query_range?query=up&start=0&end=10&step=abc",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = send(
        &app,
        get_req(Some("t"), "/api/v1/query?query=up&time=never"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, body) = send(
        &app,
        get_req(Some("t"), "/api/v1/query?query=histogram_count(up)"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("unsupported"), "{body}");
    // Execution errors are 422.
    let t = now() - 1000;
    let body = encode_write_request(&[
        series("a", &[("x", "1")], &[(t, 1.0)]),
        series("b", &[("x", "1")], &[(t, 1.0)]),
    ]);
    assert_eq!(
        send(&app, push_req(Some("t"), body)).await.0,
        StatusCode::NO_CONTENT
    );
    let (status, _, body) = send(
        &app,
        get_req(Some("t"), "/api/v1/query?query=abs(%7Bx%3D%221%22%7D)"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(json(&body)["errorType"], "execution");
}

#[test]
fn replication_errors_map_to_retryable_503_and_refusals_to_400() {
    let status = |e: WriteError| ApiError::from(e).status();
    assert_eq!(
        status(WriteError::NoQuorum("1 of 3".into())),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        status(WriteError::Refused("out of order".into())),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        ApiError::from(StorageError::Unavailable("2 peers down".into())).status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        ApiError::from(StorageError::Poisoned).status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
}
