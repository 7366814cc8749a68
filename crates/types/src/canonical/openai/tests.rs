use super::*;
use crate::canonical::{
    Delta, FinishReason, Image, Part, Response, Role, TokenUsage, ToolCall, ToolChoice,
};
use crate::ChatRequest;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn finish(reason: FinishReason) -> Delta<'static> {
    Delta::Finish {
        reason,
        stop_sequence: None,
    }
}

const FULL: &str = r#"{"model":"chat","messages":[
 {"role":"system","content":"Be brief."},
 {"role":"user","content":[{"type":"text","text":"What is in "},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBOR"}},{"type":"image_url","image_url":{"url":"https://x.test/a.jpg","detail":"low"}}]},
 {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"look","arguments":"{\"q\":\"a\"}"}},{"id":"call_2","type":"function","function":{"name":"look","arguments":"{}"}}]},
 {"role":"tool","tool_call_id":"call_1","content":"a cat"},
 {"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"a dog"}]},
 {"role":"user","content":"thanks"}],
 "tools":[{"type":"function","function":{"name":"look","description":"Looks","parameters":{"type":"object","properties":{"q":{"type":"string"}}}}}],
 "tool_choice":{"type":"function","function":{"name":"look"}},"parallel_tool_calls":false,
 "max_completion_tokens":99,"max_tokens":5,"temperature":0.2,"top_p":0.9,"stop":"END","user":"u-1",
 "stream":true,"stream_options":{"include_usage":true},"seed":4}"#;

#[test]
fn an_openai_request_reads_into_every_canonical_field() -> TestResult {
    let request = from_chat_request(&ChatRequest::parse(FULL.as_bytes())?)?;
    assert_eq!(request.model, "chat");
    assert_eq!(request.system_text().as_deref(), Some("Be brief."));
    assert_eq!(request.messages.len(), 6);
    assert_eq!(
        request.messages[1].parts[1],
        Part::Image(Image::Base64 {
            media_type: "image/png".into(),
            data: "iVBOR".into()
        })
    );
    assert_eq!(
        request.messages[1].parts[2],
        Part::Image(Image::Url("https://x.test/a.jpg".into()))
    );
    let call = ToolCall {
        id: "call_1".into(),
        name: "look".into(),
        arguments: r#"{"q":"a"}"#.into(),
    };
    assert_eq!(request.messages[2].parts[0], Part::ToolUse(call));
    assert_eq!(request.messages[3].role, Role::User);
    assert!(
        matches!(&request.messages[4].parts[0], Part::ToolResult(result) if result.tool_call_id == "call_2" && result.content == [Part::Text("a dog".into())])
    );
    assert_eq!(
        request.tools[0].parameters.as_ref().map(|raw| raw.get()),
        Some(r#"{"type":"object","properties":{"q":{"type":"string"}}}"#)
    );
    assert_eq!(request.tool_choice, Some(ToolChoice::Named("look".into())));
    assert_eq!(
        (request.parallel_tool_calls, request.max_tokens),
        (Some(false), Some(99))
    );
    assert_eq!((request.temperature, request.top_p), (Some(0.2), Some(0.9)));
    assert_eq!(
        (request.stop.as_slice(), request.user.as_deref()),
        (&[String::from("END")][..], Some("u-1"))
    );
    assert!(request.stream && request.include_usage);
    Ok(())
}

#[test]
fn requests_the_canonical_form_cannot_carry_are_refused_with_the_parameter() -> TestResult {
    let cases = [
        (
            r#"{"model":"m","messages":[{"role":"function","name":"f","content":"x"}]}"#,
            "messages",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}"#,
            "messages",
        ),
        (
            r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#,
            "messages",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":"sometimes"}"#,
            "tool_choice",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"custom"}]}"#,
            "tools",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
            "temperature",
        ),
    ];
    for (body, param) in cases {
        let error = from_chat_request(&ChatRequest::parse(body.as_bytes())?)
            .err()
            .ok_or(body)?;
        assert_eq!(error.param, param, "{body}: {error}");
    }
    Ok(())
}

