//! The agent's state directory: what must survive a restart (the SOA serial).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/failoverd";

/// Files under the state directory, written atomically (temporary file, fsync, rename).
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens (creating if needed) the directory.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn serial_path(&self) -> PathBuf {
        self.dir.join("serial")
    }

    /// The last serial published, if any was stored. A damaged file is an error, not a reset:
    /// starting over at a lower serial is exactly what must never happen.
    pub fn load_serial(&self) -> Result<Option<u32>, String> {
        let path = self.serial_path();
        match fs::read_to_string(&path) {
            Ok(text) => text.trim().parse().map(Some).map_err(|_| {
                format!(
                    "{}: `{}` is not a serial number; fix or remove the file",
                    path.display(),
                    text.trim()
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    pub fn store_serial(&self, serial: u32) -> io::Result<()> {
        let path = self.serial_path();
        let tmp = self.dir.join(".serial.tmp");
        let mut file = fs::File::create(&tmp)?;
        writeln!(file, "{serial}")?;
        file.sync_all()?;
        fs::rename(&tmp, &path)
    }
}

/// Other files of the state directory, by name (the last published answers, `dns::saved`).
impl StateDir {
    /// Replaces `name` with `bytes` atomically: a temporary file created exclusively (never
    /// through a planted symlink), then renamed over `name`. Not fsynced: callers use this for
    /// files whose loss after a power cut is harmless (they are read back only if they parse).
    pub fn store_file(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        drop(file);
        fs::rename(&tmp, self.dir.join(name))
    }

    /// The contents of `name`, `None` when it does not exist.
    pub fn load_file(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.dir.join(name)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
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

    #[test]
    fn serial_survives_reopen_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("sub")).unwrap();
        assert_eq!(state.load_serial(), Ok(None));
        state.store_serial(41).unwrap();
        assert_eq!(
            StateDir::open(&dir.path().join("sub"))
                .unwrap()
                .load_serial(),
            Ok(Some(41))
        );
        fs::write(dir.path().join("sub/serial"), "x").unwrap();
        assert!(state.load_serial().unwrap_err().contains("not a serial"));
    }

    #[test]
    fn next_serial_wraps_past_zero() {
        assert_eq!(next_serial(1), 2);
        assert_eq!(next_serial(u32::MAX), 1);
    }
}
