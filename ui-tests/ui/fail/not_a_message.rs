use goverse::prelude::*;

#[derive(Default)]
pub struct Obj;

#[goverse::object]
impl Obj {
    pub async fn add(&mut self, _ctx: &Context, request: String) -> goverse::Result<Int32Value> {
        Ok(Int32Value { value: request.len() as i32 })
    }
}

fn main() {}
