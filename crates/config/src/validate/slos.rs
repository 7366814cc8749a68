//! `slos:`: names, the model each measures, the SLI and its objective.

use std::collections::HashSet;
use std::time::Duration;

use super::{Checker, FractionRange};
use crate::error::KeyPath;
use crate::raw::RawSlo;
use crate::schema::{Sli, Slo};

/// The window used when an SLO gives none.
const DEFAULT_SLO_WINDOW: Duration = Duration::from_secs(30 * 86_400);

// === impl Checker ===

impl Checker {
    pub(super) fn slos(&mut self, raw: Vec<Option<RawSlo>>, model_names: &[String]) -> Vec<Slo> {
        let section = KeyPath::root().key("slos");
        let mut seen_names = HashSet::new();
        let mut slos = Vec::with_capacity(raw.len());
        for (index, slo) in raw.into_iter().enumerate() {
            let Some(slo) = slo else {
                continue;
            };
            let path = section.index(index);
            let name = self.text(slo.name.as_ref(), &path.key("name"), "the SLO's name");
            if let Some(name) = name
                .as_ref()
                .filter(|name| !seen_names.insert((*name).clone()))
            {
                self.problems
                    .push(&path.key("name"), format!("duplicate SLO \"{name}\""));
            }
            if let Some(slo) = self.slo(name, &slo, model_names, &path) {
                slos.push(slo);
            }
        }
        slos
    }

    fn slo(
        &mut self,
        name: Option<String>,
        raw: &RawSlo,
        model_names: &[String],
        path: &KeyPath,
    ) -> Option<Slo> {
        let model = self.text(raw.model.as_ref(), &path.key("model"), "a model name");
        if let Some(model) = model.as_ref().filter(|model| !model_names.contains(model)) {
            self.problems
                .push(&path.key("model"), format!("unknown model \"{model}\""));
        }
        let sli = self.sli(raw, path);
        let target_path = path.key("target");
        let target = self.required(
            raw.target.as_ref(),
            &target_path,
            "the objective, e.g. 99.9%",
        );
        let target = self.optional_fraction(target, &target_path, FractionRange::StrictlyBetween);
        let window = self.duration(raw.window.as_ref(), &path.key("window"), DEFAULT_SLO_WINDOW);
        Some(Slo {
            name: name?,
            model: model?,
            sli: sli?,
            target: target?,
            window,
        })
    }

    fn sli(&mut self, slo: &RawSlo, path: &KeyPath) -> Option<Sli> {
        let sli_path = path.key("sli");
        let threshold_path = path.key("threshold");
        let sli = self.required(
            slo.sli.as_ref(),
            &sli_path,
            "availability or first_token_under",
        )?;
        match sli.text() {
            "availability" => {
                if slo.threshold.is_some() {
                    self.problems.push(
                        &threshold_path,
                        "only used with sli: first_token_under; remove it",
                    );
                }
                Some(Sli::Availability)
            }
            "first_token_under" => {
                let hint = "sli first_token_under needs a threshold, e.g. threshold: 2s";
                let threshold = self.required(slo.threshold.as_ref(), &threshold_path, hint);
                self.optional_duration(threshold, &threshold_path)
                    .map(Sli::FirstTokenUnder)
            }
            other => {
                let message = format!(
                    "unknown sli \"{other}\" (expected one of: availability, first_token_under)"
                );
                self.problems.push(&sli_path, message);
                None
            }
        }
    }
}
