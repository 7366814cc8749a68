//! Every kind of mistake produces the exact message that names the key path,
//! the problem and the fix; a few are not mistakes but warnings.

use std::collections::HashMap;

use keel_config::load_str;

/// A valid provider and model to append to snippets that test other sections.
const BASE: &str = "
providers:
  openai: {kind: openai, api_key: sk-test}
models:
  chat: {targets: [{provider: openai, model: gpt-4o}]}
";

/// What loading a row must produce.
enum Expect {
    /// Load fails; `Display` of the error is exactly this.
    Error(&'static str),
    /// Load succeeds with exactly these warnings.
    Warnings(&'static [&'static str]),
}

struct Row {
    name: &'static str,
    yaml: String,
    vars: &'static [(&'static str, &'static str)],
    expect: Expect,
}

fn row(name: &'static str, yaml: &str, expect: Expect) -> Row {
    Row {
        name,
        yaml: yaml.to_owned(),
        vars: &[],
        expect,
    }
}

/// A row loaded with variables set.
fn with_vars(
    name: &'static str,
    yaml: &str,
    vars: &'static [(&'static str, &'static str)],
    expect: Expect,
) -> Row {
    Row {
        vars,
        ..row(name, yaml, expect)
    }
}

/// A row whose snippet is followed by [`BASE`].
fn with_base(name: &'static str, yaml: &str, expect: Expect) -> Row {
    row(name, &format!("{yaml}\n{BASE}"), expect)
}

