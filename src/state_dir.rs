//! The agent's state directory: what must survive a restart (the SOA serial, the overrides),
//! and the one way every file in it is read and written.
//!
//! Every write goes through [`write_atomic`]: a temporary file created exclusively under a
//! random name (`O_CREAT|O_EXCL`, so a planted file or symlink is never opened), written,
//! fsynced, renamed over the target (which replaces a symlink rather than writing through
//! it), then the directory is fsynced so the rename itself is durable. Every read goes through
//! [`read_regular`], which refuses symlinks and anything that is not a regular file.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::serial::{Fingerprint, Stored};

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/failoverd";

/// Name of the serial file: the serial on the first line (what `cat` shows an operator), the
/// fingerprint of the content it was given on the second.
const SERIAL_FILE: &str = "serial";

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

    /// The last serial stored, with the content it was given, if any was stored. A damaged
    /// file is an error, not a reset: starting over at a lower serial is exactly what must
    /// never happen. A file of an older version (the serial alone) has no content.
    pub fn load_serial(&self) -> Result<Option<Stored>, String> {
        let path = self.dir.join(SERIAL_FILE);
        let bytes = match self.read(SERIAL_FILE) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let text = String::from_utf8_lossy(&bytes);
        let damaged = |what: &str| {
            format!(
                "{}: {what}; fix or remove the file (the serial restarts from the clock)",
                path.display()
            )
        };
        let mut lines = text.lines();
        let first = lines.next().unwrap_or("").trim();
        let serial = first.parse::<u32>().map_err(|_| {
            // Only a prefix of a bad first line: the file is ours, but its content is not
            // something to copy into logs whole.
            let shown: String = first.chars().take(20).collect();
            damaged(&format!("`{shown}` is not a serial number"))
        })?;
        let mut content = None;
        // Lines a later version may add are ignored.
        for line in lines {
            if let Some(("content", hex)) = line.trim().split_once(' ') {
                content = Some(
                    Fingerprint::from_hex(hex.trim())
                        .ok_or_else(|| damaged("the content line is not a fingerprint"))?,
                );
            }
        }
        Ok(Some(Stored { serial, content }))
    }

    pub fn store_serial(&self, stored: &Stored) -> io::Result<()> {
        let mut text = format!("{}\n", stored.serial);
        if let Some(content) = &stored.content {
            text.push_str(&format!("content {}\n", content.to_hex()));
        }
        self.write(SERIAL_FILE, text.as_bytes())
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

/// The serial after `current`, in RFC 1982 serial arithmetic (0 is skipped).
pub fn next_serial(current: u32) -> u32 {
    match current.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn stored(serial: u32, content: Option<Fingerprint>) -> Stored {
        Stored { serial, content }
    }

    #[test]
    fn serial_survives_reopen_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("sub")).unwrap();
        assert_eq!(state.load_serial(), Ok(None));
        let content = Some(Fingerprint([7; 16]));
        state.store_serial(&stored(41, content)).unwrap();
        assert_eq!(
            StateDir::open(&dir.path().join("sub"))
                .unwrap()
                .load_serial(),
            Ok(Some(stored(41, content)))
        );
        fs::write(dir.path().join("sub/serial"), "x").unwrap();
        assert!(state.load_serial().unwrap_err().contains("not a serial"));
        fs::write(dir.path().join("sub/serial"), "5\ncontent zz\n").unwrap();
        assert!(state.load_serial().unwrap_err().contains("fingerprint"));
    }

    #[test]
    fn a_file_of_an_older_version_has_no_content() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("serial"), "1796000000\n").unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        assert_eq!(state.load_serial(), Ok(Some(stored(1_796_000_000, None))));
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

    #[test]
    fn next_serial_wraps_past_zero() {
        assert_eq!(next_serial(1), 2);
        assert_eq!(next_serial(u32::MAX), 1);
    }
}
