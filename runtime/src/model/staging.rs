//! Building an output directory atomically: everything goes into a temporary directory beside
//! the destination, which is renamed onto it only when complete. Dropped before
//! [`Staging::finish`] (an error), the temporary directory and all it holds are removed.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::error::{DirProblem, ModelError};

pub struct Staging {
    dest: PathBuf,
    tmp: tempfile::TempDir,
}

impl Staging {
    /// Checks that `dest` can receive the output of reading `input` (it does not exist, or is
    /// an empty directory; it is neither inside `input` nor contains it) and creates the
    /// temporary directory in `dest`'s parent.
    pub fn new(input: &Path, dest: &Path) -> Result<Self, ModelError> {
        if let Ok(m) = std::fs::symlink_metadata(dest) {
            let empty_dir =
                m.is_dir() && std::fs::read_dir(dest).is_ok_and(|mut r| r.next().is_none());
            if !empty_dir {
                return Err(ModelError::dir(dest, DirProblem::OutputExists));
            }
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let canon_in = input
            .canonicalize()
            .map_err(|e| ModelError::io(input, "cannot resolve the path", e))?;
        let canon_parent = parent
            .canonicalize()
            .map_err(|e| ModelError::io(parent, "cannot resolve the output's directory", e))?;
        if canon_parent.starts_with(&canon_in) {
            return Err(ModelError::dir(dest, DirProblem::OutputInsideInput));
        }
        let canon_dest = canon_parent.join(dest.file_name().unwrap_or_default());
        if canon_in.starts_with(&canon_dest) {
            return Err(ModelError::dir(
                input,
                DirProblem::InputInsideOutput(dest.to_path_buf()),
            ));
        }
        // 0777 before the umask, like any new directory (tempfile's default is 0700).
        let tmp = tempfile::Builder::new()
            .prefix(".unweight-")
            .suffix(".tmp")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .tempdir_in(parent)
            .map_err(|e| ModelError::io(dest, "cannot create the output directory", e))?;
        Ok(Self {
            dest: dest.to_path_buf(),
            tmp,
        })
    }

    /// Where `rel` goes while the output is being built.
    pub fn path(&self, rel: &Path) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// The final path of `rel`, for messages and reports.
    pub fn final_path(&self, rel: &Path) -> PathBuf {
        self.dest.join(rel)
    }

    /// Creates subdirectory `rel`.
    pub fn mkdir(&self, rel: &Path) -> Result<(), ModelError> {
        std::fs::create_dir_all(self.path(rel))
            .map_err(|e| ModelError::io(self.final_path(rel), "cannot create the directory", e))
    }

    /// Copies `src` to `rel` byte-identical (inside the kernel where the OS allows) and syncs it.
    pub fn copy(&self, src: &Path, rel: &Path) -> Result<u64, ModelError> {
        let to = self.path(rel);
        let n = std::fs::copy(src, &to)
            .map_err(|e| ModelError::io(self.final_path(rel), "cannot copy the file", e))?;
        sync(&to).map_err(|e| ModelError::io(self.final_path(rel), "cannot write the file", e))?;
        Ok(n)
    }

    /// Writes `bytes` to `rel` and syncs it.
    pub fn write(&self, rel: &Path, bytes: &[u8]) -> Result<(), ModelError> {
        let to = self.path(rel);
        std::fs::write(&to, bytes)
            .and_then(|()| sync(&to))
            .map_err(|e| ModelError::io(self.final_path(rel), "cannot write the file", e))
    }

    /// Renames the complete directory onto the destination.
    pub fn finish(self) -> Result<(), ModelError> {
        let dest = self.dest.clone();
        let tmp = self.tmp.keep();
        // Its entries are synced file by file; sync the directory itself before it goes live.
        let synced = File::open(&tmp).and_then(|d| d.sync_all());
        let renamed = synced.and_then(|()| std::fs::rename(&tmp, &dest));
        if let Err(e) = renamed {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(ModelError::io(
                dest,
                "cannot rename the output into place",
                e,
            ));
        }
        Ok(())
    }
}

fn sync(path: &Path) -> std::io::Result<()> {
    File::open(path)?.sync_all()
}
