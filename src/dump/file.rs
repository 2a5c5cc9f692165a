//! A dump and a file: written atomically (`--output`), or compared with one (`--check`).

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};

/// Writes `text` to `path` so that a reader sees the old file or the whole new one, never a
/// part: a temporary file in the same folder, flushed to disk, renamed over the file, and the
/// folder flushed so the rename survives a crash. A new file gets mode 0644 (a schema file is
/// meant to be read and committed); an existing one keeps its permissions. A symbolic link is
/// written through: the file it finally points to is replaced, the link stays. Anything but a
/// regular file (a device, a FIFO, a socket, a folder) is refused ([`check_output`]).
pub fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let target = check_output(path)?;
    let io = |source: std::io::Error| Error::Io {
        path: target.clone(),
        source,
    };
    let dir = folder(&target);
    let permissions = std::fs::metadata(&target).ok().map(|m| m.permissions());
    let mut temp = tempfile::Builder::new()
        .prefix(".dhctl-dump-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| {
            Error::usage_hint(
                format!(
                    "--output {}: cannot create a temporary file in {}: {e}",
                    path.display(),
                    dir.display()
                ),
                "the folder must be writable, not only the file: the dump is written to a \
                 temporary file beside it and renamed over it; name a file in a writable folder, \
                 or redirect stdout: dhctl dump > FILE",
            )
        })?;
    temp.write_all(text.as_bytes()).map_err(io)?;
    temp.as_file().sync_all().map_err(io)?;
    match permissions {
        Some(p) => temp.as_file().set_permissions(p).map_err(io)?,
        None => set_readable(temp.as_file()).map_err(io)?,
    }
    temp.persist(&target).map_err(|e| io(e.error))?;
    // The rename is durable once the folder is on disk (where the platform lets us open it).
    if let Ok(folder) = std::fs::File::open(dir) {
        let _ = folder.sync_all();
    }
    Ok(())
}

/// The folder a file is in ("." for a bare name).
fn folder(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// How many symbolic links `--output` follows before giving up (Linux's own limit, ELOOP).
const MAX_LINKS: usize = 40;

/// The file `--output PATH` replaces: PATH, or the file a symbolic link at PATH finally points
/// to (which need not exist yet). Refuses, with exit 2 and a hint, before anything is read: a
/// path that is not a regular file (a rename would turn a device or a FIFO into a regular file
/// and leave its readers without the dump) and a file whose folder does not exist.
pub fn check_output(path: &Path) -> Result<std::path::PathBuf> {
    let shown = path.display();
    let io = |at: &Path, source: std::io::Error| Error::Io {
        path: at.to_path_buf(),
        source,
    };
    if path.as_os_str().to_string_lossy().ends_with('/') {
        return Err(Error::usage_hint(
            format!("--output {shown}: ends in '/', so it names a folder, not a file"),
            "name a file, e.g. --output schema.sql",
        ));
    }
    let mut target = path.to_path_buf();
    for _ in 0..=MAX_LINKS {
        refuse_planted_links_in_folders(path, &target)?;
        let meta = match std::fs::symlink_metadata(&target) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                special_behind_magic_link(path)?;
                if folder(&target).is_dir() {
                    return Ok(target);
                }
                return Err(Error::usage_hint(
                    if path == target {
                        format!("--output {shown}: its folder does not exist")
                    } else {
                        format!(
                            "--output {shown}: links to {}, whose folder does not exist",
                            target.display()
                        )
                    },
                    "name a file in an existing folder, e.g. --output schema.sql",
                ));
            }
            Err(e) => return Err(io(&target, e)),
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            refuse_planted_link(path, &target, &meta)?;
            let link = std::fs::read_link(&target).map_err(|e| io(&target, e))?;
            target = target.parent().unwrap_or(Path::new("")).join(link);
            continue;
        }
        if kind.is_file() {
            return Ok(target);
        }
        let what = if kind.is_dir() {
            "is a folder"
        } else {
            special_kind(&kind)
        };
        return Err(Error::usage_hint(
            format!(
                "--output {shown}: {}, not a regular file; --output replaces a file with a new one, \
                 which would turn it into a regular file",
                through(path, &target, what)
            ),
            if kind.is_dir() {
                "name a file, e.g. --output schema.sql".to_string()
            } else {
                format!("to write the dump into it, redirect stdout: dhctl dump > {shown}")
            },
        ));
    }
    Err(Error::usage_hint(
        format!("--output {shown}: more than {MAX_LINKS} symbolic links (a loop?)"),
        "point --output at the file itself",
    ))
}

