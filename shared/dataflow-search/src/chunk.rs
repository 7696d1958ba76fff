//! Splits Markdown into passages along headings, keeping the document path, title, heading path
//! and an anchor for each. A CommonMark parser reads the text, so passages hold what a reader sees
//! (no emphasis markers, escapes, link targets or HTML) and that is also what gets indexed. Code
//! blocks are kept verbatim and never split; YAML front matter is dropped (its `title` is used);
//! long sections are split on block boundaries with overlap. Headings with an explicit anchor
//! (`<a name="…">` or `{#…}`) keep it, so links into the original pages work.

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Passage {
    /// `<doc>#<anchor>[-<n>]`, stable across rebuilds of the same text.
    pub id: String,
    pub doc: String,
    pub title: String,
    /// Headings from the top, e.g. `["Operations guide", "Recovery", "Backfill"]`.
    pub heading_path: Vec<String>,
    pub anchor: String,
    pub text: String,
}

#[derive(Debug, Clone, Copy)]
pub struct ChunkOptions {
    /// Sections longer than this (characters) are split.
    pub max_chars: usize,
    /// Characters of the previous piece repeated at the start of the next.
    pub overlap_chars: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        Self {
            max_chars: 1500,
            overlap_chars: 200,
        }
    }
}

/// GitHub-style anchor: lowercase, punctuation dropped, spaces to `-`.
pub fn anchor(heading: &str) -> String {
    let mut out = String::new();
    for c in heading.trim().chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if c == ' ' || c == '-' {
            out.push('-');
        } else if c == '_' {
            out.push('_');
        }
    }
    out
}

/// The value of a `name="…"` or `id="…"` attribute in an HTML tag: the explicit anchor of
/// headings like `## Retries<a name="retries"></a>`.
fn html_anchor(html: &str) -> Option<String> {
    for attr in ["name=", "id="] {
        let Some(i) = html.find(attr) else { continue };
        let rest = &html[i + attr.len()..];
        let quote = rest.chars().next()?;
        if quote != '"' && quote != '\'' {
            continue;
        }
        let value = rest[1..].split(quote).next()?;
        if !value.is_empty() {
            return Some(value.to_owned());
        }
    }
    None
}

/// A section: its heading path, the heading's explicit anchor if any, and its blocks of plain
/// text (paragraphs, lists, tables, code blocks).
#[derive(Default)]
struct Section {
    path: Vec<String>,
    explicit_anchor: Option<String>,
    blocks: Vec<String>,
}

