//! The agent's state directory: what must survive a restart (the SOA serial, the overrides),
//! and the one way every file in it is read and written.
//!
//! Every write goes through [`write_atomic`]: a temporary file created exclusively under a
//! random name (`O_CREAT|O_EXCL`, so a planted file or symlink is never opened), written,
//! fsynced, renamed over the target (which replaces a symlink rather than writing through
//! it), then the directory is fsynced so the rename itself is durable. Every read goes through
//! [`read_regular`], which refuses symlinks and anything that is not a regular file.
//!
//! What a file holds belongs to its owner: the serial file to [`crate::serial`], the overrides
//! to [`crate::overrides`], the last answers to [`crate::dns::saved`]. This module is below all
//! of them and depends on none.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/failoverd";

/// Temporary files are `.<target>.<random>.tmp`; leftovers of a crash are swept at open.
const TMP_SUFFIX: &str = ".tmp";

/// Files under the state directory, written atomically (see the module comment).
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens (creating if needed) the directory, and removes temporary files a crash left.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        sweep_temporaries(dir);
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Reads `name` in the directory (`None` when absent); see [`read_regular`].
    pub fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        read_regular(&self.dir, name)
    }

    /// Replaces `name` in the directory with `contents`; see [`write_atomic`].
    pub fn write(&self, name: &str, contents: &[u8]) -> io::Result<()> {
        write_atomic(&self.dir, name, contents)
    }
}

/// Writes `contents` to `dir/name` atomically and durably: a fresh temporary file in `dir`,
/// created exclusively under a random name, fsynced, renamed over `dir/name`, then `dir`
/// fsynced. A failure leaves the previous file as it was (and no temporary file behind).
pub fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(TMP_SUFFIX)
        .tempfile_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(dir.join(name)).map_err(|e| e.error)?;
    fs::File::open(dir)?.sync_all()
}

/// Reads `dir/name`, `None` when it does not exist. A symlink or anything but a regular file
/// is an error: nothing in the state directory is followed elsewhere (and a FIFO planted there
/// must not block the agent).
pub fn read_regular(dir: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let path = dir.join(name);
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "is a symbolic link; state files must be regular files (remove the link)",
            ));
        }
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "is not a regular file; remove it",
        ));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// Removes `.*.tmp` entries (files or symlinks, never directories) left by a crash between
/// creating a temporary file and renaming it; also the fixed names older versions used.
fn sweep_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with('.') && name.ends_with(TMP_SUFFIX)) {
            continue;
        }
        if entry
            .file_type()
            .is_ok_and(|t| t.is_file() || t.is_symlink())
        {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serial::{Fingerprint, Stored};
    use std::os::unix::fs::symlink;

    fn stored(serial: u32, content: Option<Fingerprint>) -> Stored {
        Stored { serial, content }
    }

    #[test]
    fn a_planted_temporary_symlink_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        let state_path = dir.path().join("state");
        fs::create_dir(&state_path).unwrap();
        // The fixed temporary name older versions wrote through, and a guess at a random one.
        symlink(&victim, state_path.join(".serial.tmp")).unwrap();
        let state = StateDir::open(&state_path).unwrap();
        symlink(&victim, state_path.join(".serial.tmp")).unwrap();
        state.store_serial(&stored(9, None)).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(state.load_serial(), Ok(Some(stored(9, None))));
        assert!(
            !fs::symlink_metadata(state_path.join("serial"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn a_symlinked_state_file_is_refused_and_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "42\n").unwrap();
        let state = StateDir::open(&dir.path().join("state")).unwrap();
        symlink(&victim, state.path().join("serial")).unwrap();
        let err = state.load_serial().unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        // Replacing it swaps the link for a file; the target is untouched.
        state.write("serial", b"43\n").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "42\n");
        assert_eq!(state.load_serial(), Ok(Some(stored(43, None))));
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial");
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = read_regular(dir.path(), "serial").unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn leftover_temporaries_are_swept_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".serial.a1b2c3.tmp"), "1").unwrap();
        fs::write(dir.path().join("keep.tmp"), "1").unwrap();
        fs::create_dir(dir.path().join(".dir.tmp")).unwrap();
        StateDir::open(dir.path()).unwrap();
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".dir.tmp", "keep.tmp"]);
    }
}
