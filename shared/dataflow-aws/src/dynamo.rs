use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, ReturnValue, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use dataflow_core::checkpoint::{
    CheckpointError, CheckpointStore, Claim, ClaimOutcome, Completion, ObjectCheckpoint,
    PipelineState, State,
};

use crate::describe;

/// Partition key of the pipeline-level item.
pub const PIPELINE_ID: &str = "pipeline";

/// [`CheckpointStore`] in a DynamoDB table whose partition key is the string attribute `pk`.
/// Object items: `object#<bucket>/<key>#<version>`; one `pipeline` item holds the totals.
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
fn get_s<'a>(item: &'a Item, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}
fn get_n<T: std::str::FromStr>(item: &Item, k: &str) -> Option<T> {
    item.get(k)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}
fn store_err(context: &str, e: &(dyn std::error::Error + 'static)) -> CheckpointError {
    CheckpointError::Store(format!("{context}: {}", describe(e)))
}
fn key(id: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(id))])
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
        let completion = (state == State::Done).then(|| Completion {
            bucket: get_s(item, "source_bucket").unwrap_or_default().to_owned(),
            key: get_s(item, "source_key").unwrap_or_default().to_owned(),
            accepted: get_n(item, "accepted").unwrap_or(0),
            rejected: get_n(item, "rejected").unwrap_or(0),
            bytes: get_n(item, "bytes").unwrap_or(0),
            output_keys: item
                .get("output_keys")
                .and_then(|v| v.as_l().ok())
                .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
                .unwrap_or_default(),
            max_event_time_us: get_n(item, "max_event_time_us"),
            duration_ms: get_n(item, "duration_ms").unwrap_or(0),
        });
        Ok(ObjectCheckpoint {
            id: id.to_owned(),
            state,
            attempts: get_n(item, "attempts").unwrap_or(0),
            lease_expires_ms: get_n(item, "lease_expires_ms").unwrap_or(0),
            completion,
            error: get_s(item, "error").map(str::to_owned),
            updated_ms: get_n(item, "updated_ms").unwrap_or(0),
        })
    }
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
        id: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<ClaimOutcome, CheckpointError> {
        let owner = uuid_like();
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(id)))
            .update_expression(
                "SET #s = :inprog, lease_expires_ms = :lease, #o = :owner, updated_ms = :now REMOVE #e ADD attempts :one",
            )
            // Free, failed, or leased by an attempt whose lease has expired (it died).
            .condition_expression(
                "attribute_not_exists(pk) OR #s = :failed OR (#s = :inprog AND lease_expires_ms < :now)",
            )
            .expression_attribute_names("#s", "state")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#e", "error")
            .expression_attribute_values(":inprog", s(State::InProgress.as_str()))
            .expression_attribute_values(":failed", s(State::Failed.as_str()))
            .expression_attribute_values(":lease", n(now_ms + lease_ms))
            .expression_attribute_values(":owner", s(&owner))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":one", n(1))
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
                Ok(ClaimOutcome::Acquired(Claim {
                    id: id.to_owned(),
                    owner,
                    attempt,
                }))
            }
            Err(e) if is_conditional_failure(&e) => match self.get_item(id).await? {
                Some(item) if get_s(&item, "state") == Some(State::Done.as_str()) => {
                    Ok(ClaimOutcome::AlreadyDone)
                }
                Some(item) => Ok(ClaimOutcome::Busy {
                    lease_expires_ms: get_n(&item, "lease_expires_ms").unwrap_or(0),
                }),
                // Deleted between the two calls: report busy so the delivery is retried.
                None => Ok(ClaimOutcome::Busy {
                    lease_expires_ms: now_ms,
                }),
            },
            Err(e) => Err(store_err("claim UpdateItem", &e)),
        }
    }

    async fn complete(
        &self,
        claim: &Claim,
        c: &Completion,
        now_ms: i64,
    ) -> Result<bool, CheckpointError> {
        let outputs = AttributeValue::L(c.output_keys.iter().map(s).collect());
        let mut set = String::from(
            "SET #s = :done, accepted = :a, rejected = :r, bytes = :b, output_keys = :outs, duration_ms = :d, \
             updated_ms = :now, completed_ms = :now, source_bucket = :sb, source_key = :sk",
        );
        if c.max_event_time_us.is_some() {
            set.push_str(", max_event_time_us = :t");
        }
        let mut obj = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(&claim.id)))
            .update_expression(set)
            .condition_expression("#o = :owner AND #s = :inprog")
            .expression_attribute_names("#s", "state")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":done", s(State::Done.as_str()))
            .expression_attribute_values(":inprog", s(State::InProgress.as_str()))
            .expression_attribute_values(":owner", s(&claim.owner))
            .expression_attribute_values(":a", n(c.accepted))
            .expression_attribute_values(":r", n(c.rejected))
            .expression_attribute_values(":b", n(c.bytes))
            .expression_attribute_values(":outs", outputs)
            .expression_attribute_values(":d", n(c.duration_ms))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":sb", s(&c.bucket))
            .expression_attribute_values(":sk", s(&c.key));
        if let Some(t) = c.max_event_time_us {
            obj = obj.expression_attribute_values(":t", n(t));
        }
        let obj = obj.build().map_err(|e| store_err("building update", &e))?;
        // Totals move in the same transaction as the done mark, so a retry can never add twice.
        let totals = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(PIPELINE_ID)))
            .update_expression(
                "ADD files_processed :one, events_accepted :a, events_rejected :r, bytes_processed :b \
                 SET last_object = :obj, last_processed_ms = :now",
            )
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":a", n(c.accepted))
            .expression_attribute_values(":r", n(c.rejected))
            .expression_attribute_values(":b", n(c.bytes))
            .expression_attribute_values(":obj", s(format!("s3://{}/{}", c.bucket, c.key)))
            .expression_attribute_values(":now", n(now_ms))
            .build()
            .map_err(|e| store_err("building update", &e))?;
        let res = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(obj).build())
            .transact_items(TransactWriteItem::builder().update(totals).build())
            .send()
            .await;
        match res {
            Ok(_) => {}
            Err(e) => {
                let lost = e
                    .as_service_error()
                    .and_then(|se| match se {
                        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(tc) => Some(tc),
                        _ => None,
                    })
                    .is_some_and(|tc| {
                        tc.cancellation_reasons()
                            .iter()
                            .any(|r| r.code() == Some("ConditionalCheckFailed"))
                    });
                if lost {
                    return Ok(false);
                }
                return Err(store_err("complete TransactWriteItems", &e));
            }
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
        Ok(true)
    }

    async fn fail(&self, claim: &Claim, error: &str, now_ms: i64) -> Result<(), CheckpointError> {
        // DynamoDB items are capped at 400 KB; error texts are cut well below that.
        let mut text = error.to_owned();
        if text.len() > 4000 {
            let mut cut = 4000;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&claim.id)))
            .update_expression(
                "SET #s = :failed, #e = :err, lease_expires_ms = :zero, updated_ms = :now",
            )
            .condition_expression("#o = :owner AND #s = :inprog")
            .expression_attribute_names("#s", "state")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#e", "error")
            .expression_attribute_values(":failed", s(State::Failed.as_str()))
            .expression_attribute_values(":inprog", s(State::InProgress.as_str()))
            .expression_attribute_values(":err", s(text))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":owner", s(&claim.owner))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Ok(()),
            Err(e) => Err(store_err("fail UpdateItem", &e)),
        }
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
        let del = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(id)))
            .condition_expression("#s = :done AND updated_ms = :u")
            .expression_attribute_names("#s", "state")
            .expression_attribute_values(":done", s(State::Done.as_str()))
            .expression_attribute_values(":u", n(rec.updated_ms))
            .build()
            .map_err(|e| store_err("building delete", &e))?;
        let totals = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(PIPELINE_ID)))
            .update_expression("ADD files_processed :m1, events_accepted :a, events_rejected :r, bytes_processed :b")
            .expression_attribute_values(":m1", n(-1))
            .expression_attribute_values(":a", n(-(c.accepted as i128)))
            .expression_attribute_values(":r", n(-(c.rejected as i128)))
            .expression_attribute_values(":b", n(-(c.bytes as i128)))
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
