use goverse::prelude::*;

#[derive(Default)]
pub struct Obj;

#[goverse::object(idle_timeout = "10 parsecs", colour = "blue")]
impl Obj {
    pub async fn get(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Empty> {
        Ok(Empty {})
    }
}

fn main() {}