#[test]
fn the_canonical_request_writes_back_as_openai_with_tool_messages_split_out() -> TestResult {
    let request = from_chat_request(&ChatRequest::parse(FULL.as_bytes())?)?;
    let body = String::from_utf8(request_body(&request))?;
    let expected = concat!(
        r#"{"model":"chat","messages":[{"role":"system","content":"Be brief."},"#,
        r#"{"role":"user","content":[{"type":"text","text":"What is in "},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBOR"}},{"type":"image_url","image_url":{"url":"https://x.test/a.jpg"}}]},"#,
        r#"{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"look","arguments":"{\"q\":\"a\"}"}},{"id":"call_2","type":"function","function":{"name":"look","arguments":"{}"}}]},"#,
        r#"{"role":"tool","content":"a cat","tool_call_id":"call_1"},{"role":"tool","content":"a dog","tool_call_id":"call_2"},"#,
        r#"{"role":"user","content":"thanks"}],"#,
        r#""tools":[{"type":"function","function":{"name":"look","description":"Looks","parameters":{"type":"object","properties":{"q":{"type":"string"}}}}}],"#,
        r#""tool_choice":{"type":"function","function":{"name":"look"}},"parallel_tool_calls":false,"max_tokens":99,"temperature":0.2,"top_p":0.9,"#,
        r#""stop":["END"],"stream":true,"stream_options":{"include_usage":true},"user":"u-1"}"#
    );
    assert_eq!(body, expected);
    // What was written reads back to the same canonical request.
    assert_eq!(
        from_chat_request(&ChatRequest::parse(body.as_bytes())?)?,
        request
    );
    Ok(())
}

#[test]
fn a_completion_writes_and_reads_back_with_cache_usage() -> TestResult {
    let response = Response {
        id: "msg_1".into(),
        model: "claude".into(),
        text: vec!["Hi ".into(), "there".into()],
        reasoning: None,
        tool_calls: vec![ToolCall {
            id: "toolu_1".into(),
            name: "f".into(),
            arguments: "{}".into(),
        }],
        finish: Some(FinishReason::ToolCalls),
        stop_sequence: None,
        usage: TokenUsage {
            input: 3,
            output: 4,
            cache_read: 10,
            cache_creation: 2,
        },
    };
    let json = String::from_utf8(completion_json(&response, 7))?;
    assert_eq!(
        json,
        concat!(
            r#"{"id":"msg_1","object":"chat.completion","created":7,"model":"claude","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there","refusal":null,"#,
            r#""tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"f","arguments":"{}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],"#,
            r#""usage":{"prompt_tokens":15,"completion_tokens":4,"total_tokens":19,"prompt_tokens_details":{"cached_tokens":10,"cache_creation_tokens":2}},"system_fingerprint":null}"#
        )
    );
    let back = read_completion(json.as_bytes())?;
    assert_eq!(
        back,
        Response {
            text: vec!["Hi there".into()],
            ..response
        }
    );
    Ok(())
}