/// The kernel's `protected_symlinks` rule, applied by dhctl itself because it resolves the link
/// and renames over its target (the kernel checks only links it follows on open): in a sticky,
/// world-writable folder (`/tmp`), a symbolic link is followed only when it belongs to the
/// running user or to the folder's owner. Otherwise another user could plant `/tmp/schema.sql
/// -> /etc/passwd` and have root's `--output /tmp/schema.sql` replace `/etc/passwd`.
#[cfg(unix)]
fn refuse_planted_link(path: &Path, link: &Path, meta: &std::fs::Metadata) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(dir) = std::fs::metadata(folder(link)) else {
        return Ok(());
    };
    let sticky_and_world_writable = dir.mode() & 0o1002 == 0o1002;
    if !sticky_and_world_writable || meta.uid() == dir.uid() || Some(meta.uid()) == effective_uid()
    {
        return Ok(());
    }
    Err(Error::usage_hint(
        format!(
            "--output {}: {} is a symbolic link owned by uid {} in {}, a sticky world-writable \
             folder, and belongs neither to you nor to the folder's owner; it is not followed \
             (the rule of the kernel's protected_symlinks)",
            path.display(),
            link.display(),
            meta.uid(),
            folder(link).display()
        ),
        "name the file itself, or a file in a folder only you can write, e.g. --output schema.sql",
    ))
}

