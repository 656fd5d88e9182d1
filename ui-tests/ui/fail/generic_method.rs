use goverse::prelude::*;

#[derive(Default)]
pub struct Obj;

#[goverse::object]
impl Obj {
    pub async fn add<T: Send>(&mut self, _ctx: &Context, request: Int32Value) -> goverse::Result<Int32Value> {
        Ok(request)
    }
}

fn main() {}
