//! Classifies one OpenAI `chat.completion.chunk` by reading only the fields the
//! gateway acts on: does it carry a token (the commit point), does it finish
//! the choice, is it an in-band error, what usage does it report.

use serde::{Deserialize, Serialize};

use crate::json_scan::{plain_run, unescape, Scan};

mod derived;

/// What one chunk means to the gateway.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChunkInfo {
    /// It carries content, a tool-call delta, a refusal or reasoning: the first
    /// such chunk is the commit point. Role-only and empty chunks do not count.
    pub has_token: bool,
    /// A choice has a `finish_reason`: the answer is complete.
    pub finished: bool,
    /// The data line is an `{"error": …}` object sent after a 200.
    pub is_error: bool,
    /// Token usage, when the chunk reports it.
    pub usage: Option<Usage>,
    /// It is the usage chunk: usage and no choices.
    pub usage_only: bool,
    /// The chunk's text, when text is all it carries that a translation
    /// acts on: one choice, its delta's `content` (perhaps with a `role`),
    /// no finish, usage, refusal, reasoning or tool call. A translating
    /// front end writes it without reading the chunk a second time.
    pub text: Option<ChunkText>,
}

/// Where a chunk's text is: a range of its JSON text when the string has
/// no escapes, the text itself (escapes resolved) otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkText {
    /// Bytes of the chunk's data.
    Span(std::ops::Range<usize>),
    /// The string, unescaped.
    Owned(String),
}

// === impl ChunkText ===

impl ChunkText {
    /// The text, given the chunk's data it was read from.
    pub fn as_str<'a>(&'a self, data: &'a [u8]) -> Option<&'a str> {
        match self {
            Self::Span(range) => std::str::from_utf8(data.get(range.clone())?).ok(),
            Self::Owned(text) => Some(text),
        }
    }
}

impl Text for ChunkText {
    fn is_empty(&self) -> bool {
        match self {
            Self::Span(range) => range.is_empty(),
            Self::Owned(text) => text.is_empty(),
        }
    }
}

/// OpenAI token usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Tokens generated.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Their sum.
    #[serde(default)]
    pub total_tokens: u64,
    /// The prompt's breakdown, when the upstream reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

/// `usage.prompt_tokens_details`: what of the prompt came from the
/// provider's prompt cache (billed at its `cached_input` price).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens read from the provider's cache (part of `prompt_tokens`).
    #[serde(default)]
    pub cached_tokens: u64,
}

// === impl Usage ===

impl Usage {
    /// Prompt tokens read from the provider's cache, at most `prompt_tokens`.
    pub fn cached_tokens(&self) -> u64 {
        self.prompt_tokens_details
            .map_or(0, |details| details.cached_tokens)
            .min(self.prompt_tokens)
    }
}

/// Classifies the JSON of one SSE `data:` line. Text that is not a chunk
/// object is reported as an error chunk, since forwarding it would hand the
/// client something it cannot parse.
///
/// One pass over the bytes reads the chunk as upstreams send it; anything
/// it cannot be sure to read as serde would is read by the serde-derived
/// probe instead, which decides.
pub fn inspect_chunk(data: &str) -> ChunkInfo {
    scan_chunk(data).unwrap_or_else(|| derived::inspect_chunk(data))
}

/// Reads the chunks of one stream. An upstream sends every text chunk of
/// a stream in one shape: the same fields around the text, where only the
/// text and perhaps a string Keel does not read after it change (OpenAI's
/// `obfuscation` padding, for one). Once a chunk of text only has been
/// read, a later chunk that is its bytes with other strings in those
/// places, strings with nothing to escape, is the same JSON with other
/// strings in them: it is known without being read again. Anything else is
/// read in full.
#[derive(Debug, Default)]
pub struct ChunkReader {
    shape: Option<Shape>,
    /// A shape was looked for (once a stream: a chunk that the one pass
    /// cannot read gives none, and neither would the next).
    looked: bool,
}

