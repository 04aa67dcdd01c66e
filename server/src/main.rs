use std::process::ExitCode;

use server::config::Settings;
use server::startup::Application;
use server::telemetry;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("folio: configuration error: {error}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(&settings.log_filter, settings.log_json);
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(error) => {
            eprintln!("folio: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("folio: server error: {error}");
            ExitCode::FAILURE
        }
    }
}
