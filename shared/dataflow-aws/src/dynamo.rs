use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, ReturnValue, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use dataflow_core::checkpoint::{
    CheckpointError, CheckpointStore, Claim, ClaimOutcome, CompleteOutcome, Completion,
    ObjectCheckpoint, PipelineState, State, TotalsDelta,
};
use dataflow_core::lake::source::ObjectRef;

use crate::describe;

/// Partition key of the pipeline-level item.
pub const PIPELINE_ID: &str = "pipeline";

/// Sparse global secondary index over the records that need the sweep: in-progress ones and
/// superseded ones with outputs left to remove carry `attention = "1"`; done and failed records
/// drop it, so the sweep reads only those, never the whole table.
pub const ATTENTION_INDEX: &str = "attention";
pub const ATTENTION_ATTR: &str = "attention";
/// The `attention` value of failed records: their own partition of the same sparse index, which
/// the sweep does not read (it asks for "1") and the status page does.
const FAILED_ATTENTION: &str = "failed";

/// [`CheckpointStore`] in a DynamoDB table whose partition key is the string attribute `pk`.
/// Object items: `object#<bucket>/<key>#<version>`; key items `key#<bucket>/<key>` name the
/// key's counted version; one `pipeline` item holds the totals.
#[derive(Clone, Debug)]
pub struct DynamoCheckpoints {
    client: Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
fn list(v: &[String]) -> AttributeValue {
    AttributeValue::L(v.iter().map(s).collect())
}
fn get_s<'a>(item: &'a Item, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}
fn get_n<T: std::str::FromStr>(item: &Item, k: &str) -> Option<T> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}
fn get_list(item: &Item, k: &str) -> Vec<String> {
    item.get(k)
        .and_then(|v| v.as_l().ok())
        .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
        .unwrap_or_default()
}
fn store_err(context: &str, e: &(dyn std::error::Error + 'static)) -> CheckpointError {
    CheckpointError::Store(format!("{context}: {}", describe(e)))
}
/// The sparse index a status page reads: object records by the UTC day of their last write
/// (`recent_day`), newest first by `updated_ms`.
pub const RECENT_INDEX: &str = "recent";
pub const RECENT_DAY_ATTR: &str = "recent_day";
/// What the `recent` index copies of each record: what the status page shows, not the outputs
/// or cleanup lists (every write of a record rewrites its index entry).
pub const RECENT_PROJECTED: [&str; 11] = [
    "state",
    "attempts",
    "lease_expires_ms",
    "accepted",
    "rejected",
    "bytes",
    "duration_ms",
    "error",
    "source_bucket",
    "source_key",
    "rejected_reasons",
];
/// Totals item attributes holding rejected lines per reason code.
const REASON_PREFIX: &str = "rejected_reason_";

fn day_of(ms: i64) -> AttributeValue {
    let day = i32::try_from(ms.div_euclid(86_400_000)).unwrap_or(0);
    s(dataflow_core::event::format_date(day))
}

/// Reason codes are the contract's snake_case names; anything else is not stored as a name.
fn is_code(r: &str) -> bool {
    !r.is_empty() && r.len() <= 64 && r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

fn reasons_map(m: &std::collections::BTreeMap<String, u64>) -> AttributeValue {
    AttributeValue::M(m.iter().map(|(k, v)| (k.clone(), n(v))).collect())
}

fn get_reasons(item: &Item, k: &str) -> std::collections::BTreeMap<String, u64> {
    item.get(k)
        .and_then(|v| v.as_m().ok())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_n().ok()?.parse().ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Moves the per-reason totals by `delta`: the `ADD` clauses to append and the placeholders
/// they use, set on `b`.
fn add_reasons(
    mut b: aws_sdk_dynamodb::types::builders::UpdateBuilder,
    delta: &TotalsDelta,
) -> (aws_sdk_dynamodb::types::builders::UpdateBuilder, String) {
    let mut clause = String::new();
    for (i, (r, by)) in delta.reasons.iter().filter(|(r, _)| is_code(r)).enumerate() {
        clause.push_str(&format!(", #rr{i} :rr{i}"));
        b = b
            .expression_attribute_names(format!("#rr{i}"), format!("{REASON_PREFIX}{r}"))
            .expression_attribute_values(format!(":rr{i}"), n(by));
    }
    (b, clause)
}

fn key(id: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(id))])
}
fn built<T, E: std::error::Error + 'static>(r: Result<T, E>) -> Result<T, CheckpointError> {
    r.map_err(|e| store_err("building a request", &e))
}

