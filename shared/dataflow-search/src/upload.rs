//! What a document upload must satisfy before it is stored under the docs prefix: a safe
//! relative path with a supported extension, at most [`MAX_UPLOAD_BYTES`], and content that is
//! what the extension says and that the index builder can read.

use crate::formats::{format_of, to_markdown, Format};

/// 5 MB. Through API Gateway, Lambda's 6 MB invocation payload is the lower bound for binary
/// bodies (base64): PDFs over ~4.4 MB go to the bucket directly.
pub const MAX_UPLOAD_BYTES: usize = 5 * 1024 * 1024;
const MAX_PATH_BYTES: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    #[error("invalid document path: {0}")]
    BadPath(String),
    #[error("the document is empty")]
    Empty,
    #[error("documents are at most {MAX_UPLOAD_BYTES} bytes, got {0}")]
    TooLarge(usize),
    #[error("{0}")]
    UnsupportedFormat(String),
    #[error("the document cannot be indexed: {0}")]
    Unreadable(String),
}

/// A relative path under the docs prefix: no `..` or `.` segments, no absolute or empty
/// segments, no backslashes, control characters or bidirectional formatting characters, a
/// supported extension.
pub fn check_path(path: &str) -> Result<Format, UploadError> {
    let bad = |why: &str| Err(UploadError::BadPath(why.to_owned()));
    if path.is_empty() {
        return bad("empty");
    }
    if path.len() > MAX_PATH_BYTES {
        return bad("longer than 512 bytes");
    }
    if path.starts_with('/') {
        return bad("absolute paths are not allowed");
    }
    if path.contains('\\') {
        return bad("backslashes are not allowed");
    }
    if path.chars().any(char::is_control) {
        return bad("control characters are not allowed");
    }
    if path.chars().any(is_bidi_control) {
        return bad("bidirectional formatting characters (U+202A-U+202E, U+2066-U+2069, marks) are not allowed");
    }
    if path
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return bad("empty, '.' and '..' segments are not allowed");
    }
    format_of(path).ok_or_else(|| {
        UploadError::UnsupportedFormat(format!("supported formats: {}", crate::formats::SUPPORTED))
    })
}

/// Unicode's Bidi_Control characters: they make a listed name read differently from the stored
/// one (`report\u{202e}fdp.md` shows as `reportdm.pdf`), so they are refused like control
/// characters.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Checks the bytes against the format the path names, by content, then that the index
/// builder can read them.
pub fn check_content(path: &str, format: Format, bytes: &[u8]) -> Result<(), UploadError> {
    if bytes.is_empty() {
        return Err(UploadError::Empty);
    }
    if bytes.len() > MAX_UPLOAD_BYTES {
        return Err(UploadError::TooLarge(bytes.len()));
    }
    let mismatch = |what: &str| Err(UploadError::UnsupportedFormat(format!("{path}: {what}")));
    match format {
        Format::Markdown | Format::Text | Format::Html => {
            let Ok(text) = std::str::from_utf8(bytes) else {
                return mismatch("not UTF-8 text");
            };
            if text.contains('\0') {
                return mismatch("binary data, not text");
            }
            if format == Format::Html
                && !text
                    .trim_start_matches('\u{feff}')
                    .trim_start()
                    .starts_with('<')
            {
                return mismatch("does not start like an HTML document");
            }
        }
        Format::Pdf => {
            if !bytes.starts_with(b"%PDF-") {
                return mismatch("not a PDF (no %PDF- header)");
            }
        }
        Format::Docx => {
            if !bytes.starts_with(b"PK\x03\x04") {
                return mismatch("not a Word document (not a ZIP container)");
            }
        }
    }
    to_markdown(path, bytes.to_vec())
        .map(|_| ())
        .map_err(UploadError::Unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_paths_only() {
        assert_eq!(check_path("ops/runbook.md"), Ok(Format::Markdown));
        assert_eq!(check_path("a b/c.PDF"), Ok(Format::Pdf));
        // Right-to-left text itself is fine; only the invisible direction controls are not.
        assert_eq!(check_path("עברית/שלום.md"), Ok(Format::Markdown));
        for p in [
            "",
            "/etc/passwd.md",
            "../x.md",
            "a/../x.md",
            "a/./x.md",
            "a//x.md",
            "a\\x.md",
            "a\u{1}.md",
            "x.md\n",
            "report\u{202e}dm.fdp.md",
            "a\u{2066}b.md",
            "\u{200f}x.md",
        ] {
            assert!(
                matches!(check_path(p), Err(UploadError::BadPath(_))),
                "{p:?}"
            );
        }
        assert!(matches!(
            check_path(&format!("{}.md", "a".repeat(600))),
            Err(UploadError::BadPath(_))
        ));
        assert!(matches!(
            check_path("tool.exe"),
            Err(UploadError::UnsupportedFormat(_))
        ));
        assert!(matches!(
            check_path("README"),
            Err(UploadError::UnsupportedFormat(_))
        ));
    }

    #[test]
    fn content_must_match_the_extension() {
        let ok = |p: &str, b: &[u8]| check_content(p, check_path(p).unwrap(), b);
        assert_eq!(ok("a.md", b"# Hi\n\ntext"), Ok(()));
        assert_eq!(ok("a.txt", b"plain"), Ok(()));
        assert_eq!(ok("a.html", b"  <!doctype html><p>x</p>"), Ok(()));
        assert_eq!(ok("a.md", b""), Err(UploadError::Empty));
        assert!(matches!(
            ok("a.md", &[0xff, 0xfe]),
            Err(UploadError::UnsupportedFormat(_))
        ));
        assert!(matches!(
            ok("a.txt", b"a\0b"),
            Err(UploadError::UnsupportedFormat(_))
        ));
        assert!(matches!(
            ok("a.html", b"just text"),
            Err(UploadError::UnsupportedFormat(_))
        ));
        assert!(matches!(
            ok("a.pdf", b"# markdown"),
            Err(UploadError::UnsupportedFormat(_))
        ));
        assert!(matches!(
            ok("a.pdf", b"%PDF-1.7 cut"),
            Err(UploadError::Unreadable(_))
        ));
        assert!(matches!(
            ok("a.html", b"<script>x</script>"),
            Err(UploadError::Unreadable(_))
        ));
        let big = vec![b'a'; MAX_UPLOAD_BYTES + 1];
        assert_eq!(
            ok("a.txt", &big),
            Err(UploadError::TooLarge(MAX_UPLOAD_BYTES + 1))
        );
    }
}
