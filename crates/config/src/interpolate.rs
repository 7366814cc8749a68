//! `${VAR}` and `${VAR:-default}` expansion in string values, before the typed
//! parse, with the key path of every reference tracked for error messages.
//!
//! Rules:
//! - `${NAME}` is the variable's value; unset is an error naming the key path,
//!   except in `providers.<name>.api_key`, where it disables that provider.
//! - `${NAME:-default}` is the default when the variable is unset or empty
//!   (shell semantics).
//! - `$${` is a literal `${`; a `$` not followed by `{` is a literal `$`.
//! - Names are letters, digits and `_`, not starting with a digit. Defaults
//!   cannot contain `${` or `}`.
//! - Only string values are expanded, never mapping keys.
//!
//! YAML does not allow `{` and `}` inside plain scalars in flow collections,
//! so `keys: [${ACME_KEY:-dev}]` (a natural way to write a key list) is a YAML syntax error.
//! Before parsing, every `${...}` whose `}` is on the same line therefore has
//! its braces swapped for two private-use characters, which are swapped back
//! in every string after parsing. A default containing `,`, `[`, `]` or `{`
//! inside a flow collection still needs quotes, as any YAML scalar would.

use std::collections::HashMap;

use serde_yaml_ng::{Mapping, Value};

use crate::error::{ConfigError, KeyPath, Problems};
use crate::VarSource;

/// Stands in for the `{` of a `${` while the text goes through the YAML parser.
const OPEN: char = '\u{E000}';
/// Stands in for the matching `}`.
const CLOSE: char = '\u{E001}';

/// The expanded YAML tree.
#[derive(Debug)]
pub(crate) struct Expanded {
    /// The tree with every string value expanded.
    pub(crate) value: Value,
    /// Providers whose `api_key` references an unset variable, with the
    /// reason to show, e.g. `environment variable OPENAI_API_KEY is not set`.
    pub(crate) disabled_providers: HashMap<String, String>,
}

/// The result of expanding one string.
#[derive(Debug, PartialEq, Eq)]
struct Expansion {
    text: String,
    /// The first variable referenced without a default that is not set.
    unset: Option<String>,
}

struct Walker<'a> {
    vars: &'a dyn VarSource,
    problems: &'a mut Problems,
    disabled_providers: HashMap<String, String>,
}

/// Parses YAML text and expands every string value in it.
///
/// # Errors
///
/// Fails at once when the text is not valid YAML; problems with single
/// references go to `problems` so the rest of the file is still checked.
pub(crate) fn parse_and_expand(
    yaml: &str,
    vars: &dyn VarSource,
    problems: &mut Problems,
) -> Result<Expanded, ConfigError> {
    if yaml.contains([OPEN, CLOSE]) {
        return Err(ConfigError::single(
            String::new(),
            "the file contains the private-use characters U+E000 or U+E001, which Keel \
             reserves for parsing ${...}; remove them"
                .to_owned(),
        ));
    }
    let value: Value = serde_yaml_ng::from_str(&protect(yaml)).map_err(|error| {
        ConfigError::single(String::new(), restore(&format!("invalid YAML: {error}")))
    })?;
    let mut walker = Walker {
        vars,
        problems,
        disabled_providers: HashMap::new(),
    };
    let value = walker.walk(value, &KeyPath::root());
    Ok(Expanded {
        value,
        disabled_providers: walker.disabled_providers,
    })
}

/// How a mapping key appears in a key path.
pub(crate) fn key_label(key: &Value) -> String {
    match key {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Null => "~".to_owned(),
        Value::Sequence(_) | Value::Mapping(_) | Value::Tagged(_) => "?".to_owned(),
    }
}

/// Swaps the braces of each single-line `${...}` for [`OPEN`] and [`CLOSE`],
/// unless the inside holds a quote or a `{`.
fn protect(text: &str) -> String {
    let mut protected = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        protected.push_str(&rest[..=start]);
        let after = &rest[start + 2..];
        let line_end = after.find('\n').unwrap_or(after.len());
        match after[..line_end].find('}') {
            // A quote or brace inside means the `}` found belongs to the YAML
            // around it (`{key: "${OPEN"}`): leave it for the expander to report.
            Some(close) if !after[..close].contains(['"', '\'', '{']) => {
                protected.push(OPEN);
                protected.push_str(&after[..close]);
                protected.push(CLOSE);
                rest = &after[close + 1..];
            }
            _ => {
                protected.push('{');
                rest = after;
            }
        }
    }
    protected.push_str(rest);
    protected
}

