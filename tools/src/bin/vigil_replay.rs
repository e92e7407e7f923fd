//! `vigil-replay`: the replay command line; `vigil replay …` execs it with
//! `vigil replay` as its program name.

fn main() -> anyhow::Result<()> {
    vigil_tools::replay_cli::run(std::env::args_os())
}
