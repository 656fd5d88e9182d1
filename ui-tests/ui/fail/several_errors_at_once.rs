use goverse::prelude::*;

#[derive(Default)]
pub struct Obj;

#[goverse::object]
impl Obj {
    pub fn first(&mut self, _ctx: &Context, request: Int32Value) -> goverse::Result<Int32Value> {
        Ok(request)
    }

    pub async fn second(self) -> Int32Value {
        Int32Value { value: 2 }
    }
}

fn main() {}
