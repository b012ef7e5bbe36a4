//! weft CNI plugin (filled by the runtimes issue). Until then it refuses every command.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("weft-cni: the CNI plugin is not implemented yet; use `weft attach`");
    ExitCode::from(1)
}