/// A chunk of text only, and the strings in it that may change.
#[derive(Debug)]
struct Shape {
    data: Box<str>,
    /// Where each string that may change is (between its quotes), in order:
    /// the text and the top-level string values after it that Keel does not
    /// read. (Those before it, the id and the model, do not change within
    /// a stream: one compare covers everything up to the text.)
    strings: Box<[std::ops::Range<usize>]>,
    /// Which of them is the text.
    text: usize,
}

// === impl ChunkReader ===

impl ChunkReader {
    /// What the chunk in `data` means; the same as [`inspect_chunk`].
    pub fn inspect(&mut self, data: &str) -> ChunkInfo {
        if let Some(info) = self.shape.as_ref().and_then(|shape| shape.read(data)) {
            return info;
        }
        let info = inspect_chunk(data);
        if let (false, Some(ChunkText::Span(text))) = (self.looked, &info.text) {
            self.looked = true;
            self.shape = Shape::of(data, text.clone());
        }
        info
    }
}

// === impl Shape ===

impl Shape {
    /// The shape of a chunk of text only whose text is at `text`.
    fn of(data: &str, text: std::ops::Range<usize>) -> Option<Self> {
        let mut strings = vec![text.clone()];
        let mut scan = Scan::new(data);
        scan.object(|scan, key| {
            if matches!(key, "choices" | "usage" | "error") {
                return scan.skip();
            }
            match scan.string_span() {
                Some((span, false)) if span.start > text.start => strings.push(span),
                Some(_) => {}
                None => scan.skip()?,
            }
            Some(())
        })?;
        strings.sort_unstable_by_key(|span| span.start);
        let text = strings.iter().position(|span| *span == text)?;
        Some(Self {
            data: data.into(),
            strings: strings.into(),
            text,
        })
    }

    /// The chunk's meaning when it is the shape's bytes with other strings
    /// that need no escape in the places that may change: what the shape
    /// meant, with that text (a token when it is not empty).
    fn read(&self, data: &str) -> Option<ChunkInfo> {
        let (shape, bytes) = (self.data.as_bytes(), data.as_bytes());
        let (mut in_shape, mut at) = (0, 0);
        let mut text = 0..0;
        for (index, string) in self.strings.iter().enumerate() {
            let same = shape.get(in_shape..string.start)?;
            if bytes.get(at..at + same.len())? != same {
                return None;
            }
            at += same.len();
            // Up to the closing quote, which the next bytes compared hold:
            // a backslash or control character stops the run before it.
            let plain = plain_run(bytes.get(at..)?);
            if index == self.text {
                text = at..at + plain;
            }
            at += plain;
            in_shape = string.end;
        }
        if bytes.get(at..)? != shape.get(in_shape..)? {
            return None;
        }
        let has_token = !text.is_empty();
        Some(ChunkInfo {
            has_token,
            text: has_token.then_some(ChunkText::Span(text)),
            ..ChunkInfo::default()
        })
    }
}

/// A text a chunk holds, as a reader keeps it: the one pass keeps where it
/// is ([`ChunkText`]), serde a borrowed or unescaped string.
trait Text {
    fn is_empty(&self) -> bool;
}

/// What a chunk's choices add up to, the first one kept whole. Both
/// readers judge chunks with it, so the rules (what is a token, what is a
/// chunk of text only) are written once.
struct Choices<T> {
    count: usize,
    has_token: bool,
    finished: bool,
    first: Option<ChoiceProbe<T>>,
}

struct ChoiceProbe<T> {
    delta: Option<DeltaProbe<T>>,
    finished: bool,
}

/// The delta's fields the gateway acts on.
struct DeltaProbe<T> {
    content: Option<T>,
    refusal: Option<T>,
    reasoning_content: Option<T>,
    reasoning: Option<T>,
    /// How many tool-call deltas.
    tool_calls: Option<usize>,
    function_call: bool,
}

/// What a chunk with these `choices`, `usage` and (not `null`) `error`
/// means; `text` says where the text of a chunk of text only is.
fn chunk_info<T: Text>(
    choices: Choices<T>,
    usage: Option<Usage>,
    error: bool,
    text: impl FnOnce(T) -> Option<ChunkText>,
) -> ChunkInfo {
    let mut info = ChunkInfo {
        is_error: error,
        usage,
        usage_only: usage.is_some() && choices.count == 0,
        has_token: choices.has_token,
        finished: choices.finished,
        text: None,
    };
    if !info.is_error && info.usage.is_none() && choices.count == 1 {
        info.text = choices
            .first
            .and_then(ChoiceProbe::only_text)
            .and_then(text);
    }
    info
}

