//! Hostile inputs for property tests: deterministic mutations of a valid
//! input (bytes flipped, inserted, deleted, duplicated; brackets, quotes,
//! huge numbers and deep nesting spliced in), so every parser of untrusted
//! input can be run over thousands of near-valid cases in the normal test
//! suite, beside its `cargo fuzz` target. A small xorshift generator keeps
//! this crate free of dependencies.

/// The `seed`-th mutation of `input`.
pub fn mutation(input: &[u8], seed: u64) -> Vec<u8> {
    let mut rng = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        mutate_once(&mut out, &mut rng);
    }
    out
}

/// Where input arriving in pieces is cut: up to three cut points.
pub fn split_points(len: usize, seed: u64) -> Vec<usize> {
    let mut rng = XorShift(seed.wrapping_mul(0xbf58_476d_1ce4_e5b9) | 1);
    let mut cuts: Vec<usize> = (0..rng.below(4))
        .map(|_| rng.below(len as u64 + 1) as usize)
        .collect();
    cuts.sort_unstable();
    cuts
}

/// `input` cut at `cuts` (sorted offsets).
pub fn pieces<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for &cut in cuts {
        let cut = cut.clamp(start, input.len());
        pieces.push(&input[start..cut]);
        start = cut;
    }
    pieces.push(&input[start..]);
    pieces
}

const SPLICES: [&[u8]; 10] = [
    b"{",
    b"}",
    b"[",
    b"\"",
    b"\\",
    b"18446744073709551615",
    b"-1e999",
    b"\n",
    b"\xff\xfe",
    b"null",
];

fn mutate_once(out: &mut Vec<u8>, rng: &mut XorShift) {
    let at = rng.below(out.len() as u64 + 1) as usize;
    match rng.below(7) {
        0 if !out.is_empty() => {
            let at = at.min(out.len() - 1);
            out[at] ^= 1 << rng.below(8);
        }
        1 => out.insert(at, rng.below(256) as u8),
        2 if at < out.len() => {
            let end = (at + 1 + rng.below(16) as usize).min(out.len());
            out.drain(at..end);
        }
        3 => {
            let splice = SPLICES[rng.below(SPLICES.len() as u64) as usize];
            out.splice(at..at, splice.iter().copied());
        }
        4 if at < out.len() => {
            let end = (at + 1 + rng.below(64) as usize).min(out.len());
            let copy = out[at..end].to_vec();
            out.splice(end..end, copy);
        }
        5 => {
            let depth = 1 + rng.below(200) as usize;
            let nest: Vec<u8> = std::iter::repeat_n(b'[', depth)
                .chain(std::iter::repeat_n(b']', depth))
                .collect();
            out.splice(at..at, nest);
        }
        _ => out.truncate(at),
    }
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next() % bound
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_deterministic_and_varied() {
        let input = br#"{"model":"m","messages":[]}"#;
        assert_eq!(mutation(input, 7), mutation(input, 7));
        let distinct: std::collections::HashSet<Vec<u8>> =
            (0..200).map(|seed| mutation(input, seed)).collect();
        assert!(distinct.len() > 150, "{}", distinct.len());
        let cuts = split_points(10, 3);
        assert_eq!(pieces(b"0123456789", &cuts).concat(), b"0123456789");
    }
}
