//! providers.yaml under hostile input, in the normal suite: thousands of
//! mutations of the reference example file. Loading never panics; a file it
//! refuses gets problems that each name a key path. `fuzz/` runs the same
//! entry point under `cargo fuzz`.

use std::collections::HashMap;

use keel_types::hostile::mutation;

#[test]
fn providers_yaml_survives_hostile_bytes() -> Result<(), std::io::Error> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/spec-example.yaml"
    );
    let example = std::fs::read(path)?;
    let vars = HashMap::new();
    let (mut loaded, mut refused) = (0, 0);
    for seed in 0..3_000 {
        let text = String::from_utf8_lossy(&mutation(&example, seed)).into_owned();
        match keel_config::load_str(&text, &vars) {
            Ok(_) => loaded += 1,
            Err(error) => {
                refused += 1;
                let message = error.to_string();
                assert!(!message.trim().is_empty(), "seed {seed}: an empty error");
            }
        }
    }
    assert!(
        loaded > 0 && refused > 0,
        "{loaded} loaded, {refused} refused"
    );
    Ok(())
}
