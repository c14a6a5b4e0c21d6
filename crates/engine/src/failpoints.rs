//! Named points where tests can make processing stop as if the process had died.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::StepError;

/// A set of armed failpoints; each fires once, then disarms.
#[derive(Debug, Clone, Default)]
pub struct Failpoints {
    armed: Arc<Mutex<HashSet<&'static str>>>,
}

impl Failpoints {
    /// Arms `name`: the next time processing reaches it, it stops there.
    pub fn arm(&self, name: &'static str) {
        self.armed.lock().expect("failpoints lock").insert(name);
    }

    pub(crate) fn check(&self, name: &'static str) -> Result<(), StepError> {
        if self.armed.lock().expect("failpoints lock").remove(name) { Err(StepError::Crash(name)) } else { Ok(()) }
    }
}
