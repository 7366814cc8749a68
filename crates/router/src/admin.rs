//! What `/admin/providers` shows: every provider with its shared controls,
//! and each of its targets once, with the public models that route to it.

use std::sync::Arc;

use crate::{ProviderControls, Router, Target};

/// One provider as an operator sees it.
pub struct ProviderView<'r> {
    /// The provider's name.
    pub name: &'r str,
    /// Its bulkhead, rate limits and kind.
    pub controls: &'r ProviderControls,
    /// Its targets (provider + upstream model), in configuration order.
    pub targets: Vec<TargetView<'r>>,
}

/// One target of a provider.
pub struct TargetView<'r> {
    /// The target (breaker, stats).
    pub target: &'r Target,
    /// The public models whose own targets include it.
    pub public_models: Vec<&'r str>,
}

// === impl Router ===

impl Router {
    /// Every provider with an enabled target, in configuration order.
    pub fn providers(&self) -> Vec<ProviderView<'_>> {
        let mut providers: Vec<ProviderView<'_>> = Vec::new();
        for (public_model, target) in self.table.targets_by_model() {
            let position = providers
                .iter()
                .position(|provider| provider.name == &*target.provider_name);
            let provider = match position {
                Some(position) => &mut providers[position],
                None => {
                    providers.push(ProviderView {
                        name: &target.provider_name,
                        controls: &target.controls,
                        targets: Vec::new(),
                    });
                    let last = providers.len() - 1;
                    &mut providers[last]
                }
            };
            // Targets of one provider + model share their breaker.
            let known = provider
                .targets
                .iter_mut()
                .find(|view| Arc::ptr_eq(&view.target.breaker, &target.breaker));
            match known {
                Some(view) => view.public_models.push(public_model),
                None => provider.targets.push(TargetView {
                    target,
                    public_models: vec![public_model],
                }),
            }
        }
        providers
    }
}
