//! `ConfigError`: what is wrong, where (file, line, column, key path) and what to do, and how a
//! YAML or serde error from the parser becomes one.

use std::fmt;

/// A configuration problem, located in the file.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: String,
    /// 1-based line and column, when the problem sits at a place in the file.
    pub location: Option<(u64, u64)>,
    /// Key path such as `hostnames[0].checks[1]`; empty for file-level problems.
    pub key: String,
    pub message: String,
    /// The offending line(s) with a caret, when known.
    pub snippet: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, column)) = self.location {
            write!(f, ":{line}:{column}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)?;
        } else {
            write!(f, ": {}: {}", self.key, self.message)?;
        }
        if let Some(snippet) = &self.snippet {
            write!(f, "\n{snippet}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// A parser error, rewritten for an operator: serde-saphyr's rendering split into message
    /// and snippet, the key path without serde's artefacts.
    pub(super) fn from_yaml(file_name: &str, key: &str, e: serde_saphyr::Error) -> ConfigError {
        let location = e.location().map(|l| (l.line(), l.column()));
        let rendered = e.to_string();
        // serde-saphyr renders "error: line L column C: message\n --> <input>:L:C\n snippet".
        let mut lines = rendered.lines();
        let first = lines.next().unwrap_or_default();
        let message = first
            .split_once(": ")
            .and_then(|(_, rest)| rest.split_once(": ").map(|(_, m)| m))
            .unwrap_or(first)
            .to_string();
        let snippet: Vec<&str> = lines
            .filter(|l| !l.trim_start().starts_with("-->"))
            .collect();
        // `Spanned` fields add a `.value` step that is not in the file; `?` and `.` mean "the top".
        let key = key.replace(".value", "");
        let key = if key == "." || key == "?" {
            String::new()
        } else {
            key
        };
        let message = match message.split_once(", set DuplicateKeyPolicy") {
            Some((head, _)) => format!("{head} (each key may appear once)"),
            None => message,
        };
        // A required top-level key is missing: no line in the file is to blame.
        let top_level_missing = key.is_empty() && message.starts_with("missing field");
        ConfigError {
            file: file_name.to_string(),
            location: if top_level_missing { None } else { location },
            key,
            message,
            snippet: if top_level_missing || snippet.is_empty() {
                None
            } else {
                Some(snippet.join("\n"))
            },
        }
    }
}

/// The source line at `line` with a caret under `column`, as the YAML errors show it.
pub(super) fn snippet(text: &str, line: u64, column: u64) -> Option<String> {
    let source = text.lines().nth(line.checked_sub(1)? as usize)?;
    let width = line.to_string().len();
    Some(format!(
        "{:>width$} | {source}\n{:>width$} | {}^",
        line,
        "",
        " ".repeat(column.saturating_sub(1) as usize)
    ))
}
