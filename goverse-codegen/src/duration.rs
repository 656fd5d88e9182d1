//! Human-friendly durations used in attribute options (`idle_timeout = "10m"`).

use std::time::Duration;

/// Parses a duration written as one or more `<number><unit>` parts, such as
/// `"500ms"`, `"30s"`, `"10m"`, `"1h30m"` or `"2d"`.
///
/// Units: `ms`, `s`, `m`, `h`, `d`.
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
/// assert!(goverse_codegen::duration::parse("10 minutes").is_err());
/// ```
pub fn parse(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err("empty duration; write e.g. \"30s\", \"10m\" or \"1h\"".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "expected a number at `{rest}` in duration `{text}`"
            ));
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("number too large in duration `{text}`"))?;
        let millis_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(format!(
                    "missing unit after `{number}` in duration `{text}`; use ms, s, m, h or d"
                ));
            }
            other => {
                return Err(format!(
                    "unknown unit `{other}` in duration `{text}`; use ms, s, m, h or d"
                ));
            }
        };
        let millis = number
            .checked_mul(millis_per_unit)
            .ok_or_else(|| format!("duration `{text}` is too large"))?;
        total = total
            .checked_add(Duration::from_millis(millis))
            .ok_or_else(|| format!("duration `{text}` is too large"))?;
        rest = after;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_compound_parts() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("2d"), Ok(Duration::from_secs(172_800)));
    }

    #[test]
    fn rejects_bad_text_with_a_reason() {
        assert!(parse("").unwrap_err().contains("empty"));
        assert!(parse("10").unwrap_err().contains("missing unit"));
        assert!(parse("10y").unwrap_err().contains("unknown unit `y`"));
        assert!(parse("m").unwrap_err().contains("expected a number"));
        assert!(
            parse("99999999999999999999s")
                .unwrap_err()
                .contains("too large")
        );
    }
}
