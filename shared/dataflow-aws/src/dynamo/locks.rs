//! Named leases in the same table (one compaction per date at a time).

use async_trait::async_trait;
use dataflow_core::checkpoint::*;

use super::*;

#[async_trait]
impl Locks for DynamoCheckpoints {
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
