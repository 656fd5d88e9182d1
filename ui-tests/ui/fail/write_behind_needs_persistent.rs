use goverse::prelude::*;

#[derive(Default)]
pub struct Scratch;

#[goverse::object(write_behind = "1s")]
impl Scratch {
    pub async fn get(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Empty> {
        Ok(Empty {})
    }
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Ledger;

#[goverse::object(persistent, write_behind = "0s")]
impl Ledger {
    pub async fn get(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Empty> {
        Ok(Empty {})
    }
}

#[derive(Default)]
pub struct Plain;

#[goverse::object]
impl Plain {
    pub async fn get(&self, _ctx: &Context, _request: Empty) -> goverse::Result<Empty> {
        Ok(Empty {})
    }
}

fn no_reliable_proxy_without_persistence(node: &Node) {
    let _ = PlainClient::new(node, "p").reliable("call-1");
}

fn main() {}
