//! Kubernetes quantities (`100m`, `1.5`, `64Mi`, `1G`, `1e3`) as integers of
//! milli-units, enough for resource accounting (requests against allocatable).

/// Parse a quantity into thousandths of its unit (`"100m"` → 100, `"2"` → 2000,
/// `"1Ki"` → 1_024_000). None for malformed input.
pub fn parse_milli(q: &str) -> Option<i128> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+')).unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let (mul_num, mul_den): (i128, i128) = match suffix {
        "" => (1000, 1),
        "n" => (1, 1_000_000),
        "u" => (1, 1000),
        "m" => (1, 1),
        "k" => (1_000_000, 1),
        "M" => (1_000_000_000, 1),
        "G" => (1_000_000_000_000, 1),
        "T" => (1_000_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000_000, 1),
        "Ki" => (1024 * 1000, 1),
        "Mi" => (1024 * 1024 * 1000, 1),
        "Gi" => (1024 * 1024 * 1024 * 1000, 1),
        "Ti" => (1024i128.pow(4) * 1000, 1),
        "Pi" => (1024i128.pow(5) * 1000, 1),
        "Ei" => (1024i128.pow(6) * 1000, 1),
        s if s.starts_with('e') || s.starts_with('E') => {
            let exp: u32 = s[1..].parse().ok()?;
            (10i128.checked_pow(exp)? * 1000, 1)
        }
        _ => return None,
    };
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    let negative = int_part.starts_with('-');
    let int_digits = int_part.trim_start_matches(['-', '+']);
    let int_val: i128 = if int_digits.is_empty() { 0 } else { int_digits.parse().ok()? };
    let mut value = int_val.checked_mul(mul_num)? / mul_den;
    if !frac_part.is_empty() {
        let frac: i128 = frac_part.parse().ok()?;
        let scale = 10i128.checked_pow(frac_part.len() as u32)?;
        value += frac.checked_mul(mul_num)? / scale / mul_den;
    }
    Some(if negative { -value } else { value })
}

/// Format milli-units of CPU as Kubernetes does (`1500` → `1500m`, `2000` → `2`).
pub fn format_cpu_milli(m: i128) -> String {
    if m % 1000 == 0 { format!("{}", m / 1000) } else { format!("{m}m") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_quantities() {
        assert_eq!(parse_milli("100m"), Some(100));
        assert_eq!(parse_milli("2"), Some(2000));
        assert_eq!(parse_milli("0.5"), Some(500));
        assert_eq!(parse_milli("1Ki"), Some(1_024_000));
        assert_eq!(parse_milli("64Mi"), Some(64 * 1024 * 1024 * 1000));
        assert_eq!(parse_milli("1G"), Some(1_000_000_000_000));
        assert_eq!(parse_milli("1e3"), Some(1_000_000));
        assert_eq!(parse_milli("1.5Gi"), Some(1536 * 1024 * 1024 * 1000));
        assert_eq!(parse_milli("abc"), None);
        assert_eq!(format_cpu_milli(1500), "1500m");
        assert_eq!(format_cpu_milli(2000), "2");
    }
}
