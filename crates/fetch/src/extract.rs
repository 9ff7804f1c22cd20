//! Safe tar.gz extraction into a temporary sibling folder, renamed into place
//! (with a `.complete` marker) only when every entry has been written.

use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use tar::EntryType;

use crate::error::FetchError;

/// Name of the marker file written into a finished extraction.
pub const COMPLETE_MARKER: &str = ".complete";

/// Knobs of [`extract_tar_gz`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Leading path components dropped from every entry (like
    /// `tar --strip-components`); an archive's single top folder becomes the
    /// destination itself. A non-folder entry with fewer components is an error.
    pub strip_components: usize,
}

/// Whether `dir` holds a finished extraction.
pub fn is_complete(dir: &Path) -> bool {
    dir.join(COMPLETE_MARKER).is_file()
}

/// Extracts the gzip-compressed tarball `archive` to the folder `dest`.
///
/// Entries go into `<dest's parent>/.partial-<name>-<unique>`; the folder is
/// renamed to `dest` only after every entry was written and the `.complete`
/// marker fsynced, so a half-extracted tree is never taken as complete. A
/// `dest` that already has the marker is returned as is; one without it is an
/// error ([`FetchError::Incomplete`]).
///
/// Refused (and nothing lands in `dest`): absolute paths, `..` components,
/// symlinks or hard links pointing outside the tree, writing through a
/// symlink, device files and FIFOs.
pub fn extract_tar_gz(
    archive: &Path,
    dest: &Path,
    opts: &ExtractOptions,
) -> Result<PathBuf, FetchError> {
    if is_complete(dest) {
        return Ok(dest.to_path_buf());
    }
    if fs::symlink_metadata(dest).is_ok() {
        return Err(FetchError::Incomplete {
            path: dest.to_path_buf(),
        });
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| FetchError::io(&parent, e))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "extract".into());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let partial = parent.join(format!(
        ".partial-{name}-{}-{nanos:08x}",
        std::process::id()
    ));
    fs::create_dir(&partial).map_err(|e| FetchError::io(&partial, e))?;
    let result = extract_into(archive, &partial, opts).and_then(|()| {
        let marker = partial.join(COMPLETE_MARKER);
        let mut f = File::create(&marker).map_err(|e| FetchError::io(&marker, e))?;
        writeln!(f, "{}", archive.display())
            .and_then(|()| f.sync_all())
            .map_err(|e| FetchError::io(&marker, e))?;
        fs::rename(&partial, dest).map_err(|e| FetchError::io(dest, e))
    });
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&partial);
        return Err(e);
    }
    if let Ok(d) = File::open(&parent) {
        let _ = d.sync_all();
    }
    Ok(dest.to_path_buf())
}

/// Normalises an archive path: relative, no `..`, `strip` leading components
/// removed. `None` when nothing is left.
fn safe_rel(path: &Path, strip: usize) -> Result<Option<PathBuf>, String> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err("path has a `..` component".into()),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path".into()),
        }
    }
    if parts.len() <= strip {
        return Ok(None);
    }
    Ok(Some(parts[strip..].iter().collect()))
}

