//! Span export over OTLP/HTTP (protobuf) when `telemetry.otlp_endpoint` is
//! set: the `keel.*` spans (request, route, attempt) with their GenAI
//! attributes go to `<endpoint>/v1/traces` in batches. Off, nothing is
//! installed: the spans are debug-level and no layer asks for them, so
//! they are never built.

use std::time::Duration;

use async_trait::async_trait;
use keel_config::TelemetryConfig;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The span exporter's provider: flushes what is buffered when dropped.
pub struct Otlp {
    provider: SdkTracerProvider,
}

/// The tracing layer that exports `keel.*` spans to `config.otlp_endpoint`,
/// and the handle that flushes them; `None` when no endpoint is set. Must
/// be called inside the tokio runtime the exports will run on.
pub fn layer<S>(
    config: &TelemetryConfig,
) -> Result<Option<(impl Layer<S> + Send + Sync, Otlp)>, String>
where
    S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    let Some(endpoint) = &config.otlp_endpoint else {
        return Ok(None);
    };
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|error| format!("telemetry.otlp_endpoint: no runtime to export on: {error}"))?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    let client = OnRuntime {
        client: opentelemetry_http::hyper::HyperClient::new(connector, EXPORT_TIMEOUT, None),
        runtime,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{endpoint}/v1/traces"))
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|error| format!("telemetry.otlp_endpoint: {error}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("keel").build())
        .build();
    let tracer = provider.tracer("keel");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(filter_fn(|metadata| {
            metadata.is_span() && metadata.name().starts_with("keel.")
        }));
    Ok(Some((layer, Otlp { provider })))
}

// === impl Otlp ===

impl Otlp {
    /// Exports every finished span now.
    pub fn flush(&self) {
        if let Err(error) = self.provider.force_flush() {
            tracing::warn!(%error, "exporting spans failed");
        }
    }
}

impl Drop for Otlp {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// The hyper client, run on Keel's runtime: the batch exporter sends from a
/// thread of its own, and hyper needs tokio's reactor and timers.
#[derive(Debug)]
struct OnRuntime<C: std::fmt::Debug> {
    client: C,
    runtime: tokio::runtime::Handle,
}

#[async_trait]
impl<C> HttpClient for OnRuntime<C>
where
    C: HttpClient + Clone + 'static,
{
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}
