//! The document formats the search corpus takes, each turned into Markdown text for the one
//! chunker: Markdown as it is; plain text with its punctuation escaped; HTML's main content
//! with its headings as headings, scripts and styles dropped; PDF's text layer with one section
//! per page; Word's body with its headings ([`docx`]). A file that cannot be read is reported
//! with the reason and skipped.

mod docx;

use scraper::{ElementRef, Html, Node, Selector};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Text,
    Html,
    Pdf,
    Docx,
}

/// The extensions the corpus takes, for messages.
pub const SUPPORTED: &str = ".md, .markdown, .txt, .html, .htm, .pdf, .docx";

/// The format a key names, by its extension.
pub fn format_of(key: &str) -> Option<Format> {
    let k = key.to_ascii_lowercase();
    let ext = k.rsplit_once('.').map(|(_, e)| e)?;
    match ext {
        "md" | "markdown" => Some(Format::Markdown),
        "txt" => Some(Format::Text),
        "html" | "htm" => Some(Format::Html),
        "pdf" => Some(Format::Pdf),
        "docx" => Some(Format::Docx),
        _ => None,
    }
}

/// Whether a key names a document of the corpus.
pub fn is_document(key: &str) -> bool {
    format_of(key).is_some()
}

/// The file name without its extension: the title of documents that carry none.
fn stem(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.rsplit_once('.').map_or(name, |(s, _)| s)
}

/// A document's bytes as Markdown, or why it cannot be indexed.
pub fn to_markdown(path: &str, bytes: Vec<u8>) -> Result<String, String> {
    let format = format_of(path).ok_or_else(|| "not a supported format".to_owned())?;
    let utf8 = |bytes: Vec<u8>| String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned());
    match format {
        Format::Markdown => utf8(bytes),
        Format::Text => Ok(with_title(stem(path), &escape_text(&utf8(bytes)?))),
        Format::Html => html_to_markdown(path, &String::from_utf8_lossy(&bytes)),
        Format::Pdf => pdf_to_markdown(path, &bytes),
        Format::Docx => docx::to_markdown(path, &bytes),
    }
}

fn with_title(title: &str, body: &str) -> String {
    let title = title.replace(['\n', '\r'], " ");
    // Quoted as a JSON string (a YAML double-quoted scalar), so quotes, `#` and `: ` in a title
    // come back exactly.
    let quoted = serde_json::to_string(title.trim()).unwrap_or_else(|_| "\"\"".into());
    format!("---\ntitle: {quoted}\n---\n\n{body}\n")
}

/// Backslash-escapes every ASCII punctuation character (CommonMark allows it for all of them),
/// so the text reads back as itself.
fn escape_inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        if c.is_ascii_punctuation() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Plain text as Markdown paragraphs: blank lines separate paragraphs, lines are trimmed (an
/// indent would make a code block) and escaped.
fn escape_text(text: &str) -> String {
    let mut paragraphs: Vec<String> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            if !lines.is_empty() {
                paragraphs.push(lines.join("\n"));
                lines.clear();
            }
        } else {
            lines.push(escape_inline(line));
        }
    }
    if !lines.is_empty() {
        paragraphs.push(lines.join("\n"));
    }
    paragraphs.join("\n\n")
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Blocks of an HTML document's main content, as Markdown.
struct HtmlBlocks {
    blocks: Vec<String>,
    inline: String,
}

impl HtmlBlocks {
    fn flush(&mut self) {
        let text = collapse(&self.inline);
        if !text.is_empty() {
            self.blocks.push(escape_inline(&text));
        }
        self.inline.clear();
    }

    fn walk(&mut self, el: ElementRef<'_>) {
        for child in el.children() {
            match child.value() {
                Node::Text(t) => self.inline.push_str(t),
                Node::Element(_) => {
                    let Some(e) = ElementRef::wrap(child) else {
                        continue;
                    };
                    self.element(e);
                }
                _ => {}
            }
        }
    }

