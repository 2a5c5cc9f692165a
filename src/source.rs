//! Where a command's files come from: the sets compiled into the binary (`crate::embedded`, made
//! by build.rs from sql/ and partitions/), or a folder read at run time (`--migrations-dir`,
//! `--partitions-dir`). One type for both, since both choose the same way.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The set compiled into the binary (sql/ or partitions/).
    Embedded,
    /// A folder read at run time.
    Dir(PathBuf),
}

impl Source {
    /// The folder when one is given, else the compiled-in set.
    pub fn dir_or_embedded(dir: Option<&Path>) -> Source {
        match dir {
            Some(dir) => Source::Dir(dir.to_path_buf()),
            None => Source::Embedded,
        }
    }
}
