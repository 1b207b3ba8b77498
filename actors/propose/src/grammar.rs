//! A small typed expression grammar for genetic programming on Python.
//!
//! Program search only finds better heuristics if it can build the right
//! expressions: `-(b - item)`, `(b - item) ** 2`, `item / b`, thresholds like
//! `x if b - item < 5.0 else y`. This grammar combines the numeric variables
//! in scope with constants through arithmetic, min/max/abs, powers and
//! conditionals, and it renders numbers the way Python reads them.

use rand::Rng;
use rand::seq::SliceRandom;

/// A generated expression and whether it can stand anywhere without parentheses.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub text: String,
    pub atomic: bool,
}

impl Expr {
    fn atom(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            atomic: true,
        }
    }

    fn compound(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            atomic: false,
        }
    }

    /// The text, parenthesized unless atomic.
    pub fn wrapped(&self) -> String {
        if self.atomic {
            self.text.clone()
        } else {
            format!("({})", self.text)
        }
    }
}

/// What the grammar may combine at one program point.
#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    /// Float variables in scope (weighted highest: they carry the signal).
    pub floats: Vec<String>,
    /// Int variables in scope (loop indices, counts).
    pub ints: Vec<String>,
    /// Lists of numbers in scope (used as `max(l)`, `min(l)`, `len(l)`).
    pub lists: Vec<String>,
    /// Constants found in the program.
    pub constants: Vec<f64>,
}

const DEFAULT_CONSTANTS: &[f64] = &[0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 100.0];

impl Vocabulary {
    /// True when the grammar has at least one variable to work with.
    pub fn has_variables(&self) -> bool {
        !self.floats.is_empty() || !self.ints.is_empty() || !self.lists.is_empty()
    }

    /// A numeric variable or list aggregate, if any.
    pub fn variable(&self, rng: &mut impl Rng) -> Option<Expr> {
        let float_weight = if self.floats.is_empty() { 0.0 } else { 6.0 };
        let int_weight = if self.ints.is_empty() { 0.0 } else { 1.0 };
        let list_weight = if self.lists.is_empty() { 0.0 } else { 0.7 };
        let total = float_weight + int_weight + list_weight;
        if total <= 0.0 {
            return None;
        }
        let draw = rng.gen_range(0.0..total);
        if draw < float_weight {
            self.floats.choose(rng).map(|name| Expr::atom(name.clone()))
        } else if draw < float_weight + int_weight {
            self.ints.choose(rng).map(|name| Expr::atom(name.clone()))
        } else {
            let list = self.lists.choose(rng)?;
            let aggregate = ["max", "min", "len"].choose(rng).copied().unwrap_or("max");
            Some(Expr::atom(format!("{aggregate}({list})")))
        }
    }

    /// A constant: one of the program's own, a familiar one, or a random magnitude.
    pub fn constant(&self, rng: &mut impl Rng) -> f64 {
        let draw: f64 = rng.gen_range(0.0..1.0);
        if draw < 0.35 && !self.constants.is_empty() {
            self.constants.choose(rng).copied().unwrap_or(1.0)
        } else if draw < 0.8 {
            DEFAULT_CONSTANTS.choose(rng).copied().unwrap_or(1.0)
        } else {
            round_significant(10f64.powf(rng.gen_range(-1.0..2.5)), 2)
        }
    }

    fn constant_expr(&self, rng: &mut impl Rng) -> Expr {
        number_expr(self.constant(rng), false)
    }

    /// A leaf: mostly a variable, sometimes a constant.
    pub fn leaf(&self, rng: &mut impl Rng) -> Expr {
        if rng.gen_bool(0.75)
            && let Some(variable) = self.variable(rng)
        {
            return variable;
        }
        self.constant_expr(rng)
    }

