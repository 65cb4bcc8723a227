// A function that returns nothing cannot compute a column.
#[kiln_macros::udf]
pub fn log_amount(amount: f64) {
    println!("{amount}");
}

fn main() {}
