//! UTC calendar arithmetic and `strftime`-like formatting (no time zones: guests run in UTC).

use std::time::{SystemTime, UNIX_EPOCH};

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

/// Seconds since the Unix epoch (negative before 1970), for a `SystemTime`.
pub fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs() as i64,
        Err(before) => -(before.duration().as_secs() as i64) - 1,
    }
}

impl Utc {
    /// The UTC date and time of `secs` seconds since the Unix epoch.
    pub fn from_unix(secs: i64) -> Utc {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        // Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Utc {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
        }
    }

    /// The current UTC time.
    pub fn now() -> Utc {
        Utc::from_unix(unix_seconds(SystemTime::now()))
    }

    /// ISO 8601, e.g. `2024-02-29T13:05:09Z`.
    pub fn iso8601(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// Formats like `strftime` for `%Y %m %d %H %M %S %F %T %s %z %Z %%`; `secs` feeds `%s`.
    /// Other conversions are copied as they are.
    pub fn format(&self, fmt: &str, secs: i64) -> String {
        let mut out = String::new();
        let mut chars = fmt.chars();
        while let Some(ch) = chars.next() {
            if ch != '%' {
                out.push(ch);
                continue;
            }
            match chars.next() {
                Some('Y') => out.push_str(&format!("{:04}", self.year)),
                Some('m') => out.push_str(&format!("{:02}", self.month)),
                Some('d') => out.push_str(&format!("{:02}", self.day)),
                Some('H') => out.push_str(&format!("{:02}", self.hour)),
                Some('M') => out.push_str(&format!("{:02}", self.minute)),
                Some('S') => out.push_str(&format!("{:02}", self.second)),
                Some('F') => out.push_str(&format!(
                    "{:04}-{:02}-{:02}",
                    self.year, self.month, self.day
                )),
                Some('T') => out.push_str(&format!(
                    "{:02}:{:02}:{:02}",
                    self.hour, self.minute, self.second
                )),
                Some('s') => out.push_str(&secs.to_string()),
                Some('z') => out.push_str("+0000"),
                Some('Z') => out.push_str("UTC"),
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_dates() {
        assert_eq!(Utc::from_unix(0).iso8601(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Utc::from_unix(951_782_400).iso8601(),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            Utc::from_unix(1_709_211_909).iso8601(),
            "2024-02-29T13:05:09Z"
        );
        assert_eq!(Utc::from_unix(-1).iso8601(), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn formats_conversions() {
        let t = Utc::from_unix(1_709_211_909);
        assert_eq!(
            t.format("%F %T %Z", 1_709_211_909),
            "2024-02-29 13:05:09 UTC"
        );
        assert_eq!(t.format("%s|%%|%q", 1_709_211_909), "1709211909|%|%q");
    }
}
