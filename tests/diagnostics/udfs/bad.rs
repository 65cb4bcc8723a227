#[kiln::udf]
pub fn score(amount: f64, tags: Vec<String>) -> f64 {
    amount + tags.len() as f64
}