/// Collapses runs of whitespace (headings and titles are one line).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses Markdown (CommonMark with tables and YAML front matter) into sections of plain text:
/// emphasis, escapes and list markers dropped, links as their text, HTML dropped, code kept
/// verbatim. Returns the front matter's `title` too.
fn sections_of(text: &str) -> (Option<String>, Vec<Section>) {
    use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_HEADING_ATTRIBUTES;
    let mut sections = vec![Section::default()];
    let mut path: Vec<(u8, String)> = Vec::new();
    let mut front_title = None;
    let mut meta: Option<String> = None;
    // The heading being read: level, text, explicit anchor.
    let mut heading: Option<(u8, String, Option<String>)> = None;
    let mut code: Option<String> = None;
    let mut block = String::new();
    // Lists and tables are one block each; their inner paragraphs do not end it.
    let mut depth = 0usize;
    let mut cells_in_row = 0usize;
    fn flush(block: &mut String, sections: &mut [Section]) {
        let text = block.trim();
        if !text.is_empty() {
            if let Some(s) = sections.last_mut() {
                s.blocks.push(text.to_owned());
            }
        }
        block.clear();
    }
    for event in Parser::new_ext(text, options) {
        match event {
            Event::Start(Tag::MetadataBlock(_)) => meta = Some(String::new()),
            Event::End(TagEnd::MetadataBlock(_)) => {
                if let Some(m) = meta.take() {
                    front_title = m
                        .lines()
                        .find_map(|l| Some(unquote(l.strip_prefix("title:")?.trim())));
                }
            }
            Event::Start(Tag::Heading { level, id, .. }) => {
                flush(&mut block, &mut sections);
                heading = Some((level as u8, String::new(), id.map(|i| i.to_string())));
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, text, explicit)) = heading.take() {
                    path.retain(|(l, _)| *l < level);
                    path.push((level, one_line(&text)));
                    sections.push(Section {
                        path: path.iter().map(|(_, t)| t.clone()).collect(),
                        explicit_anchor: explicit,
                        blocks: Vec::new(),
                    });
                }
            }
            Event::Start(Tag::CodeBlock(_)) => {
                flush(&mut block, &mut sections);
                code = Some(String::new());
            }
            Event::End(TagEnd::CodeBlock) => {
                if let Some(c) = code.take() {
                    let c = c.trim_end();
                    if !c.trim().is_empty() {
                        if let Some(s) = sections.last_mut() {
                            s.blocks.push(c.to_owned());
                        }
                    }
                }
            }
            Event::Start(Tag::List(_) | Tag::Table(_) | Tag::BlockQuote(_)) => {
                if depth == 0 {
                    flush(&mut block, &mut sections);
                }
                depth += 1;
            }
            Event::End(TagEnd::List(_) | TagEnd::Table | TagEnd::BlockQuote(_)) => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    flush(&mut block, &mut sections);
                }
            }
            Event::Start(Tag::Item) | Event::Start(Tag::TableHead | Tag::TableRow) => {
                if !block.is_empty() && !block.ends_with('\n') {
                    block.push('\n');
                }
                cells_in_row = 0;
            }
            Event::Start(Tag::TableCell) => {
                if cells_in_row > 0 {
                    block.push_str(" | ");
                }
                cells_in_row += 1;
            }
            Event::End(TagEnd::Paragraph) => {
                if depth == 0 {
                    flush(&mut block, &mut sections);
                } else {
                    block.push('\n');
                }
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(m) = meta.as_mut() {
                    m.push_str(&t);
                } else if let Some(c) = code.as_mut() {
                    c.push_str(&t);
                } else if let Some((_, h, _)) = heading.as_mut() {
                    h.push_str(&t);
                } else {
                    block.push_str(&t);
                }
            }
            Event::Html(h) | Event::InlineHtml(h) => {
                if let Some((_, _, explicit)) = heading.as_mut() {
                    if explicit.is_none() {
                        *explicit = html_anchor(&h);
                    }
                }
            }
            Event::SoftBreak => {
                if let Some((_, h, _)) = heading.as_mut() {
                    h.push(' ');
                } else {
                    block.push(' ');
                }
            }
            Event::HardBreak => block.push('\n'),
            Event::Rule => flush(&mut block, &mut sections),
            _ => {}
        }
    }
    flush(&mut block, &mut sections);
    (front_title, sections)
}

/// Splits one document. `doc` is its path relative to the corpus root.
pub fn chunk_markdown(doc: &str, text: &str, opts: ChunkOptions) -> Vec<Passage> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (front_title, sections) = sections_of(text);
    let title = front_title
        .filter(|t| !t.is_empty())
        .or_else(|| sections.iter().find_map(|s| s.path.first().cloned()))
        .unwrap_or_else(|| {
            doc.rsplit('/')
                .next()
                .unwrap_or(doc)
                .trim_end_matches(".md")
                .to_owned()
        });
    let mut out = Vec::new();
    let mut used = std::collections::HashMap::<String, usize>::new();
    for section in sections {
        if section.blocks.is_empty() {
            continue;
        }
        let base = section
            .explicit_anchor
            .clone()
            .unwrap_or_else(|| section.path.last().map(|h| anchor(h)).unwrap_or_default());
        let n = used.entry(base.clone()).or_insert(0);
        let anchor = if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        *n += 1;
        for (i, piece) in split_long(section.blocks, opts).into_iter().enumerate() {
            let id = if i == 0 {
                format!("{doc}#{anchor}")
            } else {
                format!("{doc}#{anchor}~{i}")
            };
            out.push(Passage {
                id,
                doc: doc.to_owned(),
                title: title.clone(),
                heading_path: section.path.clone(),
                anchor: anchor.clone(),
                text: piece,
            });
        }
    }
    out
}

