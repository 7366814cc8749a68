//! Golden files: a test renders what it produced as text and compares it
//! with a file kept beside its fixtures. Run the tests with `KEEL_BLESS=1`
//! to write the files instead, after a change that is meant to alter them.

use std::path::{Path, PathBuf};

/// A golden file that does not match, or could not be read or written.
pub type GoldenError = Box<dyn std::error::Error>;

/// Compares `actual` with the golden file at `path`, or writes it there
/// (creating its directory) under `KEEL_BLESS=1`.
///
/// # Panics
/// When the file's text differs from `actual`, with both in the message.
pub fn assert_golden(path: impl AsRef<Path>, actual: &str) -> Result<(), GoldenError> {
    let path = path.as_ref();
    if std::env::var_os("KEEL_BLESS").is_some() {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, actual)?;
        return Ok(());
    }
    let expected = std::fs::read_to_string(path).map_err(|error| {
        format!(
            "{}: {error} (run with KEEL_BLESS=1 to create it)",
            path.display()
        )
    })?;
    assert_eq!(actual, expected, "output differs from {}", path.display());
    Ok(())
}

/// The fixtures in `dir` whose name ends in `extension`, by stem, sorted;
/// stems with a dot are left out (the golden outputs beside a fixture have
/// two extensions, `name.openai.json` beside `name.json`).
pub fn fixture_names(dir: impl Into<PathBuf>, extension: &str) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir.into())?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry
                .file_name()
                .to_str()?
                .strip_suffix(extension)?
                .to_owned();
            (!name.contains('.')).then_some(name)
        })
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_are_listed_by_stem_without_their_golden_outputs() -> Result<(), GoldenError> {
        let dir = std::env::temp_dir().join(format!("keel-golden-{:016x}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir)?;
        for file in ["b.json", "a.json", "a.openai.json", "c.sse"] {
            std::fs::write(dir.join(file), "{}")?;
        }
        let names = fixture_names(&dir, ".json");
        std::fs::remove_dir_all(&dir)?;
        assert_eq!(names?, ["a", "b"]);
        Ok(())
    }

    #[test]
    fn a_golden_file_that_differs_fails_and_one_that_matches_passes() -> Result<(), GoldenError> {
        let path = std::env::temp_dir().join(format!("keel-golden-{:016x}.txt", fastrand::u64(..)));
        std::fs::write(&path, "expected\n")?;
        let matches = assert_golden(&path, "expected\n");
        let differs = std::panic::catch_unwind(|| assert_golden(&path, "other\n").is_ok());
        let missing = assert_golden(path.with_extension("missing"), "x");
        std::fs::remove_file(&path)?;
        assert!(matches.is_ok());
        assert!(differs.is_err(), "a different text must fail");
        assert!(missing.is_err(), "a missing golden file must fail");
        Ok(())
    }
}
