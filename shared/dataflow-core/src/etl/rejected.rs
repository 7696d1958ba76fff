//! The rejected-lines report: one JSON line per rejected input line (line number, reason code,
//! the raw bytes up to a limit), written to a temporary file and uploaded next to the lake.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::event::Reason;

/// A rejected line, as written to the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedLine {
    pub line: u64,
    pub reason: Reason,
    pub raw: String,
    pub truncated: bool,
}

impl RejectedLine {
    pub fn new(line: u64, reason: Reason, raw: &[u8], max_raw: usize) -> Self {
        let truncated = raw.len() > max_raw;
        let raw = String::from_utf8_lossy(&raw[..raw.len().min(max_raw)]).into_owned();
        Self {
            line,
            reason,
            raw,
            truncated,
        }
    }
}

/// Writes the rejected-lines report (JSON Lines) to a temporary file.
pub struct RejectedWriter {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    count: u64,
}

impl RejectedWriter {
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join("rejected.jsonl"),
            out: None,
            count: 0,
        }
    }

    pub fn write(&mut self, r: &RejectedLine) -> Result<(), std::io::Error> {
        let out = match &mut self.out {
            Some(o) => o,
            None => self.out.insert(BufWriter::new(File::create(&self.path)?)),
        };
        let v = serde_json::json!({
            "line": r.line,
            "reason": r.reason.code(),
            "raw": r.raw,
            "truncated": r.truncated,
        });
        serde_json::to_writer(&mut *out, &v).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
        self.count += 1;
        Ok(())
    }

    /// The report's path, if any line was rejected.
    pub fn finish(self) -> Result<Option<(PathBuf, u64)>, std::io::Error> {
        match self.out {
            Some(mut o) => {
                o.flush()?;
                Ok(Some((self.path, self.count)))
            }
            None => Ok(None),
        }
    }
}
