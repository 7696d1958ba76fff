//! `dataflow index`: build, publish and query the document search index.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use dataflow_aws::S3Store;
use dataflow_dev::Clients;
use dataflow_dev::StackConfig as Config;

#[derive(Subcommand)]
pub enum IndexCommand {
    /// Index a local folder of Markdown. With --upload, make the docs prefix of the index bucket
    /// hold exactly these files and publish the index built from them (what the index builder
    /// Lambda would publish); with --out, write the index object to a file.
    Build {
        #[arg(long, default_value = "docs")]
        docs: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        upload: bool,
        /// The embedding model's folder: with it every passage gets a vector (semantic and
        /// hybrid search); without it the index is lexical only.
        #[arg(long, env = "EMBED_MODEL_DIR")]
        model: Option<PathBuf>,
    },
    /// Rebuild from the docs prefix in S3 and publish (what the index builder Lambda runs).
    Rebuild {
        /// Publish even when the docs are unchanged.
        #[arg(long)]
        force: bool,
        /// The embedding model's folder (see `build`).
        #[arg(long, env = "EMBED_MODEL_DIR")]
        model: Option<PathBuf>,
    },
    /// Show the published index's manifest.
    Status,
    /// Search the published index (or a local index file).
    Search {
        query: String,
        #[arg(long, default_value_t = 5)]
        k: usize,
        #[arg(long)]
        file: Option<PathBuf>,
        /// lexical, semantic or hybrid (default: hybrid when the index has vectors and the
        /// model is given, else lexical).
        #[arg(long)]
        mode: Option<dataflow_search::index::Mode>,
        /// The embedding model's folder, for semantic and hybrid queries.
        #[arg(long, env = "EMBED_MODEL_DIR")]
        model: Option<PathBuf>,
    },
}

fn model(
    dir: Option<&std::path::Path>,
) -> Result<Option<std::sync::Arc<dyn dataflow_embed::Embed>>> {
    dataflow_search::config::load_model(dir).context("loading the embedding model")
}

fn print_stats(outcome: &dataflow_search::store::RebuildOutcome) {
    if let dataflow_search::store::RebuildOutcome::Published {
        stats, build_ms, ..
    } = outcome
    {
        eprintln!(
            "{} passages: {} embedded, {} vectors reused, built in {build_ms} ms",
            stats.passages, stats.embedded, stats.reused
        );
    }
}

pub async fn index(command: IndexCommand) -> Result<()> {
    use dataflow_search::chunk::ChunkOptions;
    use dataflow_search::store;
    let aws = || async {
        let cfg = Config::from_env()?;
        let clients = Clients::new(&cfg).await;
        anyhow::Ok((S3Store::new(clients.s3.clone()), cfg.search.index.clone()))
    };
    match command {
        IndexCommand::Build {
            docs,
            out,
            upload,
            model: model_dir,
        } => {
            let embed = model(model_dir.as_deref())?;
            if out.is_none() && !upload {
                bail!("say where the index goes: --upload (publish to the index bucket) and/or --out FILE");
            }
            let files = store::read_local_files(&docs)?;
            let (sources, skipped) = store::convert(files.clone());
            for s in &skipped {
                eprintln!("skipped {}: {}", s.path, s.reason);
            }
            if sources.is_empty() {
                bail!(
                    "no readable documents ({}) under {}",
                    dataflow_search::formats::SUPPORTED,
                    docs.display()
                );
            }
            if let Some(out) = out {
                let started = Instant::now();
                let (bytes, stats) = dataflow_search::index::build_with(
                    &sources,
                    ChunkOptions::default(),
                    chrono::Utc::now(),
                    embed.as_deref(),
                    None,
                )?;
                eprintln!("{} passages, {} embedded", stats.passages, stats.embedded);
                let (h, _) = dataflow_search::index::read_header(&bytes)?;
                std::fs::write(&out, &bytes)
                    .with_context(|| format!("writing {}", out.display()))?;
                eprintln!(
                    "wrote {} ({} bytes): {} documents, {} passages in {} ms",
                    out.display(),
                    bytes.len(),
                    h.documents.len(),
                    h.passages,
                    started.elapsed().as_millis()
                );
            }
            if upload {
                let (s3, loc) = aws().await?;
                let sync = store::sync_docs(&s3, &loc, &files).await?;
                eprintln!(
                    "s3://{}/{}: {} uploaded, {} deleted, {} unchanged",
                    loc.bucket,
                    loc.docs_prefix,
                    sync.uploaded.len(),
                    sync.deleted.len(),
                    sync.unchanged
                );
                let outcome =
                    store::rebuild(&s3, &loc, ChunkOptions::default(), false, embed).await?;
                print_stats(&outcome);
                out!("{}", serde_json::to_string_pretty(&outcome)?);
            }
            Ok(())
        }
        IndexCommand::Rebuild {
            force,
            model: model_dir,
        } => {
            let embed = model(model_dir.as_deref())?;
            let (s3, loc) = aws().await?;
            let outcome = store::rebuild(&s3, &loc, ChunkOptions::default(), force, embed).await?;
            print_stats(&outcome);
            out!("{}", serde_json::to_string_pretty(&outcome)?);
            Ok(())
        }
        IndexCommand::Status => {
            let (s3, loc) = aws().await?;
            match store::current_manifest(&s3, &loc).await? {
                Some(m) => out!("{}", serde_json::to_string_pretty(&m)?),
                None => bail!(
                    "no index published at s3://{}/{}: run `dataflow index build --docs docs/ --upload`",
                    loc.bucket,
                    loc.manifest_key()
                ),
            }
            Ok(())
        }
        IndexCommand::Search {
            query,
            k,
            file,
            mode,
            model: model_dir,
        } => {
            let embed = model(model_dir.as_deref())?;
            let bytes = match file {
                Some(f) => std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?,
                None => {
                    let (s3, loc) = aws().await?;
                    let m = store::current_manifest(&s3, &loc).await?.context(
                        "no index published: run `dataflow index build --docs docs/ --upload`",
                    )?;
                    use dataflow_store::ObjectStore;
                    let started = Instant::now();
                    let b = s3
                        .get(&loc.bucket, &m.key)
                        .await?
                        .with_context(|| format!("index object {} is missing", m.key))?;
                    eprintln!(
                        "fetched s3://{}/{} ({} bytes) in {} ms",
                        loc.bucket,
                        m.key,
                        b.len(),
                        started.elapsed().as_millis()
                    );
                    b
                }
            };
            let started = Instant::now();
            let idx = dataflow_search::index::SearchIndex::open(&bytes)?;
            eprintln!("opened in {} ms", started.elapsed().as_millis());
            let started = Instant::now();
            let mode = mode.unwrap_or(if idx.vector_model().is_some() && embed.is_some() {
                dataflow_search::index::Mode::Hybrid
            } else {
                dataflow_search::index::Mode::Lexical
            });
            let r = idx.search_mode(&query, k, mode, embed.as_deref())?;
            eprintln!(
                "{} hit(s), {} mode, in {} µs",
                r.hits.len(),
                r.mode,
                started.elapsed().as_micros()
            );
            if let Some(why) = &r.fallback {
                eprintln!("{why}");
            }
            out!("{}", serde_json::to_string_pretty(&r.hits)?);
            Ok(())
        }
    }
}
