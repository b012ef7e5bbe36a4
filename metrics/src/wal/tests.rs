use super::*;
use crate::labels::{Labels, Sample};

fn series_rec(r: SeriesRef) -> WalRecord {
    WalRecord::Series(vec![(
        r,
        Labels::from_pairs([("__name__", "m"), ("i", r.to_string().as_str())]).unwrap(),
    )])
}

fn samples_rec(r: SeriesRef, t: i64) -> WalRecord {
    WalRecord::Samples(vec![(
        r,
        Sample {
            t,
            v: t as f64 * 0.5,
        },
    )])
}

fn replay(dir: &Path, seg: u64) -> Result<(Wal, Vec<WalRecord>, ReplayReport), WalError> {
    let mut recs = Vec::new();
    let (wal, report) = Wal::open(dir, seg, |r| recs.push(r))?;
    Ok((wal, recs, report))
}

fn seg_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(segment_name(n))
}

#[test]
fn log_and_replay_across_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, recs, _) = replay(tmp.path(), 200).unwrap();
    assert!(recs.is_empty());
    let mut expected = Vec::new();
    for i in 0..20 {
        let batch = vec![series_rec(i), samples_rec(i, i as i64 * 1000)];
        wal.log(&batch).unwrap();
        expected.extend(batch);
    }
    assert!(wal.current_segment() > 3, "small segments were cut");
    drop(wal);
    let (mut wal, recs, report) = replay(tmp.path(), 200).unwrap();
    assert_eq!(recs, expected);
    assert_eq!(report.truncated, None);
    // Appending after reopen continues the log.
    wal.log(&[samples_rec(1, 99)]).unwrap();
    drop(wal);
    let (_, recs, _) = replay(tmp.path(), 200).unwrap();
    assert_eq!(recs.len(), expected.len() + 1);
}

#[test]
fn truncation_at_every_byte_offset_replays_the_complete_prefix() {
    let src = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = replay(src.path(), DEFAULT_SEGMENT_SIZE).unwrap();
    let records: Vec<WalRecord> = (0..6)
        .flat_map(|i| [series_rec(i), samples_rec(i, 7 * i as i64)])
        .collect();
    let mut ends = Vec::new();
    let mut total = 0u64;
    for r in &records {
        wal.log(std::slice::from_ref(r)).unwrap();
        total += (FRAME_HEADER + r.encode().len()) as u64;
        ends.push(total);
    }
    drop(wal);
    let bytes = fs::read(seg_path(src.path(), 0)).unwrap();
    assert_eq!(bytes.len() as u64, total);
    for cut in 0..=bytes.len() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(seg_path(dir.path(), 0), &bytes[..cut]).unwrap();
        let (mut wal, recs, report) = replay(dir.path(), DEFAULT_SEGMENT_SIZE)
            .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let complete = ends.iter().filter(|&&e| e <= cut as u64).count();
        assert_eq!(recs, records[..complete], "cut at {cut}");
        let boundary = if complete == 0 { 0 } else { ends[complete - 1] };
        assert_eq!(
            report.truncated.is_some(),
            boundary != cut as u64,
            "cut at {cut}"
        );
        assert_eq!(
            fs::metadata(seg_path(dir.path(), 0)).unwrap().len(),
            boundary
        );
        // The log stays usable: a new record lands after the valid prefix.
        wal.log(&[samples_rec(42, 42)]).unwrap();
        drop(wal);
        let (_, recs, report) = replay(dir.path(), DEFAULT_SEGMENT_SIZE).unwrap();
        assert_eq!(recs.len(), complete + 1);
        assert_eq!(recs.last(), Some(&samples_rec(42, 42)));
        assert_eq!(report.truncated, None);
    }
}

#[test]
fn corrupt_last_frame_is_truncated_but_corruption_in_the_middle_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = replay(tmp.path(), DEFAULT_SEGMENT_SIZE).unwrap();
    wal.log(&[series_rec(1), samples_rec(1, 1), samples_rec(1, 2)])
        .unwrap();
    drop(wal);
    let path = seg_path(tmp.path(), 0);
    let good = fs::read(&path).unwrap();

    // Flip a byte in the payload of the last frame: a torn write, truncated with a warning.
    let mut bytes = good.clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let (_, recs, report) = replay(tmp.path(), DEFAULT_SEGMENT_SIZE).unwrap();
    assert_eq!(recs.len(), 2);
    assert!(report.truncated.is_some());

    // Flip a byte in the first frame: corruption in the middle, reported.
    let mut bytes = good.clone();
    bytes[FRAME_HEADER + 1] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    match replay(tmp.path(), DEFAULT_SEGMENT_SIZE) {
        Err(WalError::Corrupt { offset, .. }) => assert_eq!(offset, 0),
        other => panic!("expected corruption error, got {other:?}"),
    }
    // The file was not modified by the failed open.
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

