//! The `keyscope` command line.
fn main() {}
