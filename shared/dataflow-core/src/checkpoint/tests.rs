//! The totals rule and the in-memory store's reading of reasons and recent records.

use super::*;

fn done(accepted: u64, rejected: u64, bytes: u64) -> Completion {
    Completion {
        bucket: "b".into(),
        key: "k".into(),
        accepted,
        rejected,
        bytes,
        output_keys: Vec::new(),
        max_event_time_us: None,
        duration_ms: 0,
        rejected_by_reason: BTreeMap::from([("invalid_json".to_owned(), rejected)]),
    }
}

#[tokio::test]
async fn reasons_follow_the_counted_version_and_recent_reads_two_days() {
    let store = MemoryCheckpoints::default();
    let day = 20_000 * DAY_MS;
    let obj = |v: &str| ObjectRef {
        bucket: "raw".into(),
        key: "a.jsonl".into(),
        etag: Some(v.into()),
        version_id: None,
        size: Some(1),
    };
    let mut c = done(3, 2, 10);
    c.rejected_by_reason.insert("missing_user_id".into(), 1);
    let ClaimOutcome::Acquired(first) = store.claim(&obj("v1"), day - DAY_MS, 1000).await.unwrap()
    else {
        panic!("not claimed")
    };
    store
        .complete(&first, &c, None, day - DAY_MS)
        .await
        .unwrap();
    let p = store.pipeline().await.unwrap();
    let want = BTreeMap::from([("invalid_json".into(), 2), ("missing_user_id".into(), 1)]);
    assert_eq!(p.rejected_by_reason, want);
    // A new version of the key replaces the old one's reasons, it does not add to them.
    let ClaimOutcome::Acquired(second) = store.claim(&obj("v2"), day + 5, 1000).await.unwrap()
    else {
        panic!("not claimed")
    };
    let current = store.current_version(&obj("v2").key_id()).await.unwrap();
    store
        .complete(&second, &done(1, 4, 1), current.as_deref(), day + 5)
        .await
        .unwrap();
    let p = store.pipeline().await.unwrap();
    assert_eq!(
        p.rejected_by_reason,
        BTreeMap::from([("invalid_json".into(), 4)])
    );
    let recent = store.recent(10, day + 10).await.unwrap();
    let states: Vec<(&str, State)> = recent.iter().map(|r| (r.id.as_str(), r.state)).collect();
    assert_eq!(
        states,
        vec![
            (first.id.as_str(), State::Superseded),
            (second.id.as_str(), State::Done)
        ]
    );
    assert_eq!(store.recent(1, day + 10).await.unwrap().len(), 1);
    // Two days on, the first day's records are out of the window.
    let later = store.recent(10, day + 2 * DAY_MS).await.unwrap();
    assert!(later.is_empty(), "{later:?}");
}

#[test]
fn totals_move_by_the_difference_and_never_below_zero() {
    let (new, old) = (done(7, 1, 100), done(10, 0, 300));
    let d = TotalsDelta::between(Some(&new), Some(&old));
    assert_eq!((d.files, d.accepted, d.rejected, d.bytes), (0, -3, 1, -200));
    let mut p = PipelineState {
        files_processed: 1,
        events_accepted: 10,
        events_rejected: 0,
        bytes_processed: 300,
        ..PipelineState::default()
    };
    d.apply(&mut p);
    assert_eq!(p.counts(), (1, 7, 1, 100));
    TotalsDelta::between(None, Some(&done(u64::MAX, 5, 5))).apply(&mut p);
    assert_eq!(p.counts(), (0, 0, 0, 95));
    let max = done(u64::MAX, u64::MAX, u64::MAX);
    TotalsDelta::between(Some(&max), None).apply(&mut p);
    assert_eq!(p.counts(), (1, u64::MAX, u64::MAX, u64::MAX));
}
