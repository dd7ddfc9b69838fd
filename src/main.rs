//! The `scimd` binary: parse the command line, set up logging, run the command.

use std::process::ExitCode;

fn main() -> ExitCode {
    let json = scimd::config::log_format_is_json();
    let cli = match scimd::cli::parse(std::env::args_os()) {
        Ok(cli) => cli,
        // A usage error (exit 2), or the help or version that was asked for (exit 0).
        Err(e) => {
            let code = ExitCode::from(e.exit_code().clamp(0, 255) as u8);
            if json && e.use_stderr() {
                // A log shipper reading a container's output takes only JSON lines.
                eprintln!("{}", json_line("ERROR", "scimd", e.render().to_string().trim_end()));
            } else {
                let _ = e.print();
            }
            return code;
        }
    };
    let mut logger = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("scimd=info"));
    if json {
        logger.format(|buf, record| {
            use std::io::Write;
            writeln!(buf, "{}", json_line(&record.level().to_string(), record.target(), &record.args().to_string()))
        });
    }
    logger.init();
    scimd::tenant::owner_only_umask();
    match scimd::commands::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Written directly, not through the logger: RUST_LOG may filter ERROR out, and
            // why the process stopped must always reach its output, in the configured format
            // (an unreadable key in a container is otherwise the one plain-text line).
            if json {
                eprintln!("{}", json_line("ERROR", "scimd", &e.to_string()));
            } else {
                eprintln!("scimd: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// One log line of `SCIMD_LOG_FORMAT=json`.
fn json_line(level: &str, target: &str, msg: &str) -> serde_json::Value {
    serde_json::json!({
        "ts": scimd::clock::UtcMillis::now().to_rfc3339(),
        "level": level,
        "target": target,
        "msg": msg,
    })
}
