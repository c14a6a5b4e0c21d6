//! Issue 18's goals next to the figures measured, and `--check`: a run fails when a *ratio*
//! misses its goal by more than the tolerance. Ratios (a fraction of a quota, calls per core,
//! a share of `/health`, a slowdown) mean the same on a loaded CI machine as on a quiet one;
//! absolute figures (cores/s, milliseconds, MiB) are printed with their verdict but never
//! checked, because a small run on a shared machine says little about them.

/// How much worse than its goal a ratio may be before `--check` fails: 5 % of the goal.
pub const TOLERANCE: f64 = 0.05;

/// Which way is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// One figure and its goal.
#[derive(Debug, Clone)]
pub struct Goal {
    pub figure: String,
    pub value: f64,
    pub goal: f64,
    pub better: Better,
    /// Ratios are checked; absolute figures only reported.
    pub ratio: bool,
}

impl Goal {
    pub fn ratio(figure: impl Into<String>, value: f64, better: Better, goal: f64) -> Self {
        Self { figure: figure.into(), value, goal, better, ratio: true }
    }

    pub fn absolute(figure: impl Into<String>, value: f64, better: Better, goal: f64) -> Self {
        Self { figure: figure.into(), value, goal, better, ratio: false }
    }

    /// Met outright.
    pub fn met(&self) -> bool {
        match self.better {
            Better::Higher => self.value >= self.goal,
            Better::Lower => self.value <= self.goal,
        }
    }

    /// Missed by more than the tolerance (what `--check` fails on, for ratios).
    pub fn missed(&self) -> bool {
        match self.better {
            Better::Higher => self.value < self.goal * (1.0 - TOLERANCE),
            Better::Lower => self.value > self.goal * (1.0 + TOLERANCE),
        }
    }

    fn verdict(&self) -> &'static str {
        match (self.met(), self.missed(), self.ratio) {
            (true, _, _) => "met",
            (false, false, _) => "within tolerance",
            (false, true, true) => "MISSED",
            (false, true, false) => "missed (absolute: not checked)",
        }
    }
}

/// Prints the goals of a run; `Err` with the missed ratios when `check` is on.
pub fn report(goals: &[Goal], check: bool) -> anyhow::Result<()> {
    if goals.is_empty() {
        return Ok(());
    }
    println!("  goals (issue 18; ratios fail `--check` beyond {:.0} %):", TOLERANCE * 100.0);
    let width = goals.iter().map(|g| g.figure.len()).max().unwrap_or(0);
    for g in goals {
        let sign = match g.better {
            Better::Higher => ">=",
            Better::Lower => "<=",
        };
        println!("    {:<width$}  {:>10.3}  goal {sign} {:<8}  {}", g.figure, g.value, g.goal, g.verdict());
    }
    let missed: Vec<String> = goals
        .iter()
        .filter(|g| g.ratio && g.missed())
        .map(|g| format!("{} = {:.3} (goal {})", g.figure, g.value, g.goal))
        .collect();
    if check && !missed.is_empty() {
        anyhow::bail!(
            "--check: {} missed: {}",
            if missed.len() == 1 { "a ratio" } else { "ratios" },
            missed.join("; ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_fail_beyond_the_tolerance_and_absolutes_never() {
        let within = Goal::ratio("calls per core", 2.05, Better::Lower, 2.0);
        assert!(!within.met() && !within.missed());
        let missed = Goal::ratio("fraction of quota", 0.80, Better::Higher, 0.9);
        assert!(missed.missed());
        assert!(report(&[within], true).is_ok());
        assert!(report(std::slice::from_ref(&missed), true).is_err());
        assert!(report(&[missed], false).is_ok(), "without --check it only prints");
        let slow = Goal::absolute("cores/s", 131.0, Better::Higher, 1000.0);
        assert!(slow.missed() && report(&[slow], true).is_ok(), "absolute figures are not checked");
    }
}
