//! The `scimd` binary: parse the command line, set up logging, run the command.

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let command = match scimd::cli::parse(argv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("scimd: {e}");
            return ExitCode::from(2);
        }
    };
    let mut logger = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("scimd=info"));
    if scimd::config::log_format_is_json() {
        logger.format(|buf, record| {
            use std::io::Write;
            let line = serde_json::json!({
                "ts": scimd::clock::UtcMillis::now().to_rfc3339(),
                "level": record.level().to_string(),
                "target": record.target(),
                "msg": record.args().to_string(),
            });
            writeln!(buf, "{line}")
        });
    }
    logger.init();
    scimd::tenant::owner_only_umask();
    match scimd::commands::run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scimd: {e}");
            ExitCode::FAILURE
        }
    }
}
