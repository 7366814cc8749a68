//! One adapter per enabled provider. `kind: mock` providers get their own
//! in-process `keel mock` upstream on an ephemeral loopback port, reached
//! through the OpenAI adapter, so they behave exactly like the standalone mock.

use std::collections::HashMap;
use std::sync::Arc;

use keel_config::{Config, ProviderConfig, ProviderKind};
use keel_providers::{OpenAiProvider, OpenAiSettings, Provider};

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
                tracing::warn!(provider = %provider.name, kind = ?provider.kind, "this provider kind is not supported by this build yet; provider disabled");
                continue;
            }
        };
        let adapter = OpenAiProvider::new(openai_settings(provider, base_url))
            .map_err(std::io::Error::other)?;
        providers.insert(provider.name.clone(), Arc::new(adapter));
    }
    Ok(providers)
}

fn openai_settings(provider: &ProviderConfig, base_url: String) -> OpenAiSettings {
    OpenAiSettings {
        name: provider.name.clone(),
        base_url,
        api_key: provider.api_key.as_ref().map(|key| key.expose().to_owned()),
        headers: provider.headers.clone(),
        connect_timeout: provider.timeouts.connect,
    }
}

async fn start_mock(name: &str) -> std::io::Result<String> {
    let (address, _task) = keel_mock::spawn_local(keel_mock::MockState::new()).await?;
    tracing::info!(provider = name, %address, "in-process mock upstream started");
    Ok(format!("http://{address}/v1"))
}