#[test]
fn an_empty_answer_has_empty_content_not_null() -> TestResult {
    let json = String::from_utf8(completion_json(
        &Response {
            finish: Some(FinishReason::Stop),
            ..Response::default()
        },
        0,
    ))?;
    assert!(
        json.contains(r#""message":{"role":"assistant","content":"","refusal":null}"#),
        "{json}"
    );
    Ok(())
}

#[test]
fn chunks_are_written_per_delta_with_the_same_id() -> TestResult {
    let writer = ChunkWriter::new("msg_1".into(), "m".into(), 9, true);
    let text = |delta: Delta<'_>| String::from_utf8(writer.write(&delta));
    let head = r#"{"id":"msg_1","object":"chat.completion.chunk","created":9,"model":"m","system_fingerprint":null,"choices":[{"index":0,"delta":"#;
    assert_eq!(
        text(Delta::Role)?,
        format!(
            r#"{head}{{"role":"assistant","content":"","refusal":null}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
        )
    );
    assert_eq!(
        text(Delta::Text("é".into()))?,
        format!(
            r#"{head}{{"content":"é"}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
        )
    );
    let start = Delta::ToolCallStart {
        index: 1,
        id: "toolu_9".into(),
        name: "f".into(),
    };
    assert_eq!(
        text(start)?,
        format!(
            r#"{head}{{"tool_calls":[{{"index":1,"id":"toolu_9","type":"function","function":{{"name":"f","arguments":""}}}}]}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
        )
    );
    let finish = text(finish(FinishReason::Length))?;
    assert!(
        finish.ends_with(r#""delta":{},"logprobs":null,"finish_reason":"length"}],"usage":null}"#),
        "{finish}"
    );
    let usage = text(Delta::Usage(TokenUsage {
        input: 1,
        output: 2,
        ..TokenUsage::default()
    }))?;
    assert!(usage.ends_with(r#""choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"prompt_tokens_details":{"cached_tokens":0,"cache_creation_tokens":0}}}"#), "{usage}");
    let quiet = ChunkWriter::new("i".into(), "m".into(), 0, false);
    assert!(!String::from_utf8(quiet.write(&Delta::Role))?.contains("usage"));
    Ok(())
}

#[test]
fn chunks_read_back_into_the_deltas_they_were_written_from() -> TestResult {
    let writer = ChunkWriter::new("c".into(), "m".into(), 0, true);
    let deltas = [
        Delta::Role,
        Delta::Reasoning("hm".into()),
        Delta::Text("naïve ".into()),
        Delta::ToolCallStart {
            index: 0,
            id: "call_1".into(),
            name: "f".into(),
        },
        Delta::ToolCallArguments {
            index: 0,
            fragment: r#"{"a":"#.into(),
        },
        finish(FinishReason::ToolCalls),
        Delta::Usage(TokenUsage {
            input: 5,
            output: 6,
            cache_read: 7,
            cache_creation: 0,
        }),
    ];
    for delta in deltas {
        let json = String::from_utf8(writer.write(&delta))?;
        let mut seen = Vec::new();
        read_chunk(&json, |meta, delta| {
            seen.push((meta.id.to_string(), meta.model.to_string(), delta))
        })?;
        assert_eq!(seen, [(String::from("c"), String::from("m"), delta)]);
    }
    Ok(())
}

#[test]
fn a_chunk_with_several_things_yields_them_in_order_and_skips_empty_text() -> TestResult {
    let data = r#"{"id":"x","choices":[{"delta":{"role":"assistant","content":"","tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"f","arguments":""}},{"index":1,"id":"call_b","function":{"name":"g","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":null}"#;
    let mut seen = Vec::new();
    read_chunk(data, |_, delta| seen.push(delta))?;
    assert_eq!(
        seen,
        [
            Delta::Role,
            Delta::ToolCallStart {
                index: 0,
                id: "call_a".into(),
                name: "f".into()
            },
            Delta::ToolCallStart {
                index: 1,
                id: "call_b".into(),
                name: "g".into()
            },
            Delta::ToolCallArguments {
                index: 1,
                fragment: "{}".into()
            },
            finish(FinishReason::ToolCalls),
        ]
    );
    Ok(())
}

#[test]
fn a_matched_stop_sequence_survives_chunks_and_completions() -> TestResult {
    let writer = ChunkWriter::new("c".into(), "m".into(), 0, false);
    let delta = Delta::Finish {
        reason: FinishReason::StopSequence,
        stop_sequence: Some("END".into()),
    };
    let json = String::from_utf8(writer.write(&delta))?;
    assert!(
        json.ends_with(r#""finish_reason":"stop","stop_reason":"END"}]}"#),
        "{json}"
    );
    let mut seen = Vec::new();
    read_chunk(&json, |_, delta| seen.push(delta))?;
    assert_eq!(seen, [delta]);
    // vLLM reports a stop token id there; that is a natural stop.
    let vllm = r#"{"id":"x","choices":[{"delta":{},"finish_reason":"stop","stop_reason":128009}]}"#;
    let mut seen = Vec::new();
    read_chunk(vllm, |_, delta| seen.push(delta))?;
    assert_eq!(seen, [finish(FinishReason::Stop)]);
    let response = Response {
        finish: Some(FinishReason::StopSequence),
        stop_sequence: Some("END".into()),
        text: vec!["1, 2".into()],
        ..Response::default()
    };
    let json = completion_json(&response, 0);
    assert_eq!(read_completion(&json)?, response);
    Ok(())
}

/// The chat request built from the canonical form is the one its body
/// parses into: the same body upstream, the same length for the token
/// reservation, the same routing fields.
#[test]
fn a_chat_request_built_directly_is_the_one_its_body_parses_into() -> TestResult {
    let mut request = from_chat_request(&ChatRequest::parse(FULL.as_bytes())?)?;
    request.response_format = Some(String::from(r#" {"type":"json_object"} "#));
    request.reasoning_effort = Some(String::from("low"));
    for (stream, include_usage) in [(true, true), (true, false), (false, false)] {
        request.stream = stream;
        request.include_usage = include_usage;
        let body = request_body(&request);
        let parsed = ChatRequest::parse(&body)?;
        let built = chat_request(&request)?;
        assert_eq!(built.openai_body("up"), parsed.openai_body("up"));
        assert_eq!(built.body_len(), body.len());
        assert_eq!(built.model(), parsed.model());
        assert_eq!(built.stream(), parsed.stream());
        assert_eq!(built.include_usage(), parsed.include_usage());
        assert_eq!(built.wants_usage_chunk(), parsed.wants_usage_chunk());
    }
    Ok(())
}

/// What parsing the written body would refuse, building refuses the same way.
#[test]
fn a_chat_request_built_directly_refuses_what_its_body_would() -> TestResult {
    let mut request = from_chat_request(&ChatRequest::parse(FULL.as_bytes())?)?;
    request.model = String::new();
    assert!(matches!(
        chat_request(&request),
        Err(crate::RequestError::MissingModel)
    ));
    request.model = String::from("m");
    // Tool parameters nested to the limit of the body, then one level more.
    for (depth, refused) in [(124, false), (125, true)] {
        let parameters = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        request.tools[0].parameters = Some(serde_json::value::RawValue::from_string(parameters)?);
        let parsed = ChatRequest::parse(&request_body(&request));
        let built = chat_request(&request);
        assert_eq!(parsed.is_err(), refused, "depth {depth}");
        assert_eq!(built.is_err(), refused, "depth {depth}");
        if let (Err(parsed), Err(built)) = (parsed, built) {
            assert_eq!(built.to_string(), parsed.to_string());
        }
    }
    request.messages.clear();
    assert!(matches!(
        chat_request(&request),
        Err(crate::RequestError::MissingMessages)
    ));
    Ok(())
}

/// A completion read borrowing its text copies only the escaped strings,
/// and reads as the owned reader does.
#[test]
fn a_completion_reads_borrowed_where_it_has_no_escapes() -> TestResult {
    let json = concat!(
        r#"{"id":"c1","model":"gpt","choices":[{"message":{"content":"plain text","refusal":"a \"quoted\" no","#,
        r#""tool_calls":[{"id":"t1","function":{"name":"f","arguments":"{\"a\":1}"}}]},"finish_reason":"stop","stop_reason":"END"}],"#,
        r#""usage":{"prompt_tokens":5,"completion_tokens":2}}"#
    );
    let borrowed = read_completion_borrowed(json.as_bytes())?;
    assert!(matches!(
        borrowed.text[0],
        std::borrow::Cow::Borrowed("plain text")
    ));
    assert!(matches!(borrowed.text[1], std::borrow::Cow::Owned(_)));
    assert!(matches!(
        borrowed.stop_sequence,
        Some(std::borrow::Cow::Borrowed("END"))
    ));
    let owned = read_completion(json.as_bytes())?;
    assert_eq!(borrowed.clone().into_owned(), owned);
    assert_eq!(owned.text, ["plain text", "a \"quoted\" no"]);
    assert_eq!(owned.tool_calls[0].arguments, r#"{"a":1}"#);
    assert_eq!(owned.finish, Some(FinishReason::StopSequence));
    // Not UTF-8: refused, as before.
    assert!(read_completion_borrowed(b"{\"id\":\"\xff\"}").is_err());
    Ok(())
}

/// A completion as upstreams send it: unknown fields of every kind, text
/// with and without escapes, cache counts.
const UPSTREAM_COMPLETION: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1796548131,"model":"gpt-mock","choices":[{"index":0,"message":{"role":"assistant","content":"Hé ✓ \"quoted\"\nline \ud83e\udd80 end","refusal":null,"annotations":[],"reasoning":"think"},"logprobs":null,"finish_reason":"length","stop_reason":null}],"usage":{"prompt_tokens":12,"completion_tokens":20,"total_tokens":32,"prompt_tokens_details":{"cached_tokens":4,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"ratio":0.25}},"service_tier":"default","system_fingerprint":"fp_1","x":[true,false,{"y":[-1.5,"z"]}]}"#;

/// The one-pass reader agrees with serde: on thousands of near-valid
/// completions, whatever it reads serde reads the same way (and what it
/// leaves, serde decides).
#[test]
fn the_one_pass_completion_reader_agrees_with_serde() -> TestResult {
    use super::response::{response_of, CompletionIn};
    let mut read = 0;
    for seed in 0..20_000 {
        let body = crate::hostile::mutation(UPSTREAM_COMPLETION.as_bytes(), seed);
        let Ok(text) = std::str::from_utf8(&body) else {
            continue;
        };
        let Some(fast) = super::scan::completion(text) else {
            continue;
        };
        read += 1;
        let slow: CompletionIn<'_> = serde_json::from_str(text).map_err(|error| {
            format!("seed {seed}: serde refused what the scan read: {error}: {text}")
        })?;
        assert_eq!(response_of(fast), response_of(slow), "seed {seed}: {text}");
    }
    assert!(read > 1_000, "only {read} mutations were read in one pass");
    let whole = super::scan::completion(UPSTREAM_COMPLETION).ok_or("not read in one pass")?;
    let whole = response_of(whole);
    assert_eq!(whole.text, ["Hé ✓ \"quoted\"\nline 🦀 end"]);
    assert_eq!(whole.reasoning.as_deref(), Some("think"));
    assert_eq!(whole.finish, Some(FinishReason::Length));
    assert_eq!(
        whole.usage,
        TokenUsage {
            input: 8,
            output: 20,
            cache_read: 4,
            cache_creation: 0
        }
    );
    Ok(())
}

/// The completion read once for the adapter and the translation: it
/// answers only where the adapter's own check passes the completion, with
/// the usage that check reads, and it reads the answer as the
/// translation's own read does.
#[test]
fn the_checked_read_agrees_with_the_adapters_check_and_the_translation() -> TestResult {
    let with_error =
        UPSTREAM_COMPLETION.replacen(r#"{"id""#, r#"{"error":{"message":"x"},"id""#, 1);
    let seeds = [UPSTREAM_COMPLETION, with_error.as_str()];
    let (mut checked, mut passed) = (0, 0);
    for seed in 0..30_000u64 {
        let body = crate::hostile::mutation(seeds[(seed % 2) as usize].as_bytes(), seed);
        let check = crate::inspect_answer(&body, crate::AnswerList::Choices)
            .ok()
            .filter(|info| info.has_list && info.error.is_none());
        passed += usize::from(check.is_some());
        let Some((answer, usage)) = read_checked_completion(&body) else {
            continue;
        };
        checked += 1;
        let text = String::from_utf8_lossy(&body);
        let check = check.ok_or_else(|| format!("seed {seed}: the check refuses {text}"))?;
        assert_eq!(usage, check.usage, "seed {seed}: {text}");
        assert_eq!(
            Some(answer),
            read_completion_borrowed(&body).ok(),
            "seed {seed}: {text}"
        );
    }
    assert!(
        checked > 1_000 && checked > passed / 2,
        "{checked} read in one pass of {passed} the check passed"
    );
    // An error beside the choices is the adapter's to refuse, and so are
    // counts its check refuses where the translation's read would not.
    assert!(read_checked_completion(with_error.as_bytes()).is_none());
    for (count, refused) in [
        (r#""cached_tokens":4"#, r#""cached_tokens":null"#),
        (r#""total_tokens":32"#, r#""total_tokens":32.0"#),
    ] {
        let body = UPSTREAM_COMPLETION.replacen(count, refused, 1);
        let check = crate::inspect_answer(body.as_bytes(), crate::AnswerList::Choices);
        assert!(check.is_err(), "{refused}: {check:?}");
        assert!(
            read_completion_borrowed(body.as_bytes()).is_ok(),
            "{refused}"
        );
        assert!(
            read_checked_completion(body.as_bytes()).is_none(),
            "{refused}"
        );
    }
    let (whole, usage) =
        read_checked_completion(UPSTREAM_COMPLETION.as_bytes()).ok_or("not read in one pass")?;
    assert_eq!(usage.map(|usage| usage.total_tokens), Some(32));
    assert_eq!(whole.finish, Some(FinishReason::Length));
    Ok(())
}

/// A chunk as upstreams send it.
const UPSTREAM_CHUNK: &str = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1796548131,"model":"gpt-mock","service_tier":"default","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"naïve \"café\"\n","refusal":null,"reasoning":"hm"},"logprobs":null,"finish_reason":"stop","stop_reason":"END"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":1}},"x":[1.5,{"y":null}]}"#;

/// The deltas of one chunk, through `read`.
fn chunk_deltas<'a>(chunk: super::chunk::ChunkIn<'a>) -> Vec<(ChunkMeta<'a>, Delta<'a>)> {
    let mut seen = Vec::new();
    super::chunk::deltas_of(chunk, |meta, delta| seen.push((meta.clone(), delta)));
    seen
}

/// The one-pass reader agrees with serde on chunks too.
#[test]
fn the_one_pass_chunk_reader_agrees_with_serde() -> TestResult {
    let mut read = 0;
    for seed in 0..20_000 {
        let body = crate::hostile::mutation(UPSTREAM_CHUNK.as_bytes(), seed);
        let Ok(text) = std::str::from_utf8(&body) else {
            continue;
        };
        let Some(fast) = super::scan::chunk(text) else {
            continue;
        };
        read += 1;
        let slow: super::chunk::ChunkIn<'_> = serde_json::from_str(text).map_err(|error| {
            format!("seed {seed}: serde refused what the scan read: {error}: {text}")
        })?;
        assert_eq!(
            chunk_deltas(fast),
            chunk_deltas(slow),
            "seed {seed}: {text}"
        );
    }
    assert!(read > 1_000, "only {read} mutations were read in one pass");
    let whole = chunk_deltas(super::scan::chunk(UPSTREAM_CHUNK).ok_or("not read in one pass")?);
    assert_eq!(whole.len(), 5, "{whole:?}");
    assert_eq!(whole[2].1, Delta::Text("naïve \"café\"\n".into()));
    Ok(())
}
