//! `vigil-eval`: the evaluation CLI (the appliance exposes the same as `vigil eval`).

fn main() -> anyhow::Result<()> {
    vigil_datasets::cli::run(std::env::args_os())
}
