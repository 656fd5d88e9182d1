use goverse::prelude::*;

#[derive(Default)]
pub struct Obj;

#[goverse::object]
impl Obj {
    pub async fn add_one(&mut self, _ctx: &Context, request: Int32Value) -> goverse::Result<Int32Value> {
        Ok(request)
    }

    #[allow(non_snake_case)]
    pub async fn add_One(&mut self, _ctx: &Context, request: Int32Value) -> goverse::Result<Int32Value> {
        Ok(request)
    }
}

fn main() {}
