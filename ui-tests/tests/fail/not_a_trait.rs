#[knafeh::service]
pub struct Greeter {
    name: String,
}

fn main() {}
