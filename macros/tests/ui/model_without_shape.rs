// #[kiln::model] must say how many features go in and values come out.
struct Tensor;

#[kiln_macros::model(inputs = 4)]
pub struct Scorer {
    weight: Tensor,
}

fn main() {}
