//! What the macro emits when it rejects the input: the errors, plus the
//! user's trait with what rustc would also reject taken out, so one
//! mistake gives one error.

use crate::parse::{self};
use crate::valid::{self, Errors};
use proc_macro2::TokenStream;
use quote::quote;
use syn::{FnArg, ItemTrait, Pat, ReturnType, TraitItem};

pub(super) fn fallback(errors: Errors, item: TokenStream) -> TokenStream {
    let errors = errors.finish().err().map(|e| e.to_compile_error());
    quote!(#errors #item)
}

/// The user's trait with what rustc would reject on its own taken out
/// (patterns and `mut` in arguments, `const fn`, a second method of the
/// same name, the `#[knafeh(...)]` attributes only the macro knows), so a
/// rejected trait gives our error and not rustc's too.
/// Everything else is left as written.
pub(super) fn quiet_trait(item: &ItemTrait) -> ItemTrait {
    let mut item = item.clone();
    let mut seen = Vec::new();
    item.items.retain_mut(|it| {
        let TraitItem::Fn(f) = it else { return true };
        if seen.contains(&f.sig.ident) {
            return false;
        }
        seen.push(f.sig.ident.clone());
        f.attrs.retain(|a| !parse::is_option(a));
        f.sig.constness = None;
        // rustc would also complain about `Streaming`'s argument count.
        if let ReturnType::Type(_, ty) = &f.sig.output {
            if parse::result_parts(ty)
                .is_some_and(|(ok, _)| matches!(valid::streaming(ok), valid::Streaming::Malformed))
            {
                f.sig.output = ReturnType::Default;
            }
        }
        for arg in &mut f.sig.inputs {
            match arg {
                FnArg::Receiver(r) if r.reference.is_none() => r.mutability = None,
                FnArg::Receiver(_) => {}
                FnArg::Typed(t) => {
                    if matches!(valid::streaming(&t.ty), valid::Streaming::Malformed) {
                        *t.ty = syn::parse_quote!(());
                    }
                    quiet_pattern(&mut t.pat);
                }
            }
        }
        true
    });
    item
}

/// A plain binding: `mut`, `ref` and sub-patterns dropped, other patterns
/// made `_`.
fn quiet_pattern(pat: &mut Pat) {
    match pat {
        Pat::Ident(p) => {
            p.mutability = None;
            p.by_ref = None;
            p.subpat = None;
        }
        Pat::Wild(_) => {}
        other => {
            *other = Pat::Wild(syn::PatWild {
                attrs: Vec::new(),
                underscore_token: Default::default(),
            })
        }
    }
}
