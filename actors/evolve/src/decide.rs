//! The decision rules, as plain functions: admission (basic function) and
//! promotion (beats the best by the threshold, holds on validation and on
//! re-evaluation when scoring is noisy).

/// Does `child` beat `best` by more than `threshold` (relative)?
pub fn beats(child: f64, best: f64, threshold: f64) -> bool {
    if !child.is_finite() {
        return false;
    }
    if !best.is_finite() {
        return true;
    }
    if best > 0.0 {
        child > best * (1.0 + threshold)
    } else {
        child > best + threshold
    }
}

/// Validation may not regress (a tiny tolerance absorbs float noise).
pub fn holds_on_validation(child: Option<f64>, best: Option<f64>) -> bool {
    match (child, best) {
        (Some(c), Some(b)) => c + 1e-9 >= b,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Two scores of the same code disagree: evaluation is noisy.
pub fn noisy(first: Option<f64>, second: Option<f64>) -> bool {
    match (first, second) {
        (Some(a), Some(b)) => (a - b).abs() > 1e-9,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_relative() {
        assert!(beats(0.4822, 0.4655, 0.01)); // Best Fit over First Fit on binpack
        assert!(!beats(0.4660, 0.4655, 0.01));
        assert!(!beats(0.5, 0.5, 0.0));
        assert!(beats(0.02, 0.0, 0.01));
        assert!(!beats(f64::NAN, 0.1, 0.01));
    }

    #[test]
    fn validation_and_noise() {
        assert!(holds_on_validation(Some(0.5), Some(0.5)));
        assert!(!holds_on_validation(Some(0.49), Some(0.5)));
        assert!(!holds_on_validation(None, Some(0.5)));
        assert!(noisy(Some(0.5), Some(0.51)));
        assert!(!noisy(Some(0.5), Some(0.5)));
    }
}
