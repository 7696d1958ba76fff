//! Claims, leases and the done step in DynamoDB: conditional updates, and one transaction that
//! marks a version done, supersedes the key's previous one and moves the totals.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, ReturnValue, TransactWriteItem, Update};
use dataflow_core::checkpoint::*;
use dataflow_core::lake::source::ObjectRef;

use super::*;

#[async_trait]
impl ObjectClaims for DynamoCheckpoints {
    async fn claim(
        &self,
        obj: &ObjectRef,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<ClaimOutcome, CheckpointError> {
        let id = obj.checkpoint_id();
        let owner = uuid_like();
        let mut set = String::from(
            "SET #s = :inprog, lease_expires_ms = :lease, #o = :owner, updated_ms = :now, \
             source_bucket = :sb, source_key = :sk, #att = :one_s, #day = :day",
        );
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&id)));
        if let Some(e) = &obj.etag {
            set.push_str(", etag = :etag");
            req = req.expression_attribute_values(":etag", s(e));
        }
        if let Some(v) = &obj.version_id {
            set.push_str(", version_id = :ver");
            req = req.expression_attribute_values(":ver", s(v));
        }
        if let Some(z) = obj.size {
            set.push_str(", #sz = :size");
            req = req
                .expression_attribute_names("#sz", "size")
                .expression_attribute_values(":size", n(z));
        }
        let res = req
            .update_expression(format!("{set} REMOVE #e ADD attempts :one"))
            // Free, failed, or leased by an attempt whose lease has expired (it died).
            .condition_expression(
                "attribute_not_exists(pk) OR #s = :failed OR (#s = :inprog AND lease_expires_ms < :now)",
            )
            .expression_attribute_names("#s", "state")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#e", "error")
            .expression_attribute_names("#att", ATTENTION_ATTR)
            .expression_attribute_values(":inprog", s(State::InProgress.as_str()))
            .expression_attribute_values(":failed", s(State::Failed.as_str()))
            .expression_attribute_values(":lease", n(now_ms + lease_ms))
            .expression_attribute_values(":owner", s(&owner))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":one_s", s("1"))
            .expression_attribute_values(":sb", s(&obj.bucket))
            .expression_attribute_values(":sk", s(&obj.key))
            .expression_attribute_names("#day", RECENT_DAY_ATTR)
            .expression_attribute_values(":day", day_of(now_ms))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match res {
            Ok(out) => {
                let attempt = out
                    .attributes
                    .as_ref()
                    .and_then(|a| get_n(a, "attempts"))
                    .unwrap_or(1);
                Ok(ClaimOutcome::Acquired(Claim { id, owner, attempt }))
            }
            Err(e) if is_conditional_failure(&e) => match self.get_item(&id).await? {
                Some(item) => match get_s(&item, "state").and_then(State::parse) {
                    Some(State::Done) => Ok(ClaimOutcome::AlreadyDone),
                    Some(State::Superseded) => Ok(ClaimOutcome::Superseded),
                    _ => Ok(ClaimOutcome::Busy {
                        lease_expires_ms: get_n(&item, "lease_expires_ms").unwrap_or(0),
                    }),
                },
                // Deleted between the two calls: report busy so the delivery is retried.
                None => Ok(ClaimOutcome::Busy {
                    lease_expires_ms: now_ms,
                }),
            },
            Err(e) => Err(store_err("claim UpdateItem", &e)),
        }
    }

    async fn renew(
        &self,
        claim: &Claim,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<bool, CheckpointError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&claim.id)))
            .update_expression("SET lease_expires_ms = :lease")
            .condition_expression("#o = :owner AND #s = :inprog")
            .expression_attribute_names("#s", "state")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":inprog", s(State::InProgress.as_str()))
            .expression_attribute_values(":owner", s(&claim.owner))
            .expression_attribute_values(":lease", n(now_ms + lease_ms))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(store_err("renew UpdateItem", &e)),
        }
    }

    async fn current_version(&self, key_id: &str) -> Result<Option<String>, CheckpointError> {
        Ok(self
            .get_item(key_id)
            .await?
            .and_then(|item| get_s(&item, "current").map(str::to_owned)))
    }

    async fn complete(
        &self,
        claim: &Claim,
        c: &Completion,
        expected: Option<&str>,
        now_ms: i64,
    ) -> Result<CompleteOutcome, CheckpointError> {
        // The previous version, when it counted, leaves the totals in this same transaction.
        let replaced = match expected.filter(|p| *p != claim.id) {
            Some(p) => match self.get_item(p).await? {
                Some(item) => Some(Self::decode(&item)?).filter(|r| r.state == State::Done),
                None => None,
            },
            None => None,
        };
        let mut set = String::from(
            "SET #s = :done, accepted = :a, rejected = :r, bytes = :b, output_keys = :outs, duration_ms = :d, \
             updated_ms = :now, completed_ms = :now, source_bucket = :sb, source_key = :sk, \
             rejected_reasons = :rr, #day = :day",
        );
        if c.max_event_time_us.is_some() {
            set.push_str(", max_event_time_us = :t");
        }
        let mut obj = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(&claim.id)))
            .update_expression(format!("{set} REMOVE #att"))
            .condition_expression("#o = :owner AND #s = :inprog")
            .expression_attribute_names("#s", "state")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#att", ATTENTION_ATTR)
            .expression_attribute_values(":done", s(State::Done.as_str()))
            .expression_attribute_values(":inprog", s(State::InProgress.as_str()))
            .expression_attribute_values(":owner", s(&claim.owner))
            .expression_attribute_values(":a", n(c.accepted))
            .expression_attribute_values(":r", n(c.rejected))
            .expression_attribute_values(":b", n(c.bytes))
            .expression_attribute_values(":outs", list(&c.output_keys))
            .expression_attribute_values(":d", n(c.duration_ms))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":sb", s(&c.bucket))
            .expression_attribute_values(":sk", s(&c.key))
            .expression_attribute_values(":rr", reasons_map(&c.rejected_by_reason))
            .expression_attribute_names("#day", RECENT_DAY_ATTR)
            .expression_attribute_values(":day", day_of(now_ms));
        if let Some(t) = c.max_event_time_us {
            obj = obj.expression_attribute_values(":t", n(t));
        }
        let key_id = ObjectRef::new(&c.bucket, &c.key).key_id();
        let mut current = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(&key_id)))
            .update_expression("SET #c = :me, updated_ms = :now")
            .expression_attribute_names("#c", "current")
            .expression_attribute_values(":me", s(&claim.id))
            .expression_attribute_values(":now", n(now_ms));
        current = match expected {
            None => current.condition_expression("attribute_not_exists(#c)"),
            Some(p) => current
                .condition_expression("#c = :prev")
                .expression_attribute_values(":prev", s(p)),
        };
        let delta = TotalsDelta::between(
            Some(c),
            replaced.as_ref().and_then(|r| r.completion.as_ref()),
        );
        let totals = self
            .totals_update(&delta, " SET last_object = :obj, last_processed_ms = :now")
            .expression_attribute_values(":obj", s(format!("s3://{}/{}", c.bucket, c.key)))
            .expression_attribute_values(":now", n(now_ms))
            .build();
        let mut tx = self
            .client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .update(built(obj.build())?)
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .update(built(current.build())?)
                    .build(),
            )
            .transact_items(TransactWriteItem::builder().update(built(totals)?).build());
        if let Some(old) = &replaced {
            let outputs = old.outputs();
            let supersede = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(&old.id)))
                .update_expression(
                    "SET #s = :sup, cleanup = :outs, #att = :one_s, updated_ms = :now, superseded_by = :me, #day = :day",
                )
                .expression_attribute_names("#day", RECENT_DAY_ATTR)
                .expression_attribute_values(":day", day_of(now_ms))
                .condition_expression("#s = :done")
                .expression_attribute_names("#s", "state")
                .expression_attribute_names("#att", ATTENTION_ATTR)
                .expression_attribute_values(":sup", s(State::Superseded.as_str()))
                .expression_attribute_values(":done", s(State::Done.as_str()))
                .expression_attribute_values(":outs", list(&outputs))
                .expression_attribute_values(":one_s", s("1"))
                .expression_attribute_values(":now", n(now_ms))
                .expression_attribute_values(":me", s(&claim.id))
                .build();
            tx = tx.transact_items(
                TransactWriteItem::builder()
                    .update(built(supersede)?)
                    .build(),
            );
        }
        if let Err(e) = tx.send().await {
            let reasons: Vec<bool> = e
                .as_service_error()
                .and_then(|se| match se {
                    TransactWriteItemsError::TransactionCanceledException(tc) => Some(tc),
                    _ => None,
                })
                .map(|tc| {
                    tc.cancellation_reasons()
                        .iter()
                        .map(|r| r.code() == Some("ConditionalCheckFailed"))
                        .collect()
                })
                .unwrap_or_default();
            return match reasons.as_slice() {
                [true, ..] => Ok(CompleteOutcome::Lost),
                r if r.iter().any(|x| *x) => Ok(CompleteOutcome::KeyMoved),
                _ => Err(store_err("complete TransactWriteItems", &e)),
            };
        }
        let mut replaced = replaced;
        if let Some(old) = &mut replaced {
            old.supersede(now_ms);
        }
        // The watermark is a max, so it can be raised outside the transaction: repeating it is
        // harmless.
        if let Some(t) = c.max_event_time_us {
            let res = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(PIPELINE_ID)))
                .update_expression("SET latest_event_time_us = :t")
                .condition_expression(
                    "attribute_not_exists(latest_event_time_us) OR latest_event_time_us < :t",
                )
                .expression_attribute_values(":t", n(t))
                .send()
                .await;
            if let Err(e) = res {
                if !is_conditional_failure(&e) {
                    return Err(store_err("watermark UpdateItem", &e));
                }
            }
        }
        Ok(CompleteOutcome::Done {
            replaced: replaced.map(Box::new),
        })
    }

    async fn fail(&self, claim: &Claim, error: &str, now_ms: i64) -> Result<(), CheckpointError> {
        let res = self
            .release(claim, State::Failed, now_ms)
            .update_expression(
                "SET #s = :state, #e = :err, lease_expires_ms = :zero, updated_ms = :now, #day = :day, #att = :failed_s",
            )
            .expression_attribute_values(":failed_s", s(FAILED_ATTENTION))
            .expression_attribute_values(":err", s(cut(error)))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Ok(()),
            Err(e) => Err(store_err("fail UpdateItem", &e)),
        }
    }

    async fn abandon(
        &self,
        claim: &Claim,
        outputs: &[String],
        reason: &str,
        now_ms: i64,
    ) -> Result<(), CheckpointError> {
        let req = self.release(claim, State::Superseded, now_ms);
        let req = if outputs.is_empty() {
            req.update_expression(
                "SET #s = :state, #e = :err, lease_expires_ms = :zero, updated_ms = :now, #day = :day REMOVE #att",
            )
        } else {
            req.update_expression(
                "SET #s = :state, #e = :err, lease_expires_ms = :zero, updated_ms = :now, #day = :day, cleanup = :outs, #att = :one_s",
            )
            .expression_attribute_values(":outs", list(outputs))
            .expression_attribute_values(":one_s", s("1"))
        };
        let res = req
            .expression_attribute_values(":err", s(cut(reason)))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Ok(()),
            Err(e) => Err(store_err("abandon UpdateItem", &e)),
        }
    }

    async fn cleaned(&self, id: &str) -> Result<(), CheckpointError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(id)))
            .update_expression("REMOVE cleanup, #att")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#att", ATTENTION_ATTR)
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Ok(()),
            Err(e) => Err(store_err("cleaned UpdateItem", &e)),
        }
    }

    async fn forget(&self, id: &str) -> Result<bool, CheckpointError> {
        let Some(item) = self.get_item(id).await? else {
            return Ok(false);
        };
        let rec = Self::decode(&item)?;
        let Some(c) = rec.completion.filter(|_| rec.state == State::Done) else {
            self.client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key(id)))
                .send()
                .await
                .map_err(|e| store_err("DeleteItem", &e))?;
            return Ok(true);
        };
        // Take the object's counts back out of the totals in the same transaction as the delete.
        let delta = TotalsDelta::between(None, Some(&c));
        let del = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(id)))
            .condition_expression("#s = :done AND updated_ms = :u")
            .expression_attribute_names("#s", "state")
            .expression_attribute_values(":done", s(State::Done.as_str()))
            .expression_attribute_values(":u", n(rec.updated_ms))
            .build()
            .map_err(|e| store_err("building delete", &e))?;
        let totals = self
            .totals_update(&delta, "")
            .build()
            .map_err(|e| store_err("building update", &e))?;
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(del).build())
            .transact_items(TransactWriteItem::builder().update(totals).build())
            .send()
            .await
            .map_err(|e| store_err("forget TransactWriteItems", &e))?;
        Ok(true)
    }
}