#[test]
fn torn_tail_of_an_older_segment_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = replay(tmp.path(), DEFAULT_SEGMENT_SIZE).unwrap();
    wal.log(&[series_rec(1), samples_rec(1, 1)]).unwrap();
    wal.cut().unwrap();
    wal.log(&[samples_rec(1, 2)]).unwrap();
    drop(wal);
    let path = seg_path(tmp.path(), 0);
    let len = fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    assert!(matches!(
        replay(tmp.path(), DEFAULT_SEGMENT_SIZE),
        Err(WalError::Corrupt { .. })
    ));
    // A missing segment in the middle is reported as well.
    fs::remove_file(&path).unwrap();
    fs::write(seg_path(tmp.path(), 3), b"").unwrap();
    assert!(matches!(
        replay(tmp.path(), DEFAULT_SEGMENT_SIZE),
        Err(WalError::Gap(3, 1))
    ));
}

#[test]
fn checkpoint_keeps_live_series_and_recent_samples_and_drops_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = replay(tmp.path(), 100).unwrap();
    for i in 0..4u64 {
        wal.log(&[series_rec(i)]).unwrap();
        for t in 0..5 {
            wal.log(&[samples_rec(i, t * 100)]).unwrap();
        }
    }
    let before = list_segments(tmp.path()).unwrap().len();
    assert!(before > 2);
    let cp = wal.checkpoint(|r| r != 2, 200).unwrap();
    wal.log(&[samples_rec(0, 1000)]).unwrap();
    drop(wal);
    let segs = list_segments(tmp.path()).unwrap();
    assert!(
        segs.iter().all(|&s| s > cp),
        "old segments removed: {segs:?}"
    );
    let (mut wal, recs, report) = replay(tmp.path(), 100).unwrap();
    assert_eq!(report.checkpoint, Some(cp));
    let mut series = Vec::new();
    let mut samples = Vec::new();
    for r in recs {
        match r {
            WalRecord::Series(s) => series.extend(s.into_iter().map(|(r, _)| r)),
            WalRecord::Samples(s) => samples.extend(s.into_iter().map(|(r, s)| (r, s.t))),
        }
    }
    assert_eq!(series, vec![0, 1, 3]);
    assert_eq!(samples.len(), 3 * 3 + 1);
    assert!(samples.iter().all(|&(r, t)| r != 2 && t >= 200));
    assert_eq!(samples.last(), Some(&(0, 1000)));
    // A second checkpoint replaces the first.
    let cp2 = wal.checkpoint(|_| true, 0).unwrap();
    drop(wal);
    let (_, recs, report) = replay(tmp.path(), 100).unwrap();
    assert_eq!(report.checkpoint, Some(cp2));
    assert!(
        !tmp.path()
            .join(format!("{CHECKPOINT_PREFIX}{}", segment_name(cp)))
            .exists()
    );
    assert_eq!(
        recs.iter()
            .filter(|r| matches!(r, WalRecord::Samples(_)))
            .count(),
        1
    );
}

mod fuzz_like {
    use super::*;
    use proptest::prelude::*;

    fn segment() -> (Vec<WalRecord>, Vec<u8>) {
        let records: Vec<WalRecord> = (0..4)
            .flat_map(|i| [series_rec(i), samples_rec(i, i as i64)])
            .collect();
        let bytes = records.iter().flat_map(|r| frame(&r.encode())).collect();
        (records, bytes)
    }

    proptest! {
        #[test]
        fn random_segments_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = read_segment(&bytes);
        }

        #[test]
        fn a_flipped_byte_never_yields_wrong_records(pos in 0usize..10_000, bit in 0u8..8) {
            let (records, mut bytes) = segment();
            let pos = pos % bytes.len();
            bytes[pos] ^= 1 << bit;
            let (got, end) = read_segment(&bytes);
            prop_assert!(end != Scan::Clean || got.len() == records.len());
            prop_assert!(got.len() <= records.len());
            prop_assert_eq!(&got[..], &records[..got.len()]);
        }
    }
}

#[test]
fn group_commit_covers_appends_across_cuts() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut wal, _, _) = replay(tmp.path(), 120).unwrap();
    let syncer = wal.syncer();
    let mut positions = Vec::new();
    for i in 0..10 {
        positions.push(wal.append(&[samples_rec(i, i as i64)]).unwrap());
    }
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    assert!(wal.current_segment() > 0, "appends crossed a segment cut");
    // Syncing the last position covers all earlier ones; older positions return at once.
    syncer.sync_to(*positions.last().unwrap()).unwrap();
    syncer.sync_to(positions[0]).unwrap();
    drop(wal);
    let (_, recs, _) = replay(tmp.path(), 120).unwrap();
    assert_eq!(recs.len(), 10);
}
