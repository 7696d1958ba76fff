//! Streaming processing of one JSON Lines input: read in chunks cut at line boundaries, parse and
//! aggregate on worker threads (each with its own aggregates, merged once at the end), and write
//! curated rows and rejected lines from one collector thread. Memory is bounded by the chunk size
//! times the channel depth, not by the input size.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;
use std::time::Instant;

use flate2::read::MultiGzDecoder;

use crate::etl::rejected::{RejectedLine, RejectedWriter};
use crate::event::{parse_line, parse_line_str, Reason};
use crate::lake::aggregate::{Accumulator, Aggregates};
use crate::lake::parquet::{CuratedBatch, CuratedWriter, ParquetError};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("reading the input failed after {bytes} bytes: {source}")]
    Read {
        bytes: u64,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Output(#[from] ParquetError),
    #[error("writing the rejected-lines report failed: {0}")]
    Report(#[source] std::io::Error),
    #[error("a processing thread failed: {0}")]
    Worker(String),
}

#[derive(Debug, Clone)]
pub struct ProcessOptions {
    pub workers: usize,
    pub chunk_bytes: usize,
    /// Lines longer than this are rejected as `line_too_long` without being buffered whole.
    pub max_line_bytes: usize,
    /// How much of a rejected line the report keeps.
    pub max_raw_bytes: usize,
    /// Write curated events (the aggregate-only path skips them).
    pub curated: bool,
    /// Accepted event times; events outside are rejected as `timestamp_out_of_range`.
    pub window: TimeWindow,
}

pub use dataflow_contract::window::{TimeWindow, WindowRule};

impl ProcessOptions {
    /// The ETL's settings; the event-time window is set per run from `EtlConfig::window_rule`.
    pub fn for_config(cfg: &crate::config::EtlConfig) -> Self {
        Self {
            workers: cfg.workers,
            chunk_bytes: cfg.chunk_bytes,
            max_line_bytes: cfg.max_line_bytes,
            max_raw_bytes: 1024,
            curated: cfg.write_events,
            window: TimeWindow::open(),
        }
    }
}

impl Default for ProcessOptions {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            chunk_bytes: 4 << 20,
            max_line_bytes: 1 << 20,
            max_raw_bytes: 1024,
            curated: true,
            window: TimeWindow::open(),
        }
    }
}

/// What processing one input produced. Curated and rejected outputs are files in the work
/// directory passed to [`process`].
#[derive(Debug, Default)]
pub struct ProcessReport {
    pub aggregates: Aggregates,
    pub accepted: u64,
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<Reason, u64>,
    /// Lines seen, blank lines included (line numbers run to this).
    pub lines: u64,
    /// Decompressed bytes read.
    pub bytes: u64,
    pub curated_files: Vec<(i32, std::path::PathBuf, u64)>,
    pub rejected_file: Option<std::path::PathBuf>,
    pub elapsed_ms: u64,
}

struct Chunk {
    first_line: u64,
    data: Vec<u8>,
}

enum Output {
    Curated(CuratedBatch),
    Rejected(Vec<RejectedLine>),
}

#[derive(Default)]
struct WorkerTotals {
    aggregates: Accumulator,
    accepted: u64,
    rejected_by_reason: BTreeMap<Reason, u64>,
}

/// Wraps a reader in a gzip decoder when the stream starts with the gzip magic bytes, so
/// compression is detected from content rather than trusted from the key's suffix. A corrupt
/// gzip stream fails with the compressed byte offset where decoding stopped.
pub fn maybe_decompress<'a, R: Read + Send + 'a>(
    reader: R,
) -> std::io::Result<Box<dyn Read + Send + 'a>> {
    let mut buffered = BufReader::with_capacity(
        256 << 10,
        Counting {
            inner: reader,
            n: 0,
        },
    );
    let head = buffered.fill_buf()?;
    if head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        Ok(Box::new(Gunzip {
            inner: MultiGzDecoder::new(buffered),
            out: 0,
        }))
    } else {
        Ok(Box::new(buffered))
    }
}

