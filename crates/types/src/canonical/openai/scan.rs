//! A `chat.completion` (or one `chat.completion.chunk`) read in one pass
//! over its text, without serde's machinery, for the shape upstreams send:
//! a front end that translates the answer reads what the adapter has
//! already scanned for its usage, and serde's generic visitors cost as much
//! again as that scan.
//!
//! The reader only answers when it is sure to agree with serde: anything it
//! does not read exactly as serde would (tool calls, a key given twice,
//! a float where a count goes, an escaped key, deep nesting, a
//! malformed value anywhere) makes it answer `None`, and the caller reads
//! the completion with serde, which decides.

use std::borrow::Cow;

use super::chunk::{ChoiceIn as ChunkChoiceIn, ChunkIn, DeltaIn};
use super::response::{ChoiceIn, CompletionIn, MessageIn, PromptDetailsIn, StopText, UsageIn};

/// Nesting deeper than this is left to serde.
const MAX_DEPTH: usize = 64;

/// The completion in `text`, or `None` when serde must read it.
pub(super) fn completion(text: &str) -> Option<CompletionIn<'_>> {
    let mut scan = Scan { text, at: 0 };
    let completion = scan.completion()?;
    scan.space();
    (scan.at == text.len()).then_some(completion)
}

/// The stream chunk in `text`, or `None` when serde must read it.
pub(super) fn chunk(text: &str) -> Option<ChunkIn<'_>> {
    let mut scan = Scan { text, at: 0 };
    let chunk = scan.chunk()?;
    scan.space();
    (scan.at == text.len()).then_some(chunk)
}

/// The fields a completion and a stream chunk share.
struct Answer<'a, C> {
    id: Cow<'a, str>,
    model: Cow<'a, str>,
    choices: Vec<C>,
    usage: Option<UsageIn>,
}

/// A position in the completion's text.
struct Scan<'a> {
    text: &'a str,
    at: usize,
}

// === impl Scan ===

