// Option<Option<T>> has no meaning for a SQL value (null is already None).
#[kiln_macros::udf]
pub fn maybe(x: Option<Option<i64>>) -> i64 {
    x.flatten().unwrap_or(0)
}

fn main() {}
