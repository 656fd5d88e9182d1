use goverse::prelude::*;

#[derive(Default)]
pub struct Obj;

#[goverse::object]
impl Obj {
    #[on_activate]
    async fn activated(&self) -> goverse::Result<()> {
        Ok(())
    }

    #[on_timer]
    fn fired(&mut self, _ctx: &Context, _timer: &str) -> goverse::Result<()> {
        Ok(())
    }
}

fn main() {}
