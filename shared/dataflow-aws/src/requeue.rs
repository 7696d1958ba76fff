//! Sending an SQS message again after a delay: how a delivery that meets another attempt's live
//! lease waits without counting toward the dead-letter queue's receive limit.

use std::collections::HashMap;

use async_trait::async_trait;
use tokio::sync::Mutex;

use crate::describe;

#[async_trait]
pub trait Requeue: Send + Sync {
    /// Sends `body` to the queue named by `queue_arn`, visible after `delay_seconds`.
    async fn requeue(&self, queue_arn: &str, body: &str, delay_seconds: u32) -> Result<(), String>;
}

/// [`Requeue`] through SQS `SendMessage`, resolving each queue's URL once.
pub struct SqsRequeue {
    sqs: aws_sdk_sqs::Client,
    urls: Mutex<HashMap<String, String>>,
}

impl SqsRequeue {
    pub fn new(sqs: aws_sdk_sqs::Client) -> Self {
        Self {
            sqs,
            urls: Mutex::new(HashMap::new()),
        }
    }

    async fn url(&self, queue_arn: &str) -> Result<String, String> {
        if let Some(u) = self.urls.lock().await.get(queue_arn) {
            return Ok(u.clone());
        }
        // arn:aws:sqs:<region>:<account>:<name>
        let parts: Vec<&str> = queue_arn.splitn(6, ':').collect();
        let [_, _, "sqs", _, account, name] = parts.as_slice() else {
            return Err(format!("{queue_arn:?} is not an SQS queue ARN"));
        };
        let out = self
            .sqs
            .get_queue_url()
            .queue_name(*name)
            .queue_owner_aws_account_id(*account)
            .send()
            .await
            .map_err(|e| format!("GetQueueUrl {name}: {}", describe(&e)))?;
        let url = out
            .queue_url()
            .ok_or_else(|| format!("GetQueueUrl {name}: no URL"))?
            .to_owned();
        self.urls
            .lock()
            .await
            .insert(queue_arn.to_owned(), url.clone());
        Ok(url)
    }
}

#[async_trait]
impl Requeue for SqsRequeue {
    async fn requeue(&self, queue_arn: &str, body: &str, delay_seconds: u32) -> Result<(), String> {
        let url = self.url(queue_arn).await?;
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(body)
            .delay_seconds(delay_seconds.min(900) as i32)
            .send()
            .await
            .map_err(|e| format!("SendMessage: {}", describe(&e)))?;
        Ok(())
    }
}

/// The depth of a queue (the ETL's dead-letter queue) by `GetQueueAttributes`; the queue is
/// named by its URL or its name (resolved once).
pub struct SqsDepth {
    sqs: aws_sdk_sqs::Client,
    queue: String,
    url: Mutex<Option<String>>,
}

impl SqsDepth {
    pub fn new(sqs: aws_sdk_sqs::Client, queue: impl Into<String>) -> Self {
        Self {
            sqs,
            queue: queue.into(),
            url: Mutex::new(None),
        }
    }

    async fn url(&self) -> Result<String, String> {
        let mut known = self.url.lock().await;
        if let Some(u) = known.as_ref() {
            return Ok(u.clone());
        }
        let url = if self.queue.starts_with("https://") || self.queue.starts_with("http://") {
            self.queue.clone()
        } else {
            self.sqs
                .get_queue_url()
                .queue_name(&self.queue)
                .send()
                .await
                .map_err(|e| format!("GetQueueUrl {}: {}", self.queue, describe(&e)))?
                .queue_url()
                .ok_or_else(|| format!("GetQueueUrl {}: no URL", self.queue))?
                .to_owned()
        };
        *known = Some(url.clone());
        Ok(url)
    }
}

#[async_trait]
impl dataflow_core::pipeline::QueueDepth for SqsDepth {
    async fn depth(&self) -> Result<u64, String> {
        use aws_sdk_sqs::types::QueueAttributeName;
        let url = self.url().await?;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| format!("GetQueueAttributes {}: {}", self.queue, describe(&e)))?;
        out.attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{}: no ApproximateNumberOfMessages", self.queue))
    }
}
