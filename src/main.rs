//! The `scimd` binary: parse the command line, set up logging, run the command.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match scimd::cli::parse(std::env::args_os()) {
        Ok(cli) => cli,
        // A usage error (exit 2), or the help or version that was asked for (exit 0).
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
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
    match scimd::commands::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scimd: {e}");
            ExitCode::FAILURE
        }
    }
}
