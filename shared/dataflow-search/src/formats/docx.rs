//! Word documents (`.docx`): the body's paragraphs in order, headings as headings. The title is
//! the document's own (`docProps/core.xml`), else its first Title paragraph, else the file name.
//! Heading levels come from the paragraph's style: its name in `word/styles.xml` ("heading 2",
//! whatever the style id is in a localised Word), or an outline level.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// No part of a document is read past this many bytes uncompressed (a ZIP bomb stops here).
const MAX_PART_BYTES: u64 = 64 << 20;

/// What a paragraph style makes of a paragraph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Title,
    Heading(u8),
}

fn part(zip: &mut zip::ZipArchive<Cursor<&[u8]>>, name: &str) -> Result<Option<String>, String> {
    let file = match zip.by_name(name) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(format!("not a readable Word document: {e}")),
    };
    let mut out = Vec::new();
    file.take(MAX_PART_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("not a readable Word document: {name}: {e}"))?;
    if out.len() as u64 > MAX_PART_BYTES {
        return Err(format!(
            "{name} is larger than {MAX_PART_BYTES} bytes uncompressed"
        ));
    }
    String::from_utf8(out)
        .map(Some)
        .map_err(|_| format!("{name} is not UTF-8"))
}

fn attr(e: &BytesStart<'_>, local: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == local)
        .and_then(|a| a.unescape_value().ok())
        .map(|v| v.into_owned())
}

/// Style id -> kind, from the styles part.
fn styles(xml: &str) -> HashMap<String, Kind> {
    let mut out = HashMap::new();
    let mut r = Reader::from_str(xml);
    let mut id: Option<String> = None;
    loop {
        match r.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => match e.local_name().as_ref() {
                b"style" => id = attr(&e, b"styleId"),
                b"name" => {
                    if let (Some(id), Some(name)) = (&id, attr(&e, b"val")) {
                        if let Some(k) = kind_of_name(&name) {
                            out.insert(id.clone(), k);
                        }
                    }
                }
                b"outlineLvl" => {
                    if let (Some(id), Some(l)) = (&id, attr(&e, b"val")) {
                        if let Ok(l) = l.parse::<u8>() {
                            out.entry(id.clone()).or_insert(Kind::Heading(l.min(5) + 1));
                        }
                    }
                }
                _ => {}
            },
            Ok(Event::End(e)) if e.local_name().as_ref() == b"style" => id = None,
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    out
}

fn kind_of_name(name: &str) -> Option<Kind> {
    let n = name.trim().to_ascii_lowercase();
    if n == "title" {
        return Some(Kind::Title);
    }
    let level = n
        .strip_prefix("heading")
        .map(str::trim)
        .and_then(|l| l.parse::<u8>().ok())?;
    (1..=9)
        .contains(&level)
        .then_some(Kind::Heading(level.min(6)))
}

/// The document's title from its properties, if it has one.
fn core_title(xml: &str) -> Option<String> {
    let mut r = Reader::from_str(xml);
    let mut inside = false;
    let mut title = String::new();
    loop {
        match r.read_event() {
            Ok(Event::Start(e)) if e.local_name().as_ref() == b"title" => inside = true,
            Ok(Event::End(e)) if e.local_name().as_ref() == b"title" => break,
            Ok(Event::Text(t)) if inside => {
                title.push_str(&t.decode().ok()?);
            }
            Ok(Event::GeneralRef(g)) if inside => {
                title.push_str(&entity(&g.decode().ok()?));
            }
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
    }
    let t = super::collapse(&title);
    (!t.is_empty()).then_some(t)
}

/// The five XML entities and character references (`&amp;`, `&#233;`).
fn entity(name: &str) -> String {
    match name {
        "amp" => "&".into(),
        "lt" => "<".into(),
        "gt" => ">".into(),
        "quot" => "\"".into(),
        "apos" => "'".into(),
        n => n
            .strip_prefix("#x")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .or_else(|| n.strip_prefix('#').and_then(|d| d.parse().ok()))
            .and_then(char::from_u32)
            .map(String::from)
            .unwrap_or_default(),
    }
}

/// A `.docx` file as Markdown.
pub(super) fn to_markdown(path: &str, bytes: &[u8]) -> Result<String, String> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| format!("not a readable Word document: {e}"))?;
    let body = part(&mut zip, "word/document.xml")?
        .ok_or_else(|| "not a Word document: no word/document.xml".to_owned())?;
    let styles = part(&mut zip, "word/styles.xml")?
        .map(|s| styles(&s))
        .unwrap_or_default();
    let mut title = part(&mut zip, "docProps/core.xml")?.and_then(|c| core_title(&c));
    let mut blocks: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut kind: Option<Kind> = None;
    let mut in_text = false;
    let mut r = Reader::from_str(&body);
    loop {
        let ev = r
            .read_event()
            .map_err(|e| format!("not a readable Word document: {e}"))?;
        let empty = matches!(ev, Event::Empty(_));
        match ev {
            Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                b"p" => {
                    text.clear();
                    kind = None;
                }
                b"pStyle" => {
                    kind = attr(&e, b"val").and_then(|id| {
                        styles
                            .get(&id)
                            .copied()
                            .or_else(|| kind_of_name(&id.replace("Heading", "heading ")))
                    });
                }
                b"outlineLvl" if kind.is_none() => {
                    kind = attr(&e, b"val")
                        .and_then(|l| l.parse::<u8>().ok())
                        .filter(|l| *l < 9)
                        .map(|l| Kind::Heading(l.min(5) + 1));
                }
                b"t" => in_text = !empty,
                b"tab" | b"br" | b"cr" => text.push(' '),
                _ => {}
            },
            Event::Text(t) if in_text => {
                text.push_str(&t.decode().map_err(|e| e.to_string())?);
            }
            Event::GeneralRef(g) if in_text => {
                text.push_str(&entity(&g.decode().map_err(|e| e.to_string())?));
            }
            Event::End(e) => match e.local_name().as_ref() {
                b"t" => in_text = false,
                b"p" => {
                    let line = super::collapse(&text);
                    if line.is_empty() {
                        continue;
                    }
                    match kind {
                        Some(Kind::Title) if title.is_none() => title = Some(line),
                        Some(Kind::Title) => {
                            blocks.push(format!("# {}", super::escape_inline(&line)))
                        }
                        Some(Kind::Heading(l)) => blocks.push(format!(
                            "{} {}",
                            "#".repeat(l as usize),
                            super::escape_inline(&line)
                        )),
                        None => blocks.push(super::escape_inline(&line)),
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    if blocks.is_empty() {
        return Err("the Word document has no text".into());
    }
    let title = title.unwrap_or_else(|| super::stem(path).to_owned());
    Ok(super::with_title(&title, &blocks.join("\n\n")))
}
