//! Kubernetes quantities (`512Mi`, `20Gi`, `1G`, `1500`) as bytes.

/// The number of bytes `q` stands for; the error quotes it.
pub fn bytes(q: &str) -> Result<u64, String> {
    let q = q.trim();
    let split = q
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(q.len());
    let (num, unit) = q.split_at(split);
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => {
            return Err(format!(
                "'{q}' is not a quantity of bytes (512Mi, 20Gi, 1G)"
            ))
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{q}' is not a quantity of bytes (512Mi, 20Gi, 1G)"))?;
    let b = n * mult as f64;
    if !b.is_finite() || b < 0.0 || b > u64::MAX as f64 {
        return Err(format!("'{q}' is out of range"));
    }
    Ok(b as u64)
}

#[cfg(test)]
mod tests {
    use super::bytes;

    #[test]
    fn binary_and_decimal_suffixes() {
        assert_eq!(bytes("512Mi").unwrap(), 512 << 20);
        assert_eq!(bytes("1.5Gi").unwrap(), 3 << 29);
        assert_eq!(bytes("2G").unwrap(), 2_000_000_000);
        assert_eq!(bytes("1500").unwrap(), 1500);
        for bad in ["", "Mi", "5 GB", "1e3", "-1Gi", "1.2.3Mi"] {
            assert!(bytes(bad).is_err(), "{bad}");
        }
    }
}
