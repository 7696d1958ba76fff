//! The sweep: take over attempts that died, finish removing replaced versions' outputs.

use super::{Etl, EtlError, WorkError, WorkReport};
use crate::checkpoint::{CheckpointStore, ClaimOutcome};
use dataflow_store::ObjectStore;

impl<S: ObjectStore, C: CheckpointStore> Etl<S, C> {
    /// Takes over attempts whose lease expired (the process died: a kill, an out-of-memory, a
    /// timeout) and finishes removing replaced versions' outputs. Runs on the schedule, so a
    /// crash heals without an operator and without waiting for the queue to redeliver.
    pub async fn sweep(&self) -> WorkReport {
        let mut report = WorkReport::default();
        self.sweep_into(&mut report).await;
        report
    }

    pub(super) async fn sweep_into(&self, report: &mut WorkReport) {
        let records = match self.checkpoints.attention().await {
            Ok(r) => r,
            Err(e) => {
                report.errors.push(e.into());
                return;
            }
        };
        let now = self.clock.now_ms();
        for rec in records {
            if !rec.cleanup.is_empty() {
                match self.clean_replaced(&rec.id, &rec.cleanup).await {
                    Ok(()) => report.swept += 1,
                    Err(e) => report.errors.push(e.into()),
                }
            } else if rec.is_stuck(now) {
                let Some(source) = rec.source else { continue };
                if rec.attempts >= MAX_ATTEMPTS {
                    // Every attempt died (an object too big for the function's memory or time
                    // would otherwise be retried by every sweep, forever): record a failure that
                    // doctor shows, and let the queue's receive limit dead-letter its message.
                    let reason = format!(
                        "gave up after {} attempts that never finished (killed, out of memory or timed out)",
                        rec.attempts
                    );
                    if let Ok(ClaimOutcome::Acquired(c)) =
                        self.checkpoints.claim(&source, now, self.lease_ms).await
                    {
                        match self.checkpoints.fail(&c, &reason, now).await {
                            Ok(()) => report.errors.push(WorkError::GaveUp {
                                id: rec.id.clone(),
                                reason: reason.clone(),
                            }),
                            Err(e) => report.errors.push(e.into()),
                        }
                    }
                    continue;
                }
                tracing::warn!(checkpoint = %rec.id, attempts = rec.attempts, "taking over a dead attempt");
                match self.process_object(source).await {
                    Ok(o) => {
                        report.swept += 1;
                        report.outcomes.push(o);
                    }
                    // Someone else took it over first.
                    Err(EtlError::Busy { .. }) => {}
                    Err(e) => report.errors.push(e.into()),
                }
            }
        }
    }
}

/// Attempts (claims) of one object version after which the sweep stops taking it over: the
/// queue's receive limit in the template.
pub(super) const MAX_ATTEMPTS: u32 = 5;
