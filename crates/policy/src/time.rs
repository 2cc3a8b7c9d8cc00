//! UTC timestamps as Unix seconds, and the calendar arithmetic the ledger's day and month windows
//! need. Timestamps and civil dates are hand-rolled: the engine writes window keys on every
//! decision. Only the store's time zone, when it is not UTC, goes to the IANA database (`jiff`):
//! the offset of an instant is all it is asked for.

use std::fmt;

/// A point in time, in whole seconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The timestamp `seconds` after the Unix epoch.
    pub const fn from_unix(seconds: i64) -> Self {
        Self(seconds)
    }

    /// Seconds since the Unix epoch.
    pub const fn unix(self) -> i64 {
        self.0
    }

    /// The current time of the system clock.
    pub fn now() -> Self {
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Self(seconds)
    }

    /// Parses an RFC 3339 date-time (`2026-11-22T18:00:00Z`, `2026-11-22T19:00:00+01:00`,
    /// fractional seconds ignored) or a bare date (`2026-11-22`, midnight UTC).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let bytes = text.as_bytes();
        let (date, rest) = (bytes.get(..10)?, bytes.get(10..)?);
        let (year, month, day) = parse_date(date)?;
        let days = days_from_civil(year, month, day);
        if rest.is_empty() {
            return days.checked_mul(86_400).map(Self);
        }
        if !matches!(rest.first(), Some(b'T' | b't' | b' ')) {
            return None;
        }
        let rest = rest.get(1..)?;
        let hour = two_digits(rest.get(0..2)?)?;
        let minute = two_digits(rest.get(3..5)?)?;
        let second = two_digits(rest.get(6..8)?)?;
        if rest.get(2) != Some(&b':') || rest.get(5) != Some(&b':') {
            return None;
        }
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        let mut rest = rest.get(8..)?;
        if rest.first() == Some(&b'.') {
            let digits = rest
                .iter()
                .skip(1)
                .take_while(|b| b.is_ascii_digit())
                .count();
            if digits == 0 {
                return None;
            }
            rest = rest.get(1 + digits..)?;
        }
        let offset = match rest {
            b"Z" | b"z" => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let hours = two_digits(&[*h1, *h2]).filter(|h| *h <= 23)?;
                let minutes = two_digits(&[*m1, *m2]).filter(|m| *m <= 59)?;
                let offset = i64::from(hours * 3600 + minutes * 60);
                if *sign == b'-' { -offset } else { offset }
            }
            _ => return None,
        };
        let seconds = days
            .checked_mul(86_400)?
            .checked_add(i64::from(hour * 3600 + minute * 60 + second))?
            .checked_sub(offset)?;
        Some(Self(seconds))
    }

    /// The UTC calendar date, `YYYY-MM-DD`: the key of the ledger's daily window.
    pub fn day_key(self) -> String {
        let (y, m, d) = civil_from_days(self.0.div_euclid(86_400));
        let mut key = String::with_capacity(10);
        push_date(&mut key, y, m, Some(d));
        key
    }

    /// The UTC calendar month, `YYYY-MM`: the key of the ledger's monthly window.
    pub fn month_key(self) -> String {
        let (y, m, _) = civil_from_days(self.0.div_euclid(86_400));
        let mut key = String::with_capacity(7);
        push_date(&mut key, y, m, None);
        key
    }

    /// Minutes since the epoch: the key of the ledger's rate window.
    pub const fn minute_key(self) -> i64 {
        self.0.div_euclid(60)
    }

    /// This timestamp plus `seconds`, saturating.
    pub const fn saturating_add(self, seconds: i64) -> Self {
        Self(self.0.saturating_add(seconds))
    }
}

/// The time zone a store's budget windows follow: a daily cap covers the store's calendar day,
/// from its local midnight to the next, and a monthly cap its calendar month. UTC unless
/// `scopes.toml` names another (`time_zone = "America/New_York"`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Zone {
    /// `None` is UTC, the fast path with no lookup.
    zone: Option<(String, jiff::tz::TimeZone)>,
}

/// The day and month windows an instant falls in, as ledger keys (`2026-11-22`, `2026-11`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Windows {
    /// The calendar date in the store's time zone.
    pub day: String,
    /// The calendar month in the store's time zone.
    pub month: String,
}

impl Zone {
    /// Coordinated Universal Time.
    pub const fn utc() -> Self {
        Self { zone: None }
    }

    /// The IANA time zone `name` (`Europe/Berlin`); `UTC` and `Etc/UTC` are [`Zone::utc`].
    /// The error says why the name is not one.
    pub fn named(name: &str) -> Result<Self, String> {
        if matches!(name, "UTC" | "Etc/UTC" | "Z") {
            return Ok(Self::utc());
        }
        let zone = jiff::tz::TimeZone::get(name)
            .map_err(|_| format!("`{name}` is not a time zone of the IANA database"))?;
        Ok(Self {
            zone: Some((name.to_owned(), zone)),
        })
    }

    /// The zone's IANA name (`UTC` for UTC).
    pub fn name(&self) -> &str {
        self.zone.as_ref().map_or("UTC", |(name, _)| name)
    }

    /// The offset from UTC in force at `at`, in seconds (daylight saving time included).
    pub fn offset_seconds(&self, at: Timestamp) -> i64 {
        let Some((_, zone)) = &self.zone else {
            return 0;
        };
        jiff::Timestamp::from_second(at.unix())
            .map_or(0, |t| i64::from(zone.to_offset(t).seconds()))
    }