    fn element(&mut self, e: ElementRef<'_>) {
        let name = e.value().name();
        match name {
            "script" | "style" | "noscript" | "template" | "head" | "nav" | "svg" | "iframe"
            | "button" | "form" => {}
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                self.flush();
                let level = name[1..].parse::<usize>().unwrap_or(1);
                let text = collapse(&e.text().collect::<String>());
                if !text.is_empty() {
                    let id = e.value().attr("id").filter(|i| {
                        !i.is_empty() && i.chars().all(|c| c.is_alphanumeric() || "-_".contains(c))
                    });
                    let anchor = id.map(|i| format!(" {{#{i}}}")).unwrap_or_default();
                    self.blocks.push(format!(
                        "{} {}{anchor}",
                        "#".repeat(level),
                        escape_inline(&text)
                    ));
                }
            }
            "pre" => {
                self.flush();
                let code: String = e.text().collect();
                if !code.trim().is_empty() {
                    // A fence longer than any run of backticks inside.
                    let longest = code.split(|c| c != '`').map(str::len).max().unwrap_or(0);
                    let fence = "`".repeat(longest.max(2) + 1);
                    self.blocks
                        .push(format!("{fence}\n{}\n{fence}", code.trim_end()));
                }
            }
            "br" => self.inline.push(' '),
            "td" | "th" => {
                self.walk(e);
                self.inline.push_str(" | ");
            }
            "p" | "div" | "section" | "article" | "main" | "header" | "footer" | "aside" | "li"
            | "ul" | "ol" | "dl" | "dt" | "dd" | "tr" | "table" | "thead" | "tbody"
            | "blockquote" | "figure" | "figcaption" | "details" | "summary" | "hr" => {
                self.flush();
                self.walk(e);
                self.flush();
            }
            _ => self.walk(e),
        }
    }
}

fn html_to_markdown(path: &str, html: &str) -> Result<String, String> {
    let doc = Html::parse_document(html);
    let first = |css: &str| {
        Selector::parse(css)
            .ok()
            .and_then(|s| doc.select(&s).next())
    };
    let title = first("title")
        .map(|t| collapse(&t.text().collect::<String>()))
        .filter(|t| !t.is_empty());
    let root = first("main")
        .or_else(|| first("article"))
        .or_else(|| first("body"))
        .unwrap_or_else(|| doc.root_element());
    let mut blocks = HtmlBlocks {
        blocks: Vec::new(),
        inline: String::new(),
    };
    blocks.walk(root);
    blocks.flush();
    if blocks.blocks.is_empty() {
        return Err("HTML without text".into());
    }
    let body = blocks.blocks.join("\n\n");
    Ok(match title {
        Some(t) => with_title(&t, &body),
        // The first heading names the page, as for Markdown.
        None if body.starts_with('#') => body,
        None => with_title(stem(path), &body),
    })
}

