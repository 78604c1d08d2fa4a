//! Greedy coordinate gradient (GCG, Zou et al. 2023; the "strategic text sequence" of
//! Kumar & Lakkaraju 2024): a suffix of tokens placed in the ranker's prompt, optimised so the
//! ranker's model produces a target continuation (e.g. the target product's name as its first
//! recommendation).
//!
//! The ranker prompt is `before ++ suffix ++ after`, followed by `target`. The loss is the
//! mean over target tokens of `-log p(target_j | everything before it)`. Each step:
//!
//! 1. the gradient of the loss with respect to one-hot rows of the suffix tokens
//!    ([`Llama::slot_gradient`]) ranks, for every suffix position, the `top_k` allowed
//!    tokens whose substitution most decreases the loss to first order (most negative
//!    gradient; the position's current token excluded);
//! 2. `candidates_per_step` single-token substitutions are drawn: a uniform position, then a
//!    uniform token among that position's top-k (seeded [`SplitMix64`]); duplicates and
//!    candidates the caller's `keep` rejects are dropped;
//! 3. the remaining candidates are scored exactly with the fast batched forward pass
//!    ([`Llama::target_losses`], `batch_size` prompts per pass);
//! 4. the best candidate replaces the suffix **only if its loss is lower** than the current
//!    one. Original GCG always moves to the best candidate; keeping the best so far makes the
//!    recorded losses non-increasing and the returned suffix the best one seen, and when a
//!    step finds nothing better the gradient is reused (the suffix did not change) while the
//!    generator draws new candidates.
//!
//! The model must be differentiable: quantized (GGUF) weights must first be expanded with
//! [`Llama::dequantized`].

use std::collections::HashSet;
use std::time::Instant;

use folio_models::candle::Tensor;
use folio_models::llama::Llama;
use folio_models::llm::Llm;

use super::{AttackContext, Attacked};
use crate::geo::GeoError;
use crate::geo::rng::SplitMix64;

/// Knobs of [`optimise`].
#[derive(Debug, Clone, PartialEq)]
pub struct GcgSettings {
    /// Length of the optimised suffix in tokens.
    pub suffix_tokens: usize,
    /// Optimisation steps (one gradient and one round of candidates each).
    pub steps: usize,
    /// Substitutions considered per suffix position (by most negative gradient).
    pub top_k: usize,
    /// Single-token substitutions drawn per step (before duplicates and `keep` rejections).
    pub candidates_per_step: usize,
    /// Candidate prompts per forward pass when scoring candidates.
    pub batch_size: usize,
    /// Seed of the candidate sampling.
    pub seed: u64,
    /// Wall-time limit. Checked before each step and before each batch of candidates after a
    /// step's first, so a run may overshoot by one gradient plus one batch.
    pub max_seconds: Option<f64>,
}

impl Default for GcgSettings {
    fn default() -> Self {
        GcgSettings {
            suffix_tokens: 20,
            steps: 50,
            top_k: 256,
            candidates_per_step: 64,
            batch_size: 16,
            seed: 0,
            max_seconds: None,
        }
    }
}

/// The prompt around the optimised suffix, as token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcgPrompt {
    /// Tokens before the suffix (e.g. the chat template up to the end of the target's text).
    pub before: Vec<u32>,
    /// Tokens after the suffix, up to where the model answers.
    pub after: Vec<u32>,
    /// The continuation whose loss is minimised (e.g. the target product's name as the first
    /// recommendation).
    pub target: Vec<u32>,
}

/// Why [`optimise`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcgStop {
    /// All `steps` were done.
    Steps,
    /// `max_seconds` passed.
    Time,
}

/// The outcome of [`optimise`].
#[derive(Debug, Clone, PartialEq)]
pub struct GcgRun {
    /// The best suffix found (the initial one if nothing beat it).
    pub suffix: Vec<u32>,
    /// The loss of the best suffix after each step; index 0 is the initial suffix's loss.
    /// Non-increasing; `steps_done + 1` entries.
    pub losses: Vec<f32>,
    /// Sequences run through the model: one per gradient (forward and backward) and one per
    /// scored candidate.
    pub forward_passes: u64,
    /// Steps completed.
    pub steps_done: usize,
    /// Why the run stopped.
    pub stopped: GcgStop,
}

