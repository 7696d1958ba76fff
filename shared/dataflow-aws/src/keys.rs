//! The API key store over DynamoDB (`KEYS_TABLE`): one item per key, partition key `pk` = the
//! key's SHA-256. The key itself is never written.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use dataflow_keys::{KeyRecord, KeyStore, KeyStoreError, Scope};

use crate::describe;

pub struct DynamoKeys {
    client: Client,
    table: String,
}

impl DynamoKeys {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn failed<E: std::error::Error + Send + Sync + 'static>(context: &str, e: E) -> KeyStoreError {
    KeyStoreError {
        context: format!("{context}: {}", describe(&e)),
        source: Some(Box::new(e)),
    }
}

fn malformed(what: &str) -> KeyStoreError {
    KeyStoreError {
        context: format!("key item is malformed: {what}"),
        source: None,
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn decode(item: &HashMap<String, AttributeValue>) -> Result<KeyRecord, KeyStoreError> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let num = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
    };
    let hash = text("pk").ok_or_else(|| malformed("no pk"))?;
    Ok(KeyRecord {
        id: text("id").unwrap_or_else(|| hash.chars().take(12).collect()),
        name: text("name").unwrap_or_default(),
        scope: text("scope")
            .as_deref()
            .and_then(Scope::parse)
            .ok_or_else(|| malformed("no valid scope"))?,
        created_ms: num("created_ms").unwrap_or(0),
        revoked_ms: num("revoked_ms"),
        hash,
    })
}

#[async_trait]
impl KeyStore for DynamoKeys {
    async fn put(&self, r: &KeyRecord) -> Result<(), KeyStoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&r.hash))
            .item("id", s(&r.id))
            .item("name", s(&r.name))
            .item("scope", s(r.scope.as_str()))
            .item("created_ms", n(r.created_ms))
            // A new key never replaces another (a hash collision would be a broken generator).
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| failed(&format!("PutItem {}", self.table), e))?;
        Ok(())
    }

    async fn get(&self, hash: &str) -> Result<Option<KeyRecord>, KeyStoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(hash))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| failed(&format!("GetItem {}", self.table), e))?;
        out.item().map(decode).transpose()
    }

    async fn list(&self) -> Result<Vec<KeyRecord>, KeyStoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| failed(&format!("Scan {}", self.table), e))?;
            for item in page.items() {
                out.push(decode(item)?);
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
        out.sort_by(|a, b| (a.created_ms, &a.name).cmp(&(b.created_ms, &b.name)));
        Ok(out)
    }

    async fn revoke(&self, which: &str, now_ms: i64) -> Result<Vec<KeyRecord>, KeyStoreError> {
        let mut revoked = Vec::new();
        for mut r in self.list().await? {
            if (r.id != which && r.name != which) || r.revoked_ms.is_some() {
                continue;
            }
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(&r.hash))
                .update_expression("SET revoked_ms = :now")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":now", n(now_ms))
                .send()
                .await
                .map_err(|e| failed(&format!("UpdateItem {}", self.table), e))?;
            r.revoked_ms = Some(now_ms);
            revoked.push(r);
        }
        Ok(revoked)
    }
}
