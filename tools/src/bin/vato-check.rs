//! `vato-check`: run the end-to-end checks against a Vato server.
//!
//! Exit status: 0 when every check passed, 1 when one failed (or the JSON
//! report could not be written), 2 on a usage error.

use std::process::ExitCode;

use clap::Parser;
use vato_tools::check::{self, Config};

fn main() -> ExitCode {
    let config = Config::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("vato-check: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(check::run(&config));
    println!("{}", report.summary());

    let mut ok = report.failed() == 0;
    if let Some(path) = &config.json {
        if let Err(err) = report.write_json(path, &config) {
            eprintln!("vato-check: cannot write {}: {err}", path.display());
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
