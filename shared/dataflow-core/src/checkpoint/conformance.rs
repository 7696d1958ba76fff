//! What every checkpoint store must do, port by port, as suites each implementation runs: the
//! memory store here, DynamoDB against the emulator in `dataflow-aws`. Times are passed in, so
//! leases expire by argument, not by waiting. A suite needs a store no one else writes to (the
//! totals are the store's own).

use std::collections::BTreeMap;

use super::*;
use crate::lake::source::ObjectRef;

macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

const DAY_MS: i64 = 86_400_000;
/// Midday of a fixed day, so "recent" (yesterday and today) is the same for every store.
const NOW: i64 = 20_000 * DAY_MS + DAY_MS / 2;
const LEASE: i64 = 30_000;

fn e(what: &str) -> impl Fn(CheckpointError) -> String + '_ {
    move |err| format!("{what}: {err}")
}

fn object(key: &str, etag: &str) -> ObjectRef {
    ObjectRef {
        bucket: "raw".into(),
        key: key.into(),
        etag: Some(etag.into()),
        version_id: None,
        size: Some(100),
    }
}

fn completion(key: &str, accepted: u64, rejected: u64, outputs: &[&str]) -> Completion {
    Completion {
        bucket: "raw".into(),
        key: key.into(),
        accepted,
        rejected,
        bytes: 100,
        output_keys: outputs.iter().map(|s| s.to_string()).collect(),
        max_event_time_us: Some(1_000_000 * accepted as i64),
        duration_ms: 5,
        rejected_by_reason: if rejected > 0 {
            BTreeMap::from([("invalid_json".to_owned(), rejected)])
        } else {
            BTreeMap::new()
        },
    }
}

async fn acquire(store: &dyn CheckpointStore, obj: &ObjectRef, now: i64) -> Result<Claim, String> {
    match store.claim(obj, now, LEASE).await.map_err(e("claim"))? {
        ClaimOutcome::Acquired(c) => Ok(c),
        other => Err(format!("claim of {} gave {other:?}", obj.checkpoint_id())),
    }
}

async fn state_of(store: &dyn CheckpointStore, id: &str) -> Result<ObjectCheckpoint, String> {
    store
        .get(id)
        .await
        .map_err(e("get"))?
        .ok_or_else(|| format!("no record {id}"))
}

