// A generic function has no single SQL signature.
#[kiln_macros::udf]
pub fn double<T: std::ops::Add<Output = T> + Copy>(x: T) -> T {
    x + x
}

fn main() {}
