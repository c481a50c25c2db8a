//! Log set-up: tracing-subscriber on stderr, text or JSON lines.

use tracing_subscriber::EnvFilter;

use super::config::LogFormat;

/// Installs the global subscriber. `$NFTOPO_LOG` (an `EnvFilter`
/// directive) wins; otherwise `default_level` raised by `verbosity`
/// (1: debug, 2 and more: trace).
pub fn init(format: LogFormat, verbosity: u8, default_level: &str) {
    let level = match verbosity {
        0 => default_level,
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("NFTOPO_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}
