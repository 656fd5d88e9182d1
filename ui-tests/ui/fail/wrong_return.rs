use goverse::prelude::*;

#[derive(Default)]
pub struct Obj;

#[goverse::object]
impl Obj {
    pub async fn add(&mut self, _ctx: &Context, request: Int32Value) -> Int32Value {
        request
    }
}

fn main() {}
