use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once, and the hook that logs panics
/// through it (`crate::panics`); later calls (tests) are ignored.
pub fn init(filter: &str, json: bool) {
    crate::panics::install_hook();
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
