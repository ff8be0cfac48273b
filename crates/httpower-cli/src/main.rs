//! The `httpower` command.

fn main() {}
