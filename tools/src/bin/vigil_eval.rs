//! `vigil-eval`: the evaluation command line; `vigil eval …` execs it with
//! `vigil eval` as its program name.

fn main() -> anyhow::Result<()> {
    vigil_tools::eval_cli::run(std::env::args_os())
}
