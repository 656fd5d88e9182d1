use goverse::prelude::*;

#[derive(Default)]
pub struct Holder<T>(T);

#[goverse::object]
impl<T: Default + Send + Sync + 'static> Holder<T> {
    pub async fn get(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Empty> {
        Ok(Empty {})
    }
}

fn main() {}
