//! CronJob schedules as Kubernetes reads them (robfig/cron's standard parser): five
//! fields (minute, hour, day of month, month, day of week) with `*`, `?`, lists,
//! ranges, steps and month and weekday names; the descriptors `@yearly`, `@annually`,
//! `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly` and `@every DURATION`; a day
//! matching if either day field matches unless one of them is `*`. Times are found in
//! the CronJob's time zone (`spec.timeZone`, else UTC), with the IANA database built in.
//!
//! Parse errors carry robfig's texts, which kube-apiserver returns for `spec.schedule`.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Five fields, as bit sets of the values each allows.
    Fields {
        /// Minutes 0-59.
        minute: u64,
        /// Hours 0-23.
        hour: u64,
        /// Days of the month 1-31.
        dom: u64,
        /// Months 1-12.
        month: u64,
        /// Days of the week 0-6 (Sunday 0).
        dow: u64,
        /// Whether a day field is `*` or `?`: then both must match, else either.
        day_star: bool,
    },
    /// `@every DURATION`: at a fixed interval (whole seconds).
    Every(i64),
}

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn number(s: &str, names: &[&str], offset: u32) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(i as u32 + offset);
    }
    match s.parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("negative number ({n}) not allowed: {s}")),
        Ok(n) => u32::try_from(n).map_err(|_| format!("failed to parse int from {s}: value out of range")),
        Err(_) => Err(format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax")),
    }
}

/// One field's bits and whether it was a star (robfig's `getField`/`getRange`).
fn field(text: &str, min: u32, max: u32, names: &[&str], offset: u32) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for expr in text.split(',') {
        let (range, step) = match expr.split('/').collect::<Vec<_>>().as_slice() {
            [r] => (*r, None),
            [r, s] => (*r, Some(*s)),
            _ => return Err(format!("too many slashes: {expr}")),
        };
        let (start, end) = if range == "*" || range == "?" {
            star = true;
            (min, max)
        } else {
            match range.split('-').collect::<Vec<_>>().as_slice() {
                [a] => {
                    let a = number(a, names, offset)?;
                    (a, if step.is_some() { max } else { a })
                }
                [a, b] => (number(a, names, offset)?, number(b, names, offset)?),
                _ => return Err(format!("too many hyphens: {expr}")),
            }
        };
        let step = match step {
            None => 1,
            Some(s) => match number(s, &[], 0)? {
                0 => return Err(format!("step of range should be a positive number: {expr}")),
                n => {
                    star = false;
                    n
                }
            },
        };
        if start < min {
            return Err(format!("beginning of range ({start}) below minimum ({min}): {expr}"));
        }
        if end > max {
            return Err(format!("end of range ({end}) above maximum ({max}): {expr}"));
        }
        if start > end {
            return Err(format!("beginning of range ({start}) beyond end of range ({end}): {expr}"));
        }
        let mut v = start;
        while v <= end {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

/// A Go duration (`1h30m`, `90s`, `1.5h`), in whole seconds.
fn go_duration(s: &str) -> Option<i64> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        total += value * unit;
        rest = &rest[u..];
    }
    Some(total as i64)
}

