//! Logging: `tracing` to stderr, as text or JSON lines, filtered by the configured level
//! (a `tracing` filter such as `info` or `mehrd=debug,tower=warn`; `RUST_LOG` is not read so
//! that the config layers stay the one source).
//!
//! Colour escapes are written only when stderr is a terminal and `NO_COLOR` is unset: a log
//! file or the journal would otherwise keep them as noise.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Fails when the filter does not parse.
pub fn init(config: &LogConfig) -> Result<(), String> {
    let filter = EnvFilter::try_new(&config.level)
        .map_err(|e| format!("invalid log level `{}`: {e}", config.level))?;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match config.format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_ansi(wants_colour())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}

/// Colour on a terminal, unless the user opted out (<https://no-color.org>).
fn wants_colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
