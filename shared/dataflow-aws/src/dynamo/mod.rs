use std::collections::HashMap;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, Update};
use aws_sdk_dynamodb::Client;
use dataflow_core::checkpoint::{
    CheckpointError, Claim, Completion, ObjectCheckpoint, State, TotalsDelta,
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

/// The checkpoint ports ([`dataflow_core::checkpoint::CheckpointStore`]) in a DynamoDB table whose partition key is the string attribute `pk`.
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

/// A unique owner token for a claim.
fn uuid_like() -> String {
    uuid::Uuid::new_v4().to_string()
}

mod claims;
mod locks;
mod reads;