/// [`refuse_planted_link`] for every symbolic link on the way to the folder of `target`, which
/// is resolved one name at a time as the kernel does (`/tmp/dlink/schema.sql`, where `dlink`
/// is another user's link to a folder, is refused like a planted link to the file itself).
/// Stops quietly where a name does not exist or there are too many links: [`check_output`]
/// and the write itself report those.
#[cfg(unix)]
fn refuse_planted_links_in_folders(path: &Path, target: &Path) -> Result<()> {
    use std::path::{Component, PathBuf};
    let start = folder(target);
    let mut resolved = if start.is_absolute() {
        PathBuf::from("/")
    } else {
        std::env::current_dir().map_err(|source| Error::Io {
            path: PathBuf::from("."),
            source,
        })?
    };
    // The names still to walk, the next one last.
    let mut pending: Vec<PathBuf> = start
        .components()
        .rev()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    let mut links = 0;
    while let Some(name) = pending.pop() {
        match name.components().next() {
            Some(Component::RootDir) => resolved = PathBuf::from("/"),
            Some(Component::ParentDir) => {
                resolved.pop();
            }
            Some(Component::Normal(part)) => {
                let next = resolved.join(part);
                let Ok(meta) = std::fs::symlink_metadata(&next) else {
                    return Ok(());
                };
                if !meta.file_type().is_symlink() {
                    resolved = next;
                    continue;
                }
                refuse_planted_link(path, &next, &meta)?;
                links += 1;
                let Ok(link) = std::fs::read_link(&next) else {
                    return Ok(());
                };
                if links > MAX_LINKS {
                    return Ok(());
                }
                pending.extend(
                    link.components()
                        .rev()
                        .map(|c| PathBuf::from(c.as_os_str())),
                );
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn refuse_planted_links_in_folders(_path: &Path, _target: &Path) -> Result<()> {
    Ok(())
}

#[cfg(not(unix))]
fn refuse_planted_link(_path: &Path, _link: &Path, _meta: &std::fs::Metadata) -> Result<()> {
    Ok(())
}

/// The process's effective user id: from /proc on Linux, elsewhere the owner of a file it
/// creates (which is the effective uid); None when neither can be read.
#[cfg(unix)]
fn effective_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        // "Uid:\treal\teffective\tsaved\tfilesystem"
        let line = status.lines().find(|l| l.starts_with("Uid:"))?;
        return line.split_whitespace().nth(2)?.parse().ok();
    }
    Some(tempfile::tempfile().ok()?.metadata().ok()?.uid())
}

/// What the kernel finds at PATH, magic links followed: `/dev/stdout` on a pipe is
/// `/proc/self/fd/1 -> pipe:[…]`, which read_link cannot follow but open would; a FIFO, a
/// device or a socket found that way is refused like one named directly.
fn special_behind_magic_link(path: &Path) -> Result<()> {
    let shown = path.display();
    if let Ok(meta) = std::fs::metadata(path) {
        let kind = meta.file_type();
        if !kind.is_file() && !kind.is_dir() {
            return Err(Error::usage_hint(
                format!(
                    "--output {shown}: {}, not a regular file; --output replaces a file with a \
                 new one, which would turn it into a regular file",
                    special_kind(&kind)
                ),
                format!("to write the dump into it, redirect stdout: dhctl dump > {shown}"),
            ));
        }
    }
    Ok(())
}

/// "is a FIFO", or "links to X, which is a FIFO" when the path is a symbolic link.
fn through(path: &Path, target: &Path, what: &str) -> String {
    if path == target {
        what.to_string()
    } else {
        format!("links to {}, which {what}", target.display())
    }
}

#[cfg(unix)]
fn special_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_char_device() {
        "is a character device"
    } else if kind.is_block_device() {
        "is a block device"
    } else if kind.is_fifo() {
        "is a FIFO (named pipe)"
    } else if kind.is_socket() {
        "is a socket"
    } else {
        "is a special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_kind: &std::fs::FileType) -> &'static str {
    "is a special file"
}

#[cfg(unix)]
fn set_readable(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn set_readable(_file: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

/// What `--check FILE` found.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The file compared with.
    pub path: String,
    /// The live dump is byte for byte the file.
    pub equal: bool,
    /// A unified diff from the file to the live dump; absent when equal.
    pub diff: Option<String>,
}

/// The file `--check` compares with, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Its text (see [`read`]), invalid UTF-8 shown as U+FFFD: for the diff only.
    pub text: String,
    /// Where its first byte that is not UTF-8 is, if any: such a file differs from every dump
    /// (a dump is UTF-8), even when its text with U+FFFD reads like the dump.
    pub invalid_utf8_at: Option<usize>,
}

/// Reads the file `--check` compares with; a missing one is exit 2 with how to create it.
pub fn read(path: &Path) -> Result<Committed> {
    let shown = path.display();
    if path.is_dir() {
        return Err(Error::usage_hint(
            format!("--check {shown}: is a folder, not a dump file"),
            "name the file the dump was written to, e.g. --check schema.sql",
        ));
    }
    let bytes = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::usage_hint(
                format!("{shown}: no such file to check the dump against"),
                format!("write it first: dhctl dump --output {shown}"),
            )
        } else {
            Error::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    // Not UTF-8: compared as it reads; it differs from any dump, which is UTF-8. A checkout
    // that turned LF into CRLF (git's autocrlf) is not a stale file, nor is one an editor saved
    // with a UTF-8 byte-order mark (psql skips it on load too).
    let invalid_utf8_at = std::str::from_utf8(&bytes).err().map(|e| e.valid_up_to());
    let text = String::from_utf8_lossy(&bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    Ok(Committed {
        text: text.replace("\r\n", "\n"),
        invalid_utf8_at,
    })
}

/// How long the diff may look for the smallest set of changes before it settles for a larger
/// one (still a correct diff): a file that differs on tens of thousands of lines would otherwise
/// take minutes (the search is quadratic in the changed lines).
const DIFF_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// The comparison of a file (`committed`) with the live dump: equal when its bytes are the
/// dump's (after [`read`]'s byte-order mark and line-end handling); otherwise a unified diff
/// with three lines of context, headed `--- FILE` / `+++ live database`, and for a file that is
/// not UTF-8 a line saying where. CRLF reads as LF on both sides, as [`read`] reads the file: a
/// schema that holds a CR before a line break (a comment or a function body with CRLF) writes
/// one with `--output` that `--check` then finds equal.
pub fn diff(file: &str, committed: &Committed, live: &str) -> Comparison {
    let live = live.replace("\r\n", "\n");
    let live = live.as_str();
    if committed.invalid_utf8_at.is_none() && committed.text.as_bytes() == live.as_bytes() {
        return Comparison {
            path: file.into(),
            equal: true,
            diff: None,
        };
    }
    let mut text = similar::TextDiff::configure()
        .timeout(DIFF_DEADLINE)
        .diff_lines(committed.text.as_str(), live)
        .unified_diff()
        .context_radius(3)
        .header(file, "live database")
        .to_string();
    if let Some(at) = committed.invalid_utf8_at {
        text.push_str(&format!(
            "{file}: not UTF-8 from byte {at} on (shown as U+FFFD above); a dump is UTF-8\n"
        ));
    }
    Comparison {
        path: file.into(),
        equal: false,
        diff: Some(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf8(text: &str) -> Committed {
        Committed {
            text: text.into(),
            invalid_utf8_at: None,
        }
    }

    #[test]
    fn a_file_that_is_not_utf8_differs_even_where_its_replacement_characters_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("schema.sql");
        std::fs::write(&path, b"-- caf\xff\nb;\n").unwrap();
        let committed = read(&path).unwrap();
        assert_eq!(committed.invalid_utf8_at, Some(6));
        // The live dump holding U+FFFD where the file has a stray byte reads the same.
        let c = diff("schema.sql", &committed, "-- caf\u{fffd}\nb;\n");
        assert!(!c.equal);
        let text = c.diff.unwrap();
        assert!(text.contains("not UTF-8 from byte 6"), "{text}");
    }

    #[test]
    fn a_diff_of_many_changed_lines_is_still_a_diff() {
        // The deadline only makes the diff coarser, never wrong: every line is still there.
        let lines = |prefix: &str| {
            (0..3000)
                .map(|i| format!("{prefix}{i}"))
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"
        };
        let (file, live) = (lines("a"), lines("b"));
        let text = diff("schema.sql", &utf8(&file), &live).diff.unwrap();
        assert!(
            text.contains("\n-a2999\n") && text.contains("\n+b0\n"),
            "{text}"
        );
    }

    #[test]
    fn crlf_in_the_live_dump_compares_as_in_the_file() {
        // --output writes the dump's CRLF (a comment's `line1\r\nline2`); read() gives LF.
        let c = diff("schema.sql", &utf8("a 'x\ny';\n"), "a 'x\r\ny';\n");
        assert!(c.equal, "{:?}", c.diff);
    }

    #[test]
    fn equal_texts_have_no_diff() {
        let c = diff("schema.sql", &utf8("a\nb\n"), "a\nb\n");
        assert!(c.equal);
        assert!(c.diff.is_none());
    }

    #[test]
    fn a_difference_is_a_unified_diff_from_the_file_to_the_live_dump() {
        let c = diff("schema.sql", &utf8("a\nb\nc\n"), "a\nB\nc\n");
        assert!(!c.equal);
        let text = c.diff.unwrap();
        assert!(
            text.starts_with("--- schema.sql\n+++ live database\n"),
            "{text}"
        );
        assert!(text.contains("\n-b\n+B\n"), "{text}");
    }

    #[test]
    fn an_atomic_write_replaces_the_whole_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("schema.sql");
        std::fs::write(&path, "old and longer\n").unwrap();
        write_atomically(&path, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["schema.sql"]);
    }

    #[test]
    fn a_crlf_checkout_reads_as_lf() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("schema.sql");
        std::fs::write(&path, "a;\r\nb;\r\n").unwrap();
        assert_eq!(read(&path).unwrap(), utf8("a;\nb;\n"));
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("schema.sql");
        std::fs::write(&path, "\u{feff}a;\r\nb;\n").unwrap();
        assert_eq!(read(&path).unwrap(), utf8("a;\nb;\n"));
    }

    #[test]
    fn a_missing_file_to_check_is_a_usage_error_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let err = read(&dir.path().join("nope.sql")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.hint().unwrap().contains("dhctl dump --output"));
    }
}
