//! A detector that answers each text once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use folio_core::{Detector, Suspicion};

/// Wraps a detector and keeps its verdict on every text it has seen: evaluations inspect the
/// same texts many times (every defended system, every trial and defense of a GEO scenario),
/// and a model-based detector costs a forward pass per text.
pub(crate) struct Remembered {
    inner: Arc<dyn Detector>,
    seen: Mutex<HashMap<String, (Option<Suspicion>, f64)>>,
}

impl Remembered {
    pub(crate) fn new(inner: Arc<dyn Detector>) -> Self {
        Remembered {
            inner,
            seen: Mutex::new(HashMap::new()),
        }
    }
}

impl Detector for Remembered {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn assess(&self, text: &str) -> (Option<Suspicion>, f64) {
        let seen = || self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = seen().get(text) {
            return v.clone();
        }
        let v = self.inner.assess(text);
        seen().insert(text.to_string(), v.clone());
        v
    }
}
