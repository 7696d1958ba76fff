//! `dataflow keys create|list|revoke`: API keys in the key table (`KEYS_TABLE`). A key is printed
//! once, at creation; only its SHA-256 is stored.

use anyhow::{bail, Result};
use clap::Subcommand;
use dataflow_aws::DynamoKeys;
use dataflow_dev::{Clients, StackConfig as Config};
use dataflow_keys::{generate, KeyStore, Scope};
use serde_json::json;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Creates a key and prints it (the only time it is shown).
    Create {
        #[arg(long)]
        name: String,
        /// ingest (POST /events), read (analytics and search), admin (everything).
        #[arg(long)]
        scope: String,
    },
    /// Lists the keys: id, name, scope, created, revoked (never the keys themselves).
    List,
    /// Revokes every key with this id or name.
    Revoke { which: String },
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

pub async fn keys(command: KeysCommand) -> Result<()> {
    let cfg = Config::from_env()?;
    let clients = Clients::new(&cfg).await;
    dataflow_dev::resources::ensure_keys_table(&clients.dynamodb, &cfg.keys_table).await?;
    let store = DynamoKeys::new(clients.dynamodb.clone(), cfg.keys_table.clone());
    let now = chrono::Utc::now().timestamp_millis();
    match command {
        KeysCommand::Create { name, scope } => {
            let Some(scope) = Scope::parse(&scope) else {
                bail!("--scope {scope:?}: expected ingest, read or admin");
            };
            if name.trim().is_empty() {
                bail!("--name must not be empty");
            }
            let new = generate(&name, scope, now);
            store.put(&new.record).await?;
            eprintln!(
                "created key {} ({}, scope {}): store it now, it is not shown again",
                new.record.id,
                name,
                scope.as_str()
            );
            out!("{}", new.key);
        }
        KeysCommand::List => {
            let keys: Vec<_> = store
                .list()
                .await?
                .into_iter()
                .map(|k| {
                    json!({"id": k.id, "name": k.name, "scope": k.scope.as_str(),
                           "created": time(k.created_ms), "revoked": k.revoked_ms.map(time)})
                })
                .collect();
            out!("{}", serde_json::to_string_pretty(&keys)?);
        }
        KeysCommand::Revoke { which } => {
            let revoked = store.revoke(&which, now).await?;
            if revoked.is_empty() {
                bail!("no live key has the id or name {which:?}");
            }
            for k in revoked {
                eprintln!("revoked {} ({})", k.id, k.name);
            }
        }
    }
    Ok(())
}
