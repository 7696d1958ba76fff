//! Logging setup shared by every binary: JSON lines inside Lambda (CloudWatch Logs Insights can
//! query the fields), human-readable text elsewhere. Lambda's own log settings are honoured:
//! `AWS_LAMBDA_LOG_LEVEL` (the function's "application log level") and `AWS_LAMBDA_LOG_FORMAT`
//! (`JSON` or `Text`). `RUST_LOG` still takes precedence for the filter, `LOG_FORMAT=json` asks
//! for JSON outside Lambda. The default level is `info`.

/// The filter directive and whether to write JSON, from the environment.
fn settings(var: impl Fn(&str) -> Option<String>) -> (String, bool) {
    let level = var("AWS_LAMBDA_LOG_LEVEL").map(|l| match l.to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "WARN" => "warn",
        "ERROR" | "FATAL" => "error",
        _ => "info",
    });
    let filter = var("RUST_LOG")
        .filter(|f| !f.trim().is_empty())
        .or(level.map(str::to_owned))
        .unwrap_or_else(|| "info".to_owned());
    let in_lambda = var("AWS_LAMBDA_FUNCTION_NAME").is_some();
    let json = match var("AWS_LAMBDA_LOG_FORMAT") {
        Some(f) if f.eq_ignore_ascii_case("text") => false,
        Some(f) if f.eq_ignore_ascii_case("json") => true,
        _ => in_lambda || var("LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json")),
    };
    (filter, json)
}

pub fn init() {
    let (directive, json) = settings(|k| std::env::var(k).ok());
    let filter = tracing_subscriber::EnvFilter::try_new(&directive)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .with_current_span(false)
            .without_time()
            .try_init()
    } else {
        builder.compact().try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> (String, bool) {
        settings(|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn lambdas_log_settings_are_honoured() {
        assert_eq!(with(&[]), ("info".into(), false));
        assert_eq!(
            with(&[("AWS_LAMBDA_FUNCTION_NAME", "f")]),
            ("info".into(), true)
        );
        assert_eq!(
            with(&[
                ("AWS_LAMBDA_FUNCTION_NAME", "f"),
                ("AWS_LAMBDA_LOG_LEVEL", "DEBUG"),
                ("AWS_LAMBDA_LOG_FORMAT", "Text")
            ]),
            ("debug".into(), false)
        );
        assert_eq!(with(&[("AWS_LAMBDA_LOG_LEVEL", "FATAL")]).0, "error");
        assert_eq!(
            with(&[("AWS_LAMBDA_LOG_LEVEL", "WARN"), ("RUST_LOG", "etl=trace")]).0,
            "etl=trace",
            "RUST_LOG wins"
        );
        assert!(with(&[("AWS_LAMBDA_LOG_FORMAT", "JSON")]).1);
        assert!(with(&[("LOG_FORMAT", "json")]).1);
    }
}
