use goverse::prelude::*;

#[derive(Default)]
pub struct Obj;

trait Named {
    fn name(&self) -> String;
}

#[goverse::object]
impl Named for Obj {
    fn name(&self) -> String {
        String::new()
    }
}

fn main() {}
