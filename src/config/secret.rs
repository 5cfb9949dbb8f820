//! Where a secret is kept (an environment variable or a file the configuration names) and the
//! SMTP [`Password`] read from there.
//!
//! Passwords are never part of the file: [`SecretSource::resolve`] reads one when the agent
//! starts, so `check-config` can run where the secret is not available. A [`Password`] never
//! prints its value (the cluster's HMAC key is another type, `cluster::auth::Secret`).

use std::fmt;
use std::path::PathBuf;

use super::ConfigError;

/// Where a secret is kept, and where the file says so (for errors at start).
#[derive(Debug, Clone)]
pub struct SecretSource {
    pub kind: SecretKind,
    /// The configuration file, for messages.
    pub file: String,
    pub location: Option<(u64, u64)>,
    /// Key path, e.g. `notify.email.smtp.password_env`.
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretKind {
    /// The name of an environment variable.
    Env(String),
    /// A file whose content (without the trailing newline) is the secret; relative paths are
    /// resolved against the configuration file's directory.
    File(PathBuf),
}

impl SecretSource {
    /// Reads the secret now. The error names the variable or file, never a value.
    pub fn resolve(&self) -> Result<Password, ConfigError> {
        let error = |message: String| ConfigError {
            file: self.file.clone(),
            location: self.location,
            key: self.key.clone(),
            message,
            snippet: None,
        };
        let value = match &self.kind {
            SecretKind::Env(name) => match std::env::var(name) {
                Ok(v) => v,
                Err(std::env::VarError::NotPresent) => {
                    return Err(error(format!(
                        "environment variable `{name}` is not set; export it before starting failoverd (with systemd: Environment= or EnvironmentFile=), or use password_file"
                    )));
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(error(format!(
                        "environment variable `{name}` is not valid UTF-8"
                    )));
                }
            },
            SecretKind::File(path) => std::fs::read_to_string(path)
                .map_err(|e| {
                    error(format!(
                        "cannot read the password file `{}`: {e}",
                        path.display()
                    ))
                })?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        };
        if value.is_empty() {
            let what = match &self.kind {
                SecretKind::Env(name) => format!("environment variable `{name}`"),
                SecretKind::File(path) => format!("password file `{}`", path.display()),
            };
            return Err(error(format!("{what} is empty")));
        }
        Ok(Password(value))
    }

    /// Where the secret comes from, in words (for the summary).
    pub fn describe(&self) -> String {
        match &self.kind {
            SecretKind::Env(name) => format!("password from ${name}"),
            SecretKind::File(path) => format!("password from {}", path.display()),
        }
    }
}

/// The SMTP password: never shows itself in logs, Debug output or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// The value, for the one place that hands it to the SMTP client.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_resolve_from_files_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let source = SecretSource {
            kind: SecretKind::File(dir.path().join("pw")),
            file: "f.yaml".into(),
            location: Some((3, 5)),
            key: "notify.email.smtp.password_file".into(),
        };
        let secret = source.resolve().unwrap();
        assert_eq!(secret.expose(), "s3cret", "trailing newline removed");
        assert_eq!(format!("{secret:?}"), "Password(***)");
        let missing = SecretSource {
            kind: SecretKind::File(dir.path().join("nope")),
            ..source
        };
        let e = missing.resolve().unwrap_err().to_string();
        assert!(
            e.starts_with(
                "f.yaml:3:5: notify.email.smtp.password_file: cannot read the password file"
            ),
            "{e}"
        );
    }
}
