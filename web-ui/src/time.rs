//! UTC timestamp formatting and parsing for the console (no time-zone
//! database on the appliance; operators read UTC, marked with `Z`).

const NS: u64 = 1_000_000_000;

/// Days since 1970-01-01 → (year, month, day). Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-23 14:03:05Z`.
pub fn format_ts(ns: u64) -> String {
    let secs = ns / NS;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `2026-11-23T14:03` (the `datetime-local` input format).
pub fn format_input(ns: u64) -> String {
    let secs = ns / NS;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}", s / 3600, s / 60 % 60)
}

/// Parses `YYYY-MM-DDTHH:MM[:SS]` (or with a space), read as UTC.
pub fn parse_input(s: &str) -> Option<u64> {
    let s = s.trim().trim_end_matches('Z');
    let (date, time) = s.split_once(['T', ' '])?;
    let mut dp = date.split('-');
    let y: i64 = dp.next()?.parse().ok()?;
    let m: u32 = dp.next()?.parse().ok()?;
    let d: u32 = dp.next()?.parse().ok()?;
    let mut tp = time.split(':');
    let hh: u64 = tp.next()?.parse().ok()?;
    let mm: u64 = tp.next()?.parse().ok()?;
    let ss: u64 = tp.next().map_or(Some(0), |v| v.parse().ok())?;
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    if hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let days = u64::try_from(days_from_civil(y, m, d)).ok()?;
    Some(((days * 86_400) + hh * 3600 + mm * 60 + ss) * NS)
}

/// `42 s ago`, `5 min ago`, `3 h ago`, `2 d ago`.
pub fn ago(now_ns: u64, then_ns: u64) -> String {
    if then_ns == 0 {
        return "never".into();
    }
    let s = now_ns.saturating_sub(then_ns) / NS;
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..86_400 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// `42 s`, `5 min`, `3 h 20 min`, `2 d 4 h`: a span for humans.
pub fn duration(ns: u64) -> String {
    let s = ns / NS;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_formats() {
        let ns = 1_795_442_585 * NS; // 2026-11-23 14:03:05Z
        assert_eq!(format_ts(ns), "2026-11-23 14:03:05Z");
        assert_eq!(parse_input("2026-11-23T14:03:05"), Some(ns));
        assert_eq!(parse_input(&format_input(ns)), Some(ns - 5 * NS));
        assert_eq!(format_ts(0), "1970-01-01 00:00:00Z");
        assert_eq!(parse_input("2024-02-29T00:00"), Some(1_709_164_800 * NS));
        assert_eq!(parse_input("2024-13-01T00:00"), None);
        assert_eq!(parse_input("garbage"), None);
        assert_eq!(duration(59 * NS), "59 s");
        assert_eq!(duration(3 * 3600 * NS + 20 * 60 * NS), "3 h 20 min");
    }

    #[test]
    fn ago_buckets() {
        assert_eq!(ago(100 * NS, 58 * NS), "42 s ago");
        assert_eq!(ago(4000 * NS, 100 * NS), "1 h ago");
        assert_eq!(ago(4000 * NS, 0), "never");
    }
}
