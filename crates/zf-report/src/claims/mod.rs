//! The paper's claims, each a pure function of the typed [`Results`]: what the paper says, the
//! quantity measured, the rule that decides it, the value and the verdict ([`claims`]). One
//! function per claim, grouped by what they read: [`training`] (ZFNet's training: the
//! recipe, Table 2's first layers, Fig. 4), [`filters`] (Fig. 6), [`invariance`] (Fig. 5),
//! [`occlusion`] (Fig. 7 and Table 1) and [`probes`] (Table 7).

use serde::{Deserialize, Serialize};

use crate::results::Results;
use crate::stats::{Effect, MIN_N};

pub mod filters;
pub mod invariance;
pub mod occlusion;
pub mod probes;
pub mod training;

pub use filters::{fig6_dead_filters, fig6_mid_frequencies, fig6_renorm};
pub use invariance::{fig5_layers, fig5_output, fig5_symmetric};
pub use occlusion::{fig7_occlusion, table1_layer7, table1_parts};
pub use probes::table7_depth;
pub use training::{fig4_evolution, table2_first_layer, training};

/// One claim of the paper, the quantity that tests it, its value and the verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    pub id: String,
    pub paper: String,
    /// What is measured, and the rule that decides "held".
    pub test: String,
    /// The measured value(s), as text; `None` when the run has no such number.
    pub value: Option<String>,
    /// `None`: not measured (no value) or not testable (a value, but too few samples).
    pub held: Option<bool>,
    /// For claims decided by statistics: the effect, its 95% interval and n.
    #[serde(default)]
    pub stats: Option<Effect>,
}

impl Claim {
    /// The verdict's word: held, not held, not testable (measured on too few samples) or not
    /// measured.
    pub fn verdict(&self) -> &'static str {
        match (self.held, &self.value) {
            (Some(true), _) => "held",
            (Some(false), _) => "not held",
            (None, Some(_)) => "not testable",
            (None, None) => "not measured",
        }
    }
}

/// A claim decided by an [`Effect`]: held when its interval lies on the paper's side of zero;
/// not testable below [`MIN_N`] samples; the value gives the effect and `base` (the means).
fn by_stats(id: &str, paper: &str, test: String, base: Option<String>, effect: Option<Effect>) -> Claim {
    let (value, held) = match &effect {
        None => (None, None),
        Some(e) if e.n < MIN_N => (
            Some(format!("{}; {} — not testable: n = {} < {MIN_N}", base.unwrap_or_default(), e.describe(), e.n)),
            None,
        ),
        Some(e) => (Some(format!("{}; {}", base.unwrap_or_default(), e.describe())), Some(e.supports())),
    };
    Claim { id: id.into(), paper: paper.into(), test, value, held, stats: effect }
}

/// Bootstrap resamples for Table 1 (each recomputes Δ from the distance matrices).
pub const TABLE1_RESAMPLES: usize = 2000;

/// Fewer training snapshots than this make Fig. 4's claim not testable (the paper shows eight).
pub const MIN_SNAPSHOTS: usize = 8;

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The mean of the first values of `pairs` and the mean of the second values.
fn means(pairs: &[(f64, f64)]) -> (Option<f64>, Option<f64>) {
    (mean(&pairs.iter().map(|p| p.0).collect::<Vec<_>>()), mean(&pairs.iter().map(|p| p.1).collect::<Vec<_>>()))
}

fn claim(id: &str, paper: &str, test: String, value: Option<String>, held: Option<bool>) -> Claim {
    Claim { id: id.into(), paper: paper.into(), test, value, held, stats: None }
}

/// The paper's claims, tested on `r`, in the report's order: one function per claim (in the
/// submodules), each decided by an effect and its 95% bootstrap interval, held only when the
/// interval lies above zero (a tie never is); only the training claim, on an evaluation without
/// per-image results, falls back to its threshold.
pub fn claims(r: &Results) -> Vec<Claim> {
    vec![
        training(r),
        table2_first_layer(r),
        fig6_renorm(r),
        fig6_mid_frequencies(r),
        fig6_dead_filters(r),
        fig4_evolution(r),
        fig5_layers(r),
        fig5_output(r),
        fig5_symmetric(r),
        fig7_occlusion(r),
        table1_parts(r),
        table1_layer7(r),
        table7_depth(r),
    ]
}

/// The claims about training ZFNet: the network learns with the recipe, Table 2's first
/// layers, Fig. 6's renormalization and first-layer comparisons, Fig. 4's evolution.
pub const ABOUT_TRAINING: [&str; 6] =
    ["training", "table2-first-layer", "fig6-renorm", "fig6-mid-frequencies", "fig6-dead-filters", "fig4-evolution"];

/// `claims` for a run on `network`'s given weights (`None`: ZFNet): for another network the
/// claims about training ZFNet ([`ABOUT_TRAINING`]) are not testable, with the reason, whatever
/// the run measured.
pub fn for_network(claims: Vec<Claim>, network: Option<&str>) -> Vec<Claim> {
    let Some(arch) = network.filter(|a| !a.starts_with("zfnet")) else { return claims };
    claims
        .into_iter()
        .map(|c| {
            if !ABOUT_TRAINING.contains(&c.id.as_str()) {
                return c;
            }
            let why = format!("not testable: the claim is about training ZFNet; the run analysed the given {arch} weights, trained elsewhere");
            Claim { value: Some(why), held: None, stats: None, ..c }
        })
        .collect()
}

/// The claims as a markdown table.
pub fn claims_markdown(claims: &[Claim]) -> String {
    let mut md = String::from(
        "| claim | the paper says | measured quantity (rule) | value | verdict |\n|---|---|---|---|---|\n",
    );
    let cell = |s: &str| s.replace('|', "\\|");
    for c in claims {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            c.id,
            cell(&c.paper),
            cell(&c.test),
            cell(c.value.as_deref().unwrap_or("not measured")),
            c.verdict()
        ));
    }
    md
}
