//! Native functions for specs/risk.toml. `kiln check` reads these signatures
//! (with syn) to type-check the spec's calls; `kiln build` compiles this file
//! into the job binary.

/// A transaction's risk band: refunds, then large travel spend, then by amount.
#[kiln::udf]
pub fn risk_band(amount: f64, category: Option<&str>) -> &'static str {
    if amount < 0.0 {
        "refund"
    } else if category == Some("travel") && amount > 500.0 {
        "high"
    } else if amount > 1000.0 {
        "high"
    } else if amount > 100.0 {
        "medium"
    } else {
        "low"
    }
}

/// Days between two dates; null when either is null.
#[kiln::udf]
pub fn days_between(from: kiln::chrono::NaiveDate, to: kiln::chrono::NaiveDate) -> i64 {
    (to - from).num_days()
}

/// Amount after a fee in basis points; a null fee means no fee.
#[kiln::udf]
pub fn after_fee(amount: f64, fee_bps: Option<i64>) -> f64 {
    amount * (1.0 - fee_bps.unwrap_or(0) as f64 / 10_000.0)
}
