//! scripts/bench-retry.sh: a suite of 1000 tests where one fails once.

/// Panics on the first attempt (CI_TEST_ATTEMPT unset or 1).
pub fn fail_on_first_attempt() {
    let attempt: u32 = std::env::var("CI_TEST_ATTEMPT")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1);
    assert!(attempt > 1, "fails on attempt {attempt}");
}

#[cfg(test)]
mod tests {
    include!(concat!(env!("OUT_DIR"), "/tests.rs"));
}
