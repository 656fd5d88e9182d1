//! Snapshots of what `#[goverse::object]` expands to, for two representative
//! objects, so a change in generated code is reviewed rather than discovered.
//! Regenerate with `UPDATE_SNAPSHOTS=1 cargo test -p goverse-codegen`.

use std::path::PathBuf;

use quote::quote;

fn render(tokens: proc_macro2::TokenStream) -> String {
    let file: syn::File = syn::parse2(tokens).expect("the expansion parses as a file");
    prettyplease::unparse(&file)
}

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/snapshots/{name}.rs"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing snapshot {}; run with UPDATE_SNAPSHOTS=1",
            path.display()
        )
    });
    if expected != actual {
        let first_difference = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .map_or_else(
                || "line counts differ".to_string(),
                |line| format!("first difference at line {}", line + 1),
            );
        panic!(
            "the expansion of `{name}` changed ({first_difference}); review it and run with UPDATE_SNAPSHOTS=1\n--- actual ---\n{actual}"
        );
    }
}

#[test]
fn counter_with_exclusive_and_shared_methods() {
    let expanded = goverse_codegen::object::expand(
        quote!(),
        quote! {
            impl Counter {
                /// Adds to the counter.
                pub async fn add(&mut self, ctx: &Context, request: Int32Value) -> goverse::Result<Int32Value> {
                    self.value += request.value;
                    Ok(Int32Value { value: self.value })
                }

                pub async fn get(&self, ctx: &Context, request: Empty) -> goverse::Result<Int32Value> {
                    Ok(Int32Value { value: self.value })
                }
            }
        },
    );
    check("counter", &render(expanded));
}

#[test]
fn persistent_account_with_hooks_and_options() {
    let expanded = goverse_codegen::object::expand(
        quote!(name = "BankAccount", idle_timeout = "90s", persistent),
        quote! {
            impl Account {
                pub async fn deposit(&mut self, ctx: &Context, request: DepositRequest) -> Result<Balance> {
                    self.balance += request.amount;
                    Ok(Balance { amount: self.balance })
                }

                #[on_activate]
                async fn loaded(&mut self, ctx: &Context) -> goverse::Result<()> {
                    ctx.start_timer("interest", std::time::Duration::from_secs(60));
                    Ok(())
                }

                #[on_timer]
                async fn tick(&mut self, ctx: &Context, timer: &str) -> goverse::Result<()> {
                    Ok(())
                }
            }
        },
    );
    check("account", &render(expanded));
}

#[test]
fn the_ir_records_methods_in_order_with_their_kinds() {
    let ir = goverse_codegen::object::analyze(
        quote!(idle_timeout = "10m"),
        quote! {
            impl Counter {
                pub async fn add_item(&mut self, ctx: &Context, request: A) -> Result<B> { todo!() }
                pub async fn get(&self, ctx: &Context, request: C) -> Result<D> { todo!() }
                fn helper(&self) {}
            }
        },
    )
    .expect("valid object");
    assert_eq!(ir.type_name, "Counter");
    assert_eq!(ir.client.to_string(), "CounterClient");
    assert_eq!(ir.idle_timeout, Some(std::time::Duration::from_secs(600)));
    let methods: Vec<_> = ir
        .methods
        .iter()
        .map(|m| (m.rpc_name.as_str(), m.mutates))
        .collect();
    assert_eq!(methods, [("AddItem", true), ("Get", false)]);
}

#[test]
fn invalid_input_is_an_error_never_a_panic() {
    for (attr, item) in [
        (
            quote!(),
            quote!(
                struct NotAnImpl;
            ),
        ),
        (quote!(idle_timeout = 5), quote!(impl X {})),
        (quote!(name = "9lives"), quote!(impl X {})),
        (
            quote!(),
            quote!(
                impl<T> X<T> {}
            ),
        ),
        (quote!(), quote!(impl X { pub fn f() {} })),
    ] {
        assert!(goverse_codegen::object::analyze(attr.clone(), item.clone()).is_err());
        let expanded = goverse_codegen::object::expand(attr, item).to_string();
        assert!(expanded.contains("compile_error"), "{expanded}");
    }
}
