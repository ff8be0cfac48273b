//! `httpower check`: validate a configuration file and show what it means.

use std::path::Path;
use std::process::ExitCode;

use httpower::config::Config;
use httpower::stores::Stores;

use crate::output;

/// Loads the configuration, builds its stores without connecting, prints the effective settings (units shown, secrets
/// redacted) and exits 0; on an invalid file prints the error with its key path and
/// exits 1.
pub(crate) fn run(path: Option<&Path>) -> ExitCode {
    match Config::load(path) {
        Ok(config) => {
            // Builds every store (no connection is opened) so that settings a store
            // cannot honour are reported here, not at the first request.
            if let Err(err) = Stores::new(&config).build_all() {
                return output::fail(&err.to_string());
            }
            output::out(&config.render_effective());
            output::note("configuration is valid");
            ExitCode::SUCCESS
        }
        Err(err) => output::fail(&err.to_string()),
    }
}
