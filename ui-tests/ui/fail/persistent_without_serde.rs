use goverse::prelude::*;

#[derive(Default)]
pub struct Obj;

#[goverse::object(persistent)]
impl Obj {
    pub async fn get(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Empty> {
        Ok(Empty {})
    }
}

fn main() {}
