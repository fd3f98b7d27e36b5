//! The `layerscope` binary: everything is in the library; this only returns its exit code.

fn main() {
    std::process::exit(layerscope::cli::main());
}
