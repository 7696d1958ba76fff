//! An index's tantivy files as bytes and back: read from the folder tantivy wrote, and opened
//! again from the object's bytes in memory. The passages and the page index both use them.

use super::{FileEntry, IndexError};

/// The files of an index written in a scratch folder, sorted by name, lock files left out.
pub(super) fn dir_files(dir: &std::path::Path) -> Result<Vec<(FileEntry, Vec<u8>)>, IndexError> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        let bytes = std::fs::read(dir.join(&n))?;
        let len = bytes.len() as u64;
        out.push((FileEntry { name: n, len }, bytes));
    }
    Ok(out)
}

/// An in-memory directory holding `files`, whose bytes follow one another in `bytes`.
pub(super) fn ram_dir(
    files: &[FileEntry],
    bytes: &[u8],
) -> Result<tantivy::directory::RamDirectory, IndexError> {
    use tantivy::directory::Directory;
    let dir = tantivy::directory::RamDirectory::create();
    let mut at = 0usize;
    for f in files {
        if f.name.contains('/') || f.name.starts_with("..") {
            return Err(IndexError::BadHeader(format!("bad file name {:?}", f.name)));
        }
        let end = at + f.len as usize;
        dir.atomic_write(std::path::Path::new(&f.name), &bytes[at..end])
            .map_err(|e| IndexError::Io(std::io::Error::other(e.to_string())))?;
        at = end;
    }
    Ok(dir)
}
