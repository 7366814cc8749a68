//! docs/configuration.md against the schema: every key the loader accepts
//! has a row, every row is a key the loader accepts, and every default a
//! row states is the one a file without that key gets.

use std::collections::HashMap;

use keel_config::{known_keys, load_str, Config};
use serde_yaml_ng::{Mapping, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const DOC: &str = include_str!("../../../docs/configuration.md");

/// A file with one of everything whose keys have defaults only inside a
/// block: a provider, a model with hedging, caching and affinity, a
/// tenant, an SLO.
const MINIMAL: &str = "
tenants: [{name: t, keys: [k]}]
providers:
  p: {kind: openai, api_key: k}
models:
  m:
    targets: [{provider: p, model: x}]
    hedge: {after: 1s}
    cache: {ttl: 1m}
    affinity: {key: user}
slos: [{name: s, model: m, sli: availability, target: 99%}]
";

/// One row of a key table: the key path and its default cell.
struct Row {
    key: String,
    default: String,
}

/// Every table row whose first cell is a backticked key path.
fn rows() -> Vec<Row> {
    DOC.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split(" | ").map(str::trim).collect();
            let key = cells.first()?.strip_prefix("| `")?.strip_suffix('`')?;
            Some(Row {
                key: key.to_owned(),
                default: (*cells.get(2)?).to_owned(),
            })
        })
        .collect()
}

/// The default a cell states: its first backticked value; `None` for `—`.
fn stated_default(cell: &str) -> Option<&str> {
    let rest = cell.strip_prefix('`')?;
    rest.split_once('`').map(|(value, _)| value)
}

fn load(yaml: &str) -> Result<Config, keel_config::ConfigError> {
    load_str(yaml, &HashMap::<String, String>::new()).map(|loaded| loaded.config)
}

/// `MINIMAL` with the key at `path` (`<name>` → the file's entry, `[]` →
/// the first item) set to `value`, parsed as YAML.
fn with_key(path: &str, value: &str) -> Result<String, Box<dyn std::error::Error>> {
    let mut root: Value = serde_yaml_ng::from_str(MINIMAL)?;
    let value: Value = serde_yaml_ng::from_str(value)?;
    let mut segments: Vec<&str> = path.split('.').collect();
    let last = segments.pop().ok_or("empty path")?;
    let mut current = &mut root;
    for segment in segments {
        current = match segment {
            "<name>" => current
                .as_mapping_mut()
                .and_then(|entries| entries.values_mut().next())
                .ok_or_else(|| format!("no named entry on the way to {path}"))?,
            _ => child(current, segment)?,
        };
    }
    let entries = current
        .as_mapping_mut()
        .ok_or_else(|| format!("{path}: not in a mapping"))?;
    entries.insert(Value::from(last), value);
    Ok(serde_yaml_ng::to_string(&root)?)
}

/// The child `segment` (`jobs`, `targets[]`) of `value`, created as an
/// empty mapping when absent.
fn child<'a>(value: &'a mut Value, segment: &str) -> Result<&'a mut Value, String> {
    let (key, first_item) = match segment.strip_suffix("[]") {
        Some(key) => (key, true),
        None => (segment, false),
    };
    let entries = value
        .as_mapping_mut()
        .ok_or_else(|| format!("{key}: parent is not a mapping"))?;
    let entry = entries
        .entry(Value::from(key))
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if first_item {
        return entry
            .get_mut(0)
            .ok_or_else(|| format!("{key}: no first item"));
    }
    Ok(entry)
}

#[test]
fn every_key_the_loader_accepts_is_documented_and_every_documented_key_exists() {
    let documented: Vec<String> = rows().into_iter().map(|row| row.key).collect();
    let known = known_keys();
    let undocumented: Vec<&String> = known
        .iter()
        .filter(|key| !documented.contains(key))
        .collect();
    let unknown: Vec<&String> = documented
        .iter()
        .filter(|key| !known.contains(key))
        .collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "keys missing from docs/configuration.md: {undocumented:?}\n\
         rows for keys the loader refuses: {unknown:?}"
    );
}

#[test]
fn every_default_the_reference_states_is_the_default() -> TestResult {
    let baseline = load(MINIMAL)?;
    let mut checked = 0;
    let mut wrong = Vec::new();
    for row in rows() {
        let Some(default) = stated_default(&row.default) else {
            continue;
        };
        let yaml = with_key(&row.key, default)?;
        match load(&yaml) {
            Ok(config) if config == baseline => checked += 1,
            Ok(_) => wrong.push(format!("{}: `{default}` is not the default", row.key)),
            Err(error) => wrong.push(format!("{}: `{default}` does not load: {error}", row.key)),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(checked >= 30, "only {checked} defaults found in the tables");
    Ok(())
}

#[test]
fn a_changed_default_is_caught() -> TestResult {
    // The check above compares whole configurations; this shows it sees a
    // default that differs.
    let baseline = load(MINIMAL)?;
    let changed = load(&with_key("providers.<name>.timeouts.connect", "6s")?)?;
    assert_ne!(changed, baseline);
    let nested = load(&with_key("models.<name>.targets[].max_tokens", "7")?)?;
    assert_ne!(nested, baseline);
    Ok(())
}
