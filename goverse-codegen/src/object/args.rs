//! The options inside `#[goverse::object(...)]`.

use std::time::Duration;

use syn::LitStr;
use syn::meta::ParseNestedMeta;

use super::errors::Errors;

#[derive(Default)]
pub(crate) struct Args {
    pub(crate) name: Option<LitStr>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) persistent: bool,
    pub(crate) write_behind: Option<(Duration, proc_macro2::Span)>,
}

impl Args {
    pub(crate) fn parse(attr: proc_macro2::TokenStream, errors: &mut Errors) -> Args {
        let mut args = Args::default();
        if attr.is_empty() {
            return args;
        }
        let parser = syn::meta::parser(|meta| args.option(meta));
        if let Err(error) = syn::parse::Parser::parse2(parser, attr) {
            errors.push(error);
        }
        if let Some((_, span)) = args.write_behind
            && !args.persistent
        {
            errors.push(syn::Error::new(
                span,
                "`write_behind` applies to persistent objects; add `persistent`",
            ));
        }
        args
    }

    fn option(&mut self, meta: ParseNestedMeta<'_>) -> syn::Result<()> {
        if meta.path.is_ident("name") {
            let name: LitStr = meta.value()?.parse()?;
            validate_type_name(&name)?;
            self.name = Some(name);
        } else if meta.path.is_ident("idle_timeout") {
            let text: LitStr = meta.value()?.parse()?;
            let timeout = crate::duration::parse(&text.value())
                .map_err(|message| syn::Error::new(text.span(), message))?;
            if timeout.is_zero() {
                return Err(syn::Error::new(
                    text.span(),
                    "`idle_timeout` must be greater than zero",
                ));
            }
            self.idle_timeout = Some(timeout);
        } else if meta.path.is_ident("persistent") {
            self.persistent = true;
        } else if meta.path.is_ident("write_behind") {
            let text: LitStr = meta.value()?.parse()?;
            let interval = crate::duration::parse(&text.value())
                .map_err(|message| syn::Error::new(text.span(), message))?;
            if interval.is_zero() {
                return Err(syn::Error::new(
                    text.span(),
                    "`write_behind` must be greater than zero",
                ));
            }
            self.write_behind = Some((interval, text.span()));
        } else {
            return Err(meta.error(
                "unknown option; expected `name = \"...\"`, `idle_timeout = \"...\"`, `persistent` or `write_behind = \"...\"`",
            ));
        }
        Ok(())
    }
}

/// Type names become protobuf service names and URL path segments.
fn validate_type_name(name: &LitStr) -> syn::Result<()> {
    let value = name.value();
    let mut chars = value.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(syn::Error::new(
            name.span(),
            "object type name must start with a letter and hold only ASCII letters, digits and `_`",
        ))
    }
}