impl<'a> Scan<'a> {
    fn completion(&mut self) -> Option<CompletionIn<'a>> {
        let Answer {
            id,
            model,
            choices,
            usage,
        } = self.answer(Self::choice)?;
        Some(CompletionIn {
            id,
            model,
            choices,
            usage,
        })
    }

    fn chunk(&mut self) -> Option<ChunkIn<'a>> {
        let Answer {
            id,
            model,
            choices,
            usage,
        } = self.answer(Self::chunk_choice)?;
        Some(ChunkIn {
            id,
            model,
            choices,
            usage,
        })
    }

    /// What a completion and a chunk both hold, the `choices` each read
    /// by `choice`.
    fn answer<C>(
        &mut self,
        mut choice: impl FnMut(&mut Self) -> Option<C>,
    ) -> Option<Answer<'a, C>> {
        let mut answer = Answer {
            id: Cow::Borrowed(""),
            model: Cow::Borrowed(""),
            choices: Vec::new(),
            usage: None,
        };
        let mut seen = [false; 4];
        self.object(|scan, key| {
            match key {
                "id" => answer.id = scan.once(&mut seen[0])?.string()?,
                "model" => answer.model = scan.once(&mut seen[1])?.string()?,
                "choices" => {
                    let choices = &mut answer.choices;
                    scan.once(&mut seen[2])?
                        .array(|scan| choice(scan).map(|choice| choices.push(choice)))?;
                }
                "usage" => answer.usage = scan.once(&mut seen[3])?.nullable(Self::usage)?,
                _ => scan.skip(0)?,
            }
            Some(())
        })?;
        Some(answer)
    }

    fn chunk_choice(&mut self) -> Option<ChunkChoiceIn<'a>> {
        let (delta, finish_reason, stop_reason) =
            self.choice_with("delta", |scan| scan.nullable(Self::delta))?;
        Some(ChunkChoiceIn {
            delta: delta.flatten(),
            finish_reason,
            stop_reason,
        })
    }

    fn choice(&mut self) -> Option<ChoiceIn<'a>> {
        let (message, finish_reason, stop_reason) = self.choice_with("message", Self::message)?;
        Some(ChoiceIn {
            message: message?,
            finish_reason,
            stop_reason,
        })
    }

    /// A choice of a completion or a chunk: its `body` (`message` or
    /// `delta`, read by `read`), `finish_reason` and `stop_reason`.
    fn choice_with<T>(
        &mut self,
        body: &str,
        mut read: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<(Option<T>, Option<Cow<'a, str>>, StopText<'a>)> {
        let mut content = None;
        let mut finish_reason = None;
        let mut stop_reason = StopText::default();
        let mut seen = [false; 3];
        self.object(|scan, key| {
            match key {
                _ if key == body => content = Some(read(scan.once(&mut seen[0])?)?),
                "finish_reason" => {
                    finish_reason = scan.once(&mut seen[1])?.nullable(Self::string)?;
                }
                "stop_reason" => {
                    stop_reason = StopText(scan.once(&mut seen[2])?.nullable(Self::string)?);
                }
                _ => scan.skip(0)?,
            }
            Some(())
        })?;
        Some((content, finish_reason, stop_reason))
    }

    fn delta(&mut self) -> Option<DeltaIn<'a>> {
        let mut delta = DeltaIn::default();
        let mut seen = [false; 5];
        self.object(|scan, key| {
            match key {
                "role" => delta.role = scan.once(&mut seen[0])?.nullable(Self::string)?,
                "content" => delta.content = scan.once(&mut seen[1])?.nullable(Self::string)?,
                "refusal" => delta.refusal = scan.once(&mut seen[2])?.nullable(Self::string)?,
                "reasoning_content" | "reasoning" => {
                    delta.reasoning_content = scan.once(&mut seen[3])?.nullable(Self::string)?;
                }
                "tool_calls" => {
                    delta.tool_calls = scan.once(&mut seen[4])?.nullable(Self::no_tool_calls)?
                }
                _ => scan.skip(0)?,
            }
            Some(())
        })?;
        Some(delta)
    }

    /// A `tool_calls` list holding no call. Calls themselves are left to
    /// serde (`None`: read the whole thing there).
    fn no_tool_calls<T>(&mut self) -> Option<Vec<T>> {
        self.array(|_| None)?;
        Some(Vec::new())
    }

    fn message(&mut self) -> Option<MessageIn<'a>> {
        let mut message = MessageIn::default();
        let mut seen = [false; 4];
        self.object(|scan, key| {
            match key {
                "content" => message.content = scan.once(&mut seen[0])?.nullable(Self::string)?,
                "refusal" => message.refusal = scan.once(&mut seen[1])?.nullable(Self::string)?,
                "reasoning_content" | "reasoning" => {
                    message.reasoning_content = scan.once(&mut seen[2])?.nullable(Self::string)?;
                }
                "tool_calls" => {
                    message.tool_calls = scan.once(&mut seen[3])?.nullable(Self::no_tool_calls)?
                }
                _ => scan.skip(0)?,
            }
            Some(())
        })?;
        Some(message)
    }

    fn usage(&mut self) -> Option<UsageIn> {
        let mut usage = UsageIn::default();
        let mut seen = [false; 3];
        self.object(|scan, key| {
            match key {
                "prompt_tokens" => usage.prompt_tokens = scan.once(&mut seen[0])?.count()?,
                "completion_tokens" => {
                    usage.completion_tokens = scan.once(&mut seen[1])?.count()?
                }
                "prompt_tokens_details" => {
                    usage.prompt_tokens_details =
                        scan.once(&mut seen[2])?.nullable(Self::details)?;
                }
                _ => scan.skip(0)?,
            }
            Some(())
        })?;
        Some(usage)
    }

    fn details(&mut self) -> Option<PromptDetailsIn> {
        let mut details = PromptDetailsIn::default();
        let mut seen = [false; 2];
        self.object(|scan, key| {
            match key {
                "cached_tokens" => {
                    details.cached_tokens = scan.once(&mut seen[0])?.nullable(Self::count)?;
                }
                "cache_creation_tokens" => {
                    details.cache_creation_tokens =
                        scan.once(&mut seen[1])?.nullable(Self::count)?;
                }
                _ => scan.skip(0)?,
            }
            Some(())
        })?;
        Some(details)
    }

    /// Marks a known key as read; a key read twice is left to serde.
    fn once(&mut self, seen: &mut bool) -> Option<&mut Self> {
        if *seen {
            return None;
        }
        *seen = true;
        Some(self)
    }

    /// `null` as `None`, or the value `read` reads.
    fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.literal("null") {
            return Some(None);
        }
        read(self).map(Some)
    }

    /// An object, each key handed to `field` positioned at its value.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        if self.next_is(b'}') {
            return Some(());
        }
        loop {
            self.space();
            let key = self.plain_string()?;
            self.expect(b':')?;
            field(self, key)?;
            if self.next_is(b'}') {
                return Some(());
            }
            self.expect(b',')?;
        }
    }

    /// An array, each element read by `element`.
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.expect(b'[')?;
        if self.next_is(b']') {
            return Some(());
        }
        loop {
            element(self)?;
            if self.next_is(b']') {
                return Some(());
            }
            self.expect(b',')?;
        }
    }

    /// Any value, checked and passed over.
    fn skip(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.space();
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(|scan, _| scan.skip(depth + 1)),
            b'[' => self.array(|scan| scan.skip(depth + 1)),
            b't' => self.literal("true").then_some(()),
            b'f' => self.literal("false").then_some(()),
            b'n' => self.literal("null").then_some(()),
            _ => self.number(),
        }
    }

    /// A string: borrowed when it has no escapes, unescaped otherwise.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.space();
        let start = self.at + 1;
        let (end, escaped) = self.string_end()?;
        let raw = self.text.get(start..end)?;
        if escaped {
            unescape(raw).map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(raw))
        }
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
    fn count(&mut self) -> Option<u64> {
        self.space();
        let start = self.at;
        self.number()?;
        let digits = self.text.get(start..self.at)?;
        if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    /// A number as JSON writes it; exponents are left to serde (which
    /// refuses some out of range).
    fn number(&mut self) -> Option<()> {
        let bytes = self.text.as_bytes();
        let mut at = self.at;
        if bytes.get(at) == Some(&b'-') {
            at += 1;
        }
        let digits = |at: usize| {
            bytes[at..]
                .iter()
                .take_while(|byte| byte.is_ascii_digit())
                .count()
        };
        let whole = digits(at);
        if whole == 0 || (whole > 1 && bytes[at] == b'0') || whole > 19 {
            return None;
        }
        at += whole;
        if bytes.get(at) == Some(&b'.') {
            let fraction = digits(at + 1);
            if fraction == 0 || fraction > 19 {
                return None;
            }
            at += 1 + fraction;
        }
        if matches!(bytes.get(at), Some(b'e' | b'E')) {
            return None;
        }
        self.at = at;
        Some(())
    }

    /// Passes over `word` if it comes next.
    fn literal(&mut self, word: &str) -> bool {
        self.space();
        let found = self.text.as_bytes()[self.at..].starts_with(word.as_bytes());
        if found {
            self.at += word.len();
        }
        found
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.next_is(byte).then_some(())
    }

    /// Passes over `byte` if it comes next (after white space).
    fn next_is(&mut self, byte: u8) -> bool {
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
fn unescape(raw: &str) -> Option<String> {
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