    /// A random expression of at most `depth` operator levels.
    pub fn expr(&self, rng: &mut impl Rng, depth: u32) -> Expr {
        let stop_probability = if depth == 0 { 1.0 } else { 0.25 };
        if rng.gen_bool(stop_probability) {
            return self.leaf(rng);
        }
        let weights = [10.0, 2.0, 2.0, 2.5, 0.7, 2.0];
        let total: f64 = weights.iter().sum();
        let mut draw = rng.gen_range(0.0..total);
        let mut production = 0;
        for (index, weight) in weights.iter().enumerate() {
            if draw < *weight {
                production = index;
                break;
            }
            draw -= weight;
        }
        match production {
            0 => {
                let left = self.expr(rng, depth - 1);
                let right = self.expr(rng, depth - 1);
                let operator = ["+", "-", "-", "*", "/"]
                    .choose(rng)
                    .copied()
                    .unwrap_or("+");
                binary(&left, operator, &right)
            }
            1 => negate(&self.expr(rng, depth - 1)),
            2 => {
                let base = self.expr(rng, depth - 1);
                let exponent = if rng.gen_bool(0.7) { 2 } else { 3 };
                Expr::compound(format!("{} ** {exponent}", base.wrapped()))
            }
            3 => {
                let left = self.expr(rng, depth - 1);
                let right = self.expr(rng, depth - 1);
                let function = if rng.gen_bool(0.5) { "min" } else { "max" };
                Expr::atom(format!("{function}({}, {})", left.text, right.text))
            }
            4 => Expr::atom(format!("abs({})", self.expr(rng, depth - 1).text)),
            _ => {
                let then = self.expr(rng, depth - 1);
                let otherwise = self.expr(rng, depth - 1);
                conditional(&then, &self.condition(rng), &otherwise)
            }
        }
    }

    /// A window indicator `(lo < x < hi)` (a bool, so `c * (...)` adds `c`
    /// inside the window): the shape of "avoid leaving a gap of this size".
    /// The subject is mostly the distance between two float variables (a
    /// gap, a slack); the window starts at or near zero and spans one to a hundred
    /// units, log-uniformly, so that small and large quantities both get
    /// windows of their own scale.
    pub fn window(&self, rng: &mut impl Rng) -> String {
        let subject = match self.float_difference(rng) {
            // `abs`: the distance between the two, whichever is larger.
            Some(difference) if rng.gen_bool(0.85) => {
                Expr::atom(format!("abs({})", difference.text))
            }
            _ => match (self.variable(rng), self.variable(rng)) {
                (Some(first), Some(second)) if first != second => binary(&first, "-", &second),
                (Some(first), _) => first,
                _ => self.constant_expr(rng),
            },
        };
        let low = if rng.gen_bool(0.4) {
            0.0
        } else {
            [0.5, 1.0, 2.0, 3.0, 5.0, 10.0]
                .choose(rng)
                .copied()
                .unwrap_or(1.0)
        };
        let width = round_significant(10f64.powf(rng.gen_range(0.0..2.0)), 2);
        format!(
            "({} < {} < {})",
            format_number(low, false),
            subject.text,
            format_number(low + width, false)
        )
    }

    /// `x - y` for two distinct float variables, in either order.
    pub fn float_difference(&self, rng: &mut impl Rng) -> Option<Expr> {
        if self.floats.len() < 2 {
            return None;
        }
        let mut pair: Vec<&String> = self.floats.choose_multiple(rng, 2).collect();
        pair.shuffle(rng);
        Some(binary(
            &Expr::atom(pair[0].clone()),
            "-",
            &Expr::atom(pair[1].clone()),
        ))
    }

    /// A penalty or bonus size: log-uniform between 1 and 1000.
    pub fn amount(&self, rng: &mut impl Rng) -> f64 {
        round_significant(10f64.powf(rng.gen_range(0.0..3.0)), 2)
    }

    /// A threshold test: a variable (or a difference of two) compared with a constant.
    pub fn condition(&self, rng: &mut impl Rng) -> String {
        let subject = match (self.variable(rng), self.variable(rng)) {
            (Some(first), Some(second)) if first != second && rng.gen_bool(0.5) => {
                binary(&first, "-", &second)
            }
            (Some(first), _) => first,
            _ => self.constant_expr(rng),
        };
        let comparison = ["<", "<=", ">", ">="].choose(rng).copied().unwrap_or("<");
        let threshold = self.constant(rng);
        format!(
            "{} {comparison} {}",
            subject.text,
            format_number(threshold, false)
        )
    }
}

/// `left op right`, parenthesizing compound operands and guarding divisions.
pub fn binary(left: &Expr, operator: &str, right: &Expr) -> Expr {
    if operator == "/" {
        return divide(left, right);
    }
    Expr::compound(format!("{} {operator} {}", left.wrapped(), right.wrapped()))
}

/// `left / right`, where a denominator that may be zero gets a small offset.
pub fn divide(numerator: &Expr, denominator: &Expr) -> Expr {
    let plain_name = denominator.atomic
        && denominator
            .text
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_')
        && denominator
            .text
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_');
    let nonzero_constant = denominator
        .text
        .parse::<f64>()
        .is_ok_and(|value| value != 0.0);
    if plain_name || nonzero_constant {
        Expr::compound(format!("{} / {}", numerator.wrapped(), denominator.text))
    } else {
        Expr::compound(format!(
            "{} / ({} + 1e-06)",
            numerator.wrapped(),
            denominator.text
        ))
    }
}

