//! JSON written by hand, byte for byte as serde_json writes it, for the
//! answers Keel writes on every request (the Responses API's objects and
//! events, Anthropic's `message`): serde would escape every field name again
//! and check every string one byte at a time.

use bytes::BufMut;
use keel_types::canonical::openai::plain_run;

/// `text` as a JSON string, as serde_json writes it. Text with nothing to
/// escape (a control character, `"` or `\`) is copied as it is.
pub(crate) fn push_string<B: BufMut>(out: &mut B, text: &str) {
    keel_types::write_json_string(&mut out.writer(), text);
}

/// `text`, which Keel wrote and knows needs no escapes (its own hex ids,
/// fixed words), as a JSON string.
pub(crate) fn push_plain<B: BufMut>(out: &mut B, text: &str) {
    debug_assert!(!needs_escape(text.as_bytes()), "{text:?} needs escapes");
    out.put_u8(b'"');
    out.put_slice(text.as_bytes());
    out.put_u8(b'"');
}

/// Whether `text` holds a byte JSON escapes: a control character, `"` or
/// `\`.
fn needs_escape(text: &[u8]) -> bool {
    plain_run(text) < text.len()
}

/// `value` in decimal, as serde_json writes it.
pub(crate) fn push_u64<B: BufMut>(out: &mut B, value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.put_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::{push_string, push_u64};

    /// The hand-written JSON is byte for byte what serde_json writes.
    #[test]
    fn strings_and_numbers_are_written_as_serde_json_writes_them() -> Result<(), serde_json::Error>
    {
        let texts = [
            "",
            "plain",
            "naïve café 猫 🦀",
            "quote \" and backslash \\",
            "new\nline\ttab\r\u{8}\u{c}",
            "\u{0}\u{1f}\u{7f}",
            "\u{2028}\u{2029}</script>",
            "sixteen bytes ok and a quote \" in the third word",
            "0123456789abcdef\\",
            "0123456789abcdef0123456\u{1f}",
            "Hello from the keel mock (model gpt-mock). The quick brown fox jumps over the lazy dog while a naïve café ",
        ];
        for text in texts {
            let mut written = Vec::new();
            push_string(&mut written, text);
            assert_eq!(written, serde_json::to_vec(text)?, "{text:?}");
        }
        for number in [0, 7, 10, 1_796_548_131, u64::MAX] {
            let mut written = Vec::new();
            push_u64(&mut written, number);
            assert_eq!(written, serde_json::to_vec(&number)?, "{number}");
        }
        Ok(())
    }
}
