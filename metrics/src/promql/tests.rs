//! Engine tests with hand-computed expectations.

use super::*;
use crate::labels::{Labels, Series, stale_nan};
use crate::storage::{Storage, StorageConfig, Store};

const S: i64 = 1000;

fn tenant() -> TenantId {
    TenantId::new("t").unwrap()
}

fn series(pairs: &[(&str, &str)], samples: impl IntoIterator<Item = (i64, f64)>) -> Series {
    Series {
        labels: Labels::from_pairs(pairs.iter().copied()).unwrap(),
        samples: samples.into_iter().map(|(t, v)| Sample { t, v }).collect(),
    }
}

/// Counters every 15 s from 0 to 600 s, a gauge, a stale series and a classic histogram.
fn store() -> Storage {
    let store = Storage::open(StorageConfig::default()).unwrap();
    let every15 = |f: fn(i64) -> f64| (0..=40).map(move |i| (i * 15 * S, f(i)));
    let batch = vec![
        series(
            &[("__name__", "req"), ("job", "api"), ("instance", "a")],
            every15(|i| 10.0 * i as f64),
        ),
        series(
            &[("__name__", "req"), ("job", "api"), ("instance", "b")],
            every15(|i| 5.0 * i as f64),
        ),
        // Resets to 0 at i = 20.
        series(
            &[("__name__", "req"), ("job", "web"), ("instance", "c")],
            every15(|i| (i % 20) as f64),
        ),
        series(
            &[("__name__", "temp"), ("room", "x")],
            every15(|i| if i % 2 == 0 { 20.0 } else { 22.0 }),
        ),
        series(
            &[("__name__", "gone"), ("job", "api")],
            [(0, 1.0), (100 * S, 2.0), (200 * S, stale_nan())],
        ),
        series(
            &[("__name__", "lat_bucket"), ("le", "0.1")],
            every15(|i| i as f64),
        ),
        series(
            &[("__name__", "lat_bucket"), ("le", "0.5")],
            every15(|i| 3.0 * i as f64),
        ),
        series(
            &[("__name__", "lat_bucket"), ("le", "+Inf")],
            every15(|i| 4.0 * i as f64),
        ),
        series(
            &[("__name__", "info"), ("instance", "a"), ("version", "1.2")],
            every15(|_| 1.0),
        ),
        series(
            &[("__name__", "info"), ("instance", "b"), ("version", "1.3")],
            every15(|_| 1.0),
        ),
    ];
    store.write(&tenant(), batch, 0).unwrap();
    store
}

fn query(store: &Storage, q: &str, t: i64) -> Result<QueryValue, QueryError> {
    instant_query(store, &tenant(), q, t, &EngineConfig::default())
}

/// Instant vector result as (labels string, value), sorted by labels.
fn vector(store: &Storage, q: &str, t: i64) -> Vec<(String, f64)> {
    match query(store, q, t) {
        Ok(QueryValue::Vector(v)) => {
            let mut out: Vec<(String, f64)> =
                v.into_iter().map(|s| (s.labels.to_string(), s.v)).collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        }
        other => panic!("{q}: expected a vector, got {other:?}"),
    }
}

fn scalar(store: &Storage, q: &str, t: i64) -> f64 {
    match query(store, q, t) {
        Ok(QueryValue::Scalar { v, .. }) => v,
        other => panic!("{q}: expected a scalar, got {other:?}"),
    }
}

