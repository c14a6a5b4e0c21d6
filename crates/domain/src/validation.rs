//! Collecting validation problems with the field path they concern, so one 400 response can
//! name every problem in a request instead of the first one only.

use std::fmt;

/// One problem with one field of a request, e.g. `components[2].version`: "must be a semantic version".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// Path of the field in the request body, in the `a.b[3].c` notation.
    pub field: String,
    /// What is wrong, in words a person can act on.
    pub problem: String,
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

/// An ordered list of field problems; empty means valid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(Vec<FieldProblem>);

impl Problems {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem with `field`.
    pub fn add(&mut self, field: impl Into<String>, problem: impl Into<String>) {
        self.0.push(FieldProblem { field: field.into(), problem: problem.into() });
    }

    /// Runs a fallible parse and records its error under `field`; `None` when it failed.
    pub fn check<T, E: fmt::Display>(&mut self, field: impl Into<String>, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(err) => {
                self.add(field, err.to_string());
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<FieldProblem> {
        self.0
    }

    pub fn iter(&self) -> impl Iterator<Item = &FieldProblem> {
        self.0.iter()
    }

    /// `Ok(value)` when no problem was recorded, otherwise the problems.
    pub fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, Problems> {
        if self.0.is_empty() { Ok(value()) } else { Err(self) }
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}
