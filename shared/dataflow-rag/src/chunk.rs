//! Splits Markdown into passages along headings, keeping the document path, title, heading path
//! and an anchor for each. Fenced code blocks are never split inside and their `#` lines are not
//! headings; YAML front matter is dropped (its `title` is used); long sections are split on
//! paragraph boundaries with overlap.

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

fn heading_of(line: &str) -> Option<(usize, &str)> {
    let t = line.trim_start();
    if line.len() - t.len() > 3 {
        return None;
    }
    let level = t.chars().take_while(|c| *c == '#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &t[level..];
    if !rest.is_empty() && !rest.starts_with(' ') && !rest.starts_with('\t') {
        return None;
    }
    Some((level, rest.trim().trim_end_matches('#').trim()))
}

/// Splits one document. `doc` is its path relative to the corpus root.
pub fn chunk_markdown(doc: &str, text: &str, opts: ChunkOptions) -> Vec<Passage> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines().peekable();
    let mut front_title = None;
    if lines.peek().map(|l| l.trim_end()) == Some("---") {
        lines.next();
        for l in lines.by_ref() {
            if l.trim_end() == "---" || l.trim_end() == "..." {
                break;
            }
            if let Some(v) = l.strip_prefix("title:") {
                front_title = Some(v.trim().trim_matches('"').trim_matches('\'').to_owned());
            }
        }
    }
    // (heading path, lines) per section.
    let mut sections: Vec<(Vec<String>, Vec<&str>)> = vec![(Vec::new(), Vec::new())];
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut fence: Option<&str> = None;
    for line in lines {
        let t = line.trim_start();
        if let Some(f) = fence {
            if t.starts_with(f) {
                fence = None;
            }
        } else if t.starts_with("```") || t.starts_with("~~~") {
            fence = Some(&t[..3]);
        } else if let Some((level, title)) = heading_of(line) {
            path.retain(|(l, _)| *l < level);
            path.push((level, title.to_owned()));
            sections.push((path.iter().map(|(_, t)| t.clone()).collect(), Vec::new()));
            continue;
        }
        if let Some(s) = sections.last_mut() {
            s.1.push(line);
        }
    }
    let title = front_title
        .or_else(|| sections.iter().find_map(|(p, _)| p.first().cloned()))
        .unwrap_or_else(|| {
            doc.rsplit('/')
                .next()
                .unwrap_or(doc)
                .trim_end_matches(".md")
                .to_owned()
        });
    let mut out = Vec::new();
    let mut used = std::collections::HashMap::<String, usize>::new();
    for (heading_path, body) in sections {
        let body = body.join("\n");
        let body = body.trim();
        if body.is_empty() {
            continue;
        }
        let base = heading_path.last().map(|h| anchor(h)).unwrap_or_default();
        let n = used.entry(base.clone()).or_insert(0);
        let anchor = if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        *n += 1;
        for (i, piece) in split_long(body, opts).into_iter().enumerate() {
            let id = if i == 0 {
                format!("{doc}#{anchor}")
            } else {
                format!("{doc}#{anchor}~{i}")
            };
            out.push(Passage {
                id,
                doc: doc.to_owned(),
                title: title.clone(),
                heading_path: heading_path.clone(),
                anchor: anchor.clone(),
                text: piece,
            });
        }
    }
    out
}

/// Splits on blank lines outside code fences into pieces of at most `max_chars` (a single
/// paragraph or code block longer than that stays whole), each after the first starting with the
/// tail of the previous one.
fn split_long(body: &str, opts: ChunkOptions) -> Vec<String> {
    if body.chars().count() <= opts.max_chars {
        return vec![body.to_owned()];
    }
    let mut blocks: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut in_fence = false;
    for line in body.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_fence = !in_fence;
        }
        if line.trim().is_empty() && !in_fence {
            if !cur.trim().is_empty() {
                blocks.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if !cur.is_empty() {
            cur.push('\n');
        }
        cur.push_str(line);
    }
    if !cur.trim().is_empty() {
        blocks.push(cur);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(p[0].text.contains("# not a heading") && p[0].text.contains("| 1 | 2 |"));
        assert!(!p[0].text.contains("tags:"));
    }

    #[test]
    fn long_sections_split_with_overlap_and_fences_intact() {
        let para = |i: usize| format!("Paragraph {i} {}", "word ".repeat(60));
        let code = format!(
            "```\n{}\n\n{}\n```",
            "let x = 1;".repeat(5),
            "let y = 2;".repeat(5)
        );
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
        assert!(p.iter().any(|x| x.text.contains(&code)));
    }
}
