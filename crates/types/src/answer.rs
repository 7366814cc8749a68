//! What the gateway reads of a non-stream answer before forwarding it
//! verbatim: is it the answer (a `choices` or `data` list), did the
//! upstream put an error in it, what usage it reports.
//!
//! One pass over the bytes reads the answer as upstreams send it; anything
//! it cannot be sure to read as serde would is read by the serde-derived
//! probe instead, which decides (and words the refusal).

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::chunk::scan_usage;
use crate::json_scan::Scan;
use crate::Usage;

/// The list an answer of its kind holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerList {
    /// A chat completion's `choices`.
    Choices,
    /// An embeddings answer's `data`.
    Data,
}

/// What one non-stream answer means to the gateway.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnswerInfo {
    /// The answer's list is there and not `null`.
    pub has_list: bool,
    /// Token usage, when the answer reports it.
    pub usage: Option<Usage>,
    /// The message of an `{"error": …}` the upstream sent with its 200.
    pub error: Option<String>,
}

/// Reads `body`, or says why it is not JSON of an answer's shape.
pub fn inspect_answer(body: &[u8], list: AnswerList) -> Result<AnswerInfo, serde_json::Error> {
    let scanned = std::str::from_utf8(body)
        .ok()
        .and_then(|text| scan_answer(text, list));
    match scanned {
        Some(info) => Ok(info),
        None => derived(body, list),
    }
}

/// An in-band error: only its message is kept.
#[derive(Deserialize)]
struct ErrorMessage {
    #[serde(default)]
    message: String,
}

/// The answer read in one pass, or `None` when serde must read it.
fn scan_answer(text: &str, list: AnswerList) -> Option<AnswerInfo> {
    let list_key = match list {
        AnswerList::Choices => "choices",
        AnswerList::Data => "data",
    };
    let mut scan = Scan::new(text);
    let mut info = AnswerInfo::default();
    let mut seen = [false; 3];
    scan.object(|scan, key| {
        match key {
            _ if key == list_key => {
                info.has_list = scan.once(&mut seen[0])?.nullable(Scan::skip)?.is_some();
            }
            "usage" => info.usage = scan.once(&mut seen[1])?.nullable(scan_usage)?,
            // Seldom there: serde reads it, from its text.
            "error" => {
                let value = scan.once(&mut seen[2])?.raw_value()?;
                let error: Option<ErrorMessage> = serde_json::from_str(value).ok()?;
                info.error = error.map(|error| error.message);
            }
            _ => scan.skip()?,
        }
        Some(())
    })?;
    scan.finished().then_some(info)
}

/// The serde-derived reading, for what the one pass left.
fn derived(body: &[u8], list: AnswerList) -> Result<AnswerInfo, serde_json::Error> {
    #[derive(Deserialize)]
    struct Completion {
        #[serde(default)]
        choices: Option<IgnoredAny>,
        #[serde(default)]
        usage: Option<Usage>,
        #[serde(default)]
        error: Option<ErrorMessage>,
    }
    #[derive(Deserialize)]
    struct Embeddings {
        #[serde(default)]
        data: Option<IgnoredAny>,
        #[serde(default)]
        usage: Option<Usage>,
        #[serde(default)]
        error: Option<ErrorMessage>,
    }
    let (has_list, usage, error) = match list {
        AnswerList::Choices => {
            let answer: Completion = serde_json::from_slice(body)?;
            (answer.choices.is_some(), answer.usage, answer.error)
        }
        AnswerList::Data => {
            let answer: Embeddings = serde_json::from_slice(body)?;
            (answer.data.is_some(), answer.usage, answer.error)
        }
    };
    Ok(AnswerInfo {
        has_list,
        usage,
        error: error.map(|error| error.message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPLETION: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1796585138,"model":"gpt-mock","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the \"mock\"\nupstream \u00e9","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0}},"service_tier":"default","system_fingerprint":"fp_1"}"#;
    const EMBEDDINGS: &str = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,-0.25,3e-2]}],"model":"m","usage":{"prompt_tokens":4,"total_tokens":4}}"#;
    const ERROR: &str = r#"{"error":{"message":"overloaded","type":"server_error","code":null}}"#;

    /// Wherever the one pass answers, it reads the answer as the derived
    /// probe does, on tens of thousands of mutated answers; and it answers
    /// for most of those that are JSON (not those nested past its limit).
    #[test]
    fn the_one_pass_read_agrees_with_serde() {
        let seeds = [
            (COMPLETION, AnswerList::Choices),
            (EMBEDDINGS, AnswerList::Data),
            (ERROR, AnswerList::Choices),
        ];
        let (mut json, mut read) = (0, 0);
        for seed in 0..45_000u64 {
            let (text, list) = seeds[(seed % 3) as usize];
            let body = crate::hostile::mutation(text.as_bytes(), seed);
            // serde passes over bytes that are not UTF-8 in a string it
            // ignores; the one pass leaves such answers to it.
            let Ok(text) = std::str::from_utf8(&body) else {
                continue;
            };
            let derived = derived(&body, list).ok();
            json += usize::from(derived.is_some());
            let Some(scanned) = scan_answer(text, list) else {
                continue;
            };
            read += usize::from(derived.is_some());
            assert_eq!(Some(scanned), derived, "seed {seed}: {text}");
        }
        assert!(
            read > json * 9 / 10 && json > 5_000,
            "read {read} in one pass, {json} were JSON"
        );
    }

    #[test]
    fn usage_the_list_and_errors_are_read() -> Result<(), serde_json::Error> {
        let completion = inspect_answer(COMPLETION.as_bytes(), AnswerList::Choices)?;
        assert!(completion.has_list && completion.error.is_none());
        assert_eq!(completion.usage.map(|usage| usage.total_tokens), Some(21));
        let embeddings = inspect_answer(EMBEDDINGS.as_bytes(), AnswerList::Data)?;
        assert!(embeddings.has_list);
        assert_eq!(embeddings.usage.map(|usage| usage.prompt_tokens), Some(4));
        // A completion is not an embeddings answer, nor the reverse.
        assert!(!inspect_answer(COMPLETION.as_bytes(), AnswerList::Data)?.has_list);
        assert!(!inspect_answer(br#"{"choices":null}"#, AnswerList::Choices)?.has_list);
        let error = inspect_answer(ERROR.as_bytes(), AnswerList::Choices)?;
        assert_eq!(error.error.as_deref(), Some("overloaded"));
        for refused in [
            &b"nope"[..],
            b"{\"choices\":[],\"choices\":[]}",
            b"{\"usage\":{\"prompt_tokens\":1.5}}",
        ] {
            assert!(inspect_answer(refused, AnswerList::Choices).is_err());
        }
        Ok(())
    }
}
