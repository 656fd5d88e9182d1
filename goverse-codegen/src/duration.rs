//! Human-friendly durations used in attribute options (`idle_timeout = "10m"`).

use std::time::Duration;

/// Parses a duration as goverse writes them everywhere (attribute options,
/// node files, flags): one or more `<number><unit>` parts, such as
/// `"500ms"`, `"30s"`, `"10m"`, `"1h30m"` or `"2d"` (humantime's format,
/// which also takes `"1h 30m"` and unit names like `"2days"`).
///
/// # Errors
///
/// Returns a message naming the problem when the text is empty, has a part
/// without a unit or with an unknown unit, or overflows.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// assert_eq!(goverse_codegen::duration::parse("1h30m"), Ok(Duration::from_secs(5400)));
/// assert!(goverse_codegen::duration::parse("90").is_err());
/// ```
pub fn parse(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| {
        format!("duration `{text}`: {e} (write e.g. \"500ms\", \"30s\", \"10m\" or \"1h\")")
    })
}