/// Counts the bytes read from the object itself.
struct Counting<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

struct Gunzip<R: Read> {
    inner: MultiGzDecoder<BufReader<Counting<R>>>,
    out: u64,
}

impl<R: Read> Read for Gunzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.out += n as u64;
                Ok(n)
            }
            Err(e) => {
                let reader = self.inner.get_ref();
                // Bytes the decoder consumed: read from the object minus what is still buffered.
                let at = reader.get_ref().n - reader.buffer().len() as u64;
                Err(std::io::Error::new(
                    e.kind(),
                    format!(
                        "gzip stream invalid at compressed byte {at} (after {} decompressed bytes): {e}",
                        self.out
                    ),
                ))
            }
        }
    }
}

/// Processes one input stream. `work_dir` receives curated and rejected files.
pub fn process<R: Read + Send>(
    input: R,
    opts: &ProcessOptions,
    work_dir: &Path,
) -> Result<ProcessReport, ProcessError> {
    let started = Instant::now();
    let workers = opts.workers.max(1);
    let chunk_bytes = opts
        .chunk_bytes
        .max(opts.max_line_bytes.saturating_mul(2))
        .max(64);
    let (chunk_tx, chunk_rx) = sync_channel::<Chunk>(workers * 2);
    let chunk_rx = Mutex::new(chunk_rx);
    let (out_tx, out_rx) = sync_channel::<Output>(workers * 2);

    let mut report = ProcessReport::default();
    let result = std::thread::scope(|s| -> Result<(), ProcessError> {
        let collector = s.spawn(|| collect(out_rx, opts.curated, work_dir));
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let out_tx = out_tx.clone();
            let chunk_rx = &chunk_rx;
            handles.push(s.spawn(move || work(chunk_rx, out_tx, opts)));
        }
        let read = read_chunks(input, chunk_bytes, opts, &chunk_tx, &out_tx);
        drop(chunk_tx);
        drop(out_tx);
        for h in handles {
            let totals = h
                .join()
                .map_err(|_| ProcessError::Worker("worker panicked".into()))?;
            report.aggregates.merge(totals.aggregates.finish());
            report.accepted += totals.accepted;
            for (r, n) in totals.rejected_by_reason {
                *report.rejected_by_reason.entry(r).or_default() += n;
            }
        }
        let collected = collector
            .join()
            .map_err(|_| ProcessError::Worker("collector panicked".into()))?;
        let (lines, bytes, too_long) = read?;
        if too_long > 0 {
            *report
                .rejected_by_reason
                .entry(Reason::LineTooLong)
                .or_default() += too_long;
        }
        let (curated_files, rejected_file) = collected?;
        report.lines = lines;
        report.bytes = bytes;
        report.curated_files = curated_files;
        report.rejected_file = rejected_file;
        Ok(())
    });
    result?;
    report.rejected = report.rejected_by_reason.values().sum();
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Reads the input into chunks that end on a line break. Returns (lines, bytes, lines longer
/// than a whole chunk, which it rejects itself).
fn read_chunks<R: Read>(
    mut input: R,
    chunk_bytes: usize,
    opts: &ProcessOptions,
    chunk_tx: &SyncSender<Chunk>,
    out_tx: &SyncSender<Output>,
) -> Result<(u64, u64, u64), ProcessError> {
    let mut bytes: u64 = 0;
    let mut too_long: u64 = 0;
    let mut next_line: u64 = 1;
    let mut buf: Vec<u8> = Vec::with_capacity(chunk_bytes);
    let mut first = true;
    // Set while discarding the rest of an over-long line.
    let mut skipping = false;
    loop {
        let start = buf.len();
        // `read_to_end` fills spare capacity without zeroing it first (zeroing was 2% of the
        // aggregate path), retries interrupted reads, and fills whole chunks from streams that
        // return a few KiB per read.
        let want = chunk_bytes.max(start + 1) - start;
        buf.reserve_exact(want);
        let n = match input.by_ref().take(want as u64).read_to_end(&mut buf) {
            Ok(n) => n,
            Err(source) => {
                // Count what this read delivered before failing, so the offset is exact.
                let bytes = bytes + (buf.len() - start) as u64;
                return Err(ProcessError::Read { bytes, source });
            }
        };
        bytes += n as u64;
        if first && buf.len() >= 3 {
            first = false;
            if buf.starts_with(&[0xEF, 0xBB, 0xBF]) {
                buf.drain(..3);
            }
        }
        if n == 0 {
            if !buf.is_empty() && !skipping {
                let data = std::mem::take(&mut buf);
                next_line += 1;
                if chunk_tx
                    .send(Chunk {
                        first_line: next_line - 1,
                        data,
                    })
                    .is_err()
                {
                    break;
                }
            } else if skipping {
                next_line += 1;
            }
            break;
        }
        if skipping {
            match memchr::memchr(b'\n', &buf) {
                Some(pos) => {
                    buf.drain(..=pos);
                    skipping = false;
                    next_line += 1;
                }
                None => {
                    buf.clear();
                    continue;
                }
            }
        }
        match memchr::memrchr(b'\n', &buf) {
            Some(pos) => {
                let rest = buf.split_off(pos + 1);
                let data = std::mem::replace(&mut buf, rest);
                let lines = memchr::memchr_iter(b'\n', &data).count() as u64;
                let first_line = next_line;
                next_line += lines;
                if chunk_tx.send(Chunk { first_line, data }).is_err() {
                    break;
                }
            }
            None if buf.len() >= chunk_bytes => {
                // A line longer than a whole chunk: report it and drop the rest of it.
                let mut r =
                    RejectedLine::new(next_line, Reason::LineTooLong, &buf, opts.max_raw_bytes);
                r.truncated = true;
                too_long += 1;
                if out_tx.send(Output::Rejected(vec![r])).is_err() {
                    break;
                }
                buf.clear();
                skipping = true;
            }
            None => {}
        }
    }
    // `next_line` is one past the last line seen.
    Ok((next_line - 1, bytes, too_long))
}

fn work(
    rx: &Mutex<Receiver<Chunk>>,
    out: SyncSender<Output>,
    opts: &ProcessOptions,
) -> WorkerTotals {
    let mut totals = WorkerTotals::default();
    loop {
        let chunk = {
            let Ok(guard) = rx.lock() else { break };
            match guard.recv() {
                Ok(c) => c,
                Err(_) => break,
            }
        };
        let mut curated = CuratedBatch::default();
        let mut rejected = Vec::new();
        let data = chunk.data.as_slice();
        // One UTF-8 check per chunk instead of one per JSON string; a chunk with a bad byte
        // falls back to checking each line, so only the bad line is rejected.
        let text = std::str::from_utf8(data).ok();
        let mut start = 0;
        // memchr finds line ends with SIMD; the final piece is the text after the last '\n'.
        let ends = memchr::memchr_iter(b'\n', data).chain(std::iter::once(data.len()));
        for (i, end) in ends.enumerate() {
            let line = &data[start..end];
            let line_start = start;
            start = end + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let line_no = chunk.first_line + i as u64;
            let result = if line.len() > opts.max_line_bytes {
                Err(Reason::LineTooLong)
            } else if let Some(text) = text {
                // Line ends are ASCII, so a line of valid UTF-8 text is valid UTF-8 itself.
                // `get` cannot fail here; it keeps the slicing panic-free.
                match text.get(line_start..line_start + line.len()) {
                    Some(l) => parse_line_str(l),
                    None => parse_line(line),
                }
            } else {
                parse_line(line)
            };
            let result = result.and_then(|e| {
                if opts.window.contains(e.event_time_us) {
                    Ok(e)
                } else {
                    Err(Reason::TimestampOutOfRange)
                }
            });
            match result {
                Ok(e) => {
                    totals.aggregates.add(&e);
                    totals.accepted += 1;
                    if opts.curated {
                        curated.entry(e.event_date).or_default().push(&e);
                    }
                }
                Err(reason) => {
                    *totals.rejected_by_reason.entry(reason).or_default() += 1;
                    rejected.push(RejectedLine::new(line_no, reason, line, opts.max_raw_bytes));
                }
            }
        }
        if !rejected.is_empty() && out.send(Output::Rejected(rejected)).is_err() {
            break;
        }
        if !curated.is_empty() && out.send(Output::Curated(curated)).is_err() {
            break;
        }
    }
    totals
}

type Collected = (
    Vec<(i32, std::path::PathBuf, u64)>,
    Option<std::path::PathBuf>,
);

fn collect(rx: Receiver<Output>, curated: bool, dir: &Path) -> Result<Collected, ProcessError> {
    let mut cw = curated.then(|| CuratedWriter::new(dir));
    let mut rw = RejectedWriter::new(dir);
    // On a write error keep draining, so producers never block on a full channel.
    let mut failed: Option<ProcessError> = None;
    for msg in rx {
        if failed.is_some() {
            continue;
        }
        let r = match msg {
            Output::Curated(batch) => match cw.as_mut() {
                Some(w) => w.append(batch).map_err(ProcessError::from),
                None => Ok(()),
            },
            Output::Rejected(lines) => lines
                .iter()
                .try_for_each(|l| rw.write(l))
                .map_err(ProcessError::Report),
        };
        if let Err(e) = r {
            failed = Some(e);
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    let files = match cw {
        Some(w) => w.finish()?,
        None => Vec::new(),
    };
    let report = rw.finish().map_err(ProcessError::Report)?;
    Ok((files, report.map(|(p, _)| p)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_date;
    use std::io::Write;

    fn run(input: &[u8], opts: &ProcessOptions) -> (ProcessReport, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let r = process(maybe_decompress(input).unwrap(), opts, dir.path()).unwrap();
        (r, dir)
    }

    fn sample() -> String {
        let mut s = String::from("\u{feff}");
        s.push_str("{\"user_id\":\"a\",\"event_type\":\"click\",\"timestamp\":\"2024-01-01T10:00:00Z\"}\r\n");
        s.push_str("\n   \n");
        s.push_str(
            "{\"user_id\":\"b\",\"event_type\":\"click\",\"timestamp\":\"2024-01-01T11:00:00Z\"}\n",
        );
        s.push_str("not json\n");
        s.push_str("{\"user_id\":\"a\",\"event_type\":\"view\",\"timestamp\":1704153600000}\n");
        s.push_str("{\"event_type\":\"view\",\"timestamp\":1704153600000}");
        s
    }

    #[test]
    fn counts_lines_reasons_and_line_numbers() {
        for workers in [1, 3] {
            for chunk in [64, 1 << 20] {
                // max_line_bytes 100 makes 200-byte chunks: the sample spans several.
                let opts = ProcessOptions {
                    workers,
                    chunk_bytes: chunk,
                    max_line_bytes: 100,
                    ..Default::default()
                };
                let (r, _d) = run(sample().as_bytes(), &opts);
                assert_eq!(r.accepted, 3, "workers {workers} chunk {chunk}");
                assert_eq!(r.rejected, 2);
                assert_eq!(r.lines, 7);
                assert_eq!(r.rejected_by_reason[&Reason::InvalidJson], 1);
                assert_eq!(r.rejected_by_reason[&Reason::MissingUserId], 1);
                let report = std::fs::read_to_string(r.rejected_file.unwrap()).unwrap();
                let mut lines: Vec<u64> = report
                    .lines()
                    .map(|l| {
                        serde_json::from_str::<serde_json::Value>(l).unwrap()["line"]
                            .as_u64()
                            .unwrap()
                    })
                    .collect();
                lines.sort();
                assert_eq!(lines, vec![5, 7]);
                let d1 = parse_date("2024-01-01").unwrap();
                let d2 = parse_date("2024-01-02").unwrap();
                let s = r.aggregates.sorted();
                assert_eq!(s[&d1]["click"].event_count, 2);
                assert_eq!(s[&d2]["view"].event_count, 1);
                let files: Vec<(i32, u64)> =
                    r.curated_files.iter().map(|(d, _, n)| (*d, *n)).collect();
                assert_eq!(files, vec![(d1, 2), (d2, 1)]);
            }
        }
    }

    #[test]
    fn invalid_utf8_rejects_only_its_own_line() {
        let good = br#"{"user_id":"a","event_type":"x","timestamp":0,"properties":{"k":"\u00e9"}}"#;
        // Bad bytes inside a field the ETL does not keep, and inside a kept one.
        let ignored =
            b"{\"user_id\":\"b\",\"event_type\":\"x\",\"timestamp\":0,\"extra\":\"\xff\"}";
        let kept = b"{\"user_id\":\"c\xc3\",\"event_type\":\"x\",\"timestamp\":0}";
        let mut input = Vec::new();
        for line in [&good[..], ignored, &good[..], kept, &good[..]] {
            input.extend_from_slice(line);
            input.push(b'\n');
        }
        for chunk in [64, 1 << 20] {
            let opts = ProcessOptions {
                chunk_bytes: chunk,
                max_line_bytes: 100,
                ..Default::default()
            };
            let (r, _d) = run(&input, &opts);
            assert_eq!((r.accepted, r.rejected), (3, 2), "chunk {chunk}");
            assert_eq!(r.rejected_by_reason[&Reason::InvalidJson], 2);
            let report = std::fs::read_to_string(r.rejected_file.unwrap()).unwrap();
            let mut lines: Vec<u64> = report
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l).unwrap()["line"]
                        .as_u64()
                        .unwrap()
                })
                .collect();
            lines.sort();
            assert_eq!(lines, vec![2, 4]);
        }
    }

    #[test]
    fn a_cut_gzip_stream_names_its_offset() {
        let body: String = (0..20_000)
            .map(|i| format!("{{\"user_id\":\"u{i}\",\"event_type\":\"x\",\"timestamp\":{i}}}\n"))
            .collect();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(body.as_bytes()).unwrap();
        let gz = enc.finish().unwrap();
        let cut = gz.len() / 2;
        let dir = tempfile::tempdir().unwrap();
        let input = maybe_decompress(&gz[..cut]).unwrap();
        let err = process(input, &ProcessOptions::default(), dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("invalid at compressed byte {cut} ")),
            "{err}"
        );
        assert!(!err.contains("after 0 bytes"), "{err}");
    }

    #[test]
    fn events_outside_the_window_are_rejected_with_their_own_reason() {
        let input = concat!(
            r#"{"user_id":"a","event_type":"x","timestamp":"2024-01-01T00:00:00Z"}"#,
            "\n",
            r#"{"user_id":"b","event_type":"x","timestamp":"9999-12-31T12:00:00Z"}"#,
            "\n",
            r#"{"user_id":"c","event_type":"x","timestamp":"1000-01-01T00:00:00Z"}"#,
            "\n",
            r#"{"user_id":"d","event_type":"x","timestamp":0}"#,
            "\n",
        );
        let opts = ProcessOptions {
            window: TimeWindow {
                min_us: 946_684_800_000_000,   // 2000-01-01
                max_us: 1_735_689_600_000_000, // 2025-01-01
            },
            ..ProcessOptions::default()
        };
        let (r, _d) = run(input.as_bytes(), &opts);
        assert_eq!((r.accepted, r.rejected), (1, 3));
        assert_eq!(r.rejected_by_reason[&Reason::TimestampOutOfRange], 3);
        assert_eq!(r.aggregates.max_time_us(), Some(1_704_067_200_000_000));
    }

    #[test]
    fn gzip_is_detected_by_content() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(sample().as_bytes()).unwrap();
        let gz = enc.finish().unwrap();
        let (r, _d) = run(&gz, &ProcessOptions::default());
        assert_eq!((r.accepted, r.rejected), (3, 2));
    }

    #[test]
    fn over_long_lines_are_rejected_without_losing_neighbours() {
        let good = r#"{"user_id":"a","event_type":"x","timestamp":0}"#;
        let long = format!(
            r#"{{"user_id":"a","event_type":"x","timestamp":0,"pad":"{}"}}"#,
            "p".repeat(5000)
        );
        let input = format!("{good}\n{long}\n{good}\n{long}");
        let opts = ProcessOptions {
            chunk_bytes: 128,
            max_line_bytes: 100,
            workers: 2,
            ..Default::default()
        };
        let (r, _d) = run(input.as_bytes(), &opts);
        assert_eq!(r.accepted, 2);
        assert_eq!(r.rejected_by_reason[&Reason::LineTooLong], 2);
        assert_eq!(r.lines, 4);
        let report = std::fs::read_to_string(r.rejected_file.unwrap()).unwrap();
        for l in report.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(v["raw"].as_str().unwrap().len() <= 1024);
            assert_eq!(v["truncated"], true);
        }
    }

    #[test]
    fn an_event_type_past_256_bytes_is_rejected_and_the_rest_counted() {
        let line = |t: &str| {
            format!(r#"{{"user_id":"u","event_type":"{t}","timestamp":"2024-01-01T10:00:00Z"}}"#)
        };
        let input = [
            line(&"a".repeat(256)),
            line(&"b".repeat(257)),
            line("click"),
            line(&"c".repeat(100_000)),
        ]
        .join("\n");
        let opts = ProcessOptions {
            max_line_bytes: 200_000,
            ..Default::default()
        };
        let (r, _d) = run(input.as_bytes(), &opts);
        assert_eq!((r.accepted, r.rejected, r.lines), (2, 2, 4));
        assert_eq!(r.rejected_by_reason[&Reason::EventTypeTooLong], 2);
        let d = parse_date("2024-01-01").unwrap();
        let s = r.aggregates.sorted();
        assert_eq!(s[&d].len(), 2);
        assert_eq!(s[&d]["click"].event_count, 1);
        assert_eq!(s[&d]["a".repeat(256).as_str()].event_count, 1);
    }

    #[test]
    fn empty_and_blank_inputs() {
        let (r, _d) = run(b"", &ProcessOptions::default());
        assert_eq!((r.accepted, r.rejected, r.lines), (0, 0, 0));
        assert!(r.rejected_file.is_none() && r.curated_files.is_empty());
        let (r, _d) = run(b"\n\n \r\n", &ProcessOptions::default());
        assert_eq!((r.accepted, r.rejected), (0, 0));
    }

    #[test]
    fn curated_parquet_has_typed_columns() {
        let (r, _d) = run(sample().as_bytes(), &ProcessOptions::default());
        let (_, path, _) = &r.curated_files[0];
        let df = crate::lake::parquet::read_parquet_file(path).unwrap();
        assert_eq!(df.height(), 2);
        let names: Vec<String> = df
            .get_column_names()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            names,
            [
                "event_id",
                "user_id",
                "event_type",
                "event_time",
                "properties"
            ]
        );
        assert_eq!(
            df.column("event_time").unwrap().dtype(),
            &polars::prelude::DataType::Datetime(
                polars::prelude::TimeUnit::Microseconds,
                Some(polars::prelude::TimeZone::UTC)
            )
        );
    }
}