/// The chunk read in one pass, or `None` when the derived probe must.
fn scan_chunk(data: &str) -> Option<ChunkInfo> {
    let mut scan = Scan::new(data);
    let mut choices = Choices::default();
    let (mut usage, mut error) = (None, false);
    let mut seen = [false; 3];
    scan.object(|scan, key| {
        match key {
            "choices" => {
                scan.once(&mut seen[0])?
                    .array(|scan| scan_choice(scan).map(|choice| choices.add(choice)))?;
            }
            "usage" => usage = scan.once(&mut seen[1])?.nullable(scan_usage)?,
            "error" => error = scan.once(&mut seen[2])?.nullable(Scan::skip)?.is_some(),
            _ => scan.skip()?,
        }
        Some(())
    })?;
    if !scan.finished() {
        return None;
    }
    Some(chunk_info(choices, usage, error, Some))
}

fn scan_choice(scan: &mut Scan<'_>) -> Option<ChoiceProbe<ChunkText>> {
    let mut choice = ChoiceProbe {
        delta: None,
        finished: false,
    };
    let mut seen = [false; 2];
    scan.object(|scan, key| {
        match key {
            "delta" => choice.delta = scan.once(&mut seen[0])?.nullable(scan_delta)?,
            "finish_reason" => {
                choice.finished = scan.once(&mut seen[1])?.nullable(Scan::skip)?.is_some();
            }
            _ => scan.skip()?,
        }
        Some(())
    })?;
    Some(choice)
}

fn scan_delta(scan: &mut Scan<'_>) -> Option<DeltaProbe<ChunkText>> {
    let mut delta = DeltaProbe::default();
    let mut seen = [false; 6];
    scan.object(|scan, key| {
        match key {
            "content" => delta.content = scan.once(&mut seen[0])?.nullable(scan_text)?,
            "refusal" => delta.refusal = scan.once(&mut seen[1])?.nullable(scan_text)?,
            "reasoning_content" => {
                delta.reasoning_content = scan.once(&mut seen[2])?.nullable(scan_text)?;
            }
            "reasoning" => delta.reasoning = scan.once(&mut seen[3])?.nullable(scan_text)?,
            "tool_calls" => {
                delta.tool_calls = scan.once(&mut seen[4])?.nullable(count_elements)?;
            }
            "function_call" => {
                delta.function_call = scan.once(&mut seen[5])?.nullable(Scan::skip)?.is_some();
            }
            _ => scan.skip()?,
        }
        Some(())
    })?;
    Some(delta)
}

/// A string: where its text is when it has no escapes, the text otherwise.
fn scan_text(scan: &mut Scan<'_>) -> Option<ChunkText> {
    let (span, escaped) = scan.string_span()?;
    if !escaped {
        return Some(ChunkText::Span(span));
    }
    scan.text()
        .get(span)
        .and_then(unescape)
        .map(ChunkText::Owned)
}

/// `usage` as its derived `Deserialize` reads it: counts, a count given
/// twice or `null` left to serde (which refuses them).
pub(crate) fn scan_usage(scan: &mut Scan<'_>) -> Option<Usage> {
    let mut usage = Usage::default();
    let mut seen = [false; 4];
    scan.object(|scan, key| {
        match key {
            "prompt_tokens" => usage.prompt_tokens = scan.once(&mut seen[0])?.count()?,
            "completion_tokens" => usage.completion_tokens = scan.once(&mut seen[1])?.count()?,
            "total_tokens" => usage.total_tokens = scan.once(&mut seen[2])?.count()?,
            "prompt_tokens_details" => {
                usage.prompt_tokens_details =
                    scan.once(&mut seen[3])?.nullable(scan_prompt_details)?;
            }
            _ => scan.skip()?,
        }
        Some(())
    })?;
    Some(usage)
}

