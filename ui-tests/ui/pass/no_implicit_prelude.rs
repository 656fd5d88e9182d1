//! Generated code names everything by absolute path: it compiles without the prelude.
#![no_implicit_prelude]

#[derive(::std::default::Default)]
pub struct Hygienic {
    value: i32,
}

#[::goverse::object]
impl Hygienic {
    pub async fn add(
        &mut self,
        _ctx: &::goverse::Context,
        request: ::goverse::types::Int32Value,
    ) -> ::goverse::Result<::goverse::types::Int32Value> {
        self.value += request.value;
        ::std::result::Result::Ok(::goverse::types::Int32Value { value: self.value })
    }

    pub async fn get(
        &self,
        _ctx: &::goverse::Context,
        _request: ::goverse::types::Empty,
    ) -> ::goverse::Result<::goverse::types::Int32Value> {
        ::std::result::Result::Ok(::goverse::types::Int32Value { value: self.value })
    }
}

fn main() {
    let _ = <Hygienic as ::goverse::Object>::DESCRIPTOR;
}
