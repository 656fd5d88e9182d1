use goverse::prelude::*;

pub struct Obj {
    value: i32,
}

#[goverse::object]
impl Obj {
    pub async fn get(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Int32Value> {
        Ok(Int32Value { value: self.value })
    }
}

fn main() {}