/// [`optimise`] failed: bad input (the caller's fault) or the model computation.
#[derive(Debug, thiserror::Error)]
pub enum GcgError {
    /// The target continuation is empty.
    #[error("the GCG target is empty")]
    EmptyTarget,
    /// The initial suffix does not have `suffix_tokens` tokens.
    #[error("the initial suffix has {got} tokens, the settings ask for {expected}")]
    InitLength {
        /// Tokens in the initial suffix.
        got: usize,
        /// `suffix_tokens` of the settings.
        expected: usize,
    },
    /// The allowed-token mask does not cover the vocabulary exactly.
    #[error("the allowed-token mask has {got} entries for a vocabulary of {vocab}")]
    MaskLength {
        /// Entries in the mask.
        got: usize,
        /// The model's vocabulary size.
        vocab: usize,
    },
    /// The mask allows no token.
    #[error("the allowed-token mask allows no token")]
    NoAllowedToken,
    /// A token id is outside the vocabulary.
    #[error("token {token} is outside the vocabulary of {vocab}")]
    TokenOutOfRange {
        /// The offending id.
        token: u32,
        /// The model's vocabulary size.
        vocab: usize,
    },
    /// A setting is out of range.
    #[error("invalid GCG settings: {0}")]
    Settings(String),
    /// The model computation failed (including a quantized model: see
    /// [`Llama::dequantized`]).
    #[error("model computation failed: {0}")]
    Candle(#[from] folio_models::candle::Error),
}

/// The tokens a suffix may use, indexed by token id over the model's vocabulary: those that
/// are not special tokens and whose text alone (decoded without skipping anything) is
/// non-empty, not only whitespace, and free of control characters (newlines and tabs
/// included) and of U+FFFD (a lone piece of a multi-byte character). Ids the tokenizer does
/// not know (the model's vocabulary may be padded) are not allowed.
///
/// Token-level filtering cannot guarantee that a suffix re-encodes to the same tokens once
/// decoded; pass a `keep` check to [`optimise`] for that.
pub fn allowed_tokens(llm: &Llm) -> Vec<bool> {
    let vocab = llm.model().config().vocab_size;
    let tokenizer = llm.tokenizer();
    let special: HashSet<u32> = tokenizer
        .get_added_tokens_decoder()
        .iter()
        .filter(|(_, t)| t.special)
        .map(|(&id, _)| id)
        .collect();
    (0..vocab)
        .map(|id| {
            let id = id as u32;
            !special.contains(&id)
                && tokenizer.id_to_token(id).is_some()
                && tokenizer
                    .decode(&[id], false)
                    .is_ok_and(|text| printable(&text))
        })
        .collect()
}

/// Non-empty, not only whitespace, no control character and no U+FFFD.
fn printable(text: &str) -> bool {
    !text.trim().is_empty() && !text.chars().any(|c| c.is_control() || c == '\u{FFFD}')
}

/// Optimises a suffix of `settings.suffix_tokens` tokens, starting from `init`, placed
/// between `prompt.before` and `prompt.after`, to minimise the loss of `prompt.target` (see
/// the module documentation for the algorithm). Only tokens with `allowed[id]` are proposed;
/// `keep(suffix)` may reject candidate suffixes (e.g. those that do not survive
/// decode→encode). `model` must hold unquantized weights ([`Llama::dequantized`]).
pub fn optimise(
    model: &Llama,
    prompt: &GcgPrompt,
    init: &[u32],
    allowed: &[bool],
    keep: &dyn Fn(&[u32]) -> bool,
    settings: &GcgSettings,
) -> Result<GcgRun, GcgError> {
    validate(model, prompt, init, allowed, settings)?;
    let started = Instant::now();
    let out_of_time = || {
        settings
            .max_seconds
            .is_some_and(|s| started.elapsed().as_secs_f64() >= s)
    };
    let n = settings.suffix_tokens;
    let slot = prompt.before.len()..prompt.before.len() + n;
    let assemble = |suffix: &[u32]| -> Vec<u32> {
        [prompt.before.as_slice(), suffix, prompt.after.as_slice()].concat()
    };
    let mut rng = SplitMix64::new(settings.seed);
    let mut suffix = init.to_vec();
    let (initial_loss, grad) =
        model.slot_gradient(&assemble(&suffix), slot.clone(), &prompt.target)?;
    let mut forward_passes = 1u64;
    let mut options = top_k_substitutions(&grad, allowed, &suffix, settings.top_k)?;
    let mut options_for = suffix.clone();
    let mut current = initial_loss;
    let mut losses = vec![initial_loss];
    let mut stopped = GcgStop::Steps;
    tracing::debug!(loss = initial_loss, "gcg start");
    for step in 0..settings.steps {
        if out_of_time() {
            stopped = GcgStop::Time;
            break;
        }
        if options_for != suffix {
            let (_, grad) =
                model.slot_gradient(&assemble(&suffix), slot.clone(), &prompt.target)?;
            forward_passes += 1;
            options = top_k_substitutions(&grad, allowed, &suffix, settings.top_k)?;
            options_for.clone_from(&suffix);
        }

        let mut seen = HashSet::new();
        let mut rejected = 0usize;
        let mut candidates: Vec<Vec<u32>> = Vec::new();
        for _ in 0..settings.candidates_per_step {
            let position = rng.index(n);
            let choices = &options[position];
            if choices.is_empty() {
                continue;
            }
            let mut candidate = suffix.clone();
            candidate[position] = choices[rng.index(choices.len())];
            if !seen.insert(candidate.clone()) {
                continue;
            }
            if !keep(&candidate) {
                rejected += 1;
                continue;
            }
            candidates.push(candidate);
        }

        let mut best: Option<(f32, usize)> = None;
        let mut evaluated = 0usize;
        let mut timed_out = false;
        for (b, batch) in candidates.chunks(settings.batch_size).enumerate() {
            if b > 0 && out_of_time() {
                timed_out = true;
                break;
            }
            let prompts: Vec<Vec<u32>> = batch.iter().map(|c| assemble(c)).collect();
            let refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
            let batch_losses = model.target_losses(&refs, &prompt.target)?;
            forward_passes += batch.len() as u64;
            for (i, loss) in batch_losses.into_iter().enumerate() {
                let index = b * settings.batch_size + i;
                if best.is_none_or(|(l, _)| loss < l) {
                    best = Some((loss, index));
                }
            }
            evaluated += batch.len();
        }
        let best_candidate = best.map(|(l, _)| l);
        let accepted = match best {
            Some((loss, index)) if loss < current => {
                suffix.clone_from(&candidates[index]);
                current = loss;
                true
            }
            _ => false,
        };
        losses.push(current);
        tracing::debug!(
            step,
            loss = current,
            best_candidate,
            accepted,
            evaluated,
            rejected,
            "gcg step"
        );
        if timed_out {
            stopped = GcgStop::Time;
            break;
        }
    }
    Ok(GcgRun {
        suffix,
        steps_done: losses.len() - 1,
        losses,
        forward_passes,
        stopped,
    })
}

fn validate(
    model: &Llama,
    prompt: &GcgPrompt,
    init: &[u32],
    allowed: &[bool],
    settings: &GcgSettings,
) -> Result<(), GcgError> {
    let vocab = model.config().vocab_size;
    let bad = |message: &str| Err(GcgError::Settings(message.to_string()));
    if settings.suffix_tokens == 0 {
        return bad("suffix_tokens must be at least 1");
    }
    if settings.top_k == 0 {
        return bad("top_k must be at least 1");
    }
    if settings.candidates_per_step == 0 {
        return bad("candidates_per_step must be at least 1");
    }
    if settings.batch_size == 0 {
        return bad("batch_size must be at least 1");
    }
    if settings
        .max_seconds
        .is_some_and(|s| !s.is_finite() || s < 0.0)
    {
        return bad("max_seconds must be a finite number of seconds, at least 0");
    }
    if prompt.target.is_empty() {
        return Err(GcgError::EmptyTarget);
    }
    if init.len() != settings.suffix_tokens {
        return Err(GcgError::InitLength {
            got: init.len(),
            expected: settings.suffix_tokens,
        });
    }
    if allowed.len() != vocab {
        return Err(GcgError::MaskLength {
            got: allowed.len(),
            vocab,
        });
    }
    if !allowed.iter().any(|&a| a) {
        return Err(GcgError::NoAllowedToken);
    }
    let all = prompt
        .before
        .iter()
        .chain(init)
        .chain(&prompt.after)
        .chain(&prompt.target);
    if let Some(&token) = all.into_iter().find(|&&t| t as usize >= vocab) {
        return Err(GcgError::TokenOutOfRange { token, vocab });
    }
    Ok(())
}

/// For each suffix position (row of `grad`, `(positions, vocab)`), the `k` allowed tokens
/// other than the current one with the most negative finite gradient, most negative first
/// (ties by id).
fn top_k_substitutions(
    grad: &Tensor,
    allowed: &[bool],
    suffix: &[u32],
    k: usize,
) -> Result<Vec<Vec<u32>>, GcgError> {
    let rows = grad.to_vec2::<f32>()?;
    Ok(rows
        .iter()
        .zip(suffix)
        .map(|(row, &current)| {
            let mut ids: Vec<u32> = (0..row.len().min(allowed.len()))
                .filter(|&v| allowed[v] && v as u32 != current && row[v].is_finite())
                .map(|v| v as u32)
                .collect();
            let order =
                |a: &u32, b: &u32| row[*a as usize].total_cmp(&row[*b as usize]).then(a.cmp(b));
            if ids.len() > k {
                ids.select_nth_unstable_by(k - 1, order);
                ids.truncate(k);
            }
            ids.sort_unstable_by(order);
            ids
        })
        .collect())
}

/// The gradient attack as the suite runs it: the ranker's model, dequantised once, optimises
/// a suffix appended to the target's text so that the ranker's prompt is followed by its
/// promoting answer (`yes`; `1. <name>`). It needs a ranker that exposes a
/// [`SlotPrompt`](crate::geo::SlotPrompt) (pointwise, recommend).
pub struct GcgAttack {
    llm: std::sync::Arc<Llm>,
    model: Llama,
    allowed: Vec<bool>,
    settings: GcgSettings,
}

impl GcgAttack {
    /// Prepares the attack on `llm` (a dequantised copy of its weights is kept).
    pub fn new(llm: std::sync::Arc<Llm>, settings: GcgSettings) -> Result<Self, GeoError> {
        let model = llm
            .model()
            .dequantized()
            .map_err(|e| GeoError::Model(e.to_string()))?;
        let allowed = allowed_tokens(&llm);
        Ok(GcgAttack {
            llm,
            model,
            allowed,
            settings,
        })
    }

