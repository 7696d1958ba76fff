//! The totals rule, and the in-memory store held to the ports' conformance suites.

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

#[tokio::test]
async fn memory_store_conforms() {
    conformance::claims(&MemoryCheckpoints::default())
        .await
        .unwrap();
    conformance::locks(&MemoryCheckpoints::default())
        .await
        .unwrap();
}