/// `-e`, or `e` when `e` is already a negation.
pub fn negate(expr: &Expr) -> Expr {
    if let Some(inner) = expr
        .text
        .strip_prefix("-(")
        .and_then(|rest| rest.strip_suffix(')'))
        && balanced(inner)
    {
        return Expr::compound(inner.to_string());
    }
    Expr::compound(format!("-{}", expr.wrapped()))
}

/// `then if condition else otherwise`.
pub fn conditional(then: &Expr, condition: &str, otherwise: &Expr) -> Expr {
    Expr::compound(format!(
        "{} if {condition} else {}",
        then.wrapped(),
        otherwise.wrapped()
    ))
}

fn balanced(text: &str) -> bool {
    let mut depth = 0i32;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}

/// Rounds to `digits` significant digits.
pub fn round_significant(value: f64, digits: i32) -> f64 {
    if value == 0.0 || !value.is_finite() {
        return value;
    }
    let magnitude = value.abs().log10().floor() as i32;
    let factor = 10f64.powi(digits - 1 - magnitude);
    (value * factor).round() / factor
}

/// Python source for a number: integers as integers when `as_int`, floats
/// always with a decimal point, at most 4 significant digits.
pub fn format_number(value: f64, as_int: bool) -> String {
    let value = if value == 0.0 { 0.0 } else { value };
    if as_int && value.fract() == 0.0 && value.abs() < 1e15 {
        return format!("{}", value as i64);
    }
    let rounded = round_significant(value, 4);
    if rounded.fract() == 0.0 && rounded.abs() < 1e15 {
        return format!("{rounded:.1}");
    }
    let magnitude = rounded.abs().log10().floor() as i32;
    let decimals = (3 - magnitude).clamp(1, 12) as usize;
    let text = format!("{rounded:.decimals$}");
    let trimmed = text.trim_end_matches('0');
    if trimmed.ends_with('.') {
        format!("{trimmed}0")
    } else {
        trimmed.to_string()
    }
}

/// A number as an expression (negative numbers are compound: `-x`).
pub fn number_expr(value: f64, as_int: bool) -> Expr {
    let text = format_number(value, as_int);
    if text.starts_with('-') {
        Expr::compound(text)
    } else {
        Expr::atom(text)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn numbers_render_as_python_reads_them() {
        assert_eq!(format_number(1.0, false), "1.0");
        assert_eq!(format_number(3.0, true), "3");
        assert_eq!(format_number(0.5, false), "0.5");
        assert_eq!(format_number(0.123456, false), "0.1235");
        assert_eq!(format_number(-2.5, false), "-2.5");
        assert_eq!(format_number(1234.5678, false), "1235.0");
        assert_eq!(format_number(0.0001234, false), "0.0001234");
    }

    #[test]
    fn grammar_builds_the_expressions_binpacking_needs() {
        let vocabulary = Vocabulary {
            floats: vec!["item".into(), "b".into()],
            ints: vec!["i".into()],
            lists: vec!["bins".into()],
            constants: vec![1.0],
        };
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20_000 {
            seen.insert(vocabulary.expr(&mut rng, 2).text);
        }
        for wanted in [
            "b - item",
            "-(b - item)",
            "(b - item) ** 2",
            "item / b",
            "-b",
        ] {
            assert!(seen.contains(wanted), "grammar never built `{wanted}`");
        }
        assert!(
            seen.iter()
                .any(|text| text.contains(" if ") && text.contains(" else "))
        );
        let windows: Vec<String> = (0..200).map(|_| vocabulary.window(&mut rng)).collect();
        assert!(
            windows
                .iter()
                .any(|window| window.contains(" < abs(b - item) < ")),
            "{windows:?}"
        );
        assert!(
            !seen
                .iter()
                .any(|text| text.contains("/ 0.0") || text.contains("/ 0 "))
        );
    }

    #[test]
    fn negation_cancels_and_division_is_guarded() {
        let gap = Expr::compound("b - item");
        assert_eq!(negate(&gap).text, "-(b - item)");
        assert_eq!(negate(&negate(&gap)).text, "b - item");
        assert_eq!(
            divide(&Expr::atom("item"), &Expr::atom("b")).text,
            "item / b"
        );
        assert_eq!(
            divide(&Expr::atom("1.0"), &gap).text,
            "1.0 / (b - item + 1e-06)"
        );
    }
}
