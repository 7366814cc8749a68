//! [`ConfigError`] and [`Problem`]: everything wrong with a configuration, each
//! problem prefixed with the key path it is about.

use std::collections::HashSet;
use std::fmt;

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key path, e.g. `models.chat-large.targets[1].provider`. Empty for
    /// problems with the file as a whole (e.g. a YAML syntax error).
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Every problem found while loading a configuration, in one pass.
///
/// `Display` prints one line per problem: `<key path>: <message>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_lines(.problems))]
pub struct ConfigError {
    /// The problems, in the order they were found; never empty.
    pub problems: Vec<Problem>,
}

/// A key path inside the YAML tree, displayed as `providers.openai.timeouts`
/// with list indices as `targets[1]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(Vec<Segment>);

/// Collects problems during loading. Paths that already have a problem from
/// interpolation (an unset variable) are "poisoned": later problems about the
/// same value would only repeat the first one, so they are dropped.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    list: Vec<Problem>,
    poisoned: HashSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

// === impl Problem ===

impl fmt::Display for Problem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            formatter.write_str(&self.message)
        } else {
            write!(formatter, "{}: {}", self.path, self.message)
        }
    }
}

// === impl ConfigError ===

impl ConfigError {
    /// An error with exactly one problem.
    pub(crate) fn single(path: String, message: String) -> Self {
        Self {
            problems: vec![Problem { path, message }],
        }
    }
}

fn render_lines(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
    lines.join("\n")
}

// === impl KeyPath ===

impl KeyPath {
    /// The root of the document.
    pub(crate) fn root() -> Self {
        Self::default()
    }

    /// This path extended by a mapping key.
    pub(crate) fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_owned()));
        Self(segments)
    }

    /// This path extended by a list index.
    pub(crate) fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        Self(segments)
    }

    /// This path extended by the path `serde_path_to_error` reports relative
    /// to the value deserialized at `self`.
    pub(crate) fn join(&self, relative: &serde_path_to_error::Path) -> Self {
        let mut joined = self.clone();
        for segment in relative.iter() {
            joined = match segment {
                serde_path_to_error::Segment::Seq { index } => joined.index(*index),
                serde_path_to_error::Segment::Map { key } => joined.key(key),
                serde_path_to_error::Segment::Enum { variant } => joined.key(variant),
                serde_path_to_error::Segment::Unknown => joined,
            };
        }
        joined
    }

    /// The mapping keys of this path, or `None` if it contains a list index.
    pub(crate) fn keys(&self) -> Option<Vec<&str>> {
        self.0
            .iter()
            .map(|segment| match segment {
                Segment::Key(key) => Some(key.as_str()),
                Segment::Index(_) => None,
            })
            .collect()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if position == 0 => formatter.write_str(key)?,
                Segment::Key(key) => write!(formatter, ".{key}")?,
                Segment::Index(index) => write!(formatter, "[{index}]")?,
            }
        }
        Ok(())
    }
}

// === impl Problems ===

impl Problems {
    /// Records a problem at `path`, unless the path is poisoned.
    pub(crate) fn push(&mut self, path: &KeyPath, message: impl Into<String>) {
        let path = path.to_string();
        if self.poisoned.contains(&path) {
            return;
        }
        self.list.push(Problem {
            path,
            message: message.into(),
        });
    }

    /// Records a problem at `path` and drops any later problem at that path.
    pub(crate) fn push_and_poison(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.push(path, message);
        self.poison(path);
    }

    /// Drops any later problem at `path`: an earlier one already covers it.
    pub(crate) fn poison(&mut self, path: &KeyPath) {
        self.poisoned.insert(path.to_string());
    }

    /// `Ok(value)` if no problem was recorded, else every problem.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.list.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError {
                problems: self.list,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ConfigError, KeyPath, Problem};

    #[test]
    fn key_path_displays_keys_with_dots_and_indices_with_brackets() {
        let path = KeyPath::root()
            .key("models")
            .key("chat-large")
            .key("targets")
            .index(1)
            .key("provider");
        assert_eq!(path.to_string(), "models.chat-large.targets[1].provider");
    }

    #[test]
    fn config_error_displays_one_line_per_problem() {
        let error = ConfigError {
            problems: vec![
                Problem {
                    path: "a.b".to_owned(),
                    message: "first".to_owned(),
                },
                Problem {
                    path: String::new(),
                    message: "second".to_owned(),
                },
            ],
        };
        assert_eq!(error.to_string(), "a.b: first\nsecond");
    }
}
