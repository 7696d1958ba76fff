//! The search functions' own settings: where the corpus and the index live (both functions) and
//! how long the search API trusts its cached index (`CACHE_SECONDS`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dataflow_config::{ConfigError, Env, FromEnv};
use dataflow_embed::{Embed, EmbedError, Embedder};

use crate::store::IndexLocation;

pub const DEFAULT_INDEX_BUCKET: &str = "dataflow-index";

/// `INDEX_BUCKET`, `DOCS_PREFIX` (default `docs/`), `INDEX_PREFIX` (default `index/`): the index
/// builder's settings.
impl FromEnv for IndexLocation {
    fn from_env_vars(env: &Env<'_>) -> Result<Self, ConfigError> {
        let loc = IndexLocation {
            bucket: env.bucket("INDEX_BUCKET", DEFAULT_INDEX_BUCKET)?,
            docs_prefix: env.prefix("DOCS_PREFIX", "docs/")?,
            index_prefix: env.prefix("INDEX_PREFIX", "index/")?,
        };
        // Publishing must never trigger a rebuild.
        if loc.docs_prefix.starts_with(&loc.index_prefix)
            || loc.index_prefix.starts_with(&loc.docs_prefix)
        {
            return Err(ConfigError::new(
                "INDEX_PREFIX",
                format!(
                    "INDEX_PREFIX {:?} must not overlap DOCS_PREFIX {:?} (publishing would trigger a rebuild)",
                    loc.index_prefix, loc.docs_prefix
                ),
            ));
        }
        Ok(loc)
    }
}

/// `EMBED_MODEL_DIR`: the embedding model's folder (`model.safetensors`, `tokenizer.json`,
/// `config.json`). Unset means no model: indexes are built without vectors and searched
/// lexically.
fn model_dir(env: &Env<'_>) -> Option<PathBuf> {
    env.get("EMBED_MODEL_DIR").map(PathBuf::from)
}

/// Loads the model a config names (at start, so a bad folder stops the function there).
pub fn load_model(dir: Option<&Path>) -> Result<Option<Arc<dyn Embed>>, EmbedError> {
    let Some(dir) = dir else {
        return Ok(None);
    };
    let started = std::time::Instant::now();
    let e = Embedder::load(dir)?;
    tracing::info!(
        model = %e.identity().name,
        sha256 = %e.identity().sha256,
        load_ms = started.elapsed().as_millis() as u64,
        "embedding model loaded"
    );
    Ok(Some(Arc::new(e)))
}

/// The index builder's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderConfig {
    pub index: IndexLocation,
    pub model_dir: Option<PathBuf>,
}

impl FromEnv for BuilderConfig {
    fn from_env_vars(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            index: IndexLocation::from_env_vars(env)?,
            model_dir: model_dir(env),
        })
    }
}

/// The search API's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchConfig {
    pub index: IndexLocation,
    /// How long the API trusts the manifest it read before revalidating (`CACHE_SECONDS`,
    /// default 30).
    pub cache_seconds: u64,
    /// The embedding model for semantic and hybrid search (`EMBED_MODEL_DIR`).
    pub model_dir: Option<PathBuf>,
}

impl FromEnv for SearchConfig {
    fn from_env_vars(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            index: IndexLocation::from_env_vars(env)?,
            cache_seconds: dataflow_config::cache_seconds(env)?,
            model_dir: model_dir(env),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(pairs: &[(&str, &str)]) -> Result<SearchConfig, ConfigError> {
        SearchConfig::from_env_vars(&Env::from_pairs(pairs))
    }

    #[test]
    fn defaults_and_overlap() {
        let c = search(&[]).unwrap();
        assert_eq!(
            (
                c.index.bucket.as_str(),
                c.index.docs_prefix.as_str(),
                c.index.index_prefix.as_str(),
                c.cache_seconds
            ),
            ("dataflow-index", "docs/", "index/", 30)
        );
        assert_eq!(
            search(&[("DOCS_PREFIX", "index/docs")]).unwrap_err().var,
            "INDEX_PREFIX"
        );
        assert_eq!(
            search(&[("INDEX_PREFIX", "docs/index")]).unwrap_err().var,
            "INDEX_PREFIX"
        );
        assert_eq!(
            search(&[("INDEX_BUCKET", "UPPER")]).unwrap_err().var,
            "INDEX_BUCKET"
        );
        assert_eq!(c.model_dir, None);
        assert_eq!(
            search(&[("EMBED_MODEL_DIR", "/opt/model")])
                .unwrap()
                .model_dir,
            Some(PathBuf::from("/opt/model"))
        );
        // Blank is unset, as for every variable.
        assert_eq!(search(&[("EMBED_MODEL_DIR", " ")]).unwrap().model_dir, None);
        let b =
            BuilderConfig::from_env_vars(&Env::from_pairs(&[("EMBED_MODEL_DIR", "/m")])).unwrap();
        assert_eq!(b.model_dir, Some(PathBuf::from("/m")));
        assert!(load_model(None).unwrap().is_none());
        assert!(load_model(Some(Path::new("/nonexistent/model"))).is_err());
    }

    #[test]
    fn the_etls_settings_do_not_stop_search() {
        // A bad ETL setting in a shared environment (a local run, a copied template) must not
        // stop the search functions from starting.
        let c = search(&[
            ("ETL_CHUNK_BYTES", "lots"),
            ("LEASE_SECONDS", "0"),
            ("RAW_BUCKET", "Bad_Bucket"),
        ]);
        assert!(c.is_ok());
    }
}