impl DynamoCheckpoints {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    async fn get_item(&self, id: &str) -> Result<Option<Item>, CheckpointError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_err("GetItem", &e))?;
        Ok(out.item)
    }

    fn decode(item: &Item) -> Result<ObjectCheckpoint, CheckpointError> {
        let id = get_s(item, "pk").ok_or_else(|| CheckpointError::Malformed("no pk".into()))?;
        let state = get_s(item, "state")
            .and_then(State::parse)
            .ok_or_else(|| CheckpointError::Malformed(format!("{id}: bad state")))?;
        let completion = get_n::<u64>(item, "accepted").map(|accepted| Completion {
            bucket: get_s(item, "source_bucket").unwrap_or_default().to_owned(),
            key: get_s(item, "source_key").unwrap_or_default().to_owned(),
            accepted,
            rejected: get_n(item, "rejected").unwrap_or(0),
            bytes: get_n(item, "bytes").unwrap_or(0),
            output_keys: get_list(item, "output_keys"),
            max_event_time_us: get_n(item, "max_event_time_us"),
            duration_ms: get_n(item, "duration_ms").unwrap_or(0),
            rejected_by_reason: get_reasons(item, "rejected_reasons"),
        });
        let source = match (get_s(item, "source_bucket"), get_s(item, "source_key")) {
            (Some(b), Some(k)) => Some(ObjectRef {
                bucket: b.to_owned(),
                key: k.to_owned(),
                etag: get_s(item, "etag").map(str::to_owned),
                version_id: get_s(item, "version_id").map(str::to_owned),
                size: get_n(item, "size"),
            }),
            _ => None,
        };
        Ok(ObjectCheckpoint {
            id: id.to_owned(),
            state,
            attempts: get_n(item, "attempts").unwrap_or(0),
            lease_expires_ms: get_n(item, "lease_expires_ms").unwrap_or(0),
            completion,
            error: get_s(item, "error").map(str::to_owned),
            updated_ms: get_n(item, "updated_ms").unwrap_or(0),
            source,
            cleanup: get_list(item, "cleanup"),
        })
    }

    /// The records of one partition of the sparse `attention` index ("1": the sweep's, "failed"),
    /// at most `limit`, following pages.
    async fn attention_partition(
        &self,
        value: &str,
        limit: usize,
    ) -> Result<Vec<ObjectCheckpoint>, CheckpointError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        while out.len() < limit {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(ATTENTION_INDEX)
                .key_condition_expression("#att = :v")
                .expression_attribute_names("#att", ATTENTION_ATTR)
                .expression_attribute_values(":v", s(value))
                // No limit sent when none is wanted (usize::MAX does not fit an i32).
                .set_limit(i32::try_from(limit - out.len()).ok())
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_err(&format!("Query attention index ({value})"), &e))?;
            for item in page.items() {
                out.push(Self::decode(item)?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(out)
    }

    /// The totals item moved by `delta` (counters and per-reason counts, `ADD` keeps concurrent
    /// writers exact), followed by `extra` clauses.
    fn totals_update(
        &self,
        delta: &TotalsDelta,
        extra: &str,
    ) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        let (b, reasons) = add_reasons(
            Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(PIPELINE_ID))),
            delta,
        );
        b.update_expression(format!(
            "ADD files_processed :files, events_accepted :a, events_rejected :r, bytes_processed :b{reasons}{extra}"
        ))
        .expression_attribute_values(":files", n(delta.files))
        .expression_attribute_values(":a", n(delta.accepted))
        .expression_attribute_values(":r", n(delta.rejected))
        .expression_attribute_values(":b", n(delta.bytes))
    }

    /// An update of a held claim (owner and in-progress checked) ending in `state`.
    fn release(&self, claim: &Claim, state: State, now_ms: i64) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&claim.id)))
            .condition_expression("#o = :owner AND #s = :inprog")
            .expression_attribute_names("#s", "state")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#e", "error")
            .expression_attribute_names("#att", ATTENTION_ATTR)
            .expression_attribute_values(":state", s(state.as_str()))
            .expression_attribute_values(":inprog", s(State::InProgress.as_str()))
            .expression_attribute_values(":owner", s(&claim.owner))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_names("#day", RECENT_DAY_ATTR)
            .expression_attribute_values(":day", day_of(now_ms))
    }
}

