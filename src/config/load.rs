//! The only ways to get a `Config`: `load` a file, or `parse` text (then validate either way).

use std::path::Path;

use super::file::ConfigFile;
use super::validate::Validator;
use super::{Config, ConfigError, find_self};

/// Default place of the configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/failoverd/config.yaml";

/// Reads, parses and validates a configuration file, then finds which node this machine is
/// ([`find_self`]).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        location: None,
        key: String::new(),
        message: format!("cannot read the configuration file: {e} (pass --config FILE)"),
        snippet: None,
    })?;
    find_self(parse(path, &text)?)
}

/// Parses and validates configuration text; `path` is used in messages only (and the relative
/// paths of `password_file` and `ca_file` are read from its directory).
///
/// Reads no address of this machine: without `self:`, `self_node` is `None` and `self_source`
/// is [`SelfSource::NotLooked`](super::SelfSource::NotLooked) until [`find_self`] runs.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let file_name = path.display().to_string();
    let mut key = String::new();
    let parsed: Result<ConfigFile, _> = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            key = e.path().to_string();
            e.into_inner()
        })
    });
    let raw = parsed.map_err(|e| ConfigError::from_yaml(&file_name, &key, e))?;
    Validator {
        file: file_name,
        text,
    }
    .validate(path, raw)
}
