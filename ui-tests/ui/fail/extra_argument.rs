use goverse::prelude::*;

#[derive(Default)]
pub struct Obj;

#[goverse::object]
impl Obj {
    pub async fn add(&mut self, _ctx: &Context, request: Int32Value, extra: Int32Value) -> goverse::Result<Int32Value> {
        Ok(Int32Value { value: request.value + extra.value })
    }
}

fn main() {}
