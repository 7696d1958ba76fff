//! The API key store over DynamoDB, against the emulator: only hashes are written, and every
//! case of the check behaves as with the in-memory store.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure is the point

use dataflow_aws::DynamoKeys;
use dataflow_keys::{authorize, generate, AuthError, KeyStore, Scope};

#[tokio::test]
async fn keys_in_dynamodb() {
    let cfg = dataflow_testkit::config();
    let clients = dataflow_testkit::provision(&cfg).await;
    let table = dataflow_testkit::unique("keys");
    dataflow_dev::resources::ensure_keys_table(&clients.dynamodb, &table)
        .await
        .unwrap();
    // Idempotent.
    dataflow_dev::resources::ensure_keys_table(&clients.dynamodb, &table)
        .await
        .unwrap();
    let store = DynamoKeys::new(clients.dynamodb.clone(), table.clone());
    let read = generate("dashboard", Scope::Read, 1_000);
    let ingest = generate("collector", Scope::Ingest, 2_000);
    store.put(&read.record).await.unwrap();
    store.put(&ingest.record).await.unwrap();
    assert!(
        store.put(&read.record).await.is_err(),
        "a key is never replaced"
    );

    let listed = store.list().await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|k| (k.name.as_str(), k.scope))
            .collect::<Vec<_>>(),
        vec![("dashboard", Scope::Read), ("collector", Scope::Ingest)]
    );
    // What the table holds: hashes, never the keys.
    let items = clients
        .dynamodb
        .scan()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let dump = format!("{:?}", items.items());
    assert!(!dump.contains(&read.key) && !dump.contains(&ingest.key[4..]));

    assert_eq!(
        authorize(&store, Some(&read.key), Scope::Read)
            .await
            .unwrap()
            .id,
        read.record.id
    );
    let code = |r: Result<_, AuthError>| match r {
        Err(AuthError::Denied(d)) => d.code(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        code(authorize(&store, Some(&read.key), Scope::Ingest).await),
        "insufficient_scope"
    );
    assert_eq!(
        code(authorize(&store, Some("dfk_0123"), Scope::Read).await),
        "invalid_api_key"
    );
    let revoked = store.revoke(&ingest.record.id, 3_000).await.unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(
        code(authorize(&store, Some(&ingest.key), Scope::Ingest).await),
        "revoked_api_key"
    );
    assert!(store.revoke("collector", 4_000).await.unwrap().is_empty());
    assert_eq!(
        store
            .get(&ingest.record.hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_ms,
        Some(3_000)
    );
}