/// Joins blocks into pieces of at most `max_chars` (a single block longer than that stays
/// whole, so code blocks are never cut), each after the first starting with the tail of the
/// previous one.
fn split_long(blocks: Vec<String>, opts: ChunkOptions) -> Vec<String> {
    let mut pieces: Vec<String> = Vec::new();
    let mut piece = String::new();
    for b in blocks {
        if !piece.is_empty() && piece.chars().count() + b.chars().count() + 2 > opts.max_chars {
            let tail = tail_chars(&piece, opts.overlap_chars);
            pieces.push(std::mem::take(&mut piece));
            piece = tail;
        }
        if !piece.is_empty() {
            piece.push_str("\n\n");
        }
        piece.push_str(&b);
    }
    if !piece.trim().is_empty() {
        pieces.push(piece);
    }
    pieces
}

/// The last `n` characters, starting at a word boundary.
fn tail_chars(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if n == 0 || count <= n {
        return if n == 0 { String::new() } else { s.to_owned() };
    }
    let start = s.char_indices().nth(count - n).map_or(0, |(i, _)| i);
    let tail = &s[start..];
    match tail.find(char::is_whitespace) {
        Some(ws) => tail[ws..].trim_start().to_owned(),
        None => tail.to_owned(),
    }
}

/// A front-matter value as YAML reads a one-line scalar: `"..."` with JSON-style escapes, `'...'`
/// with `''` for a quote, or the text itself. Only a matching pair of outer quotes is removed, so
/// a title that ends in a quote keeps it.
fn unquote(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        if let Ok(s) = serde_json::from_str::<String>(v) {
            return s;
        }
    }
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        return v[1..v.len() - 1].replace("''", "'");
    }
    v.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_titles_unquote_as_yaml_does() {
        assert_eq!(
            unquote(r#""Rollback <b>now</b> & \"safe\"""#),
            r#"Rollback <b>now</b> & "safe""#
        );
        assert_eq!(unquote("'It''s here'"), "It's here");
        assert_eq!(unquote(r#"Say "hi""#), r#"Say "hi""#);
        assert_eq!(unquote(r#"""#), r#"""#);
        assert_eq!(unquote("plain"), "plain");
    }

    #[test]
    fn splits_on_headings_with_paths_and_anchors() {
        let md = "# Guide\nIntro text.\n## Setup\nInstall it.\n### On Linux\nUse apt.\n## Setup\nAgain.\n";
        let p = chunk_markdown("ops/guide.md", md, ChunkOptions::default());
        let got: Vec<(&str, Vec<&str>, &str)> = p
            .iter()
            .map(|x| {
                (
                    x.id.as_str(),
                    x.heading_path.iter().map(String::as_str).collect(),
                    x.text.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("ops/guide.md#guide", vec!["Guide"], "Intro text."),
                ("ops/guide.md#setup", vec!["Guide", "Setup"], "Install it."),
                (
                    "ops/guide.md#on-linux",
                    vec!["Guide", "Setup", "On Linux"],
                    "Use apt."
                ),
                ("ops/guide.md#setup-1", vec!["Guide", "Setup"], "Again."),
            ]
        );
        assert!(p.iter().all(|x| x.title == "Guide"));
    }

    #[test]
    fn code_blocks_front_matter_and_tables() {
        let md = "---\ntitle: \"Ops\"\ntags: [a]\n---\n## Run\n```sh\n# not a heading\nmake run\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n";
        let p = chunk_markdown("x.md", md, ChunkOptions::default());
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].title, "Ops");
        assert_eq!(p[0].text, "# not a heading\nmake run\n\na | b\n1 | 2");
    }

    #[test]
    fn long_sections_split_with_overlap_and_fences_intact() {
        let para = |i: usize| format!("Paragraph {i} {}", "word ".repeat(60));
        let code_text = format!("{}\n\n{}", "let x = 1;".repeat(5), "let y = 2;".repeat(5));
        let code = format!("```\n{code_text}\n```");
        let body = (0..8)
            .map(para)
            .chain(std::iter::once(code.clone()))
            .collect::<Vec<_>>()
            .join("\n\n");
        let md = format!("# Long\n{body}\n");
        let opts = ChunkOptions {
            max_chars: 700,
            overlap_chars: 80,
        };
        let p = chunk_markdown("l.md", &md, opts);
        assert!(p.len() >= 3, "{}", p.len());
        assert_eq!(p[1].id, "l.md#long~1");
        // Each later piece starts with the end of the previous one.
        let prev_end: String = p[0]
            .text
            .chars()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        assert!(
            p[1].text.starts_with(prev_end.trim_start()) || p[1].text.contains(prev_end.trim()),
            "overlap missing"
        );
        // The code block is whole in one passage.
        assert!(p.iter().any(|x| x.text.contains(&code_text)));
    }

    #[test]
    fn passages_hold_what_a_reader_sees() {
        let md = "# Retries<a name=\"retry-doc\"></a>\n\n\
                  Set **Retry attempts** to a number between 0 and 2\\. See [the guide](https://x.test/g) \
                  and `aws lambda put-function-event-invoke-config`\\.\n\n\
                  + First *step*\n+ Second step\n\n\
                  1. Choose **Save**\\.\n\n\
                  <div class=\"note\">ignored</div>\n\n\
                  ## Dead\\-letter queues {#dlq}\n\nText\\.\n\n\
                  ## Plain `code` heading\n\nMore.\n";
        let p = chunk_markdown("r.md", md, ChunkOptions::default());
        let got: Vec<(&str, &str, Vec<&str>)> = p
            .iter()
            .map(|x| {
                (
                    x.anchor.as_str(),
                    x.title.as_str(),
                    x.heading_path.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("retry-doc", "Retries", vec!["Retries"]),
                ("dlq", "Retries", vec!["Retries", "Dead-letter queues"]),
                (
                    "plain-code-heading",
                    "Retries",
                    vec!["Retries", "Plain code heading"]
                ),
            ]
        );
        assert_eq!(
            p[0].text,
            "Set Retry attempts to a number between 0 and 2. See the guide and \
             aws lambda put-function-event-invoke-config.\n\nFirst step\nSecond step\n\nChoose Save."
        );
        assert_eq!(p[1].text, "Text.");
    }

    /// A real page of the shared corpus: titles, heading paths, anchors and text are clean.
    #[test]
    fn a_real_guide_page_reads_clean() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/corpora/aws-lambda-guide/invocation-async.md"
        );
        let md = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!("{path}: {e} (the shared corpus sits beside the repository)")
        });
        let p = chunk_markdown("invocation-async.md", &md, ChunkOptions::default());
        assert!(p.iter().all(|x| x.title == "Asynchronous invocation"));
        let errors = p
            .iter()
            .find(|x| x.anchor == "invocation-async-errors")
            .expect("the error handling section");
        assert_eq!(
            errors.heading_path,
            [
                "Asynchronous invocation",
                "Configuring error handling for asynchronous invocation"
            ]
        );
        assert!(p.iter().any(|x| x.anchor == "invocation-dlq"
            && x.heading_path.last().map(String::as_str) == Some("Dead-letter queues")));
        for x in &p {
            for markup in ["<a name", "**", "\\.", "\\(", "](", "\n+ "] {
                assert!(
                    !x.text.contains(markup) && !x.heading_path.iter().any(|h| h.contains(markup)),
                    "{markup:?} in {}: {}",
                    x.id,
                    x.text
                );
            }
        }
        assert!(
            errors
                .text
                .contains("Retry attempts – The number of times Lambda retries"),
            "{}",
            errors.text
        );
    }
}