fn pdf_to_markdown(path: &str, bytes: &[u8]) -> Result<String, String> {
    let doc = lopdf::Document::load_mem(bytes).map_err(|e| format!("not a readable PDF: {e}"))?;
    let pages = doc.get_pages();
    if pages.is_empty() {
        return Err("PDF without pages".into());
    }
    let mut body = Vec::new();
    for n in pages.keys() {
        let Ok(text) = doc.extract_text(&[*n]) else {
            continue;
        };
        let text = escape_text(&text);
        if !text.trim().is_empty() {
            body.push(format!("## Page {n}\n\n{text}"));
        }
    }
    if body.is_empty() {
        return Err("PDF without a text layer (a scan?)".into());
    }
    Ok(with_title(stem(path), &body.join("\n\n")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{chunk_markdown, ChunkOptions};

    fn passages(path: &str, bytes: &[u8]) -> Vec<(String, Vec<String>, String, String)> {
        let md = to_markdown(path, bytes.to_vec()).unwrap();
        chunk_markdown(path, &md, ChunkOptions::default())
            .into_iter()
            .map(|p| (p.title, p.heading_path, p.anchor, p.text))
            .collect()
    }

    #[test]
    fn formats_by_extension() {
        assert_eq!(format_of("a/b.MD"), Some(Format::Markdown));
        assert_eq!(format_of("x.markdown"), Some(Format::Markdown));
        assert_eq!(format_of("notes.txt"), Some(Format::Text));
        assert_eq!(format_of("p.HTM"), Some(Format::Html));
        assert_eq!(format_of("r.pdf"), Some(Format::Pdf));
        assert_eq!(format_of("w/Runbook.DOCX"), Some(Format::Docx));
        assert_eq!(format_of("img.png"), None);
        assert_eq!(format_of("README"), None);
    }

    #[test]
    fn plain_text_reads_as_itself() {
        let txt = "Runbook: *restart* the [api] # now\n    indented line\n\n1. not a list\n";
        assert_eq!(
            passages("ops/restart.txt", txt.as_bytes()),
            vec![(
                "restart".into(),
                vec![],
                String::new(),
                "Runbook: *restart* the [api] # now indented line\n\n1. not a list".into()
            )]
        );
        assert!(to_markdown("x.txt", vec![0xff, 0xfe]).is_err());
    }

    #[test]
    fn html_main_text_with_headings() {
        let html = r#"<!doctype html><html><head><title>Deploy guide</title>
            <style>body { color: red }</style><script>alert("x")</script></head>
            <body><nav>Home | About</nav><main>
            <h1 id="deploy">Deploying</h1><p>Run <code>sam deploy</code> &amp; wait.</p>
            <h2>Rollback</h2><ul><li>Open the <a href="/console">console</a></li><li>Choose *Rollback*</li></ul>
            <pre>sam delete --stack-name x
  # keep indent</pre>
            <table><tr><th>Stage</th><th>Time</th></tr><tr><td>build</td><td>2 min</td></tr></table>
            </main><footer>© us</footer></body></html>"#;
        let got = passages("guides/deploy.html", html.as_bytes());
        assert_eq!(
            got,
            vec![
                (
                    "Deploy guide".into(),
                    vec!["Deploying".into()],
                    "deploy".into(),
                    "Run sam deploy & wait.".into()
                ),
                (
                    "Deploy guide".into(),
                    vec!["Deploying".into(), "Rollback".into()],
                    "rollback".into(),
                    "Open the console\n\nChoose *Rollback*\n\nsam delete --stack-name x\n  # keep indent\n\nStage | Time |\n\nbuild | 2 min |".into()
                ),
            ]
        );
        assert!(to_markdown("empty.html", b"<html><script>x</script></html>".to_vec()).is_err());
    }

    /// A two-page PDF with a text layer, made with the same library the reader uses.
    fn pdf(pages: &[&str]) -> Vec<u8> {
        use lopdf::content::{Content, Operation};
        use lopdf::{dictionary, Document, Object, Stream};
        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let font_id = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
            "Encoding" => "WinAnsiEncoding",
        });
        let resources_id = doc.add_object(dictionary! {
            "Font" => dictionary! { "F1" => font_id },
        });
        let mut kids = Vec::new();
        for text in pages {
            let content = Content {
                operations: vec![
                    Operation::new("BT", vec![]),
                    Operation::new("Tf", vec!["F1".into(), 12.into()]),
                    Operation::new("Td", vec![72.into(), 700.into()]),
                    Operation::new("Tj", vec![Object::string_literal(*text)]),
                    Operation::new("ET", vec![]),
                ],
            };
            let content_id = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
            let page_id = doc.add_object(dictionary! {
                "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
            });
            kids.push(page_id.into());
        }
        let count = kids.len() as i64;
        doc.objects.insert(
            pages_id,
            Object::Dictionary(dictionary! {
                "Type" => "Pages", "Kids" => kids, "Count" => count,
                "Resources" => resources_id,
                "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
            }),
        );
        let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
        doc.trailer.set("Root", catalog_id);
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        out
    }

    #[test]
    fn pdf_pages_become_sections() {
        let bytes = pdf(&[
            "Rotate the keys every 90 days.",
            "Revoke a leaked key at once.",
        ]);
        let got = passages("security/keys.pdf", &bytes);
        let shape: Vec<(&str, Vec<&str>, &str)> = got
            .iter()
            .map(|(t, h, a, _)| {
                (
                    t.as_str(),
                    h.iter().map(String::as_str).collect(),
                    a.as_str(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                ("keys", vec!["Page 1"], "page-1"),
                ("keys", vec!["Page 2"], "page-2")
            ]
        );
        assert!(
            got[0].3.contains("Rotate the keys every 90 days."),
            "{:?}",
            got[0].3
        );
        assert!(
            got[1].3.contains("Revoke a leaked key at once."),
            "{:?}",
            got[1].3
        );
    }

    #[test]
    fn unreadable_pdfs_are_refused_with_a_reason() {
        assert!(to_markdown("a.pdf", b"not a pdf".to_vec())
            .unwrap_err()
            .contains("not a readable PDF"));
        let good = pdf(&["Some text."]);
        let cut = good[..good.len() / 2].to_vec();
        assert!(to_markdown("cut.pdf", cut).is_err());
        // Every truncation and single-byte change: an answer, never a crash.
        for i in (0..good.len()).step_by(7) {
            let _ = to_markdown("t.pdf", good[..i].to_vec());
            let mut flipped = good.clone();
            flipped[i] ^= 0x5a;
            let _ = to_markdown("f.pdf", flipped);
        }
    }

    /// A Word file as Word writes it (python-docx, `scripts/docx-fixture.py`): the title from
    /// its properties, the Title paragraph not repeated, headings as sections, text unescaped.
    #[test]
    fn docx_body_with_headings() {
        let bytes = include_bytes!("../../tests/fixtures/runbook.docx");
        let got = passages("ops/runbook.docx", bytes);
        let shape: Vec<(&str, Vec<&str>, &str)> = got
            .iter()
            .map(|(t, h, a, _)| {
                (
                    t.as_str(),
                    h.iter().map(String::as_str).collect(),
                    a.as_str(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                ("Rotation runbook", vec!["Rotating keys"], "rotating-keys"),
                (
                    "Rotation runbook",
                    vec!["Rotating keys", "Revoking a leaked key"],
                    "revoking-a-leaked-key"
                ),
            ]
        );
        assert_eq!(
            got[0].3,
            "Rotate the signing keys every 90 days & record who did it.\n\nStep one: create the new key; café staff need not be told."
        );
        assert_eq!(
            got[1].3,
            "Revoke a leaked key at once, then rotate the others.\n\nKey\n\nOwner\n\nsigning\n\nplatform team"
        );
    }

    #[test]
    fn unreadable_docx_files_are_refused_with_a_reason() {
        let good = include_bytes!("../../tests/fixtures/runbook.docx").to_vec();
        assert!(to_markdown("a.docx", b"PK\x03\x04 not a zip".to_vec())
            .unwrap_err()
            .contains("not a readable Word document"));
        assert!(to_markdown("a.docx", good[..good.len() / 2].to_vec()).is_err());
        // A ZIP that is not a Word document.
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            z.start_file("hello.txt", zip::write::SimpleFileOptions::default())
                .unwrap();
            std::io::Write::write_all(&mut z, b"hi").unwrap();
            z.finish().unwrap();
        }
        assert!(to_markdown("z.docx", buf.into_inner())
            .unwrap_err()
            .contains("no word/document.xml"));
        // Every truncation and single-byte change: an answer, never a crash.
        for i in (0..good.len()).step_by(97) {
            let _ = to_markdown("t.docx", good[..i].to_vec());
            let mut flipped = good.clone();
            flipped[i] ^= 0x5a;
            let _ = to_markdown("f.docx", flipped);
        }
    }
}
