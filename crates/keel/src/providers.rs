//! One adapter per enabled provider. `kind: mock` providers get their own
//! in-process `keel mock` upstream on an ephemeral loopback port, reached
//! through the OpenAI adapter, so they behave exactly like the standalone mock.

use std::collections::HashMap;
use std::sync::Arc;

use keel_config::{Config, ProviderConfig, ProviderKind};
use keel_providers::{
    AnthropicProvider, AnthropicSettings, AzureSettings, OpenAiProvider, OpenAiSettings, Provider,
};

/// The enabled providers by name. Disabled ones were reported by the config
/// loader; kinds this build cannot reach yet are reported here, once each.
pub async fn build_providers(
    config: &Config,
) -> std::io::Result<HashMap<String, Arc<dyn Provider>>> {
    let mut providers: HashMap<String, Arc<dyn Provider>> = HashMap::new();
    for provider in config
        .providers
        .iter()
        .filter(|provider| provider.disabled.is_none())
    {
        let base_url = match provider.kind {
            ProviderKind::Openai => provider.base_url.clone().unwrap_or_default(),
            ProviderKind::Mock => start_mock(&provider.name).await?,
            ProviderKind::Anthropic | ProviderKind::Azure => {
                providers.insert(provider.name.clone(), other_kind(provider, config)?);
                continue;
            }
        };
        let adapter = OpenAiProvider::new(openai_settings(provider, base_url, config))
            .map_err(std::io::Error::other)?;
        providers.insert(provider.name.clone(), Arc::new(adapter));
    }
    Ok(providers)
}

fn openai_settings(provider: &ProviderConfig, base_url: String, config: &Config) -> OpenAiSettings {
    OpenAiSettings {
        name: provider.name.clone(),
        base_url,
        api_key: provider.api_key.clone(),
        headers: provider.headers.clone(),
        connect_timeout: provider.timeouts.connect,
        max_body: upstream_body_limit(config),
        pools: upstream_pools(config),
    }
}

/// `server.max_upstream_body` as a length.
fn upstream_body_limit(config: &Config) -> usize {
    usize::try_from(config.server.max_upstream_body).unwrap_or(usize::MAX)
}

/// One upstream connection pool per HTTP worker thread, so each worker's
/// upstream connections are driven by its own runtime, and one for every
/// other thread (health checks, job workers).
fn upstream_pools(config: &Config) -> usize {
    config.server.workers.map_or(1, |workers| workers + 1)
}

/// The Anthropic adapter, or the OpenAI adapter in its Azure form.
fn other_kind(provider: &ProviderConfig, config: &Config) -> std::io::Result<Arc<dyn Provider>> {
    let name = provider.name.clone();
    let base_url = provider.base_url.clone().unwrap_or_default();
    let api_key = provider.api_key.clone();
    let (headers, connect_timeout) = (provider.headers.clone(), provider.timeouts.connect);
    let adapter: Arc<dyn Provider> = if provider.kind == ProviderKind::Azure {
        let api_version = provider.api_version.clone().unwrap_or_default();
        let settings = AzureSettings {
            name,
            base_url,
            api_version,
            api_key,
            headers,
            connect_timeout,
            max_body: upstream_body_limit(config),
            pools: upstream_pools(config),
        };
        Arc::new(OpenAiProvider::azure(settings).map_err(std::io::Error::other)?)
    } else {
        let default_max_tokens = provider.default_max_tokens;
        let settings = AnthropicSettings {
            name,
            base_url,
            api_key,
            headers,
            default_max_tokens,
            connect_timeout,
            max_body: upstream_body_limit(config),
            pools: upstream_pools(config),
            drop_unsupported: provider.drop_unsupported,
        };
        Arc::new(AnthropicProvider::new(settings).map_err(std::io::Error::other)?)
    };
    Ok(adapter)
}

async fn start_mock(name: &str) -> std::io::Result<String> {
    let (address, _task) = keel_mock::spawn_local(keel_mock::MockState::new()).await?;
    tracing::info!(provider = name, %address, "in-process mock upstream started");
    Ok(format!("http://{address}/v1"))
}
