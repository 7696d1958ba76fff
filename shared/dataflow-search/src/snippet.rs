//! Snippets: the window of a passage with the most distinct query terms, HTML-escaped, terms in
//! `<mark>`. Only words that could stem to a query term (same first two letters: Snowball only
//! rewrites suffixes) are stemmed, so a 1,500-character passage costs a few stems, not hundreds.

use std::collections::BTreeMap;

use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RawTokenizer, RemoveLongFilter, SimpleTokenizer,
    Stemmer, TextAnalyzer, TokenStream,
};

#[derive(Clone)]
pub struct Highlighter {
    surface: TextAnalyzer,
    stem: TextAnalyzer,
}

impl Default for Highlighter {
    fn default() -> Self {
        Self {
            surface: TextAnalyzer::builder(SimpleTokenizer::default())
                .filter(RemoveLongFilter::limit(40))
                .filter(LowerCaser)
                .filter(AsciiFoldingFilter)
                .build(),
            stem: TextAnalyzer::builder(RawTokenizer::default())
                .filter(Stemmer::new(Language::English))
                .build(),
        }
    }
}

fn head(s: &str) -> &[u8] {
    &s.as_bytes()[..s.len().min(2)]
}

impl Highlighter {
    /// The best window of at most `max_chars` bytes of `text` (rounded to words), or `None` when
    /// no query term occurs in it. `terms` are analysed query terms (stems).
    pub fn snippet(&mut self, text: &str, terms: &[&str], max_chars: usize) -> Option<String> {
        let mut matches: Vec<(usize, usize, usize)> = Vec::new();
        {
            let mut stream = self.surface.token_stream(text);
            while stream.advance() {
                let t = stream.token();
                let candidates = terms.iter().any(|q| head(q) == head(&t.text));
                if !candidates {
                    continue;
                }
                let stemmed = if t.text.len() <= 2 {
                    t.text.clone()
                } else {
                    let mut s = self.stem.token_stream(&t.text);
                    if s.advance() {
                        s.token().text.clone()
                    } else {
                        continue;
                    }
                };
                if let Some(i) = terms.iter().position(|q| *q == stemmed) {
                    matches.push((t.offset_from, t.offset_to, i));
                }
            }
        }
        if matches.is_empty() {
            return None;
        }
        // Best window: most distinct terms, then most matches, earliest first.
        let mut best = (0usize, 0usize, 0usize, 0usize); // (distinct, count, first, last)
        for i in 0..matches.len() {
            let mut seen = BTreeMap::new();
            let mut j = i;
            while j < matches.len() && matches[j].1 - matches[i].0 <= max_chars {
                seen.insert(matches[j].2, ());
                j += 1;
            }
            let cand = (seen.len(), j - i, i, j - 1);
            if (cand.0, cand.1) > (best.0, best.1) {
                best = cand;
            }
        }
        let (first, last) = (matches[best.2].0, matches[best.3].1);
        let slack = max_chars.saturating_sub(last - first);
        let mut begin = first.saturating_sub(slack / 2);
        let mut end = (begin + max_chars).min(text.len()).max(last);
        while !text.is_char_boundary(begin) {
            begin -= 1;
        }
        while !text.is_char_boundary(end) {
            end += 1;
        }
        if begin > 0 {
            // Start at a word: after the first whitespace in the lead-in.
            if let Some(ws) = text[begin..first].find(char::is_whitespace) {
                begin += ws + 1;
            } else {
                begin = first;
            }
        }
        if end < text.len() {
            if let Some(ws) = text[last..end].rfind(char::is_whitespace) {
                end = last + ws;
            } else {
                end = last;
            }
        }
        let mut out = String::with_capacity(end - begin + 32);
        if begin > 0 {
            out.push('…');
        }
        let mut at = begin;
        for &(s, e, _) in matches.iter().filter(|m| m.0 >= begin && m.1 <= end) {
            escape_into(&mut out, &text[at..s]);
            out.push_str("<mark>");
            escape_into(&mut out, &text[s..e]);
            out.push_str("</mark>");
            at = e;
        }
        escape_into(&mut out, &text[at..end]);
        if end < text.len() {
            out.push('…');
        }
        Some(out)
    }
}

pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_stemmed_matches_in_the_densest_window() {
        let mut h = Highlighter::default();
        let text = format!(
            "{} Retries of throttled calls use backoff; each retry waits longer. {}",
            "filler words here. ".repeat(20),
            "more filler text. ".repeat(20)
        );
        let s = h.snippet(&text, &["retri", "throttl"], 120).unwrap();
        assert!(
            s.contains("<mark>Retries</mark> of <mark>throttled</mark>"),
            "{s}"
        );
        assert!(s.contains("<mark>retry</mark>"), "{s}");
        assert!(s.starts_with('…') && s.ends_with('…'), "{s}");
        assert!(s.chars().count() <= 120 + 60, "{s}");
        assert_eq!(h.snippet("nothing relevant", &["retri"], 120), None);
    }

    #[test]
    fn escapes_html_and_keeps_unicode_boundaries() {
        let mut h = Highlighter::default();
        let s = h
            .snippet("Ünïcode <b>café</b> & jitter", &["jitter", "cafe"], 200)
            .unwrap();
        assert_eq!(
            s,
            "Ünïcode &lt;b&gt;<mark>café</mark>&lt;/b&gt; &amp; <mark>jitter</mark>"
        );
    }
}