fn one(store: &Storage, q: &str, t: i64) -> f64 {
    let v = vector(store, q, t);
    assert_eq!(v.len(), 1, "{q}: {v:?}");
    v[0].1
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn lookback_is_left_open_and_respects_staleness() {
    let st = store();
    assert_eq!(one(&st, "temp", 600 * S), 20.0);
    assert_eq!(one(&st, "temp", 899 * S), 20.0);
    // Exactly 5 minutes after the last sample: excluded (Prometheus 3).
    assert!(vector(&st, "temp", 900 * S).is_empty());
    // Before the staleness marker the series is visible, after it is gone.
    assert_eq!(one(&st, "gone", 150 * S), 2.0);
    assert!(vector(&st, "gone", 210 * S).is_empty());
}

#[test]
fn range_selectors_are_left_open() {
    let st = store();
    // (540, 600] holds 555, 570, 585, 600: the sample at 540 is excluded.
    assert_eq!(
        one(&st, r#"count_over_time(req{instance="a"}[1m])"#, 600 * S),
        4.0
    );
    assert_eq!(
        one(&st, r#"count_over_time(req{instance="a"}[1m])"#, 601 * S),
        4.0
    );
    match query(&st, r#"req{instance="a"}[1m]"#, 600 * S).unwrap() {
        QueryValue::Matrix(m) => assert_eq!(
            m[0].samples.iter().map(|s| s.t / S).collect::<Vec<_>>(),
            vec![555, 570, 585, 600]
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rate_increase_delta_irate() {
    let st = store();
    let t = 600 * S;
    // 10 per 15 s; first sample 15 s after the window start extrapolates to the full minute.
    assert!(close(
        one(&st, r#"rate(req{instance="a"}[1m])"#, t),
        10.0 / 15.0
    ));
    assert!(close(
        one(&st, r#"increase(req{instance="a"}[1m])"#, t),
        40.0
    ));
    assert!(close(
        one(&st, r#"irate(req{instance="a"}[1m])"#, t),
        10.0 / 15.0
    ));
    assert!(close(one(&st, r#"idelta(req{instance="b"}[1m])"#, t), 5.0));
    // Window (547, 607]: samples 555..600 (values 370..400), 8 s to the start, 7 s to the end:
    // 30 * (45 + 8 + 7) / 45 = 40.
    assert!(close(
        one(&st, r#"delta(req{instance="a"}[1m])"#, 607 * S),
        40.0
    ));
    // Not close to the end (threshold 16.5 s): extrapolate half an interval only.
    // Window (560, 620]: samples 570..600, to_start 10 s, to_end 20 s -> 7.5 s.
    assert!(close(
        one(&st, r#"increase(req{instance="a"}[1m])"#, 620 * S),
        20.0 * (30.0 + 10.0 + 7.5) / 30.0
    ));
}

#[test]
fn counter_resets() {
    let st = store();
    // Series c: values i % 20, reset at i = 20 (t = 300 s). Window (240, 360] holds i = 17..24:
    // 17,18,19,0,1,2,3,4.
    let t = 360 * S;
    assert_eq!(one(&st, r#"resets(req{instance="c"}[2m])"#, t), 1.0);
    assert_eq!(one(&st, r#"changes(req{instance="c"}[2m])"#, t), 7.0);
    // Increase corrected for the reset: 4 - 17 + 19 = 6 over 105 s of samples, then
    // extrapolated by 15 s at the start (to-zero point is 17/6*105 s away, further) and 0 at the end.
    assert!(close(
        one(&st, r#"increase(req{instance="c"}[2m])"#, t),
        6.0 * 120.0 / 105.0
    ));
}

#[test]
fn over_time_functions() {
    let st = store();
    let t = 600 * S;
    // temp alternates 20/22; (540, 600] holds i = 37..40: 22, 20, 22, 20.
    assert_eq!(one(&st, "avg_over_time(temp[1m])", t), 21.0);
    assert_eq!(one(&st, "sum_over_time(temp[1m])", t), 84.0);
    assert_eq!(one(&st, "min_over_time(temp[1m])", t), 20.0);
    assert_eq!(one(&st, "max_over_time(temp[1m])", t), 22.0);
    assert_eq!(one(&st, "stddev_over_time(temp[1m])", t), 1.0);
    assert_eq!(one(&st, "stdvar_over_time(temp[1m])", t), 1.0);
    assert_eq!(one(&st, "quantile_over_time(0.5, temp[1m])", t), 21.0);
    assert_eq!(one(&st, "present_over_time(temp[1m])", t), 1.0);
    // last_over_time keeps the metric name; other range functions drop it.
    assert_eq!(
        vector(&st, "last_over_time(temp[1m])", t),
        vec![("temp{room=\"x\"}".into(), 20.0)]
    );
    assert_eq!(
        vector(&st, "max_over_time(temp[1m])", t)[0].0,
        "{room=\"x\"}"
    );
    // deriv of a perfect line is its slope; predict_linear extrapolates it.
    assert!(close(
        one(&st, r#"deriv(req{instance="a"}[2m])"#, t),
        10.0 / 15.0
    ));
    assert!(close(
        one(&st, r#"predict_linear(req{instance="a"}[2m], 60)"#, t),
        400.0 + 40.0
    ));
}

#[test]
fn aggregations() {
    let st = store();
    let t = 600 * S;
    // req at 600 s: a = 400, b = 200, c = 0 (40 % 20).
    assert_eq!(
        vector(&st, "sum by (job) (req)", t),
        vec![
            ("{job=\"api\"}".into(), 600.0),
            ("{job=\"web\"}".into(), 0.0)
        ]
    );
    assert_eq!(one(&st, "sum(req)", t), 600.0);
    assert_eq!(one(&st, "avg(req)", t), 200.0);
    assert_eq!(one(&st, "count(req)", t), 3.0);
    assert_eq!(one(&st, "min(req)", t), 0.0);
    assert_eq!(one(&st, "max(req)", t), 400.0);
    assert_eq!(one(&st, "group(req)", t), 1.0);
    assert!(close(
        one(&st, "stddev(req)", t),
        (80_000.0f64 / 3.0).sqrt()
    ));
    assert!(close(one(&st, "stdvar(req)", t), 80_000.0 / 3.0));
    assert_eq!(one(&st, "quantile(0.5, req)", t), 200.0);
    assert_eq!(one(&st, "quantile(0.75, req)", t), 300.0);
    assert_eq!(vector(&st, "sum without (instance) (req)", t).len(), 2);
    assert_eq!(
        vector(&st, "sum without (instance) (req)", t)[0].0,
        "{job=\"api\"}"
    );
    assert_eq!(
        vector(&st, "topk(1, req)", t),
        vec![("req{instance=\"a\", job=\"api\"}".into(), 400.0)]
    );
    assert_eq!(
        vector(&st, "bottomk(1, req)", t),
        vec![("req{instance=\"c\", job=\"web\"}".into(), 0.0)]
    );
    assert_eq!(vector(&st, "topk by (job) (1, req)", t).len(), 2);
    assert_eq!(
        vector(&st, r#"count_values("v", temp)"#, t),
        vec![("{v=\"20\"}".into(), 1.0)]
    );
}

#[test]
fn binary_operators_and_matching() {
    let st = store();
    let t = 600 * S;
    assert_eq!(scalar(&st, "1 + 2 * 3 ^ 2", t), 19.0);
    assert_eq!(scalar(&st, "2 > bool 1", t), 1.0);
    assert_eq!(
        vector(&st, r#"req{instance="a"} * 2"#, t),
        vec![("{instance=\"a\", job=\"api\"}".into(), 800.0)]
    );
    // Comparison filters and keeps the name and the vector's value, even with the scalar on the left.
    assert_eq!(vector(&st, "req > 100", t).len(), 2);
    assert_eq!(
        vector(&st, "100 < req", t)[0],
        ("req{instance=\"a\", job=\"api\"}".into(), 400.0)
    );
    assert_eq!(
        vector(&st, "req > bool 100", t)
            .iter()
            .map(|x| x.1)
            .sum::<f64>(),
        2.0
    );
    // One-to-one matching ignores the name by default.
    assert_eq!(
        one(
            &st,
            r#"req{instance="a"} / ignoring(job, version) info{instance="a"}"#,
            t
        ),
        400.0
    );
    assert_eq!(vector(&st, r#"req / on(instance) info"#, t).len(), 2);
    assert_eq!(
        vector(&st, r#"req / on(instance) info"#, t)[0].0,
        "{instance=\"a\"}"
    );
    // group_left copies labels from the one side.
    assert_eq!(
        vector(&st, r#"req * on(instance) group_left(version) info"#, t),
        vec![
            (
                "{instance=\"a\", job=\"api\", version=\"1.2\"}".into(),
                400.0
            ),
            (
                "{instance=\"b\", job=\"api\", version=\"1.3\"}".into(),
                200.0
            ),
        ]
    );
    assert_eq!(
        vector(&st, r#"info * on(instance) group_right(version) req"#, t).len(),
        2
    );
    // Set operators.
    assert_eq!(vector(&st, r#"req and on(instance) info"#, t).len(), 2);
    assert_eq!(vector(&st, r#"req unless on(instance) info"#, t).len(), 1);
    assert_eq!(vector(&st, r#"req or temp"#, t).len(), 4);
    // Many-to-many without group modifiers is an execution error.
    assert!(matches!(
        query(&st, "req + on(job) req", t),
        Err(QueryError::Execution(_))
    ));
    // Unary minus drops the name.
    assert_eq!(
        vector(&st, "-temp", t),
        vec![("{room=\"x\"}".into(), -20.0)]
    );
}

#[test]
fn offset_at_and_subqueries() {
    let st = store();
    assert_eq!(one(&st, "temp offset 15s", 600 * S), 22.0);
    assert_eq!(one(&st, r#"req{instance="a"} offset -1m"#, 540 * S), 400.0);
    assert_eq!(one(&st, r#"req{instance="a"} @ 300"#, 600 * S), 200.0);
    assert_eq!(one(&st, r#"req{instance="a"} @ start()"#, 150 * S), 100.0);
    // Subquery: req*2 every 30 s in (480, 600]: 510, 540, 570, 600 -> max 800.
    assert_eq!(
        one(
            &st,
            r#"max_over_time((req{instance="a"} * 2)[2m:30s])"#,
            600 * S
        ),
        800.0
    );
    assert_eq!(
        one(
            &st,
            r#"count_over_time((req{instance="a"} * 2)[2m:30s])"#,
            600 * S
        ),
        4.0
    );
    // Steps are aligned to absolute multiples of the step: (485, 605] -> 510..600.
    assert_eq!(
        one(
            &st,
            r#"count_over_time(req{instance="a"}[2m:30s])"#,
            605 * S
        ),
        4.0
    );
    assert_eq!(
        one(
            &st,
            r#"min_over_time(req{instance="a"}[2m:30s] offset 1m)"#,
            600 * S
        ),
        300.0
    );
    // rate over a subquery uses the subquery's window.
    assert!(close(
        one(&st, r#"rate(req{instance="a"}[1m:15s])"#, 600 * S),
        10.0 / 15.0
    ));
}

#[test]
fn histogram_quantile_over_classic_buckets() {
    let st = store();
    let t = 600 * S;
    // Cumulative counts at i = 40: le=0.1: 40, le=0.5: 120, +Inf: 160.
    // q=0.5: rank 80 falls in (0.1, 0.5]: 0.1 + 0.4 * (80-40)/80 = 0.3.
    assert!(close(
        one(&st, "histogram_quantile(0.5, lat_bucket)", t),
        0.3
    ));
    // q=0.9: rank 144 is in the +Inf bucket: the largest finite bound.
    assert_eq!(one(&st, "histogram_quantile(0.9, lat_bucket)", t), 0.5);
    assert!(close(
        one(
            &st,
            "histogram_quantile(0.2, sum by (le) (rate(lat_bucket[1m])))",
            t
        ),
        0.1 * 0.8
    ));
    assert_eq!(
        vector(&st, "histogram_quantile(0.5, lat_bucket)", t)[0].0,
        "{}"
    );
}

#[test]
fn label_and_misc_functions() {
    let st = store();
    let t = 600 * S;
    assert_eq!(
        vector(
            &st,
            r#"label_replace(temp, "floor", "f-$1", "room", "(.*)")"#,
            t
        )[0]
        .0,
        "temp{floor=\"f-x\", room=\"x\"}"
    );
    // No match: unchanged.
    assert_eq!(
        vector(&st, r#"label_replace(temp, "floor", "$1", "room", "y")"#, t)[0].0,
        "temp{room=\"x\"}"
    );
    assert_eq!(
        vector(
            &st,
            r#"label_join(info{instance="a"}, "id", "-", "instance", "version")"#,
            t
        )[0]
        .0,
        "info{id=\"a-1.2\", instance=\"a\", version=\"1.2\"}"
    );
    assert_eq!(
        vector(&st, r#"absent(nope{job="x", env=~"p.*"})"#, t),
        vec![("{job=\"x\"}".into(), 1.0)]
    );
    assert!(vector(&st, "absent(temp)", t).is_empty());
    assert_eq!(one(&st, r#"absent_over_time(nope{job="y"}[1m])"#, t), 1.0);
    assert_eq!(scalar(&st, "time()", t), 600.0);
    assert_eq!(one(&st, "timestamp(temp)", 610 * S), 600.0);
    assert_eq!(one(&st, "vector(3)", t), 3.0);
    assert_eq!(scalar(&st, "scalar(temp)", t), 20.0);
    assert!(scalar(&st, "scalar(req)", t).is_nan());
    assert_eq!(one(&st, "clamp(temp, 0, 10)", t), 10.0);
    assert_eq!(one(&st, "clamp_min(temp, 25)", t), 25.0);
    assert_eq!(one(&st, "clamp_max(temp, 5)", t), 5.0);
    assert_eq!(one(&st, "round(temp / 3)", t), 7.0);
    assert_eq!(one(&st, "round(temp / 3, 0.5)", t), 6.5);
    assert!(close(one(&st, "sqrt(temp)", t), 20f64.sqrt()));
    assert!(close(one(&st, "ln(exp(temp))", t), 20.0));
    // 1970-01-01T00:10:00Z.
    assert_eq!(one(&st, "minute()", t), 10.0);
    assert_eq!(one(&st, "day_of_week()", t), 4.0);
    assert_eq!(one(&st, "year(vector(1709214300))", t), 2024.0);
    match query(&st, "sort_desc(req)", t).unwrap() {
        QueryValue::Vector(v) => assert_eq!(
            v.iter().map(|s| s.v).collect::<Vec<_>>(),
            vec![400.0, 200.0, 0.0]
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn errors_are_clear() {
    let st = store();
    assert!(matches!(query(&st, "sum(", 0), Err(QueryError::BadData(_))));
    assert!(matches!(
        query(&st, "histogram_count(req)", 0),
        Err(QueryError::Unsupported(_))
    ));
    // Dropping the name makes two series identical.
    assert!(query(&st, r#"rate({instance="a"}[1m])"#, 600 * S).is_ok());
    let dup = Storage::open(StorageConfig::default()).unwrap();
    dup.write(
        &tenant(),
        vec![
            series(&[("__name__", "x"), ("a", "1")], [(0, 1.0), (15 * S, 2.0)]),
            series(&[("__name__", "y"), ("a", "1")], [(0, 1.0), (15 * S, 2.0)]),
        ],
        0,
    )
    .unwrap();
    assert!(matches!(
        query(&dup, r#"rate({a="1"}[1m])"#, 30 * S),
        Err(QueryError::Execution(_))
    ));
}

#[test]
fn range_query_steps_equal_instant_queries() {
    let st = store();
    let cfg = EngineConfig::default();
    for q in [
        r#"max_over_time(rate(req{instance="a"}[1m])[2m:30s])"#,
        "sum_over_time(temp[3m:20s] offset 30s)",
        "avg_over_time(sum by (job) (req)[5m:])",
    ] {
        let range = range_query(&st, &tenant(), q, 300 * S, 600 * S, 37 * S, &cfg).unwrap();
        let QueryValue::Matrix(m) = range else {
            panic!("{q}")
        };
        for s in &m {
            for p in &s.samples {
                let QueryValue::Vector(v) = instant_query(&st, &tenant(), q, p.t, &cfg).unwrap()
                else {
                    panic!("{q}")
                };
                let same = v.iter().find(|x| x.labels == s.labels).map(|x| x.v);
                assert_eq!(same, Some(p.v), "{q} at {}", p.t);
            }
        }
        assert!(!m.is_empty(), "{q}");
    }
}

#[test]
fn sample_limit_stops_big_queries() {
    let st = store();
    let cfg = EngineConfig {
        max_samples: 100,
        ..EngineConfig::default()
    };
    assert!(instant_query(&st, &tenant(), "count_over_time(temp[5m])", 600 * S, &cfg).is_ok());
    assert!(matches!(
        instant_query(&st, &tenant(), "count_over_time(req[10m])", 600 * S, &cfg),
        Err(QueryError::Execution(m)) if m.contains("too many samples")
    ));
}

#[test]
fn range_queries() {
    let st = store();
    let cfg = EngineConfig::default();
    let r = range_query(&st, &tenant(), "sum(req)", 0, 600 * S, 60 * S, &cfg).unwrap();
    match r {
        QueryValue::Matrix(m) => {
            assert_eq!(m.len(), 1);
            assert_eq!(m[0].samples.len(), 11);
            // At 300 s: a = 200, b = 100, c = 0.
            assert_eq!(
                m[0].samples[5],
                Sample {
                    t: 300 * S,
                    v: 300.0
                }
            );
        }
        other => panic!("{other:?}"),
    }
    // Series appear only at steps where they have a value.
    match range_query(&st, &tenant(), "gone", 0, 600 * S, 100 * S, &cfg).unwrap() {
        QueryValue::Matrix(m) => assert_eq!(
            m[0].samples.iter().map(|s| s.t / S).collect::<Vec<_>>(),
            vec![0, 100]
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(range_query(&st, &tenant(), "req", 0, 100_000 * S, S, &cfg), Err(QueryError::BadData(m)) if m.contains("11000"))
    );
    assert!(matches!(
        range_query(&st, &tenant(), "req[1m]", 0, 60 * S, S, &cfg),
        Err(QueryError::BadData(_))
    ));
    // Tenants do not see each other's data.
    let other = TenantId::new("other").unwrap();
    match instant_query(&st, &other, "req", 600 * S, &cfg).unwrap() {
        QueryValue::Vector(v) => assert!(v.is_empty()),
        x => panic!("{x:?}"),
    }
}