/// Undoes [`protect`].
fn restore(text: &str) -> String {
    text.replace(OPEN, "{").replace(CLOSE, "}")
}

/// Expands the references in one string.
fn expand(input: &str, vars: &dyn VarSource) -> Result<Expansion, String> {
    let mut text = String::with_capacity(input.len());
    let mut unset = None;
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        text.push_str(&rest[..dollar]);
        let tail = &rest[dollar..];
        if let Some(after) = tail.strip_prefix("$${") {
            text.push_str("${");
            rest = after;
            continue;
        }
        let Some(after) = tail.strip_prefix("${") else {
            text.push('$');
            rest = &tail[1..];
            continue;
        };
        let Some(close) = after.find('}') else {
            return Err(
                "unterminated \"${\": close it with \"}\", or write \"$${\" for a literal \"${\""
                    .to_owned(),
            );
        };
        let (name, default) = parse_reference(&after[..close])?;
        match (vars.var(name), default) {
            (Some(value), Some(default)) if value.is_empty() => text.push_str(default),
            (Some(value), _) => text.push_str(&value),
            (None, Some(default)) => text.push_str(default),
            (None, None) => {
                unset.get_or_insert_with(|| name.to_owned());
            }
        }
        rest = &after[close + 1..];
    }
    text.push_str(rest);
    Ok(Expansion { text, unset })
}

/// Splits the inside of `${...}` into the name and the optional default.
fn parse_reference(reference: &str) -> Result<(&str, Option<&str>), String> {
    let (name, default) = match reference.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (reference, None),
    };
    if default.is_some_and(|default| default.contains("${")) {
        return Err(format!(
            "nested reference in \"${{{reference}}}\": a default cannot contain \"${{\""
        ));
    }
    let mut chars = name.chars();
    let starts_well = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_');
    if !starts_well || !chars.all(|next| next.is_ascii_alphanumeric() || next == '_') {
        return Err(format!(
            "invalid reference \"${{{reference}}}\": write ${{NAME}} or ${{NAME:-default}}, \
             where NAME is letters, digits and _ and does not start with a digit"
        ));
    }
    Ok((name, default))
}

/// `Some(provider)` when `path` is `providers.<provider>.api_key`.
fn provider_of_api_key(path: &KeyPath) -> Option<String> {
    match path.keys()?.as_slice() {
        ["providers", provider, "api_key"] => Some((*provider).to_owned()),
        _ => None,
    }
}

// === impl Walker ===

impl Walker<'_> {
    fn walk(&mut self, value: Value, path: &KeyPath) -> Value {
        match value {
            Value::String(text) => Value::String(self.expand_string(&restore(&text), path)),
            Value::Sequence(items) => Value::Sequence(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(index, item)| self.walk(item, &path.index(index)))
                    .collect(),
            ),
            Value::Mapping(entries) => {
                let mut expanded = Mapping::with_capacity(entries.len());
                for (key, item) in entries {
                    let key = match key {
                        Value::String(text) => Value::String(restore(&text)),
                        other => other,
                    };
                    let child = path.key(&key_label(&key));
                    expanded.insert(key, self.walk(item, &child));
                }
                Value::Mapping(expanded)
            }
            Value::Tagged(mut tagged) => {
                tagged.value = self.walk(tagged.value, path);
                Value::Tagged(tagged)
            }
            scalar @ (Value::Null | Value::Bool(_) | Value::Number(_)) => scalar,
        }
    }

    fn expand_string(&mut self, text: &str, path: &KeyPath) -> String {
        match expand(text, self.vars) {
            Err(message) => {
                self.problems.push_and_poison(path, message);
                String::new()
            }
            Ok(Expansion { text, unset: None }) => text,
            Ok(Expansion {
                unset: Some(name), ..
            }) => {
                let reason = format!("environment variable {name} is not set");
                match provider_of_api_key(path) {
                    Some(provider) => {
                        self.disabled_providers.entry(provider).or_insert(reason);
                    }
                    None => self.problems.push_and_poison(path, reason),
                }
                String::new()
            }
        }
    }
}

#[cfg(test)]
mod tests;