/// [`ObjectClaims`] with [`CheckpointReads`]: leases, takeovers, the done step with its totals,
/// a new version replacing the old one, failures, abandons and forgetting.
pub async fn claims(store: &dyn CheckpointStore) -> Result<(), String> {
    let a1 = object("a.jsonl", "v1");

    // One holder at a time; the heartbeat extends the lease.
    let first = acquire(store, &a1, NOW).await?;
    check!(
        first.attempt == 1 && first.id == a1.checkpoint_id(),
        "{first:?}"
    );
    let busy = store.claim(&a1, NOW + 1, LEASE).await.map_err(e("claim"))?;
    check!(
        busy == ClaimOutcome::Busy {
            lease_expires_ms: NOW + LEASE
        },
        "a live lease gave {busy:?}"
    );
    check!(
        store
            .renew(&first, NOW + 10_000, LEASE)
            .await
            .map_err(e("renew"))?,
        "renew refused"
    );
    let busy = store
        .claim(&a1, NOW + LEASE + 1, LEASE)
        .await
        .map_err(e("claim"))?;
    check!(
        matches!(busy, ClaimOutcome::Busy { .. }),
        "a renewed lease was taken: {busy:?}"
    );
    let attention = store.attention().await.map_err(e("attention"))?;
    check!(
        attention
            .iter()
            .any(|r| r.id == first.id && r.state == State::InProgress),
        "attention lacks the in-progress record"
    );

    // A lease nobody renews is taken over; the old holder can neither renew nor complete.
    let later = NOW + 10_000 + LEASE + 1;
    let second = acquire(store, &a1, later).await?;
    check!(second.attempt == 2, "takeover attempt {}", second.attempt);
    check!(
        !store
            .renew(&first, later, LEASE)
            .await
            .map_err(e("renew"))?,
        "the lost claim renewed"
    );
    let c1 = completion("a.jsonl", 10, 2, &["out/a1"]);
    let lost = store
        .complete(&first, &c1, None, later)
        .await
        .map_err(e("complete"))?;
    check!(
        lost == CompleteOutcome::Lost,
        "the lost claim completed: {lost:?}"
    );

    // The done step: counted once, with the totals, and never claimed again.
    check!(
        store
            .current_version(&a1.key_id())
            .await
            .map_err(e("current_version"))?
            .is_none(),
        "a key with nothing counted has a current version"
    );
    let done = store
        .complete(&second, &c1, None, later)
        .await
        .map_err(e("complete"))?;
    check!(done == CompleteOutcome::Done { replaced: None }, "{done:?}");
    let again = store
        .claim(&a1, later + 1, LEASE)
        .await
        .map_err(e("claim"))?;
    check!(
        again == ClaimOutcome::AlreadyDone,
        "a done object gave {again:?}"
    );
    check!(
        store
            .current_version(&a1.key_id())
            .await
            .map_err(e("current_version"))?
            == Some(a1.checkpoint_id()),
        "the current version is not the counted one"
    );
    let p = store.pipeline().await.map_err(e("pipeline"))?;
    check!(p.counts() == (1, 10, 2, 100), "totals {:?}", p.counts());
    check!(
        p.latest_event_time_us == Some(10_000_000),
        "watermark {:?}",
        p.latest_event_time_us
    );
    check!(
        p.last_object.as_deref() == Some("s3://raw/a.jsonl"),
        "{:?}",
        p.last_object
    );
    check!(
        p.rejected_by_reason == BTreeMap::from([("invalid_json".to_owned(), 2)]),
        "reasons {:?}",
        p.rejected_by_reason
    );
    let rec = state_of(store, &a1.checkpoint_id()).await?;
    check!(
        rec.state == State::Done && rec.completion.as_ref() == Some(&c1) && rec.attempts == 2,
        "done record {rec:?}"
    );

    // A new version of the key: a stale expectation moves nothing; the right one replaces the
    // old version's counts in the same step and leaves its outputs to remove.
    let a2 = object("a.jsonl", "v2");
    let claim2 = acquire(store, &a2, later + 2).await?;
    // Its lines were rejected for another reason: the reasons follow the counted version.
    let mut c2 = completion("a.jsonl", 4, 0, &["out/a2"]);
    c2.rejected = 3;
    c2.rejected_by_reason = BTreeMap::from([("missing_user_id".to_owned(), 3)]);
    let moved = store
        .complete(&claim2, &c2, None, later + 3)
        .await
        .map_err(e("complete"))?;
    check!(
        moved == CompleteOutcome::KeyMoved,
        "a stale expectation gave {moved:?}"
    );
    let current = store
        .current_version(&a1.key_id())
        .await
        .map_err(e("current_version"))?;
    let replaced = match store
        .complete(&claim2, &c2, current.as_deref(), later + 4)
        .await
        .map_err(e("complete"))?
    {
        CompleteOutcome::Done { replaced: Some(r) } => r,
        other => return Err(format!("replacing gave {other:?}")),
    };
    check!(
        replaced.id == a1.checkpoint_id() && replaced.cleanup == ["out/a1"],
        "replaced {replaced:?}"
    );
    let p = store.pipeline().await.map_err(e("pipeline"))?;
    check!(
        p.counts() == (1, 4, 3, 100),
        "totals after the replacement {:?}",
        p.counts()
    );
    check!(
        p.rejected_by_reason == BTreeMap::from([("missing_user_id".to_owned(), 3)]),
        "reasons after the replacement {:?}",
        p.rejected_by_reason
    );
    let old = state_of(store, &a1.checkpoint_id()).await?;
    check!(
        old.state == State::Superseded && old.cleanup == ["out/a1"],
        "old version {old:?}"
    );
    check!(
        store
            .claim(&a1, later + 5, LEASE)
            .await
            .map_err(e("claim"))?
            == ClaimOutcome::Superseded,
        "a superseded version was claimed"
    );
    let attention = store.attention().await.map_err(e("attention"))?;
    check!(
        attention.iter().map(|r| r.id.as_str()).collect::<Vec<_>>() == [a1.checkpoint_id()],
        "attention {attention:?}"
    );
    store
        .cleaned(&a1.checkpoint_id())
        .await
        .map_err(e("cleaned"))?;
    check!(
        store.attention().await.map_err(e("attention"))?.is_empty(),
        "a cleaned record still needs attention"
    );

    // A failure releases the lease at once and is listed until retried.
    let b = object("b.jsonl", "v1");
    let claim_b = acquire(store, &b, later + 6).await?;
    store
        .fail(&claim_b, "disk full", later + 7)
        .await
        .map_err(e("fail"))?;
    let rec = state_of(store, &b.checkpoint_id()).await?;
    check!(
        rec.state == State::Failed && rec.error.as_deref() == Some("disk full"),
        "failed record {rec:?}"
    );
    let failed = store.failed(10).await.map_err(e("failed"))?;
    check!(
        failed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>() == [b.checkpoint_id()],
        "failed list {failed:?}"
    );
    let retry = acquire(store, &b, later + 8).await?;
    check!(retry.attempt == 2, "retry attempt {}", retry.attempt);
    check!(
        store.failed(10).await.map_err(e("failed"))?.is_empty(),
        "a retried failure is listed"
    );

    // Abandoned: superseded without counting, its outputs left to remove.
    store
        .abandon(&retry, &["out/b".to_owned()], "overwritten", later + 9)
        .await
        .map_err(e("abandon"))?;
    let rec = state_of(store, &b.checkpoint_id()).await?;
    check!(
        rec.state == State::Superseded && rec.cleanup == ["out/b"],
        "abandoned record {rec:?}"
    );
    check!(
        store.pipeline().await.map_err(e("pipeline"))?.counts() == (1, 4, 3, 100),
        "an abandoned object counted"
    );

    // Recent records: newest first (b; a1 and a2 changed in the same step), at most the limit,
    // only yesterday and today.
    let recent = store.recent(3, later + 10).await.map_err(e("recent"))?;
    let mut ids: Vec<&str> = recent.iter().map(|r| r.id.as_str()).collect();
    check!(
        ids.first() == Some(&b.checkpoint_id().as_str()),
        "recent {ids:?}"
    );
    ids.sort();
    check!(
        ids == [a1.checkpoint_id(), a2.checkpoint_id(), b.checkpoint_id()],
        "recent {ids:?}"
    );
    check!(
        store
            .recent(1, later + 10)
            .await
            .map_err(e("recent"))?
            .len()
            == 1,
        "recent ignores its limit"
    );
    check!(
        store
            .recent(10, later + 2 * DAY_MS)
            .await
            .map_err(e("recent"))?
            .is_empty(),
        "records of two days ago are recent"
    );
    let listed = store.list().await.map_err(e("list"))?;
    check!(listed.len() == 3, "list has {} records", listed.len());

    // Forgetting a counted version takes its counts out; the object can then count again.
    check!(
        store
            .forget(&a2.checkpoint_id())
            .await
            .map_err(e("forget"))?,
        "forget found nothing"
    );
    check!(
        !store
            .forget(&a2.checkpoint_id())
            .await
            .map_err(e("forget"))?,
        "forgot a record twice"
    );
    let p = store.pipeline().await.map_err(e("pipeline"))?;
    check!(
        p.counts() == (0, 0, 0, 0) && p.rejected_by_reason.is_empty(),
        "totals after forgetting {p:?}"
    );
    check!(
        state_of(store, &a2.checkpoint_id()).await.is_err(),
        "a forgotten record is read"
    );
    acquire(store, &a2, later + 11).await?;
    Ok(())
}