/// Refuses a path whose existing ancestors (inside `root`) include a symlink.
fn no_symlink_ancestors(root: &Path, rel: &Path) -> Result<(), String> {
    let mut cur = root.to_path_buf();
    let n = rel.components().count();
    for (i, c) in rel.components().enumerate() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                if i + 1 < n {
                    return Err(format!("path goes through the symlink {}", cur.display()));
                }
                return Err("path is an existing symlink".into());
            }
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// Whether a symlink at `link_rel` (relative to the tree root) with target
/// `target` stays inside the tree, resolved lexically.
fn symlink_stays_inside(link_rel: &Path, target: &Path) -> bool {
    let mut depth: Vec<&std::ffi::OsStr> = Vec::new();
    if let Some(parent) = link_rel.parent() {
        for c in parent.components() {
            if let Component::Normal(p) = c {
                depth.push(p);
            }
        }
    }
    for c in target.components() {
        match c {
            Component::Normal(p) => depth.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

fn extract_into(archive: &Path, root: &Path, opts: &ExtractOptions) -> Result<(), FetchError> {
    let corrupt = |source: io::Error| FetchError::Archive {
        archive: archive.to_path_buf(),
        source,
    };
    let unsafe_entry = |entry: &Path, reason: String| FetchError::UnsafeEntry {
        archive: archive.to_path_buf(),
        entry: entry.display().to_string(),
        reason,
    };
    let file = File::open(archive).map_err(|e| FetchError::io(archive, e))?;
    let gz = flate2::read::GzDecoder::new(BufReader::with_capacity(1 << 20, file));
    let mut tar = tar::Archive::new(gz);
    let mut symlinks: Vec<PathBuf> = Vec::new();
    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            continue;
        }
        let raw = entry.path().map_err(corrupt)?.into_owned();
        let rel = safe_rel(&raw, opts.strip_components).map_err(|r| unsafe_entry(&raw, r))?;
        let Some(rel) = rel else {
            if kind == EntryType::Directory {
                continue;
            }
            return Err(unsafe_entry(
                &raw,
                format!(
                    "not inside the archive's top folder (strip_components = {})",
                    opts.strip_components
                ),
            ));
        };
        no_symlink_ancestors(root, &rel).map_err(|r| unsafe_entry(&raw, r))?;
        let out = root.join(&rel);
        let mkparent = |out: &Path| -> Result<(), FetchError> {
            if let Some(p) = out.parent() {
                fs::create_dir_all(p).map_err(|e| FetchError::io(p, e))?;
            }
            Ok(())
        };
        match kind {
            EntryType::Directory => {
                fs::create_dir_all(&out).map_err(|e| FetchError::io(&out, e))?;
            }
            EntryType::Regular | EntryType::Continuous => {
                mkparent(&out)?;
                let mut f = File::create(&out).map_err(|e| FetchError::io(&out, e))?;
                io::copy(&mut entry, &mut f).map_err(corrupt)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| unsafe_entry(&raw, "symlink without a target".into()))?
                    .into_owned();
                if !symlink_stays_inside(&rel, &target) {
                    return Err(unsafe_entry(
                        &raw,
                        format!("symlink to {} escapes the destination", target.display()),
                    ));
                }
                mkparent(&out)?;
                make_symlink(&target, &out).map_err(|e| FetchError::io(&out, e))?;
                symlinks.push(out);
            }
            EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| unsafe_entry(&raw, "hard link without a target".into()))?
                    .into_owned();
                let target_rel = safe_rel(&target, opts.strip_components)
                    .map_err(|r| unsafe_entry(&raw, format!("hard link target: {r}")))?
                    .ok_or_else(|| {
                        unsafe_entry(&raw, "hard link target outside the tree".into())
                    })?;
                no_symlink_ancestors(root, &target_rel)
                    .map_err(|r| unsafe_entry(&raw, format!("hard link target: {r}")))?;
                let src = root.join(&target_rel);
                if !fs::symlink_metadata(&src)
                    .map(|m| m.is_file())
                    .unwrap_or(false)
                {
                    return Err(unsafe_entry(
                        &raw,
                        format!(
                            "hard link to {} which is not an extracted file",
                            target.display()
                        ),
                    ));
                }
                mkparent(&out)?;
                fs::hard_link(&src, &out).map_err(|e| FetchError::io(&out, e))?;
            }
            EntryType::Char | EntryType::Block => {
                return Err(unsafe_entry(&raw, "device file".into()))
            }
            EntryType::Fifo => return Err(unsafe_entry(&raw, "FIFO".into())),
            other => {
                return Err(unsafe_entry(
                    &raw,
                    format!("unsupported entry type {other:?}"),
                ))
            }
        }
    }
    // A chain of individually harmless links can still resolve outside: check
    // every symlink physically now that the whole tree exists.
    let canon_root = fs::canonicalize(root).map_err(|e| FetchError::io(root, e))?;
    for link in symlinks {
        if let Ok(resolved) = fs::canonicalize(&link) {
            if !resolved.starts_with(&canon_root) {
                return Err(unsafe_entry(
                    link.strip_prefix(root).unwrap_or(&link),
                    format!(
                        "symlink resolves to {} outside the destination",
                        resolved.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
fn make_symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn make_symlink(_target: &Path, _link: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "symlinks in archives are only supported on Unix",
    ))
}
