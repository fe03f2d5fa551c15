//! A few small functions with tests, so the demo's pipeline has something
//! to check, build, test and lint.

/// The greeting the program prints for `name`; an empty or blank name
/// greets the world.
///
/// ```
/// assert_eq!(hello_ci::greeting("CI"), "Hello, CI!");
/// assert_eq!(hello_ci::greeting("  "), "Hello, world!");
/// ```
pub fn greeting(name: &str) -> String {
    let name = name.trim();
    if name.is_empty() {
        "Hello, world!".to_string()
    } else {
        format!("Hello, {name}!")
    }
}

/// Summary of a build's step outcomes, as a CI page would show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
}

impl Tally {
    /// Counts `ok` and anything else (as failures) in a comma-separated list.
    pub fn from_outcomes(outcomes: &str) -> Self {
        outcomes
            .split(',')
            .map(str::trim)
            .filter(|outcome| !outcome.is_empty())
            .fold(Tally::default(), |mut tally, outcome| {
                if outcome == "ok" {
                    tally.passed += 1;
                } else {
                    tally.failed += 1;
                }
                tally
            })
    }

    /// True when something ran and nothing failed.
    pub fn is_green(&self) -> bool {
        self.failed == 0 && self.passed > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_by_name() {
        assert_eq!(greeting("Ferris"), "Hello, Ferris!");
    }

    #[test]
    fn trims_the_name() {
        assert_eq!(greeting("  Ferris \n"), "Hello, Ferris!");
    }

    #[test]
    fn greets_the_world_without_a_name() {
        assert_eq!(greeting(""), "Hello, world!");
    }

    #[test]
    fn tallies_outcomes() {
        let tally = Tally::from_outcomes("ok, ok,failed,, ok");
        assert_eq!(tally, Tally { passed: 3, failed: 1 });
        assert!(!tally.is_green());
    }

    #[test]
    fn nothing_run_is_not_green() {
        assert!(!Tally::from_outcomes("").is_green());
        assert!(Tally::from_outcomes("ok").is_green());
    }
}
