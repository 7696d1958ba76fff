//! Reading records: by id, the sparse attention index, the recent-by-day index, the totals.

use async_trait::async_trait;
use dataflow_core::checkpoint::*;

use super::*;

#[async_trait]
impl CheckpointReads for DynamoCheckpoints {
    async fn attention(&self) -> Result<Vec<ObjectCheckpoint>, CheckpointError> {
        self.attention_partition("1", usize::MAX).await
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

    async fn failed(&self, limit: usize) -> Result<Vec<ObjectCheckpoint>, CheckpointError> {
        self.attention_partition(FAILED_ATTENTION, limit).await
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
}
