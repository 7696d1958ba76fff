//! Document search core (no AWS types). So far: splitting Markdown into passages along headings.

pub mod chunk;
