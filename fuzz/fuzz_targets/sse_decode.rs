//! Upstream SSE bytes, cut where the first byte says, through the decoder.
#![no_main]

use futures_util::StreamExt as _;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(bytes.len());
    let pieces = vec![
        Ok::<_, std::convert::Infallible>(bytes[..cut].to_vec()),
        Ok(bytes[cut..].to_vec()),
    ];
    let events = keel_sse::decode(futures_util::stream::iter(pieces));
    let _ = futures_executor::block_on(events.collect::<Vec<_>>());
});
