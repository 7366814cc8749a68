//! How decoding cost grows with the length of one SSE line arriving in
//! 4 KiB pieces: `eventsource-stream` fed the pieces as they come, against
//! `keel_sse::decode`, which regroups them into whole lines and reads each
//! line once. Run by bench/sse/run.sh.

use std::io::Write as _;
use std::time::Instant;

use futures_util::{stream, StreamExt};

const PIECE: usize = 4 * 1024;

fn pieces(line_len: usize) -> Vec<Result<Vec<u8>, std::convert::Infallible>> {
    let frame = format!("data: {}\n\n", "x".repeat(line_len));
    frame
        .as_bytes()
        .chunks(PIECE)
        .map(|piece| Ok(piece.to_vec()))
        .collect()
}

/// Seconds to decode one frame whose line is `line_len` bytes, best of 3.
fn seconds(line_len: usize, whole_lines: bool) -> f64 {
    (0..3)
        .map(|_| {
            let input = stream::iter(pieces(line_len));
            let started = Instant::now();
            let events = if whole_lines {
                futures_executor::block_on(keel_sse::decode(input).count())
            } else {
                use eventsource_stream::Eventsource;
                futures_executor::block_on(input.eventsource().count())
            };
            assert_eq!(events, 1);
            started.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn main() -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "| line | fed as it comes: ms | ms per MiB | whole lines (Keel): ms | ms per MiB |"
    )?;
    writeln!(out, "|---|---|---|---|---|")?;
    for kib in [128usize, 256, 512, 1023] {
        let len = kib * 1024;
        let mib = len as f64 / (1024.0 * 1024.0);
        let raw = seconds(len, false) * 1e3;
        let keel = seconds(len, true) * 1e3;
        writeln!(
            out,
            "| {kib} KiB | {raw:.2} | {:.2} | {keel:.3} | {:.3} |",
            raw / mib,
            keel / mib
        )?;
    }
    Ok(())
}
