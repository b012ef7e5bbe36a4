//! Calendar fields of Unix timestamps in UTC (for `hour()`, `day_of_week()`, ...).

/// A UTC calendar date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DateTime {
    pub(super) year: i64,
    /// 1..=12
    pub(super) month: u32,
    /// 1..=31
    pub(super) day: u32,
    pub(super) hour: u32,
    pub(super) minute: u32,
    /// 0 = Sunday
    pub(super) weekday: u32,
    /// 1..=366
    pub(super) yday: u32,
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Days in a month of a year.
pub(super) fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Splits seconds since the epoch into UTC fields (proleptic Gregorian calendar).
pub(super) fn from_unix(secs: i64) -> DateTime {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let cumulative: u32 = (1..month).map(|m| days_in_month(year, m)).sum();
    DateTime {
        year,
        month,
        day,
        hour: (sod / 3600) as u32,
        minute: ((sod % 3600) / 60) as u32,
        weekday: (days + 4).rem_euclid(7) as u32,
        yday: cumulative + day,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        let d = from_unix(0);
        assert_eq!(
            (d.year, d.month, d.day, d.weekday, d.yday),
            (1970, 1, 1, 4, 1)
        );
        // 2024-02-29T13:45:00Z, a Thursday, day 60 of a leap year.
        let d = from_unix(1_709_214_300);
        assert_eq!(
            (d.year, d.month, d.day, d.hour, d.minute, d.weekday, d.yday),
            (2024, 2, 29, 13, 45, 4, 60)
        );
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(1900, 2), 28);
        // 1969-12-31T23:59:59Z
        let d = from_unix(-1);
        assert_eq!(
            (d.year, d.month, d.day, d.hour, d.weekday),
            (1969, 12, 31, 23, 3)
        );
    }
}
