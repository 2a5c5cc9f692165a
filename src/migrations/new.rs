//! `dhctl new NAME`: write an empty migration with both markers, named by the UTC clock.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::catalog::{is_description, parse_file_name, MAX_DESCRIPTION};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize)]
pub struct NewReport {
    pub path: PathBuf,
    pub version: i64,
}

const TEMPLATE: &str = "-- migrate:up\n\n\n-- migrate:down\n\n";

/// Writes `<dir>/<now as YYYYMMDDHHMMSS>_<name>.sql`. Refuses a bad name or a version already
/// taken in `dir` (two files within one second).
pub fn run(dir: &Path, name: &str, now: DateTime<Utc>) -> Result<NewReport> {
    if name.len() > MAX_DESCRIPTION {
        return Err(Error::usage_hint(
            format!(
                "the migration name is {} characters long; at most {MAX_DESCRIPTION}",
                name.len()
            ),
            "shorten it: the name says what the migration does, the SQL says how",
        ));
    }
    if !is_description(name) {
        return Err(Error::usage_hint(
            format!("`{name}` is not a migration name"),
            "use lower-case letters, digits and _, e.g. add_api_keys_label",
        ));
    }
    let version = now.format("%Y%m%d%H%M%S").to_string();
    let number: i64 = version.parse().expect("14 digits");
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.into(),
        source,
    })?;
    // Versions are numbers read from any dbmate-style name (`…-x.sql`, leading zeros), so a
    // file already holding this one is found by its number, not by a `<version>_` prefix.
    let taken = std::fs::read_dir(dir)
        .map_err(|source| Error::Io {
            path: dir.into(),
            source,
        })?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|f| parse_file_name(f).is_ok_and(|(v, _)| v == number));
    if let Some(existing) = taken {
        return Err(Error::usage(format!(
            "version {version} is already used by {existing}; wait a second and run dhctl new again"
        )));
    }
    let path = dir.join(format!("{version}_{name}.sql"));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, TEMPLATE.as_bytes()))
        .map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
    Ok(NewReport {
        path,
        version: number,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_file_named_by_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let now = DateTime::parse_from_rfc3339("2026-11-26T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let report = run(dir.path(), "add_label", now).unwrap();
        assert_eq!(
            report.path.file_name().unwrap(),
            "20261126030405_add_label.sql"
        );
        assert_eq!(std::fs::read_to_string(&report.path).unwrap(), TEMPLATE);
        let again = run(dir.path(), "other", now).unwrap_err();
        assert!(again.to_string().contains("already used"));
        // A dbmate-style name holding the same version counts too.
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("020261126030405-made-by-dbmate.sql"), "").unwrap();
        let taken = run(other.path(), "mine", now).unwrap_err();
        assert!(taken.to_string().contains("made-by-dbmate"), "{taken}");
    }

    #[test]
    fn a_too_long_name_gets_a_length_hint() {
        let dir = tempfile::tempdir().unwrap();
        let err = run(dir.path(), &"a".repeat(201), Utc::now()).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let hint = err.hint().unwrap();
        assert!(hint.contains("shorten"), "{hint}");
        assert!(!hint.contains("lower-case"), "{hint}");
        assert!(run(dir.path(), &"a".repeat(200), Utc::now()).is_ok());
    }

    #[test]
    fn refuses_a_bad_name() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            run(dir.path(), "Add-Label", Utc::now())
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
