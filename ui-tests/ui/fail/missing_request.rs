use goverse::prelude::*;

#[derive(Default)]
pub struct Obj;

#[goverse::object]
impl Obj {
    pub async fn add(&mut self, _ctx: &Context) -> goverse::Result<Int32Value> {
        Ok(Int32Value { value: 1 })
    }
}

fn main() {}
