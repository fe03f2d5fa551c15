//! Writes the 1000 tests into OUT_DIR/tests.rs (src/lib.rs includes it):
//! each waits 5 ms, as a test that does a little I/O; `t0500` fails unless
//! CI_TEST_ATTEMPT is 2 or more.
use std::fmt::Write;

fn main() {
    let mut tests = String::new();
    for i in 0..1000 {
        let check = if i == 500 { "crate::fail_on_first_attempt();" } else { "" };
        writeln!(
            tests,
            "#[test] fn t{i:04}() {{ std::thread::sleep(std::time::Duration::from_millis(5)); {check} }}"
        )
        .unwrap();
    }
    let out = std::env::var("OUT_DIR").unwrap();
    std::fs::write(format!("{out}/tests.rs"), tests).unwrap();
    println!("cargo:rerun-if-changed=build.rs");
}
