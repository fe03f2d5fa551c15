//! `hello-ci [NAME]`: prints a greeting.

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    println!("{}", hello_ci::greeting(&name));
}