    /// Runs the attack on one trial; `ranker_calls` counts the model's forward passes.
    pub fn run(&self, ctx: &AttackContext<'_>) -> Result<Attacked, GeoError> {
        let slot = ctx
            .ranker
            .slot_prompt(ctx.query, ctx.items, ctx.target)?
            .ok_or_else(|| {
                GeoError::Invalid(format!(
                    "gcg needs a ranker with one prompt per ranking (pointwise or recommend), \
                     not {}",
                    ctx.ranker.name()
                ))
            })?;
        let llm = &self.llm;
        let prompt = GcgPrompt {
            before: llm.encode(&slot.before)?,
            after: llm.encode(&slot.after)?,
            target: llm.encode(&slot.answer)?,
        };
        let space = llm.encode(" !")?;
        let filler = space.last().copied().unwrap_or(0);
        let init = vec![filler; self.settings.suffix_tokens];
        // A suffix must read back as the same tokens once it is text in a document.
        let keep = |suffix: &[u32]| {
            llm.decode(suffix)
                .ok()
                .and_then(|t| llm.encode(&t).ok())
                .is_some_and(|ids| ids == suffix)
        };
        let remaining = ctx.budget.time.as_secs_f64();
        let settings = GcgSettings {
            seed: self.settings.seed ^ ctx.seed,
            max_seconds: Some(
                self.settings
                    .max_seconds
                    .map_or(remaining, |s| s.min(remaining)),
            ),
            ..self.settings.clone()
        };
        let run = optimise(&self.model, &prompt, &init, &self.allowed, &keep, &settings)
            .map_err(|e| GeoError::Model(e.to_string()))?;
        tracing::debug!(
            first = run.losses.first().copied(),
            last = run.losses.last().copied(),
            steps = run.steps_done,
            "gcg finished"
        );
        let suffix = llm.decode(&run.suffix)?;
        let target = ctx.target_item();
        let text = format!("{}{suffix}", target.text);
        Ok(Attacked {
            text,
            ranker_calls: run.forward_passes,
            attacker_calls: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use folio_models::Device;
    use folio_models::llm::LoadOptions;

    use super::*;

    fn tiny() -> anyhow::Result<Llm> {
        Ok(Llm::load(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../services/models/tests/fixtures/llama/tiny-llama31"
            ),
            LoadOptions::default(),
            &Device::Cpu,
        )?)
    }

    fn prompt(llm: &Llm) -> anyhow::Result<GcgPrompt> {
        Ok(GcgPrompt {
            before: llm.encode("<|begin_of_text|>Which camera is best? Solo X:")?,
            after: llm.encode(" Answer:")?,
            target: llm.encode(" Solo X")?,
        })
    }

    fn settings() -> GcgSettings {
        GcgSettings {
            suffix_tokens: 6,
            steps: 10,
            top_k: 32,
            candidates_per_step: 24,
            batch_size: 8,
            seed: 7,
            max_seconds: None,
        }
    }

    fn init(llm: &Llm, n: usize) -> anyhow::Result<Vec<u32>> {
        Ok(vec![llm.single_token("!")?; n])
    }

    #[test]
    fn allowed_tokens_exclude_special_and_unprintable_tokens() -> anyhow::Result<()> {
        let llm = tiny()?;
        let allowed = allowed_tokens(&llm);
        assert_eq!(allowed.len(), llm.model().config().vocab_size);
        // 420.. are the fixture's special tokens (<|begin_of_text|>, <|eot_id|>, ...).
        assert!(allowed[420..].iter().all(|&a| !a));
        assert!(allowed[llm.single_token("!")? as usize]);
        let newline = llm.encode("\n")?;
        assert!(newline.iter().all(|&t| !allowed[t as usize]), "{newline:?}");
        let count = allowed.iter().filter(|&&a| a).count();
        assert!(count > 100, "{count}");
        Ok(())
    }

    #[test]
    fn loss_decreases_and_never_increases() -> anyhow::Result<()> {
        let llm = tiny()?;
        let model = llm.model();
        let prompt = prompt(&llm)?;
        let allowed = allowed_tokens(&llm);
        let s = settings();
        let run = optimise(model, &prompt, &init(&llm, 6)?, &allowed, &|_| true, &s)?;
        eprintln!("losses {:?}, passes {}", run.losses, run.forward_passes);
        assert_eq!(run.stopped, GcgStop::Steps);
        assert_eq!(run.steps_done, 10);
        assert_eq!(run.losses.len(), 11);
        assert!(
            run.losses.windows(2).all(|w| w[1] <= w[0]),
            "{:?}",
            run.losses
        );
        let (first, last) = (run.losses[0], run.losses[10]);
        assert!(last < first, "{first} -> {last}");
        assert!(run.suffix.iter().all(|&t| allowed[t as usize]));
        // The reported loss is the suffix's loss.
        let full = [prompt.before.as_slice(), &run.suffix, &prompt.after].concat();
        let check = model.target_losses(&[full.as_slice()], &prompt.target)?[0];
        assert!((check - last).abs() < 1e-4, "{check} vs {last}");
        assert!(run.forward_passes > 10);
        // The same seed gives the same run.
        let again = optimise(model, &prompt, &init(&llm, 6)?, &allowed, &|_| true, &s)?;
        assert_eq!(again, run);
        Ok(())
    }

    #[test]
    fn keep_and_time_limit_are_honoured() -> anyhow::Result<()> {
        let llm = tiny()?;
        let model = llm.model();
        let prompt = prompt(&llm)?;
        let allowed = allowed_tokens(&llm);
        let start = init(&llm, 6)?;
        let s = GcgSettings {
            steps: 3,
            ..settings()
        };
        let run = optimise(model, &prompt, &start, &allowed, &|_| false, &s)?;
        assert_eq!(run.suffix, start);
        assert_eq!(run.steps_done, 3);
        assert!(run.losses.iter().all(|&l| l == run.losses[0]));
        assert_eq!(run.forward_passes, 1);

        let timed = GcgSettings {
            max_seconds: Some(0.0),
            ..settings()
        };
        let run = optimise(model, &prompt, &start, &allowed, &|_| true, &timed)?;
        assert_eq!(run.stopped, GcgStop::Time);
        assert_eq!(run.steps_done, 0);
        assert_eq!(run.losses.len(), 1);
        Ok(())
    }

    #[test]
    fn bad_inputs_are_rejected() -> anyhow::Result<()> {
        let llm = tiny()?;
        let model = llm.model();
        let p = prompt(&llm)?;
        let allowed = allowed_tokens(&llm);
        let start = init(&llm, 6)?;
        let s = settings();
        let keep = |_: &[u32]| true;
        let run = |p: &GcgPrompt, init: &[u32], allowed: &[bool], s: &GcgSettings| {
            optimise(model, p, init, allowed, &keep, s)
        };
        let no_target = GcgPrompt {
            target: Vec::new(),
            ..p.clone()
        };
        assert!(matches!(
            run(&no_target, &start, &allowed, &s),
            Err(GcgError::EmptyTarget)
        ));
        assert!(matches!(
            run(&p, &start[..5], &allowed, &s),
            Err(GcgError::InitLength {
                got: 5,
                expected: 6
            })
        ));
        assert!(matches!(
            run(&p, &start, &allowed[1..], &s),
            Err(GcgError::MaskLength { .. })
        ));
        assert!(matches!(
            run(&p, &start, &vec![false; allowed.len()], &s),
            Err(GcgError::NoAllowedToken)
        ));
        let mut out_of_range = start.clone();
        out_of_range[0] = 100_000;
        assert!(matches!(
            run(&p, &out_of_range, &allowed, &s),
            Err(GcgError::TokenOutOfRange { token: 100_000, .. })
        ));
        for broken in [
            GcgSettings {
                top_k: 0,
                ..settings()
            },
            GcgSettings {
                batch_size: 0,
                ..settings()
            },
            GcgSettings {
                candidates_per_step: 0,
                ..settings()
            },
            GcgSettings {
                suffix_tokens: 0,
                ..settings()
            },
            GcgSettings {
                max_seconds: Some(f64::NAN),
                ..settings()
            },
        ] {
            assert!(
                matches!(
                    run(&p, &start, &allowed, &broken),
                    Err(GcgError::Settings(_))
                ),
                "{broken:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn top_k_picks_the_most_negative_allowed_tokens() -> anyhow::Result<()> {
        let grad = Tensor::new(
            &[
                [0.5f32, -1.0, -3.0, f32::NAN, -2.0],
                [1.0, 2.0, 3.0, 4.0, 5.0],
            ],
            &Device::Cpu,
        )?;
        let allowed = [true, true, true, true, false];
        let top = top_k_substitutions(&grad, &allowed, &[2, 0], 2)?;
        // Row 0: 2 is current, 3 is NaN, 4 is not allowed.
        assert_eq!(top, vec![vec![1, 0], vec![1, 2]]);
        Ok(())
    }
}
