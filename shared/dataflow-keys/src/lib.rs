//! API keys without AWS types. A key is shown once, at creation; only its SHA-256 is stored
//! ([`KeyStore`]). Each key has one [`Scope`]; [`required_scope`] says what a route needs and
//! [`authorize`] is the one check that both the Lambda authorizer and `dataflow serve` run.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

/// The header a key travels in.
pub const HEADER: &str = "x-api-key";
/// Every key starts with it, so a leaked one is easy to recognise (and to scan for).
pub const PREFIX: &str = "dfk_";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// `POST /events`.
    Ingest,
    /// Reading: analytics, search, the docs list.
    Read,
    /// Everything, including writing documents.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ingest" => Some(Scope::Ingest),
            "read" => Some(Scope::Read),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    /// Whether a key of this scope may call a route that needs `needed`. A producer's ingest
    /// key cannot read; a dashboard's read key cannot send events.
    pub fn allows(self, needed: Scope) -> bool {
        self == Scope::Admin || self == needed
    }
}

/// What a route needs; `None` for the public ones (`/health`, `/openapi.json`, CORS preflight).
pub fn required_scope(method: &str, path: &str) -> Option<Scope> {
    let method = method.to_ascii_uppercase();
    match (method.as_str(), path) {
        ("OPTIONS", _) | (_, "/health") | (_, "/openapi.json") => None,
        // The dashboard page and its assets: public, the data calls they make are not.
        ("GET" | "HEAD", "/") => None,
        ("GET" | "HEAD", p) if p.starts_with("/assets/") => None,
        ("POST", "/events") => Some(Scope::Ingest),
        ("PUT" | "DELETE", p) if p.starts_with("/docs/") => Some(Scope::Admin),
        _ => Some(Scope::Read),
    }
}

/// A stored key: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// SHA-256 of the key, hex: what a presented key is looked up by.
    pub hash: String,
    /// A short public id (the hash's first 12 hex digits): what listings and logs show.
    pub id: String,
    pub name: String,
    pub scope: Scope,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// A key as created: the secret (shown once) and what is stored.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub key: String,
    pub record: KeyRecord,
}

pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new key: `dfk_` and 64 hex digits from the system's random source (two v4 UUIDs, 244
/// random bits).
pub fn generate(name: &str, scope: Scope, now_ms: i64) -> NewKey {
    let key = format!(
        "{PREFIX}{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let hash = hash(&key);
    NewKey {
        record: KeyRecord {
            id: hash[..12].to_owned(),
            hash,
            name: name.to_owned(),
            scope,
            created_ms: now_ms,
            revoked_ms: None,
        },
        key,
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct KeyStoreError {
    pub context: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Where key records live (DynamoDB in AWS and locally, memory in tests).
#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn put(&self, record: &KeyRecord) -> Result<(), KeyStoreError>;
    async fn get(&self, hash: &str) -> Result<Option<KeyRecord>, KeyStoreError>;
    async fn list(&self) -> Result<Vec<KeyRecord>, KeyStoreError>;
    /// Marks revoked every key whose id or name is `which`; returns them.
    async fn revoke(&self, which: &str, now_ms: i64) -> Result<Vec<KeyRecord>, KeyStoreError>;
}

/// Why a request was refused: `401` for a missing, unknown or revoked key, `403` for a key
/// without the route's scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("this route needs an API key in the x-api-key header")]
    Missing,
    #[error("the API key is not valid")]
    Unknown,
    #[error("the API key was revoked")]
    Revoked,
    #[error("the API key's scope ({has}) does not allow this route, which needs {needs}")]
    WrongScope {
        has: &'static str,
        needs: &'static str,
    },
}

impl Denied {
    pub fn status(&self) -> u16 {
        match self {
            Denied::WrongScope { .. } => 403,
            _ => 401,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Denied::Missing => "missing_api_key",
            Denied::Unknown => "invalid_api_key",
            Denied::Revoked => "revoked_api_key",
            Denied::WrongScope { .. } => "insufficient_scope",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error("the key store cannot be read: {0}")]
    Store(#[from] KeyStoreError),
}

/// The one check: is `presented` a live key whose scope allows `needs`?
pub async fn authorize(
    store: &dyn KeyStore,
    presented: Option<&str>,
    needs: Scope,
) -> Result<KeyRecord, AuthError> {
    let key = presented
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or(Denied::Missing)?;
    // Anything that is not shaped like a key is unknown without a lookup.
    if !key.starts_with(PREFIX) || key.len() > 128 {
        return Err(Denied::Unknown.into());
    }
    let record = store.get(&hash(key)).await?.ok_or(Denied::Unknown)?;
    if record.revoked_ms.is_some() {
        return Err(Denied::Revoked.into());
    }
    if !record.scope.allows(needs) {
        return Err(Denied::WrongScope {
            has: record.scope.as_str(),
            needs: needs.as_str(),
        }
        .into());
    }
    Ok(record)
}

/// Keys in memory (tests).
#[derive(Default)]
pub struct MemoryKeys {
    records: Mutex<BTreeMap<String, KeyRecord>>,
}

fn poisoned<T>(_: T) -> KeyStoreError {
    KeyStoreError {
        context: "key store lock poisoned".into(),
        source: None,
    }
}

#[async_trait]
impl KeyStore for MemoryKeys {
    async fn put(&self, record: &KeyRecord) -> Result<(), KeyStoreError> {
        self.records
            .lock()
            .map_err(poisoned)?
            .insert(record.hash.clone(), record.clone());
        Ok(())
    }
    async fn get(&self, hash: &str) -> Result<Option<KeyRecord>, KeyStoreError> {
        Ok(self.records.lock().map_err(poisoned)?.get(hash).cloned())
    }
    async fn list(&self) -> Result<Vec<KeyRecord>, KeyStoreError> {
        Ok(self
            .records
            .lock()
            .map_err(poisoned)?
            .values()
            .cloned()
            .collect())
    }
    async fn revoke(&self, which: &str, now_ms: i64) -> Result<Vec<KeyRecord>, KeyStoreError> {
        let mut records = self.records.lock().map_err(poisoned)?;
        let mut out = Vec::new();
        for r in records.values_mut() {
            if (r.id == which || r.name == which) && r.revoked_ms.is_none() {
                r.revoked_ms = Some(now_ms);
                out.push(r.clone());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_scopes() {
        assert_eq!(required_scope("GET", "/health"), None);
        assert_eq!(required_scope("GET", "/openapi.json"), None);
        assert_eq!(required_scope("OPTIONS", "/events"), None);
        assert_eq!(required_scope("POST", "/events"), Some(Scope::Ingest));
        assert_eq!(
            required_scope("GET", "/analytics/summary"),
            Some(Scope::Read)
        );
        assert_eq!(required_scope("GET", "/docs/search"), Some(Scope::Read));
        assert_eq!(required_scope("GET", "/docs/context"), Some(Scope::Read));
        assert_eq!(required_scope("GET", "/"), None);
        assert_eq!(required_scope("GET", "/assets/app.js"), None);
        assert_eq!(required_scope("POST", "/"), Some(Scope::Read));
        assert_eq!(required_scope("GET", "/pipeline/status"), Some(Scope::Read));
        assert_eq!(required_scope("GET", "/analytics/daily"), Some(Scope::Read));
        assert_eq!(required_scope("put", "/docs/a/b.md"), Some(Scope::Admin));
        assert_eq!(required_scope("DELETE", "/docs/a.md"), Some(Scope::Admin));
        assert!(Scope::Admin.allows(Scope::Ingest) && Scope::Admin.allows(Scope::Read));
        assert!(!Scope::Ingest.allows(Scope::Read) && !Scope::Read.allows(Scope::Ingest));
        assert!(!Scope::Read.allows(Scope::Admin));
        for s in [Scope::Ingest, Scope::Read, Scope::Admin] {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        assert_eq!(Scope::parse("root"), None);
    }

    #[test]
    fn keys_are_random_and_only_their_hash_is_kept() {
        let a = generate("a", Scope::Read, 1);
        let b = generate("a", Scope::Read, 1);
        assert_ne!(a.key, b.key);
        assert!(a.key.starts_with(PREFIX) && a.key.len() == PREFIX.len() + 64);
        assert_eq!(a.record.hash, hash(&a.key));
        assert_eq!(a.record.id, a.record.hash[..12]);
        assert!(!a.record.hash.contains(&a.key[PREFIX.len()..]));
    }

    #[tokio::test]
    async fn every_case_of_the_check() {
        let store = MemoryKeys::default();
        let read = generate("dash", Scope::Read, 1);
        let ingest = generate("app", Scope::Ingest, 1);
        let admin = generate("ops", Scope::Admin, 1);
        for k in [&read, &ingest, &admin] {
            store.put(&k.record).await.unwrap();
        }
        assert_eq!(
            authorize(&store, Some(&read.key), Scope::Read)
                .await
                .unwrap()
                .name,
            "dash"
        );
        assert_eq!(
            authorize(&store, Some(&admin.key), Scope::Ingest)
                .await
                .unwrap()
                .name,
            "ops"
        );
        let denied = |r: Result<KeyRecord, AuthError>| match r {
            Err(AuthError::Denied(d)) => (d.status(), d.code()),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            denied(authorize(&store, None, Scope::Read).await),
            (401, "missing_api_key")
        );
        assert_eq!(
            denied(authorize(&store, Some("  "), Scope::Read).await),
            (401, "missing_api_key")
        );
        assert_eq!(
            denied(authorize(&store, Some("dfk_nope"), Scope::Read).await),
            (401, "invalid_api_key")
        );
        assert_eq!(
            denied(authorize(&store, Some("Bearer x"), Scope::Read).await),
            (401, "invalid_api_key")
        );
        assert_eq!(
            denied(authorize(&store, Some(&ingest.key), Scope::Read).await),
            (403, "insufficient_scope")
        );
        assert_eq!(
            denied(authorize(&store, Some(&read.key), Scope::Ingest).await),
            (403, "insufficient_scope")
        );
        assert_eq!(
            denied(authorize(&store, Some(&read.key), Scope::Admin).await),
            (403, "insufficient_scope")
        );
        let revoked = store.revoke("dash", 2).await.unwrap();
        assert_eq!(revoked.len(), 1);
        assert_eq!(
            denied(authorize(&store, Some(&read.key), Scope::Read).await),
            (401, "revoked_api_key")
        );
        assert!(
            store.revoke("dash", 3).await.unwrap().is_empty(),
            "revoking twice changes nothing"
        );
        assert_eq!(
            store.revoke(&ingest.record.id, 3).await.unwrap()[0].name,
            "app"
        );
    }
}
