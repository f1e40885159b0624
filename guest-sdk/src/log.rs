//! Logging to the bridge's log. The host tags each line with the plugin name, truncates long
//! lines and rate-limits. Natively (in unit tests) lines go to stderr.

#[cfg(target_arch = "wasm32")]
use crate::bindings::bridge::plugin::host::{self, LogLevel};

macro_rules! level {
    ($(#[$doc:meta])* $name:ident, $level:ident) => {
        $(#[$doc])*
        pub fn $name(message: &str) {
            #[cfg(target_arch = "wasm32")]
            host::log(LogLevel::$level, message);
            #[cfg(not(target_arch = "wasm32"))]
            eprintln!("[{}] {message}", stringify!($level));
        }
    };
}

level!(
    /// Logs at debug level.
    debug, Debug
);
level!(
    /// Logs at info level.
    info, Info
);
level!(
    /// Logs at warn level.
    warn, Warn
);
level!(
    /// Logs at error level.
    error, Error
);
