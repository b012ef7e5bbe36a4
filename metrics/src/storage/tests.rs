use super::*;
use crate::block::Block;
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
    // A refused first batch of a new tenant creates nothing on disk.
    let refused = store.write(&tid("fresh"), vec![series("x", &[(5, 1.0), (4, 1.0)])], 0);
    assert!(refused.is_err());
    assert!(!dir.path().join("fresh").exists());
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

#[test]
fn blocks_compaction_and_retention_follow_the_injected_clock() {
    const MIN: i64 = 60_000;
    const H: i64 = 60 * MIN;
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig {
        dir: Some(dir.path().to_owned()),
        segment_size: 64 * 1024,
        ..StorageConfig::default()
    };
    let store = Storage::open(config.clone()).unwrap();
    let t = tid("t");
    let mut report = MaintenanceReport::default();
    // Two series, one sample a minute for 20 hours; maintenance every 10 minutes of data.
    for batch in 0..120 {
        let pts: Vec<(i64, f64)> = (0..10)
            .map(|i| ((batch * 10 + i) * MIN, (batch * 10 + i) as f64))
            .collect();
        store
            .write(&t, vec![series("a", &pts), series("b", &pts)], 0)
            .unwrap();
        let r = store.maintain((batch * 10 + 10) * MIN).unwrap();
        report.blocks_cut += r.blocks_cut;
        report.compactions += r.compactions;
    }
    // Cuts happen once the head spans more than 3 h: [0, 2h) … [16h, 18h).
    assert_eq!(report.blocks_cut, 9);
    // 6 h windows [0,6), [6,12), [12,18) and then the 18 h window [0,18).
    assert_eq!(report.compactions, 4);
    let blocks_dir = dir.path().join("t").join("blocks");
    let names: Vec<String> = fs::read_dir(&blocks_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let block = Block::open(&blocks_dir.join(&names[0])).unwrap();
    assert_eq!(
        (block.meta().min_t, block.meta().max_t, block.meta().level),
        (0, 18 * H, 3)
    );
    assert_eq!(block.meta().sources.len(), 9);

    let check = |store: &Storage| {
        let got = store.select(&t, &[], i64::MIN, i64::MAX).unwrap();
        assert_eq!(got.len(), 2);
        for s in &got {
            assert_eq!(s.samples.len(), 1200);
            assert!(
                s.samples
                    .iter()
                    .enumerate()
                    .all(|(i, x)| x.t == i as i64 * MIN && x.v == i as f64)
            );
        }
        // Series and label values come from block indexes and the head without samples.
        assert_eq!(store.series(&t, &[], 0, H).unwrap().len(), 2);
        assert_eq!(
            store
                .label_values(&t, "__name__", &[], 19 * H, 20 * H)
                .unwrap(),
            vec!["a", "b"]
        );
        assert!(store.series(&t, &[], 30 * H, 31 * H).unwrap().is_empty());
        // A range spanning block and head.
        let mid = store
            .select(&t, &[Matcher::equal("__name__", "a")], 17 * H, 19 * H)
            .unwrap();
        assert_eq!(mid[0].samples.len(), 121);
    };
    check(&store);
    // Samples older than the newest block are refused.
    assert!(matches!(
        store.write(&t, vec![series("a", &[(17 * H, 1.0)])], 0),
        Err(WriteError::Append(AppendError::TooOld { .. }))
    ));
    drop(store);

    // After a restart: the same data, and the WAL only holds what is not in blocks.
    let wal_dir = dir.path().join("t").join("wal");
    assert!(fs::read_dir(&wal_dir).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("checkpoint.")
    }));
    let store = Storage::open(config.clone()).unwrap();
    check(&store);

    // Retention: 15 days after the newest block ends, every block is gone.
    let r = store.maintain(18 * H + config.retention_ms).unwrap();
    assert_eq!(r.blocks_deleted, 1);
    let left = store.select(&t, &[], i64::MIN, i64::MAX).unwrap();
    assert!(left.iter().all(|s| s.samples.iter().all(|x| x.t >= 18 * H)));
    assert_eq!(fs::read_dir(&blocks_dir).unwrap().count(), 0);
}

#[test]
fn leftovers_of_interrupted_compaction_are_cleaned_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let blocks = dir.path().join("t").join("blocks");
    fs::create_dir_all(&blocks).unwrap();
    let a =
        crate::block::write_block(&blocks, &[series("a", &[(1, 1.0)])], 0, 10, 1, vec![]).unwrap();
    let b = crate::block::write_block(&blocks, &[series("a", &[(11, 2.0)])], 10, 20, 1, vec![])
        .unwrap();
    // The merged block was written but the inputs were not deleted yet; an unfinished one lies around.
    crate::block::write_block(
        &blocks,
        &[series("a", &[(1, 1.0), (11, 2.0)])],
        0,
        20,
        2,
        vec![a.id.clone(), b.id.clone()],
    )
    .unwrap();
    fs::create_dir_all(blocks.join("junk.tmp")).unwrap();
    let store = Storage::open(StorageConfig {
        dir: Some(dir.path().to_owned()),
        ..StorageConfig::default()
    })
    .unwrap();
    assert_eq!(fs::read_dir(&blocks).unwrap().count(), 1);
    let got = all(&store, "t");
    assert_eq!(
        got[0].samples,
        vec![Sample { t: 1, v: 1.0 }, Sample { t: 11, v: 2.0 }]
    );
}

#[test]
fn concurrent_writers_share_fsyncs_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = StorageConfig {
        dir: Some(dir.path().to_owned()),
        segment_size: 32 * 1024,
        ..StorageConfig::default()
    };
    let store = Arc::new(Storage::open(config.clone()).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    store
                        .write(
                            &tid("t"),
                            vec![series(&format!("w{w}"), &[(i * 1000, i as f64)])],
                            0,
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(store);
    let store = Storage::open(config).unwrap();
    let got = all(&store, "t");
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|s| s.samples.len() == 100));
}