    /// The day and month windows `at` falls in.
    pub fn windows(&self, at: Timestamp) -> Windows {
        let local = at.saturating_add(self.offset_seconds(at));
        Windows {
            day: local.day_key(),
            month: local.month_key(),
        }
    }
}

/// Appends `YYYY-MM` or `YYYY-MM-DD` without the formatting machinery: the engine writes these
/// keys on every decision. Years outside 0..=9999 fall back to `format!`.
fn push_date(out: &mut String, y: i64, m: u32, d: Option<u32>) {
    fn two(out: &mut String, n: u32) {
        out.push(char::from(b'0' + (n / 10 % 10) as u8));
        out.push(char::from(b'0' + (n % 10) as u8));
    }
    match u32::try_from(y) {
        Ok(y) if y <= 9999 => {
            two(out, y / 100);
            two(out, y % 100);
        }
        _ => out.push_str(&format!("{y:04}")),
    }
    out.push('-');
    two(out, m);
    if let Some(d) = d {
        out.push('-');
        two(out, d);
    }
}

/// Serialized as RFC 3339 (`2026-11-22T18:00:00Z`).
impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Read back from RFC 3339, as [`Timestamp::parse`] reads it.
impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not an RFC 3339 time")))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    }
}

fn two_digits(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
            Some(u32::from(a - b'0') * 10 + u32::from(b - b'0'))
        }
        _ => None,
    }
}

fn parse_date(bytes: &[u8]) -> Option<(i64, u32, u32)> {
    if bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
        return None;
    }
    let year = std::str::from_utf8(bytes.get(0..4)?).ok()?;
    if !year.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i64 = year.parse().ok()?;
    let month = two_digits(bytes.get(5..7)?)?;
    let day = two_digits(bytes.get(8..10)?)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some((year, month, day))
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's `days_from_civil`, for the proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339_and_dates() {
        assert_eq!(Timestamp::parse("1970-01-01T00:00:00Z"), Some(Timestamp(0)));
        assert_eq!(Timestamp::parse("1970-01-02"), Some(Timestamp(86_400)));
        assert_eq!(
            Timestamp::parse("2026-11-22T19:00:00+01:00"),
            Timestamp::parse("2026-11-22T18:00:00Z")
        );
        assert_eq!(
            Timestamp::parse("2026-11-22T18:00:00.123Z"),
            Timestamp::parse("2026-11-22T18:00:00Z")
        );
        assert_eq!(
            Timestamp::parse("2024-02-29T00:00:00Z").map(Timestamp::unix),
            Some(1_709_164_800)
        );
        for bad in [
            "2025-02-29",
            "2026-13-01",
            "2026-11-22T25:00:00Z",
            "2026-11-22T18:00:00",
            "2026-11-22T18:00:00+99:99",
            "2026-11-22T18:00:00+24:00",
            "2026-11-22T18:00:00-05:60",
            "yesterday",
            "",
        ] {
            assert_eq!(Timestamp::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn windows_follow_the_zone_across_midnight_and_daylight_saving() {
        let utc = Zone::utc();
        let new_york = Zone::named("America/New_York").unwrap();
        let at = |text: &str| Timestamp::parse(text).unwrap();
        // 04:59 UTC on the 1st of December is still the 30th of November in New York (UTC-5).
        let t = at("2026-12-01T04:59:59Z");
        assert_eq!(utc.windows(t).day, "2026-12-01");
        assert_eq!(new_york.windows(t).day, "2026-11-30");
        assert_eq!(new_york.windows(t).month, "2026-11");
        assert_eq!(new_york.windows(t.saturating_add(1)).day, "2026-12-01");
        assert_eq!(new_york.windows(t.saturating_add(1)).month, "2026-12");
        // In July, daylight saving time: midnight is 04:00 UTC.
        assert_eq!(
            new_york.windows(at("2026-07-15T03:59:59Z")).day,
            "2026-07-14"
        );
        assert_eq!(
            new_york.windows(at("2026-07-15T04:00:00Z")).day,
            "2026-07-15"
        );
        // East of Greenwich, and a half-hour zone.
        let kolkata = Zone::named("Asia/Kolkata").unwrap();
        assert_eq!(
            kolkata.windows(at("2026-12-31T18:30:00Z")).day,
            "2027-01-01"
        );
        assert_eq!(kolkata.windows(at("2026-12-31T18:29:59Z")).month, "2026-12");
        assert_eq!(Zone::named("UTC").unwrap(), utc);
        assert_eq!(new_york.name(), "America/New_York");
        let error = Zone::named("Mars/Olympus_Mons").unwrap_err();
        assert!(error.contains("`Mars/Olympus_Mons`"), "{error}");
    }

    #[test]
    fn windows_are_utc_calendar_keys() {
        let t = Timestamp::parse("2026-12-31T23:59:59Z").unwrap();
        assert_eq!(t.day_key(), "2026-12-31");
        assert_eq!(t.month_key(), "2026-12");
        assert_eq!(t.saturating_add(1).day_key(), "2027-01-01");
        assert_eq!(t.saturating_add(1).month_key(), "2027-01");
        assert_eq!(t.to_string(), "2026-12-31T23:59:59Z");
        assert_eq!(Timestamp(-1).to_string(), "1969-12-31T23:59:59Z");
    }
}