fn scan_prompt_details(scan: &mut Scan<'_>) -> Option<PromptTokensDetails> {
    let mut details = PromptTokensDetails::default();
    let mut seen = false;
    scan.object(|scan, key| {
        match key {
            "cached_tokens" => details.cached_tokens = scan.once(&mut seen)?.count()?,
            _ => scan.skip()?,
        }
        Some(())
    })?;
    Some(details)
}

/// An array's elements, each checked and passed over, counted.
fn count_elements(scan: &mut Scan<'_>) -> Option<usize> {
    let mut count = 0;
    scan.array(|scan| {
        count += 1;
        scan.skip()
    })?;
    Some(count)
}

// === impl Choices ===

impl<T> Default for Choices<T> {
    fn default() -> Self {
        Self {
            count: 0,
            has_token: false,
            finished: false,
            first: None,
        }
    }
}

impl<T: Text> Choices<T> {
    fn add(&mut self, choice: ChoiceProbe<T>) {
        self.finished |= choice.finished;
        self.has_token |= choice.delta.as_ref().is_some_and(DeltaProbe::has_token);
        if self.count == 0 {
            self.first = Some(choice);
        }
        self.count += 1;
    }
}

// === impl ChoiceProbe ===

impl<T: Text> ChoiceProbe<T> {
    /// The text of a chunk's one choice when it carries only text (see
    /// [`ChunkInfo::text`]).
    fn only_text(self) -> Option<T> {
        let delta = self.delta.filter(|_| !self.finished)?;
        let only_text = is_empty(&delta.refusal)
            && is_empty(&delta.reasoning_content)
            && is_empty(&delta.reasoning)
            && delta.tool_calls.is_none_or(|calls| calls == 0)
            && !delta.function_call;
        delta.content.filter(|text| only_text && !text.is_empty())
    }
}

// === impl DeltaProbe ===

impl<T> Default for DeltaProbe<T> {
    fn default() -> Self {
        Self {
            content: None,
            refusal: None,
            reasoning_content: None,
            reasoning: None,
            tool_calls: None,
            function_call: false,
        }
    }
}

impl<T: Text> DeltaProbe<T> {
    fn has_token(&self) -> bool {
        !is_empty(&self.content)
            || !is_empty(&self.refusal)
            || !is_empty(&self.reasoning_content)
            || !is_empty(&self.reasoning)
            || self.tool_calls.is_some_and(|calls| calls > 0)
            || self.function_call
    }
}

