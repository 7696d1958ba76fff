//! The search functions' own settings: where the corpus and the index live (both functions) and
//! how long the search API trusts its cached index (`CACHE_SECONDS`).

use dataflow_config::{ConfigError, Env, FromEnv};

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

/// The search API's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchConfig {
    pub index: IndexLocation,
    /// How long the API trusts the manifest it read before revalidating (`CACHE_SECONDS`,
    /// default 30).
    pub cache_seconds: u64,
}

impl FromEnv for SearchConfig {
    fn from_env_vars(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            index: IndexLocation::from_env_vars(env)?,
            cache_seconds: dataflow_config::cache_seconds(env)?,
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
