//! An OpenAI-kind upstream stream, cut where the first byte says, through
//! the adapter's classifier.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(bytes.len());
    let _ = keel_providers::replay::openai_stream(&[&bytes[..cut], &bytes[cut..]]);
});