/// [`Locks`]: one holder of a name at a time, released only by its holder, taken over once its
/// lease runs out.
pub async fn locks(store: &dyn Locks) -> Result<(), String> {
    let name = "compact#2024-03-01";
    let held = store
        .acquire_lock(name, NOW, LEASE)
        .await
        .map_err(e("acquire_lock"))?
        .ok_or("a free lock was refused")?;
    check!(
        store
            .acquire_lock(name, NOW + 1, LEASE)
            .await
            .map_err(e("acquire_lock"))?
            .is_none(),
        "a held lock was given twice"
    );
    check!(
        store
            .acquire_lock("compact#2024-03-02", NOW + 1, LEASE)
            .await
            .map_err(e("acquire_lock"))?
            .is_some(),
        "another name is held by this one"
    );
    let stranger = Claim {
        id: name.into(),
        owner: "someone else".into(),
        attempt: 1,
    };
    store
        .release_lock(&stranger)
        .await
        .map_err(e("release_lock"))?;
    check!(
        store
            .acquire_lock(name, NOW + 2, LEASE)
            .await
            .map_err(e("acquire_lock"))?
            .is_none(),
        "a stranger released the lock"
    );
    store.release_lock(&held).await.map_err(e("release_lock"))?;
    let again = store
        .acquire_lock(name, NOW + 3, LEASE)
        .await
        .map_err(e("acquire_lock"))?
        .ok_or("a released lock was refused")?;
    check!(again.owner != held.owner, "the same owner token twice");
    let taken = store
        .acquire_lock(name, NOW + 3 + LEASE + 1, LEASE)
        .await
        .map_err(e("acquire_lock"))?;
    check!(taken.is_some(), "an expired lock was not taken over");
    Ok(())
}