fn rows() -> Vec<Row> {
    use Expect::{Error, Warnings};
    vec![
        with_base("unknown top-level key", "servers: {listen: 127.0.0.1:80}", Error(
            "servers: unknown key \"servers\" (expected one of: server, database, tenants, providers, models, cache, jobs, webhooks, idempotency, slos, telemetry, redis)",
        )),
        row("unknown provider key", "providers:\n  openai: {kind: openai, timeout: 5s}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}", Error(
            "providers.openai.timeout: unknown key \"timeout\" (expected one of: kind, base_url, api_key, api_version, headers, max_concurrent, rpm, tpm, max_tokens, timeouts, retry, breaker, responses, drop_unsupported, health_check)",
        )),
        row("unknown key three levels down", "providers:\n  openai:\n    kind: openai\n    timeouts: {conect: 2s}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}", Error(
            "providers.openai.timeouts.conect: unknown key \"conect\" (expected one of: connect, headers, first_token, inactivity, total)",
        )),
        row("unknown key in a list item", "providers:\n  openai: {kind: openai}\nmodels:\n  chat: {targets: [{provider: openai, model: m}, {provider: openai, model: n, priority: 2}]}", Error(
            "models.chat.targets[1].priority: unknown key \"priority\" (expected one of: provider, model, price, max_tokens, weight, context_window)",
        )),
        row("wrong shape", "providers:\n  openai: {kind: openai, timeouts: 5s}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}", Error(
            "providers.openai.timeouts: invalid type: string \"5s\", expected a mapping of timeout names to durations",
        )),
        row("unknown provider in a target", "providers:\n  openai: {kind: openai}\nmodels:\n  chat-large:\n    targets:\n      - {provider: openai, model: gpt-4o}\n      - {provider: opnai, model: gpt-4o-mini}", Error(
            "models.chat-large.targets[1].provider: unknown provider \"opnai\"",
        )),
        with_base("bad duration", "server: {request_timeout: 5 minutes}", Error(
            "server.request_timeout: invalid duration \"5 minutes\": use a number and a unit such as 250ms, 10s, 5m",
        )),
        with_base("cors origins are origins, not URLs", "server: {cors: {origins: [\"https://app.example\", \"https://app.example/\", \"ftp://files.example\", \"app.example\", \"http://localhost:99999\"]}}", Error(concat!(
            "server.cors.origins[1]: invalid origin \"https://app.example/\": use scheme://host[:port] with http or https and no path, such as https://app.example, or \"*\"\n",
            "server.cors.origins[2]: invalid origin \"ftp://files.example\": use scheme://host[:port] with http or https and no path, such as https://app.example, or \"*\"\n",
            "server.cors.origins[3]: invalid origin \"app.example\": use scheme://host[:port] with http or https and no path, such as https://app.example, or \"*\"\n",
            "server.cors.origins[4]: invalid origin \"http://localhost:99999\": use scheme://host[:port] with http or https and no path, such as https://app.example, or \"*\"",
        ))),
        row("drop_unsupported only where requests are translated", "providers:\n  openai: {kind: openai, drop_unsupported: true}\n  claude: {kind: anthropic, api_key: k, drop_unsupported: maybe}\nmodels:\n  chat: {targets: [{provider: openai, model: m}, {provider: claude, model: c}]}", Error(concat!(
            "providers.openai.drop_unsupported: not used by kind openai: it forwards every field as sent; remove it\n",
            "providers.claude.drop_unsupported: invalid boolean \"maybe\": use true or false",
        ))),
        with_base("cors needs its origins", "server: {cors: {}}", Error(
            "server.cors.origins: required: the origins browsers may call from, such as [\"https://app.example\"], or [\"*\"]",
        )),
        with_base("cors star stands alone", "server: {cors: {origins: [\"*\", \"https://app.example\"]}}", Error(
            "server.cors.origins: \"*\" allows every origin: list nothing beside it",
        )),
        row("bare number duration", "providers:\n  openai: {kind: openai, timeouts: {connect: 10}}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}", Error(
            "providers.openai.timeouts.connect: invalid duration \"10\": add a unit, e.g. 10s or 10ms",
        )),
        with_base("zero duration", "idempotency: {ttl: 0s}", Error(
            "idempotency.ttl: must be greater than zero, e.g. 250ms or 10s",
        )),
        with_base("bad size", "cache: {max_bytes: lots}", Error(
            "cache.max_bytes: invalid size \"lots\": use a number and a unit such as 512KiB, 4MiB, 1GiB or 10MB",
        )),
        with_base("entry cap over the cache size", "cache: {max_bytes: 1MiB, max_entry_bytes: 2MiB}", Error(
            "cache.max_entry_bytes: must not exceed cache.max_bytes (1048576 bytes)",
        )),
        with_base("shared is a boolean", "cache: {shared: sometimes}", Error(
            "cache.shared: invalid boolean \"sometimes\": use true or false",
        )),
        with_base("unset variable outside api_key", "server: {admin_key: \"${KEEL_ADMIN_KEY}\"}", Error(
            "server.admin_key: environment variable KEEL_ADMIN_KEY is not set",
        )),
        with_base("unset variable is reported once, not again as a bad value", "database: {url: \"${DATABASE_URL}\"}", Error(
            "database.url: environment variable DATABASE_URL is not set",
        )),
        row("unset api_key variable disables the provider", "providers:\n  openai: {kind: openai, api_key: \"${OPENAI_API_KEY}\"}\n  local: {kind: openai, base_url: \"http://localhost:11434/v1\"}\nmodels:\n  chat: {targets: [{provider: local, model: llama3}]}\ntenants: [{name: t, keys: [k]}]", Warnings(&[
            "providers.openai: disabled: environment variable OPENAI_API_KEY is not set",
        ])),
        row("empty api_key disables the provider", "providers:\n  openai: {kind: openai, api_key: \"${OPENAI_API_KEY:-}\"}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}\ntenants: [{name: t, keys: [k]}]", Warnings(&[
            "providers.openai: disabled: api_key is empty",
            "models.chat: every target's provider is disabled; requests fail unless a fallback model serves them",
        ])),
        with_base("webhooks to private addresses are a warning", "webhooks: {allow_private: true}", Warnings(&[
            "tenants: none configured; every request will be rejected with 401",
            "webhooks.allow_private: on: webhooks may reach loopback, private and cloud metadata addresses (an SSRF risk); keep it off in production",
        ])),
        row("a weight on a model that is not weighted is only a warning", "providers:\n  openai: {kind: openai, api_key: k}\nmodels:\n  chat:\n    strategy: latency\n    targets: [{provider: openai, model: a, weight: 3}, {provider: openai, model: b}]\ntenants: [{name: t, keys: [k]}]", Warnings(&[
            "models.chat.targets[0].weight: ignored, the model's strategy is latency (weights apply to strategy: weighted)",
        ])),
        with_base("no tenants is only a warning", "", Warnings(&[
            "tenants: none configured; every request will be rejected with 401",
        ])),
        row("anthropic without api_key", "providers:\n  claude: {kind: anthropic}\nmodels:\n  chat: {targets: [{provider: claude, model: m}]}", Error(
            "providers.claude.api_key: required for kind anthropic, e.g. api_key: ${ANTHROPIC_API_KEY}",
        )),
        row("fallback to an unknown model", "providers:\n  openai: {kind: openai}\nmodels:\n  chat: {targets: [{provider: openai, model: m}], fallback: [chat-smal]}", Error(
            "models.chat.fallback[0]: unknown model \"chat-smal\"",
        )),
        row("fallback to itself", "providers:\n  openai: {kind: openai}\nmodels:\n  chat: {targets: [{provider: openai, model: m}], fallback: [chat]}", Error(
            "models.chat.fallback[0]: a model cannot fall back to itself",
        )),
        row("fallback cycle", "providers:\n  openai: {kind: openai}\nmodels:\n  a: {targets: [{provider: openai, model: m}], fallback: [b]}\n  b: {targets: [{provider: openai, model: m}], fallback: [c]}\n  c: {targets: [{provider: openai, model: m}], fallback: [a]}", Error(
            "models.a.fallback: fallback cycle: a -> b -> c -> a",
        )),
        row("negative cached input price", "providers:\n  openai: {kind: openai}\nmodels:\n  chat: {targets: [{provider: openai, model: a, price: {input: 1, output: 2, cached_input: -1}}]}", Error(
            "models.chat.targets[0].price.cached_input: invalid number \"-1\": expected a number of at least 0, such as 2.5",
        )),
        with_base("an OTLP endpoint that is not a URL", "telemetry: {otlp_endpoint: collector:4318}", Error(
            "telemetry.otlp_endpoint: must be an http:// or https:// URL (OTLP over HTTP), got \"collector:4318\"",
        )),
        row("an embeddings model on an anthropic target", "providers:\n  claude: {kind: anthropic, api_key: k}\nmodels:\n  embed:\n    endpoint: embeddings\n    targets: [{provider: claude, model: c}]", Error(
            "models.embed.targets[0].provider: provider \"claude\" is anthropic and cannot serve embeddings (openai, azure or mock can)",
        )),
        row("a hedged embeddings model", "providers:\n  openai: {kind: openai}\nmodels:\n  embed:\n    endpoint: embeddings\n    targets: [{provider: openai, model: e}]\n    hedge: {after: 1s}", Error(
            "models.embed.hedge: embeddings are not hedged (an embeddings answer has no first token); remove it",
        )),
        row("a chat model falling back to an embeddings model", "providers:\n  openai: {kind: openai}\nmodels:\n  chat:\n    targets: [{provider: openai, model: c}]\n    fallback: [embed]\n  embed:\n    endpoint: embeddings\n    targets: [{provider: openai, model: e}]", Error(
            "models.chat.fallback[0]: \"embed\" serves embeddings and this model serves chat: a fallback must serve the same endpoint",
        )),
        row("an unknown endpoint", "providers:\n  openai: {kind: openai}\nmodels:\n  chat:\n    endpoint: completions\n    targets: [{provider: openai, model: c}]", Error(
            "models.chat.endpoint: unknown endpoint \"completions\" (expected one of: chat, embeddings)",
        )),
        row("native responses on an anthropic provider", "providers:\n  claude: {kind: anthropic, api_key: k, responses: native}\nmodels:\n  chat:\n    targets: [{provider: claude, model: c}]", Error(
            "providers.claude.responses: native is for kind openai (this provider is anthropic); use translate",
        )),
        row("an unknown responses mode", "providers:\n  openai: {kind: openai, responses: passthrough}\nmodels:\n  chat:\n    targets: [{provider: openai, model: c}]", Error(
            "providers.openai.responses: unknown mode \"passthrough\" (expected one of: translate, native)",
        )),
        row("cost strategy without a price", "providers:\n  openai: {kind: openai}\nmodels:\n  chat:\n    strategy: cost\n    targets: [{provider: openai, model: a, price: {input: 1, output: 2}}, {provider: openai, model: b}]", Error(
            "models.chat.targets[1].price: required when strategy is cost, e.g. price: {input: 2.5, output: 10}",
        )),
        row("an unknown strategy", "providers:\n  openai: {kind: openai}\nmodels:\n  chat:\n    strategy: random\n    targets: [{provider: openai, model: a}]", Error(
            "models.chat.strategy: unknown strategy \"random\" (expected one of: ordered, cost, weighted, least_busy, latency)",
        )),
        row("a zero weight", "providers:\n  openai: {kind: openai}\nmodels:\n  chat:\n    strategy: weighted\n    targets: [{provider: openai, model: a, weight: 0}]", Error(
            "models.chat.targets[0].weight: must be at least 1, got 0",
        )),
        row("a negative weight", "providers:\n  openai: {kind: openai}\nmodels:\n  chat:\n    strategy: weighted\n    targets: [{provider: openai, model: a, weight: -2}]", Error(
            "models.chat.targets[0].weight: must be at least 1, got -2",
        )),
        row("a fractional weight", "providers:\n  openai: {kind: openai}\nmodels:\n  chat:\n    strategy: weighted\n    targets: [{provider: openai, model: a, weight: 0.5}]", Error(
            "models.chat.targets[0].weight: invalid number \"0.5\": expected a whole number such as 10",
        )),
        row("a weight too large", "providers:\n  openai: {kind: openai}\nmodels:\n  chat:\n    strategy: weighted\n    targets: [{provider: openai, model: a, weight: 1000001}]", Error(
            "models.chat.targets[0].weight: must be at most 1000000, got 1000001",
        )),
        row("a zero context window", "providers:\n  openai: {kind: openai}\nmodels:\n  chat:\n    targets: [{provider: openai, model: a, context_window: 0}]", Error(
            "models.chat.targets[0].context_window: must be at least 1, got 0",
        )),
        row("a context window in words", "providers:\n  openai: {kind: openai}\nmodels:\n  chat:\n    targets: [{provider: openai, model: a, context_window: 128k}]", Error(
            "models.chat.targets[0].context_window: invalid number \"128k\": expected a whole number such as 10",
        )),
        row("an empty last resort", "providers:\n  openai: {kind: openai}\nmodels:\n  chat:\n    targets: [{provider: openai, model: a}]\n    on_failure: {respond: {content: \"\"}}", Error(
            "models.chat.on_failure.respond.content: must not be empty: the answer's text, e.g. respond: {content: \"The assistant is unavailable; try again later.\"}",
        )),
        row("a last resort without respond", "providers:\n  openai: {kind: openai}\nmodels:\n  chat:\n    targets: [{provider: openai, model: a}]\n    on_failure: {}", Error(
            "models.chat.on_failure.respond: required: the answer's text, e.g. respond: {content: \"The assistant is unavailable; try again later.\"}",
        )),
        row("a last resort on an embeddings model", "providers:\n  openai: {kind: openai}\nmodels:\n  vectors:\n    endpoint: embeddings\n    targets: [{provider: openai, model: e}]\n    on_failure: {respond: {content: sorry}}", Error(
            "models.vectors.on_failure: embeddings have no text answer to fall back on; remove it",
        )),
        row("model without targets", "providers:\n  openai: {kind: openai}\nmodels:\n  chat: {targets: []}", Error(
            "models.chat.targets: at least one target is required, e.g. [{provider: openai, model: gpt-4o}]",
        )),
        row("hedge without after", "providers:\n  openai: {kind: openai}\nmodels:\n  chat: {targets: [{provider: openai, model: m}], hedge: {budget: 10%}}", Error(
            "models.chat.hedge.after: required: a duration such as 2s, or p95",
        )),
        row("failure_rate out of range", "providers:\n  openai: {kind: openai, breaker: {failure_rate: 1.5}}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}", Error(
            "providers.openai.breaker.failure_rate: must be more than 0 and at most 1 (100%), got 1.5",
        )),
        row("health check interval under a second", "providers:\n  openai: {kind: openai, health_check: {interval: 500ms}}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}", Error(
            "providers.openai.health_check.interval: must be at least 1s, got 500ms",
        )),
        row("max_concurrent neither a number nor adaptive", "providers:\n  openai: {kind: openai, max_concurrent: lots}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}", Error(
            "providers.openai.max_concurrent: invalid value \"lots\": expected a whole number such as 50, adaptive, or {min, max}",
        )),
        row("max_concurrent zero", "providers:\n  openai: {kind: openai, max_concurrent: 0}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}", Error(
            "providers.openai.max_concurrent: must be at least 1, got 0",
        )),
        row("no HTTP workers", "server: {workers: 0}\nproviders:\n  openai: {kind: openai}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}", Error(
            "server.workers: must be at least 1, got 0",
        )),
        row("more HTTP workers than any machine has cores", "server: {workers: 1000}\nproviders:\n  openai: {kind: openai}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}", Error(
            "server.workers: must be at most 256, got 1000",
        )),
        row("adaptive bounds the wrong way round", "providers:\n  openai: {kind: openai, max_concurrent: {min: 50, max: 10}}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}", Error(
            "providers.openai.max_concurrent.min: must be at most max (10), got 50",
        )),
        row("adaptive bound of zero", "providers:\n  openai: {kind: openai, max_concurrent: {min: 0}}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}", Error(
            "providers.openai.max_concurrent.min: must be at least 1, got 0",
        )),
        row("adaptive bounds with a typo", "providers:\n  openai: {kind: openai, max_concurrent: {min: 2, maximum: 10}}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}", Error(
            "providers.openai.max_concurrent.maximum: unknown key \"maximum\" (expected one of: min, max)",
        )),
        row("affinity key that is neither a header nor user", "providers:\n  openai: {kind: openai, api_key: sk}\nmodels:\n  pinned: {targets: [{provider: openai, model: m}], affinity: {key: \"cookie:sid\"}}", Error(
            "models.pinned.affinity.key: invalid key \"cookie:sid\": expected header:<name> (e.g. header:x-session-id) or user",
        )),
        row("affinity header without a name", "providers:\n  openai: {kind: openai, api_key: sk}\nmodels:\n  pinned: {targets: [{provider: openai, model: m}], affinity: {key: \"header:\"}}", Error(
            "models.pinned.affinity.key: invalid key \"header:\": expected header:<name> (e.g. header:x-session-id) or user",
        )),
        row("affinity without a key", "providers:\n  openai: {kind: openai, api_key: sk}\nmodels:\n  pinned: {targets: [{provider: openai, model: m}], affinity: {ttl: 5m}}", Error(
            "models.pinned.affinity.key: required: header:<name> (e.g. header:x-session-id) or user",
        )),
        row("affinity with no room", "providers:\n  openai: {kind: openai, api_key: sk}\nmodels:\n  pinned: {targets: [{provider: openai, model: m}], affinity: {key: user, max_sessions: 0}}", Error(
            "models.pinned.affinity.max_sessions: must be at least 1, got 0",
        )),
        with_base("redis that is not a redis URL", "redis: {url: \"http://cache:6379\"}", Error(
            "redis.url: must be a redis:// or rediss:// URL, got \"http://cache:6379\"",
        )),
        with_base("redis timeout too long to wait on", "redis: {url: \"redis://cache:6379\", timeout: 5s}", Error(
            "redis.timeout: must be at most 1s (a request waits this long when Redis does not answer), got 5s",
        )),
        with_base("redis with no instances", "redis: {url: \"redis://cache:6379\", expected_instances: 0}", Error(
            "redis.expected_instances: must be at least 1, got 0",
        )),
        row("health check without interval", "providers:\n  openai: {kind: openai, health_check: {}}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}", Error(
            "providers.openai.health_check.interval: required: a duration such as 30s",
        )),
        row("retry attempts out of range", "providers:\n  openai: {kind: openai, retry: {attempts: 11}}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}", Error(
            "providers.openai.retry.attempts: must be at most 10, got 11",
        )),
        row("max_delay below base_delay", "providers:\n  openai: {kind: openai, retry: {base_delay: 2s, max_delay: 500ms}}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}", Error(
            "providers.openai.retry.max_delay: must be at least base_delay (2s), got 500ms",
        )),
        with_base("bad key hash", "tenants: [{name: acme, key_hashes: [\"sha256:abc\"]}]", Error(
            "tenants[0].key_hashes[0]: invalid key hash: expected \"sha256:\" followed by 64 hex digits (e.g. the output of `printf %s \"$KEY\" | sha256sum`)",
        )),
        with_base("duplicate tenant", "tenants:\n  - {name: acme, keys: [k1]}\n  - {name: acme, keys: [k2]}", Error(
            "tenants[1].name: duplicate tenant \"acme\" (also tenants[0])",
        )),
        with_base("key shared by two tenants", "tenants:\n  - {name: acme, keys: [k1]}\n  - {name: globex, keys: [k1]}", Error(
            "tenants[1].keys[0]: key is already used by tenant \"acme\"",
        )),
        with_base("empty tenant key", "tenants: [{name: acme, keys: [\"${ACME_KEY:-}\"]}]", Error(
            "tenants[0].keys[0]: key is empty: set the variable or remove the entry",
        )),
        with_base("tenant without keys", "tenants: [{name: acme}]", Error(
            "tenants[0]: at least one key is required: add keys: [...] or key_hashes: [\"sha256:<hex>\"]",
        )),
        row("bad base_url scheme", "providers:\n  openai: {kind: openai, base_url: \"ftp://example.com\"}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}", Error(
            "providers.openai.base_url: invalid base_url \"ftp://example.com\": use an http:// or https:// URL, e.g. https://api.openai.com/v1",
        )),
        row("azure without api_version", "providers:\n  az: {kind: azure, base_url: \"https://x.openai.azure.com\", api_key: k}\nmodels:\n  chat: {targets: [{provider: az, model: m}]}", Error(
            "providers.az.api_version: required: the Azure OpenAI api-version, e.g. 2024-10-21",
        )),
        row("azure without base_url", "providers:\n  az: {kind: azure, api_key: k, api_version: 2024-10-21}\nmodels:\n  chat: {targets: [{provider: az, model: m}]}", Error(
            "providers.az.base_url: required for kind azure: the resource endpoint, e.g. https://my-resource.openai.azure.com",
        )),
        row("mock with base_url", "providers:\n  demo: {kind: mock, base_url: \"http://localhost:9\"}\nmodels:\n  chat: {targets: [{provider: demo, model: m}]}", Error(
            "providers.demo.base_url: not used by kind mock (it runs in-process); remove it",
        )),
        row("unknown provider kind", "providers:\n  x: {kind: gemini}\nmodels:\n  chat: {targets: [{provider: x, model: m}]}", Error(
            "providers.x.kind: unknown kind \"gemini\" (expected one of: openai, anthropic, azure, mock)",
        )),
        with_base("bad database url", "database: {url: \"mysql://root:pw@localhost/keel\"}", Error(
            "database.url: unsupported scheme \"mysql\": use sqlite://keel.db or postgres://user:password@host/database",
        )),
        with_base("webhook secret without whsec_", "webhooks: {secret: not-a-secret}", Error(
            "webhooks.secret: must be \"whsec_\" followed by base64 (the Standard Webhooks format), e.g. whsec_ plus the output of `openssl rand -base64 32`; several secrets separated by spaces during a rotation",
        )),
        with_base("a second webhook secret without whsec_", "webhooks: {secret: \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"}", Error(
            "webhooks.secret: must be \"whsec_\" followed by base64 (the Standard Webhooks format), e.g. whsec_ plus the output of `openssl rand -base64 32`; several secrets separated by spaces during a rotation",
        )),
        with_base("webhook disable_after without a unit", "webhooks: {disable_after: 120}", Error(
            "webhooks.disable_after: invalid duration \"120\": add a unit, e.g. 120s or 120ms",
        )),
        with_base("slo with an unknown model", "slos: [{name: s, model: chat-huge, sli: availability, target: 99%}]", Error(
            "slos[0].model: unknown model \"chat-huge\"",
        )),
        with_base("first_token_under without threshold", "slos: [{name: s, model: chat, sli: first_token_under, target: 99%}]", Error(
            "slos[0].threshold: required: sli first_token_under needs a threshold, e.g. threshold: 2s",
        )),
        with_base("slo target of 100%", "slos: [{name: s, model: chat, sli: availability, target: 100%}]", Error(
            "slos[0].target: must be strictly between 0 and 1 (0% and 100%), e.g. 99.9%, got 100%",
        )),
        with_base("bad listen address", "server: {listen: \"localhost:8080\"}", Error(
            "server.listen: invalid address \"localhost:8080\": use an IP address and a port such as 127.0.0.1:8080 or 0.0.0.0:8080",
        )),
        with_base("malformed reference", "server: {admin_key: \"${KEEL_ADMIN_KEY\"}", Error(
            "server.admin_key: unterminated \"${\": close it with \"}\", or write \"$${\" for a literal \"${\"",
        )),
        with_vars("bad value from a variable", &format!("database: {{url: \"${{DATABASE_URL}}\"}}\n{BASE}"), &[("DATABASE_URL", "mysql://root:pw@db/keel")], Error(
            "database.url: unsupported scheme \"mysql\": use sqlite://keel.db or postgres://user:password@host/database",
        )),
        with_vars("set api_key variable enables the provider", "providers:\n  openai: {kind: openai, api_key: \"${OPENAI_API_KEY}\"}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}\ntenants: [{name: t, keys: [k]}]", &[("OPENAI_API_KEY", "sk-live")], Warnings(&[])),
        row("providers given as a list", "providers: [openai]\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}", Error(concat!(
            "providers: expected a mapping of names to settings\n",
            "models.chat.targets[0].provider: unknown provider \"openai\"",
        ))),
        row("duplicate provider", "providers:\n  openai: {kind: openai}\n  openai: {kind: openai}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}", Error(
            "invalid YAML: providers: duplicate entry with key \"openai\" at line 2 column 3",
        )),
        row("file that is not a mapping", "- providers", Error(
            "the file must be a mapping of sections (server, providers, models, ...)",
        )),
        row("empty file", "", Error(
            "providers: at least one provider is required, e.g. openai: {kind: openai, api_key: ${OPENAI_API_KEY}}\nmodels: at least one model is required, e.g. chat: {targets: [{provider: openai, model: gpt-4o-mini}]}",
        )),
        row("yaml syntax error", "providers: [unclosed", Error(
            "invalid YAML: did not find expected ',' or ']' at line 2 column 1, while parsing a flow sequence at line 1 column 12",
        )),
        row("multiple problems reported at once", "server: {request_timeout: 10s, colour: blue}\nproviders:\n  openai: {kind: openai, retry: {attempts: 0}, breaker: {failure_rate: 0}}\n  bad: {kind: openai, tiemouts: {}}\nmodels:\n  chat:\n    targets: [{provider: opnai, model: m}, {provider: bad, model: m}]\n    fallback: [nope]\nslos: [{name: s, model: chat, sli: latency, target: 2}]", Error(concat!(
            "server.colour: unknown key \"colour\" (expected one of: listen, max_in_flight, request_timeout, admin_key, shutdown_grace, max_body, metrics_listen, body_timeout, max_upstream_body, cors, sse_keepalive, workers)\n",
            "providers.bad.tiemouts: unknown key \"tiemouts\" (expected one of: kind, base_url, api_key, api_version, headers, max_concurrent, rpm, tpm, max_tokens, timeouts, retry, breaker, responses, drop_unsupported, health_check)\n",
            "providers.openai.retry.attempts: must be at least 1, got 0\n",
            "providers.openai.breaker.failure_rate: must be more than 0 and at most 1 (100%), got 0\n",
            "models.chat.targets[0].provider: unknown provider \"opnai\"\n",
            "models.chat.fallback[0]: unknown model \"nope\"\n",
            "slos[0].sli: unknown sli \"latency\" (expected one of: availability, first_token_under)\n",
            "slos[0].target: must be strictly between 0 and 1 (0% and 100%), e.g. 99.9%, got 2",
        ))),
        row("one bad value does not hide the next in the same section", "server: {request_timeout: 10, max_in_flight: lots, listen: nowhere}\nproviders:\n  openai: {kind: openai}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}", Error(concat!(
            "server.listen: invalid address \"nowhere\": use an IP address and a port such as 127.0.0.1:8080 or 0.0.0.0:8080\n",
            "server.max_in_flight: invalid number \"lots\": expected a whole number such as 10\n",
            "server.request_timeout: invalid duration \"10\": add a unit, e.g. 10s or 10ms",
        ))),
        row("an unknown section beside a bad value", "servers: {listen: 127.0.0.1:80}\nserver: {listen: nowhere}\nproviders:\n  openai: {kind: openai}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}", Error(concat!(
            "servers: unknown key \"servers\" (expected one of: server, database, tenants, providers, models, cache, jobs, webhooks, idempotency, slos, telemetry, redis)\n",
            "server.listen: invalid address \"nowhere\": use an IP address and a port such as 127.0.0.1:8080 or 0.0.0.0:8080",
        ))),
        row("an unknown key beside a bad value at the top", "server: {listn: x, max_in_flight: -3}\nproviders:\n  openai: {kind: openai}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}", Error(concat!(
            "server.listn: unknown key \"listn\" (expected one of: listen, max_in_flight, request_timeout, admin_key, shutdown_grace, max_body, metrics_listen, body_timeout, max_upstream_body, cors, sse_keepalive, workers)\n",
            "server.max_in_flight: must be at least 1, got -3",
        ))),
        row("an unknown key beside a bad value in a provider", "providers:\n  openai: {kind: openai, timeout: 5s, timeouts: {first_token: soon}}\nmodels:\n  chat: {targets: [{provider: openai, model: m}]}", Error(concat!(
            "providers.openai.timeout: unknown key \"timeout\" (expected one of: kind, base_url, api_key, api_version, headers, max_concurrent, rpm, tpm, max_tokens, timeouts, retry, breaker, responses, drop_unsupported, health_check)\n",
            "providers.openai.timeouts.first_token: invalid duration \"soon\": use a number and a unit such as 250ms, 10s, 5m",
        ))),
        row("an unknown key beside a bad value in a list item", "providers:\n  openai: {kind: openai}\nmodels:\n  chat: {targets: [{provider: openai, model: m}, {provider: opnai, model: n, priority: 2}]}", Error(concat!(
            "models.chat.targets[1].priority: unknown key \"priority\" (expected one of: provider, model, price, max_tokens, weight, context_window)\n",
            "models.chat.targets[1].provider: unknown provider \"opnai\"",
        ))),
        with_base("every unknown key of a nested block beside its bad value", "tenants: [{name: acme, keys: [k], limits: {rmp: 10, tpm: many, burst: 2}}]", Error(concat!(
            "tenants[0].limits.rmp: unknown key \"rmp\" (expected one of: rpm, tpm, max_in_flight, max_queued_jobs)\n",
            "tenants[0].limits.burst: unknown key \"burst\" (expected one of: rpm, tpm, max_in_flight, max_queued_jobs)\n",
            "tenants[0].limits.tpm: invalid number \"many\": expected a whole number such as 10",
        ))),
    ]
}

#[test]
fn every_row_produces_its_exact_message() {
    let mut failures = Vec::new();
    for row in rows() {
        let vars: HashMap<String, String> = row
            .vars
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let outcome = load_str(&row.yaml, &vars);
        let matches = match (&row.expect, &outcome) {
            (Expect::Error(expected), Err(error)) => error.to_string() == *expected,
            (Expect::Warnings(expected), Ok(loaded)) => loaded.warnings == *expected,
            _ => false,
        };
        if !matches {
            let got = match outcome {
                Ok(loaded) => format!("Ok, warnings {:?}", loaded.warnings),
                Err(error) => format!("Err:\n{error}"),
            };
            failures.push(format!("row {:?} got {got}", row.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
