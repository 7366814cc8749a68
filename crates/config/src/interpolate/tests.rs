//! Unit tests for string expansion and brace protection.

use std::collections::HashMap;

use super::{expand, protect, restore, Expansion};

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn expanded(text: &str, unset: Option<&str>) -> Result<Expansion, String> {
    Ok(Expansion {
        text: text.to_owned(),
        unset: unset.map(str::to_owned),
    })
}

#[test]
fn set_variable_is_substituted() {
    let vars = vars(&[("HOST", "db.local")]);
    assert_eq!(
        expand("postgres://${HOST}/keel", &vars),
        expanded("postgres://db.local/keel", None)
    );
}

#[test]
fn default_is_used_when_unset_or_empty() {
    let vars = vars(&[("EMPTY", "")]);
    assert_eq!(expand("${MISSING:-a}", &vars), expanded("a", None));
    assert_eq!(expand("${EMPTY:-b}", &vars), expanded("b", None));
    assert_eq!(expand("${MISSING:-}", &vars), expanded("", None));
}

#[test]
fn set_but_empty_variable_without_default_is_empty_not_unset() {
    let vars = vars(&[("EMPTY", "")]);
    assert_eq!(expand("x${EMPTY}y", &vars), expanded("xy", None));
}

#[test]
fn unset_variable_without_default_is_reported_by_name() {
    let vars = vars(&[]);
    assert_eq!(
        expand("${FIRST}-${SECOND}", &vars),
        expanded("-", Some("FIRST"))
    );
}

#[test]
fn double_dollar_brace_is_a_literal_reference() {
    let vars = vars(&[("X", "1")]);
    assert_eq!(
        expand("$${X} and ${X}", &vars),
        expanded("${X} and 1", None)
    );
    assert_eq!(expand("cost: $5 $$", &vars), expanded("cost: $5 $$", None));
}

#[test]
fn malformed_references_are_errors() {
    let vars = vars(&[]);
    assert!(expand("${OPEN", &vars).is_err());
    assert!(expand("${1BAD}", &vars).is_err());
    assert!(expand("${}", &vars).is_err());
    assert!(expand("${A-default}", &vars).is_err());
    assert!(expand("${A:-${B}}", &vars).is_err());
}

#[test]
fn protect_swaps_braces_on_one_line_and_restore_undoes_it() {
    let text = "keys: [${A:-x}, $${B}]\nother: ${open\n";
    let protected = protect(text);
    assert!(!protected.contains("${A"));
    assert!(protected.contains("${open"));
    assert_eq!(restore(&protected), text);
}
