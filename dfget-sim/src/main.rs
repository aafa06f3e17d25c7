//! `dfget-sim`: one dfget 1.0.6-compatible download through a supernode (see `dfget_sim::cli`).

fn main() {
    dfget_sim::cli::main();
}
