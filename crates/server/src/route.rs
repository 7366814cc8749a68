//! One request past its tenant's limits and through the prompt cache: the
//! sequence live requests (both front ends) and job runs share. A cache hit
//! takes only from the tenant's request limit; tokens are reserved after
//! the lookup, for the requests that go upstream. A request for a model
//! without a cache takes both limits at once (one round trip when they are
//! shared through Redis).

use std::sync::Arc;

use axum::http::HeaderMap;
use keel_router::{CachePlan, CacheStatus, RouteError, Routed, Router};
use keel_types::ChatRequest;

use crate::limits::{Exceeded, Reservation, TenantLimits};

/// An answer, with what the tenant's limits say about it.
pub struct Served {
    /// Who answered, and how.
    pub routed: Routed,
    /// The tokens reserved for an upstream answer (none for a hit), settled
    /// from its usage.
    pub reservation: Option<Reservation>,
    /// The tenant's `x-ratelimit-*` headers, when it has limits.
    pub limit_headers: Option<HeaderMap>,
    /// The request fields the answering provider left out (`x-keel-dropped`).
    pub dropped: Vec<String>,
}

/// Why there is no answer.
pub enum Unserved {
    /// A tenant limit refused the request before any work.
    Limited(Exceeded),
    /// Routing failed.
    Failed {
        /// Why.
        error: RouteError,
        /// `x-keel-cache` for the failure, for a cached model.
        cache: Option<CacheStatus>,
        /// The tenant's `x-ratelimit-*` headers, when it has limits.
        limit_headers: Option<HeaderMap>,
    },
}

/// Takes `request` past `tenant`'s request and token limits and answers it
/// from the cache (`plan`, for a cached model) or through the router.
pub async fn route_within_limits(
    router: &Arc<Router>,
    limits: &TenantLimits,
    tenant: &str,
    request: ChatRequest,
    plan: Option<CachePlan>,
) -> Result<Served, Unserved> {
    match admit(router, limits, tenant, request, plan).await? {
        Admission::Hit(served) => Ok(served),
        Admission::Upstream(upstream) => upstream.route(router.clone()).await,
    }
}

/// What admission leads to: a cached answer, or an upstream call.
pub(crate) enum Admission {
    /// Answered from the cache.
    Hit(Served),
    /// Admitted to go upstream.
    Upstream(Upstream),
}

/// A request admitted to go upstream, its tokens reserved: everything the
/// (possibly long) routing needs, owned, so it can outlive the handler.
pub(crate) struct Upstream {
    request: ChatRequest,
    plan: Option<CachePlan>,
    reservation: Option<Reservation>,
    /// The tenant's `x-ratelimit-*` headers, when it has limits: known
    /// before routing, so they can go with headers sent before the answer.
    pub(crate) limit_headers: Option<HeaderMap>,
}

/// Takes `request` past `tenant`'s request limit, answers it from the
/// cache when `plan` finds a fresh entry, and otherwise reserves its tokens.
pub(crate) async fn admit(
    router: &Arc<Router>,
    limits: &TenantLimits,
    tenant: &str,
    request: ChatRequest,
    plan: Option<CachePlan>,
) -> Result<Admission, Unserved> {
    let reservation = match &plan {
        // Not cached: straight upstream, both limits taken at once.
        None => limits
            .admit(tenant, &request, request.body_len())
            .await
            .map_err(Unserved::Limited)?,
        Some(plan) => {
            let admitted = limits
                .take_request(tenant)
                .await
                .map_err(Unserved::Limited)?;
            if let Some(routed) = router.cached(plan, &request).await {
                let limit_headers = admitted.as_ref().map(|admitted| admitted.headers());
                let dropped = router.dropped_fields(&routed.provider, &request);
                return Ok(Admission::Hit(Served {
                    routed,
                    reservation: None,
                    limit_headers,
                    dropped,
                }));
            }
            match admitted {
                Some(admitted) => Some(
                    admitted
                        .reserve_tokens(&request, request.body_len())
                        .await
                        .map_err(Unserved::Limited)?,
                ),
                None => None,
            }
        }
    };
    let limit_headers = reservation.as_ref().map(Reservation::headers);
    Ok(Admission::Upstream(Upstream {
        request,
        plan,
        reservation,
        limit_headers,
    }))
}

// === impl Upstream ===

impl Upstream {
    /// Routes the request (through the prompt cache's single flight, for a
    /// cached model); returns once an answer is committed or routing failed.
    pub(crate) async fn route(self, router: Arc<Router>) -> Result<Served, Unserved> {
        let Self {
            request,
            plan,
            reservation,
            limit_headers,
        } = self;
        let cache = plan.as_ref().map(CachePlan::status_without_entry);
        let request = Arc::new(request);
        match router.dispatch_with_cache(request.clone(), plan).await {
            Ok(routed) => Ok(Served {
                dropped: router.dropped_fields(&routed.provider, &request),
                routed,
                reservation,
                limit_headers,
            }),
            Err(error) => Err(Unserved::Failed {
                error,
                cache,
                limit_headers,
            }),
        }
    }
}
