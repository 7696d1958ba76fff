//! The checkpoint ports in memory, with the same semantics as DynamoDB's: unit tests of the
//! orchestration and local runs without a table.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::*;
use crate::lake::source::ObjectRef;

#[derive(Debug, Default)]
struct MemoryState {
    objects: BTreeMap<String, ObjectCheckpoint>,
    pipeline: PipelineState,
    locks: BTreeMap<String, (String, i64)>,
    /// Key id -> checkpoint id of the key's current (done) version.
    current: BTreeMap<String, String>,
}

/// In-memory implementation with the same semantics, for unit tests of the orchestration.
#[derive(Debug, Default)]
pub struct MemoryCheckpoints {
    inner: Mutex<MemoryState>,
}

impl MemoryCheckpoints {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryState>, CheckpointError> {
        self.inner
            .lock()
            .map_err(|_| CheckpointError::Store("lock poisoned".into()))
    }
}

/// The in-memory record of a held claim, if still held (the attempt number is the owner).
fn held<'a>(g: &'a mut MemoryState, claim: &Claim) -> Option<&'a mut ObjectCheckpoint> {
    g.objects
        .get_mut(&claim.id)
        .filter(|r| r.state == State::InProgress && r.attempts == claim.attempt)
}

#[async_trait]
impl ObjectClaims for MemoryCheckpoints {
    async fn claim(
        &self,
        obj: &ObjectRef,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<ClaimOutcome, CheckpointError> {
        let id = obj.checkpoint_id();
        let mut g = self.lock()?;
        let attempts = match g.objects.get(&id) {
            Some(c) if c.state == State::Done => return Ok(ClaimOutcome::AlreadyDone),
            Some(c) if c.state == State::Superseded => return Ok(ClaimOutcome::Superseded),
            Some(c) if c.state == State::InProgress && c.lease_expires_ms >= now_ms => {
                return Ok(ClaimOutcome::Busy {
                    lease_expires_ms: c.lease_expires_ms,
                })
            }
            Some(c) => c.attempts,
            None => 0,
        };
        let claim = Claim {
            id: id.clone(),
            owner: uuid::Uuid::new_v4().to_string(),
            attempt: attempts + 1,
        };
        g.objects.insert(
            id.clone(),
            ObjectCheckpoint {
                id,
                state: State::InProgress,
                attempts: attempts + 1,
                lease_expires_ms: now_ms + lease_ms,
                completion: None,
                error: None,
                updated_ms: now_ms,
                source: Some(obj.clone()),
                cleanup: Vec::new(),
            },
        );
        Ok(ClaimOutcome::Acquired(claim))
    }

    async fn renew(
        &self,
        claim: &Claim,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<bool, CheckpointError> {
        let mut g = self.lock()?;
        Ok(match held(&mut g, claim) {
            Some(rec) => {
                rec.lease_expires_ms = now_ms + lease_ms;
                true
            }
            None => false,
        })
    }

    async fn current_version(&self, key_id: &str) -> Result<Option<String>, CheckpointError> {
        Ok(self.lock()?.current.get(key_id).cloned())
    }

    async fn complete(
        &self,
        claim: &Claim,
        c: &Completion,
        expected: Option<&str>,
        now_ms: i64,
    ) -> Result<CompleteOutcome, CheckpointError> {
        let mut g = self.lock()?;
        let Some(rec) = held(&mut g, claim) else {
            return Ok(CompleteOutcome::Lost);
        };
        let key_id = rec
            .source
            .as_ref()
            .map(ObjectRef::key_id)
            .unwrap_or_else(|| claim.id.clone());
        if g.current.get(&key_id).map(String::as_str) != expected {
            return Ok(CompleteOutcome::KeyMoved);
        }
        let Some(rec) = held(&mut g, claim) else {
            return Ok(CompleteOutcome::Lost);
        };
        rec.state = State::Done;
        rec.completion = Some(c.clone());
        rec.updated_ms = now_ms;
        let previous = g.current.insert(key_id, claim.id.clone());
        let replaced = match previous.filter(|p| *p != claim.id) {
            Some(p) => match g.objects.get_mut(&p) {
                Some(old) if old.state == State::Done => {
                    old.supersede(now_ms);
                    Some(old.clone())
                }
                _ => None,
            },
            None => None,
        };
        let pipe = &mut g.pipeline;
        TotalsDelta::between(
            Some(c),
            replaced.as_ref().and_then(|r| r.completion.as_ref()),
        )
        .apply(pipe);
        pipe.latest_event_time_us = pipe.latest_event_time_us.max(c.max_event_time_us);
        pipe.last_object = Some(format!("s3://{}/{}", c.bucket, c.key));
        pipe.last_processed_ms = Some(now_ms);
        Ok(CompleteOutcome::Done {
            replaced: replaced.map(Box::new),
        })
    }

    async fn fail(&self, claim: &Claim, error: &str, now_ms: i64) -> Result<(), CheckpointError> {
        let mut g = self.lock()?;
        if let Some(rec) = held(&mut g, claim) {
            rec.state = State::Failed;
            rec.error = Some(error.into());
            rec.lease_expires_ms = 0;
            rec.updated_ms = now_ms;
        }
        Ok(())
    }

    async fn abandon(
        &self,
        claim: &Claim,
        outputs: &[String],
        reason: &str,
        now_ms: i64,
    ) -> Result<(), CheckpointError> {
        let mut g = self.lock()?;
        if let Some(rec) = held(&mut g, claim) {
            rec.state = State::Superseded;
            rec.error = Some(reason.into());
            rec.lease_expires_ms = 0;
            rec.updated_ms = now_ms;
            rec.cleanup = outputs.to_vec();
        }
        Ok(())
    }

    async fn cleaned(&self, id: &str) -> Result<(), CheckpointError> {
        if let Some(rec) = self.lock()?.objects.get_mut(id) {
            rec.cleanup.clear();
        }
        Ok(())
    }

    async fn forget(&self, id: &str) -> Result<bool, CheckpointError> {
        let mut g = self.lock()?;
        let Some(rec) = g.objects.remove(id) else {
            return Ok(false);
        };
        if rec.state == State::Done {
            TotalsDelta::between(None, rec.completion.as_ref()).apply(&mut g.pipeline);
        }
        Ok(true)
    }
}

#[async_trait]
impl CheckpointReads for MemoryCheckpoints {
    async fn attention(&self) -> Result<Vec<ObjectCheckpoint>, CheckpointError> {
        Ok(self
            .lock()?
            .objects
            .values()
            .filter(|r| r.state == State::InProgress || !r.cleanup.is_empty())
            .cloned()
            .collect())
    }

    async fn get(&self, id: &str) -> Result<Option<ObjectCheckpoint>, CheckpointError> {
        Ok(self.lock()?.objects.get(id).cloned())
    }

    async fn list(&self) -> Result<Vec<ObjectCheckpoint>, CheckpointError> {
        Ok(self.lock()?.objects.values().cloned().collect())
    }

    async fn recent(
        &self,
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<ObjectCheckpoint>, CheckpointError> {
        let since = recent_since_ms(now_ms);
        let mut out: Vec<ObjectCheckpoint> = self
            .lock()?
            .objects
            .values()
            .filter(|r| r.updated_ms >= since)
            .cloned()
            .collect();
        out.sort_by(|a, b| b.updated_ms.cmp(&a.updated_ms).then(a.id.cmp(&b.id)));
        out.truncate(limit);
        Ok(out)
    }

    async fn failed(&self, limit: usize) -> Result<Vec<ObjectCheckpoint>, CheckpointError> {
        Ok(self
            .lock()?
            .objects
            .values()
            .filter(|r| r.state == State::Failed)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn pipeline(&self) -> Result<PipelineState, CheckpointError> {
        Ok(self.lock()?.pipeline.clone())
    }
}

#[async_trait]
impl Locks for MemoryCheckpoints {
    async fn acquire_lock(
        &self,
        name: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<Claim>, CheckpointError> {
        let mut g = self.lock()?;
        if g.locks.get(name).is_some_and(|(_, until)| *until > now_ms) {
            return Ok(None);
        }
        let owner = uuid::Uuid::new_v4().to_string();
        g.locks
            .insert(name.into(), (owner.clone(), now_ms + lease_ms));
        Ok(Some(Claim {
            id: name.into(),
            owner,
            attempt: 1,
        }))
    }

    async fn release_lock(&self, claim: &Claim) -> Result<(), CheckpointError> {
        let mut g = self.lock()?;
        if g.locks
            .get(&claim.id)
            .is_some_and(|(o, _)| *o == claim.owner)
        {
            g.locks.remove(&claim.id);
        }
        Ok(())
    }
}