fn is_empty<T: Text>(text: &Option<T>) -> bool {
    text.as_ref().is_none_or(T::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_only_and_empty_chunks_are_not_tokens() {
        let role = inspect_chunk(
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
        );
        assert_eq!(role, ChunkInfo::default());
    }

    #[test]
    fn content_tool_calls_and_reasoning_are_tokens() {
        for data in [
            r#"{"choices":[{"delta":{"content":"Hi"}}]}"#,
            r#"{"choices":[{"delta":{"content":"\u00e9"}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{"reasoning_content":"thinking"}}]}"#,
        ] {
            assert!(inspect_chunk(data).has_token, "{data}");
        }
    }

    #[test]
    fn finish_usage_and_errors_are_seen() {
        assert!(inspect_chunk(r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#).finished);
        let usage = inspect_chunk(
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
        )
        .usage;
        assert_eq!(usage.map(|u| u.total_tokens), Some(7));
        assert!(inspect_chunk(r#"{"error":{"message":"overloaded"}}"#).is_error);
        assert!(inspect_chunk("not json").is_error);
    }

    #[test]
    fn a_chunk_of_text_only_says_where_its_text_is() {
        let text_of = |data: &str| {
            let text = inspect_chunk(data).text?;
            text.as_str(data.as_bytes()).map(str::to_owned)
        };
        let plain = r#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hi there"},"finish_reason":null}]}"#;
        assert_eq!(inspect_chunk(plain).text, Some(ChunkText::Span(52..60)));
        assert_eq!(text_of(plain).as_deref(), Some("Hi there"));
        for (data, text) in [
            (
                r#"{"choices":[{"delta":{"content":"a\nb \u00e9"}}]}"#,
                "a\nb é",
            ),
            (
                r#"{"choices":[{"delta":{"role":"assistant","content":"x","refusal":null,"tool_calls":[]}}]}"#,
                "x",
            ),
            (
                r#"{"usage":null,"choices":[{"delta":{"content":"y","reasoning_content":""}}]}"#,
                "y",
            ),
        ] {
            assert_eq!(text_of(data).as_deref(), Some(text), "{data}");
        }
        for data in [
            r#"{"choices":[{"delta":{"content":""}}]}"#,
            r#"{"choices":[{"delta":{"content":"x"},"finish_reason":"stop"}]}"#,
            r#"{"choices":[{"delta":{"content":"x"}}],"usage":{"prompt_tokens":1}}"#,
            r#"{"choices":[{"delta":{"content":"x"}},{"delta":{"content":"y"}}]}"#,
            r#"{"choices":[{"delta":{"content":"x","refusal":"no"}}]}"#,
            r#"{"choices":[{"delta":{"content":"x","reasoning":"hm"}}]}"#,
            r#"{"choices":[{"delta":{"content":"x","tool_calls":[{"index":0}]}}]}"#,
            r#"{"choices":[{"delta":{"content":"x","function_call":{"name":"f"}}}]}"#,
            r#"{"choices":[{"delta":{"content":"x"}}],"error":{"message":"m"}}"#,
            r#"{"choices":[{"delta":{"role":"assistant"}}]}"#,
        ] {
            assert_eq!(inspect_chunk(data).text, None, "{data}");
        }
    }

    /// Wherever the one-pass read answers, it judges the chunk as the
    /// serde-derived probe does, on tens of thousands of mutated chunks of
    /// every kind; and it answers for most chunks that are JSON.
    #[test]
    fn the_one_pass_read_judges_chunks_as_serde_does() {
        let seeds = [
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1796585138,"model":"gpt-mock","service_tier":"default","system_fingerprint":"fp","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hello w\u00e9\"rld"},"logprobs":null,"finish_reason":null}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#,
            r#"{"id":"c","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":20,"total_tokens":32,"prompt_tokens_details":{"cached_tokens":4}}}"#,
            r#"{"error":{"message":"overloaded","type":"server_error","code":null}}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},"finish_reason":null},{"delta":{"reasoning_content":"hm","reasoning":null,"function_call":{"name":"g"}}}]}"#,
        ];
        let (mut json, mut read) = (0, 0);
        for seed in 0..60_000u64 {
            let body = crate::hostile::mutation(seeds[(seed % 6) as usize].as_bytes(), seed);
            let Ok(data) = std::str::from_utf8(&body) else {
                continue;
            };
            let derived = derived::inspect_chunk(data);
            json += usize::from(!derived.is_error);
            if let Some(scanned) = scan_chunk(data) {
                read += usize::from(!derived.is_error);
                assert_eq!(scanned, derived, "seed {seed}: {data}");
            }
        }
        assert!(
            read > json * 9 / 10 && json > 5_000,
            "read {read} in one pass, {json} were chunks"
        );
    }

    /// A stream's reader judges every chunk as reading it alone does: chunks
    /// in the shape of its first text chunk (the text changed, emptied,
    /// escaped, quoted; the padding changed) and thousands of mutated ones.
    #[test]
    fn a_stream_reader_judges_chunks_as_reading_them_alone_does() {
        let shape = |text: &str, padding: &str| {
            format!(
                r#"{{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{{"index":0,"delta":{{"content":"{text}"}},"logprobs":null,"finish_reason":null}}],"obfuscation":"{padding}"}}"#
            )
        };
        let mut reader = ChunkReader::default();
        let first = shape("Hello", "a1");
        assert_eq!(reader.inspect(&first), inspect_chunk(&first));
        assert!(reader.shape.is_some(), "a text chunk gives the shape");
        let texts = [
            "",
            " world",
            r"caf\u00e9",
            r"a\\b",
            r#"x\"y"#,
            r"\n",
            "é ü 漢",
            "tab\there",
            // A text that would close the string and add fields, were it
            // not for the escapes.
            r#"a\"}],\"usage\":{\"prompt_tokens\":1},\"x\":[{\"y\":\""#,
        ];
        let mut chunks: Vec<String> = texts.iter().map(|text| shape(text, "b2")).collect();
        chunks.extend(texts.iter().map(|padding| shape("hi", padding)));
        chunks.push(format!("{}x", shape("hi", "")));
        chunks
            .push(shape("hi", "c").replace(r#""finish_reason":null"#, r#""finish_reason":"stop""#));
        for seed in 0..20_000u64 {
            // The strings alone mutated (most stay in shape), or the chunk.
            let text = crate::hostile::mutation(b"Hello there", seed);
            let padding = crate::hostile::mutation(b"xyz123", seed + 1);
            if let (Ok(text), Ok(padding)) = (String::from_utf8(text), String::from_utf8(padding)) {
                chunks.push(shape(&text, &padding));
            }
            let body = crate::hostile::mutation(shape("Hello there", "p").as_bytes(), seed);
            chunks.extend(String::from_utf8(body).ok());
        }
        let mut known = 0;
        for data in &chunks {
            let shaped = reader.shape.as_ref().and_then(|shape| shape.read(data));
            known += usize::from(shaped.is_some());
            assert_eq!(reader.inspect(data), inspect_chunk(data), "{data}");
        }
        assert!(
            known > 5_000,
            "only {known} chunks were known by their shape"
        );
    }

    /// Refusals the mutations seldom reach: a read field twice, a field of
    /// the wrong kind, an escape serde_json refuses.
    #[test]
    fn duplicate_and_mistyped_fields_are_refused_as_serde_refused_them() {
        for data in [
            r#"{"choices":[],"choices":[]}"#,
            r#"{"error":null,"error":null}"#,
            r#"{"usage":null,"usage":null}"#,
            r#"{"choices":[{"delta":{},"delta":{}}]}"#,
            r#"{"choices":[{"finish_reason":null,"finish_reason":"stop"}]}"#,
            r#"{"choices":[{"delta":{"content":"a","content":"b"}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":null,"tool_calls":[]}}]}"#,
            r#"{"choices":null}"#,
            r#"{"choices":[null]}"#,
            r#"{"choices":[{"delta":"x"}]}"#,
            r#"{"choices":[{"delta":{"content":1}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":{}}}]}"#,
            r#"{"usage":{"prompt_tokens":-1}}"#,
            r#"{"\ud800":1}"#,
            r#"{"choices":[{"delta":{"content":"\udc00"}}]}"#,
        ] {
            assert!(inspect_chunk(data).is_error, "{data}");
        }
        // An escaped key is the key it spells.
        let escaped = r#"{"choices":[{"delta":{"cont\u0065nt":"hi"}}]}"#;
        assert!(inspect_chunk(escaped).has_token);
    }

    /// Where the text says a chunk is text only, reading the whole chunk
    /// finds that text and nothing else a translation acts on (a role is
    /// acted on by none), on thousands of mutated chunks.
    #[test]
    fn the_text_of_a_text_only_chunk_is_what_reading_it_finds() {
        use crate::canonical::openai::read_chunk;
        use crate::canonical::Delta;
        let seeds = [
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hello wor\u00e9ld"},"logprobs":null,"finish_reason":null}]}"#,
            r#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"a\nb","refusal":null},"finish_reason":null}],"usage":null}"#,
        ];
        let mut found = 0;
        for seed in 0..20_000u64 {
            let body = crate::hostile::mutation(seeds[(seed % 2) as usize].as_bytes(), seed);
            let Ok(data) = std::str::from_utf8(&body) else {
                continue;
            };
            let Some(text) = inspect_chunk(data).text else {
                continue;
            };
            let text = text.as_str(data.as_bytes()).map(str::to_owned);
            let mut deltas = Vec::new();
            let read = read_chunk(data, |_, delta| match delta {
                Delta::Role => {}
                Delta::Text(text) => deltas.push(Some(text.into_owned())),
                _ => deltas.push(None),
            });
            if read.is_ok() {
                found += 1;
                assert_eq!(deltas, [text], "seed {seed}: {data}");
            }
        }
        assert!(
            found > 1_000,
            "only {found} mutations were text-only chunks"
        );
    }
}
