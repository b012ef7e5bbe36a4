use super::*;
use crate::labels::{Labels, Sample};

fn tid(s: &str) -> TenantId {
    TenantId::new(s).unwrap()
}

fn series(name: &str, samples: &[(i64, f64)]) -> Series {
    Series {
        labels: Labels::from_pairs([("__name__", name)]).unwrap(),
        samples: samples.iter().map(|&(t, v)| Sample { t, v }).collect(),
    }
}

fn all(store: &Storage, tenant: &str) -> Vec<Series> {
    store.select(&tid(tenant), &[], i64::MIN, i64::MAX).unwrap()
}

#[test]
fn tenants_are_isolated() {
    let store = Storage::open(StorageConfig::default()).unwrap();
    store
        .write(&tid("a"), vec![series("m", &[(1, 1.0)])], 0)
        .unwrap();
    store
        .write(
            &tid("b"),
            vec![series("m", &[(1, 2.0)]), series("n", &[(1, 3.0)])],
            0,
        )
        .unwrap();
    assert_eq!(all(&store, "a").len(), 1);
    assert_eq!(all(&store, "a")[0].samples[0].v, 1.0);
    assert_eq!(all(&store, "b").len(), 2);
    assert!(all(&store, "c").is_empty());
    assert_eq!(
        store
            .label_values(&tid("b"), "__name__", &[], 0, 10)
            .unwrap(),
        vec!["m", "n"]
    );
    assert_eq!(
        store.label_names(&tid("a"), &[], 0, 10).unwrap(),
        vec!["__name__"]
    );
}

#[test]
fn refused_batch_writes_nothing_even_to_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig {
        dir: Some(dir.path().to_owned()),
        ..StorageConfig::default()
    };
    let store = Storage::open(config.clone()).unwrap();
    store
        .write(&tid("t"), vec![series("a", &[(10, 1.0)])], 0)
        .unwrap();
    let err = store
        .write(
            &tid("t"),
            vec![series("b", &[(20, 1.0)]), series("a", &[(5, 1.0)])],
            0,
        )
        .unwrap_err();
    assert!(matches!(
        err,
        WriteError::Append(AppendError::OutOfOrder { .. })
    ));
    assert_eq!(all(&store, "t").len(), 1);
    drop(store);
    let store = Storage::open(config).unwrap();
    let got = all(&store, "t");
    assert_eq!(got.len(), 1, "series b must not be in the WAL");
    assert_eq!(got[0].samples, vec![Sample { t: 10, v: 1.0 }]);
}

#[test]
fn acknowledged_writes_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig {
        dir: Some(dir.path().to_owned()),
        segment_size: 256,
        ..StorageConfig::default()
    };
    let store = Storage::open(config.clone()).unwrap();
    for i in 0..50 {
        store
            .write(
                &tid("t1"),
                vec![
                    series("up", &[(i * 1000, i as f64)]),
                    series(&format!("s{}", i % 7), &[(i * 1000, 1.0)]),
                ],
                0,
            )
            .unwrap();
    }
    store
        .write(&tid("t2"), vec![series("other", &[(5, 5.0)])], 0)
        .unwrap();
    let before = all(&store, "t1");
    drop(store);
    let store = Storage::open(config).unwrap();
    assert_eq!(store.tenants().unwrap(), vec![tid("t1"), tid("t2")]);
    assert_eq!(all(&store, "t1"), before);
    assert_eq!(all(&store, "t2").len(), 1);
    // New series after replay get fresh refs and do not clash with replayed ones.
    store
        .write(&tid("t1"), vec![series("fresh", &[(60_000, 1.0)])], 0)
        .unwrap();
    assert_eq!(all(&store, "t1").len(), before.len() + 1);
}

#[test]
fn limits_refuse_whole_batches() {
    let limits = Limits {
        ingestion_rate: 10.0,
        ingestion_burst: 10.0,
        max_series: 2,
        max_label_names: 3,
        ..Limits::default()
    };
    let store = Storage::open(StorageConfig {
        limits,
        ..StorageConfig::default()
    })
    .unwrap();
    let t = tid("t");
    let many: Vec<(i64, f64)> = (0..11).map(|i| (i, 1.0)).collect();
    match store.write(&t, vec![series("a", &many)], 0) {
        Err(WriteError::RateLimited { retry_after_ms, .. }) => assert_eq!(retry_after_ms, 100),
        other => panic!("expected rate limit, got {other:?}"),
    }
    assert!(all(&store, "t").is_empty());
    store
        .write(
            &t,
            vec![series("a", &[(1, 1.0)]), series("b", &[(1, 1.0)])],
            0,
        )
        .unwrap();
    assert!(matches!(
        store.write(&t, vec![series("c", &[(2, 1.0)])], 0),
        Err(WriteError::SeriesLimit { limit: 2, .. })
    ));
    let wide = Series {
        labels: Labels::from_pairs([("__name__", "a"), ("x", "1"), ("y", "2"), ("z", "3")])
            .unwrap(),
        samples: vec![],
    };
    assert!(matches!(
        store.write(&t, vec![wide], 0),
        Err(WriteError::LabelLimit { .. })
    ));
}