/// Error texts are cut well below DynamoDB's 400 KB item limit.
fn cut(error: &str) -> String {
    let mut text = error.to_owned();
    if text.len() > 4000 {
        let mut at = 4000;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
    }
    text
}

fn is_conditional_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(
    e: &aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> bool {
    e.as_service_error()
        .and_then(|se| se.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

#[async_trait]
impl CheckpointStore for DynamoCheckpoints {
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

    async fn attention(&self) -> Result<Vec<ObjectCheckpoint>, CheckpointError> {
        self.attention_partition("1", usize::MAX).await
    }

    async fn failed(&self, limit: usize) -> Result<Vec<ObjectCheckpoint>, CheckpointError> {
        self.attention_partition(FAILED_ATTENTION, limit).await
    }

    async fn get(&self, id: &str) -> Result<Option<ObjectCheckpoint>, CheckpointError> {
        self.get_item(id)
            .await?
            .as_ref()
            .map(Self::decode)
            .transpose()
    }

    async fn list(&self) -> Result<Vec<ObjectCheckpoint>, CheckpointError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(pk, :p)")
                .expression_attribute_values(":p", s("object#"))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_err("Scan", &e))?;
            for item in page.items() {
                out.push(Self::decode(item)?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn recent(
        &self,
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<ObjectCheckpoint>, CheckpointError> {
        let since = dataflow_core::checkpoint::recent_since_ms(now_ms);
        let mut out = Vec::new();
        // Today's partition first, then yesterday's; each newest first.
        for day_ms in [now_ms, since] {
            if out.len() >= limit {
                break;
            }
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(RECENT_INDEX)
                .key_condition_expression("#day = :day")
                .expression_attribute_names("#day", RECENT_DAY_ATTR)
                .expression_attribute_values(":day", day_of(day_ms))
                .scan_index_forward(false)
                .limit(i32::try_from(limit - out.len()).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(|e| store_err("Query recent index", &e))?;
            for item in page.items() {
                out.push(Self::decode(item)?);
            }
        }
        Ok(out)
    }

    async fn pipeline(&self) -> Result<PipelineState, CheckpointError> {
        let Some(item) = self.get_item(PIPELINE_ID).await? else {
            return Ok(PipelineState::default());
        };
        Ok(PipelineState {
            files_processed: get_n(&item, "files_processed").unwrap_or(0),
            events_accepted: get_n(&item, "events_accepted").unwrap_or(0),
            events_rejected: get_n(&item, "events_rejected").unwrap_or(0),
            bytes_processed: get_n(&item, "bytes_processed").unwrap_or(0),
            latest_event_time_us: get_n(&item, "latest_event_time_us"),
            last_object: get_s(&item, "last_object").map(str::to_owned),
            last_processed_ms: get_n(&item, "last_processed_ms"),
            rejected_by_reason: item
                .iter()
                .filter_map(|(k, v)| {
                    let code = k.strip_prefix(REASON_PREFIX)?;
                    let n: u64 = v.as_n().ok()?.parse().ok()?;
                    (n > 0).then(|| (code.to_owned(), n))
                })
                .collect(),
        })
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

    async fn acquire_lock(
        &self,
        name: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<Claim>, CheckpointError> {
        let owner = uuid_like();
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("lock#{name}")))
            .item("owner", s(&owner))
            .item("lease_expires_ms", n(now_ms + lease_ms))
            .condition_expression("attribute_not_exists(pk) OR lease_expires_ms < :now")
            .expression_attribute_values(":now", n(now_ms))
            .send()
            .await;
        match res {
            Ok(_) => Ok(Some(Claim {
                id: name.to_owned(),
                owner,
                attempt: 1,
            })),
            Err(e) if is_conditional_failure(&e) => Ok(None),
            Err(e) => Err(store_err("lock PutItem", &e)),
        }
    }

    async fn release_lock(&self, claim: &Claim) -> Result<(), CheckpointError> {
        let res = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(&format!("lock#{}", claim.id))))
            .condition_expression("#o = :owner")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":owner", s(&claim.owner))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Ok(()),
            Err(e) => Err(store_err("unlock DeleteItem", &e)),
        }
    }
}

/// A unique owner token for a claim.
fn uuid_like() -> String {
    uuid::Uuid::new_v4().to_string()
}