impl Schedule {
    /// Parse a schedule.
    ///
    /// # Errors
    /// robfig/cron's message for what is wrong.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
        }
        let expanded = match spec {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with("@every ") => {
                let d = &s["@every ".len()..];
                return match go_duration(d) {
                    Some(secs) if secs >= 1 => Ok(Schedule::Every(secs)),
                    Some(_) => Ok(Schedule::Every(1)),
                    None => Err(format!("failed to parse duration {s}: time: invalid duration {d:?}")),
                };
            }
            s if s.starts_with('@') => return Err(format!("unrecognized descriptor: {s}")),
            s => s,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!("expected exactly 5 fields, found {}: [{}]", fields.len(), fields.join(" ")));
        }
        let (minute, _) = field(fields[0], 0, 59, &[], 0)?;
        let (hour, _) = field(fields[1], 0, 23, &[], 0)?;
        let (dom, dom_star) = field(fields[2], 1, 31, &[], 0)?;
        let (month, _) = field(fields[3], 1, 12, &MONTHS, 1)?;
        let (dow, dow_star) = field(fields[4], 0, 6, &DAYS, 0)?;
        Ok(Schedule::Fields { minute, hour, dom, month, dow, day_star: dom_star || dow_star })
    }

    /// The first time strictly after `after` this schedule fires, in `tz`; None if none
    /// within five years (a date that never comes, as February 30th).
    pub fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let (minute, hour, dom, month, dow, day_star) = match self {
            Schedule::Every(secs) => return after.checked_add(secs.seconds()).ok(),
            Schedule::Fields { minute, hour, dom, month, dow, day_star } => {
                (*minute, *hour, *dom, *month, *dow, *day_star)
            }
        };
        let has = |bits: u64, v: i8| bits & (1 << v) != 0;
        let start = after.to_zoned(tz.clone()).datetime();
        // The next whole minute.
        let mut t = start.with().second(0).subsec_nanosecond(0).build().ok()?.checked_add(1.minute()).ok()?;
        let limit = start.year() + 5;
        while t.year() <= limit {
            if !has(month, t.month()) {
                t = DateTime::new(t.year(), t.month(), 1, 0, 0, 0, 0).ok()?.checked_add(1.month()).ok()?;
                continue;
            }
            let dom_ok = has(dom, t.day());
            let dow_ok = has(dow, t.weekday().to_sunday_zero_offset());
            let day_ok = if day_star { dom_ok && dow_ok } else { dom_ok || dow_ok };
            if !day_ok {
                t = DateTime::new(t.year(), t.month(), t.day(), 0, 0, 0, 0).ok()?.checked_add(1.day()).ok()?;
                continue;
            }
            if !has(hour, t.hour()) {
                t = DateTime::new(t.year(), t.month(), t.day(), t.hour(), 0, 0, 0).ok()?.checked_add(1.hour()).ok()?;
                continue;
            }
            if !has(minute, t.minute()) {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            // A time a DST change skips is taken at its later offset.
            let at = t.to_zoned(tz.clone()).ok()?.timestamp();
            if at > after {
                return Some(at);
            }
            t = t.checked_add(1.minute()).ok()?;
        }
        None
    }
}

/// The time zone of `spec.timeZone` (None: UTC).
///
/// # Errors
/// kube-apiserver's `unknown time zone NAME`.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None => Ok(TimeZone::UTC),
        Some(n) => jiff::tz::db().get(n).map_err(|_| format!("unknown time zone {n}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn parse_errors_are_robfigs() {
        assert_eq!(Schedule::parse("bad").err().as_deref(), Some("expected exactly 5 fields, found 1: [bad]"));
        assert_eq!(Schedule::parse("61 * * * *").err().as_deref(), Some("end of range (61) above maximum (59): 61"));
        assert_eq!(
            Schedule::parse("CRON_TZ=UTC * * * * *").err().as_deref(),
            Some("cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
        );
        assert_eq!(Schedule::parse("* * 0 * *").err().as_deref(), Some("beginning of range (0) below minimum (1): 0"));
        assert!(Schedule::parse("*/0 * * * *").is_err());
        assert!(Schedule::parse("@every 5m").is_ok());
        assert!(Schedule::parse("0 9 * JAN-MAR mon-fri").is_ok());
    }

    #[test]
    fn next_times_follow_the_fields_and_the_zone() {
        let utc = TimeZone::UTC;
        let every_minute = Schedule::parse("* * * * *").expect("schedule");
        assert_eq!(every_minute.next(at("2026-12-03T10:00:30Z"), &utc), Some(at("2026-12-03T10:01:00Z")));
        assert_eq!(every_minute.next(at("2026-12-03T10:01:00Z"), &utc), Some(at("2026-12-03T10:02:00Z")));
        let quarter = Schedule::parse("*/15 9-17 * * *").expect("schedule");
        assert_eq!(quarter.next(at("2026-12-03T17:50:00Z"), &utc), Some(at("2026-12-04T09:00:00Z")));
        // Either day field matches when neither is a star: the 1st, or any Monday.
        let days = Schedule::parse("0 0 1 * mon").expect("schedule");
        assert_eq!(days.next(at("2026-12-01T00:00:00Z"), &utc), Some(at("2026-12-07T00:00:00Z")));
        // In a time zone: 09:00 in Berlin is 08:00 UTC in winter.
        let berlin = time_zone(Some("Europe/Berlin")).expect("zone");
        let nine = Schedule::parse("0 9 * * *").expect("schedule");
        assert_eq!(nine.next(at("2026-12-03T10:00:00Z"), &berlin), Some(at("2026-12-04T08:00:00Z")));
        assert_eq!(Schedule::parse("0 0 30 2 *").expect("schedule").next(at("2026-01-01T00:00:00Z"), &utc), None);
        assert_eq!(
            Schedule::parse("@every 90s").expect("schedule").next(at("2026-12-03T10:00:00Z"), &utc),
            Some(at("2026-12-03T10:01:30Z"))
        );
        assert!(time_zone(Some("Mars/Base")).is_err());
    }
}
