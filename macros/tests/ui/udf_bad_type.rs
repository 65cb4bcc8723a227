// A parameter type with no SQL equivalent.
#[kiln_macros::udf]
pub fn total(amounts: Vec<f64>) -> f64 {
    amounts.iter().sum()
}

fn main() {}
