//! A position in JSON text and the steps of a one-pass read over it, for
//! readers that take only the fields they act on from text an upstream
//! sends (a completion, a stream chunk) without serde's machinery.
//!
//! Each step answers `None` where it cannot be sure to read the text as
//! serde would (an escaped key, deep nesting, a count that is not a plain
//! integer, a malformed value anywhere), and its readers then leave the
//! text to serde, which decides.

use std::borrow::Cow;
use std::ops::Range;

/// Nesting deeper than this is left to serde.
const MAX_DEPTH: usize = 64;

/// A position in a JSON text.
pub(crate) struct Scan<'a> {
    text: &'a str,
    at: usize,
}

// === impl Scan ===

impl<'a> Scan<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self { text, at: 0 }
    }

    /// The text being read.
    pub(crate) fn text(&self) -> &'a str {
        self.text
    }

    /// Only white space is left.
    pub(crate) fn finished(&mut self) -> bool {
        self.space();
        self.at == self.text.len()
    }

    /// Marks a known key as read; a key read twice is left to serde.
    pub(crate) fn once(&mut self, seen: &mut bool) -> Option<&mut Self> {
        if *seen {
            return None;
        }
        *seen = true;
        Some(self)
    }

    /// `null` as `None`, or the value `read` reads.
    pub(crate) fn nullable<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Option<T>,
    ) -> Option<Option<T>> {
        if self.literal("null") {
            return Some(None);
        }
        read(self).map(Some)
    }

    /// An object, each key handed to `field` positioned at its value.
    pub(crate) fn object(
        &mut self,
        mut field: impl FnMut(&mut Self, &'a str) -> Option<()>,
    ) -> Option<()> {
        self.expect(b'{')?;
        if self.next_is(b'}') {
            return Some(());
        }
        loop {
            self.space();
            let key = self.plain_string()?;
            self.expect(b':')?;
            field(self, key)?;
            if self.after_element(b'}')? {
                return Some(());
            }
        }
    }

    /// An array, each element read by `element`.
    pub(crate) fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.expect(b'[')?;
        if self.next_is(b']') {
            return Some(());
        }
        loop {
            element(self)?;
            if self.after_element(b']')? {
                return Some(());
            }
        }
    }

    /// Passes over what follows an element: `,` (`false`: more follow) or
    /// `close` (`true`).
    fn after_element(&mut self, close: u8) -> Option<bool> {
        self.space();
        let next = self.peek()?;
        self.at += 1;
        match next {
            b',' => Some(false),
            _ if next == close => Some(true),
            _ => None,
        }
    }

    /// Any value, checked and passed over.
    pub(crate) fn skip(&mut self) -> Option<()> {
        self.skip_nested(0)
    }

    /// The text of any value, checked and passed over.
    pub(crate) fn raw_value(&mut self) -> Option<&'a str> {
        self.space();
        let start = self.at;
        self.skip()?;
        self.text.get(start..self.at)
    }

    fn skip_nested(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.space();
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' => self.object(|scan, _| scan.skip_nested(depth + 1)),
            b'[' => self.array(|scan| scan.skip_nested(depth + 1)),
            b't' => self.literal("true").then_some(()),
            b'f' => self.literal("false").then_some(()),
            b'n' => self.literal("null").then_some(()),
            _ => self.number(),
        }
    }

    /// A string passed over; its escapes are checked (only where it has
    /// some, as few strings do).
    fn skip_string(&mut self) -> Option<()> {
        let start = self.at + 1;
        let (end, escaped) = self.string_end()?;
        if escaped {
            unescape(self.text.get(start..end)?)?;
        }
        Some(())
    }

    /// A string: borrowed when it has no escapes, unescaped otherwise.
    pub(crate) fn string(&mut self) -> Option<Cow<'a, str>> {
        let (span, escaped) = self.string_span()?;
        let raw = self.text.get(span)?;
        if escaped {
            unescape(raw).map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(raw))
        }
    }

    /// A string: where its text is between the quotes, and whether that
    /// text has escapes.
    pub(crate) fn string_span(&mut self) -> Option<(Range<usize>, bool)> {
        self.space();
        let start = self.at + 1;
        let (end, escaped) = self.string_end()?;
        Some((start..end, escaped))
    }

    /// A string without escapes (an object key).
    fn plain_string(&mut self) -> Option<&'a str> {
        let start = self.at + 1;
        match self.string_end()? {
            (end, false) => self.text.get(start..end),
            (_, true) => None,
        }
    }

    /// Passes over a string that starts here; its closing quote's position
    /// and whether it has escapes. Control characters are refused.
    #[inline]
    fn string_end(&mut self) -> Option<(usize, bool)> {
        let bytes = self.text.as_bytes();
        if bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        let mut at = self.at + 1;
        let mut escaped = false;
        loop {
            at += plain_run(bytes.get(at..)?);
            match *bytes.get(at)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    at += 2;
                }
                _ => return None,
            }
        }
        self.at = at + 1;
        Some((at, escaped))
    }

    /// A token count: a plain non-negative integer that fits in a u64.
    pub(crate) fn count(&mut self) -> Option<u64> {
        self.space();
        let start = self.at;
        self.number()?;
        let digits = self.text.get(start..self.at)?;
        if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    /// A number as JSON writes it: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    /// Its range is not checked, as serde does not check it in a number it
    /// ignores ([`Self::count`] checks its own).
    fn number(&mut self) -> Option<()> {
        let bytes = self.text.as_bytes();
        let digits = |at: usize| {
            bytes.get(at..).map_or(0, |rest| {
                rest.iter().take_while(|byte| byte.is_ascii_digit()).count()
            })
        };
        let mut at = self.at;
        if bytes.get(at) == Some(&b'-') {
            at += 1;
        }
        let whole = digits(at);
        if whole == 0 || (whole > 1 && bytes[at] == b'0') {
            return None;
        }
        at += whole;
        if bytes.get(at) == Some(&b'.') {
            let fraction = digits(at + 1);
            if fraction == 0 {
                return None;
            }
            at += 1 + fraction;
        }
        if matches!(bytes.get(at), Some(b'e' | b'E')) {
            at += 1;
            if matches!(bytes.get(at), Some(b'+' | b'-')) {
                at += 1;
            }
            let exponent = digits(at);
            if exponent == 0 {
                return None;
            }
            at += exponent;
        }
        self.at = at;
        Some(())
    }

    /// Passes over `word` if it comes next.
    pub(crate) fn literal(&mut self, word: &str) -> bool {
        self.space();
        // The first byte alone settles most calls (`null` where a string is).
        let found = self.peek() == word.bytes().next()
            && self.text.as_bytes()[self.at..].starts_with(word.as_bytes());
        if found {
            self.at += word.len();
        }
        found
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.next_is(byte).then_some(())
    }

    /// Passes over `byte` if it comes next (after white space).
    pub(crate) fn next_is(&mut self, byte: u8) -> bool {
        self.space();
        let found = self.peek() == Some(byte);
        if found {
            self.at += 1;
        }
        found
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn space(&mut self) {
        let bytes = self.text.as_bytes();
        // Compact JSON has none: one comparison says so.
        if bytes.get(self.at).is_some_and(|&byte| byte > b' ') {
            return;
        }
        while matches!(bytes.get(self.at), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }
}

/// How many bytes `bytes` starts with that end no JSON string and need no
/// escape in one: no `"`, `\\` or control character. Eight bytes at a time,
/// as serde's own scan does.
pub fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte below `limit` (at most 0x80); the lowest
    // one set is always a true one (a borrow only carries upward).
    let below = |word: u64, limit: u8| word.wrapping_sub(ONES * u64::from(limit)) & !word & HIGHS;
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let special = below(word, 0x20)
            | below(word ^ (ONES * u64::from(b'"')), 1)
            | below(word ^ (ONES * u64::from(b'\\')), 1);
        if special != 0 {
            return at + (special.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + bytes[at..]
        .iter()
        .take_while(|&&byte| byte >= 0x20 && byte != b'"' && byte != b'\\')
        .count()
}

/// The text of a string's escapes resolved, or `None` for an escape JSON
/// does not allow (a lone surrogate included: serde refuses those).
pub(crate) fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(char) = chars.next() {
        if char != '\\' {
            out.push(char);
            continue;
        }
        let resolved = match chars.next()? {
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let unit = hex4(&mut chars)?;
                match unit {
                    0xD800..=0xDBFF => {
                        if chars.next()? != '\\' || chars.next()? != 'u' {
                            return None;
                        }
                        let low = hex4(&mut chars)?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return None;
                        }
                        char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))?
                    }
                    0xDC00..=0xDFFF => return None,
                    _ => char::from_u32(unit)?,
                }
            }
            _ => return None,
        };
        out.push(resolved);
    }
    Some(out)
}

/// Four hex digits.
fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    let mut value = 0;
    for _ in 0..4 {
        value = value * 16 + chars.next()?.to_digit(16)?;
    }
    Some(value)
}
