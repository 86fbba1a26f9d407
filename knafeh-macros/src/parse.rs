//! Parsing: the attribute's options and the annotated trait, into a model
//! that borrows the user's tokens so every later error can point at them.
//!
//! Nothing here judges the input: it only sorts it. The rules live in
//! `valid.rs`.

use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{
    Attribute, Expr, FnArg, GenericArgument, Ident, ItemTrait, PatType, PathArguments, PathSegment,
    Receiver, ReturnType, Signature, Token, TraitItem, TraitItemFn, Type,
};

/// One `key = value` of `#[service(key = value, ...)]`, not yet checked.
pub(crate) struct RawOption {
    /// The key as written; `crate` is accepted although it is a keyword.
    pub key: Ident,
    /// The value as written; only string literals are valid.
    pub value: Expr,
}

/// All options of the attribute, in order, duplicates included.
pub(crate) struct RawOptions(pub Vec<RawOption>);

impl Parse for RawOptions {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let list = Punctuated::<RawOption, Token![,]>::parse_terminated(input)?;
        Ok(RawOptions(list.into_iter().collect()))
    }
}

impl Parse for RawOption {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let key = Ident::parse_any(input)?;
        input.parse::<Token![=]>()?;
        let value = input.parse()?;
        Ok(RawOption { key, value })
    }
}

/// The annotated trait, its items sorted.
pub(crate) struct Trait<'a> {
    pub item: &'a ItemTrait,
    /// The `fn` items, in order.
    pub methods: Vec<Method<'a>>,
    /// Everything that is not a `fn`: associated types, consts, macros.
    pub others: Vec<&'a TraitItem>,
}

impl<'a> Trait<'a> {
    pub(crate) fn new(item: &'a ItemTrait) -> Self {
        let mut methods = Vec::new();
        let mut others = Vec::new();
        for it in &item.items {
            match it {
                TraitItem::Fn(f) => methods.push(Method::new(f)),
                other => others.push(other),
            }
        }
        Trait {
            item,
            methods,
            others,
        }
    }
}

/// One trait method, its signature taken apart.
pub(crate) struct Method<'a> {
    pub item: &'a TraitItemFn,
    pub sig: &'a Signature,
    pub name: &'a Ident,
    /// The first argument when it is some form of `self`.
    pub receiver: Option<&'a Receiver>,
    /// The arguments after the receiver (all of them when there is none).
    pub args: Vec<&'a PatType>,
    /// The return type, if the method declares one.
    pub output: Option<&'a Type>,
    /// The method's `#[knafeh(...)]` attributes, not yet checked.
    pub options: Vec<&'a Attribute>,
}

impl<'a> Method<'a> {
    pub(crate) fn new(item: &'a TraitItemFn) -> Self {
        let sig = &item.sig;
        let mut receiver = None;
        let mut args = Vec::new();
        for (i, arg) in sig.inputs.iter().enumerate() {
            match arg {
                FnArg::Receiver(r) if i == 0 => receiver = Some(r),
                // A receiver anywhere else is rejected by rustc itself on the
                // passed-through trait; there is nothing useful to add.
                FnArg::Receiver(_) => {}
                FnArg::Typed(t) => args.push(t),
            }
        }
        let output = match &sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, ty) => Some(&**ty),
        };
        Method {
            item,
            sig,
            name: &sig.ident,
            receiver,
            args,
            output,
            options: item.attrs.iter().filter(|a| is_option(a)).collect(),
        }
    }

    /// The method name without any `r#` prefix: the name on the wire.
    pub(crate) fn wire_name(&self) -> String {
        self.name.unraw().to_string()
    }
}

/// Whether `attr` is one of knafeh's method attributes, `#[knafeh(...)]`
/// (which the macro consumes: it never reaches the emitted trait).
pub(crate) fn is_option(attr: &Attribute) -> bool {
    attr.path().is_ident("knafeh")
}

/// The text of `#[doc = "..."]` attributes (doc comments): their lines
/// without the indentation they share, trimmed; empty if none. Docs that
/// are not string literals (`#[doc = include_str!(...)]`) are skipped.
pub(crate) fn doc_text<'a>(attrs: impl IntoIterator<Item = &'a Attribute>) -> String {
    let mut lines = Vec::new();
    for attr in attrs {
        if !attr.path().is_ident("doc") {
            continue;
        }
        if let syn::Meta::NameValue(nv) = &attr.meta {
            if let Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = &nv.value
            {
                lines.extend(s.value().split('\n').map(str::to_owned));
            }
        }
    }
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let lines: Vec<&str> = lines
        .iter()
        .map(|l| l.get(indent..).unwrap_or("").trim_end())
        .collect();
    lines.join("\n").trim().to_owned()
}

/// The last segment of a plain type path (`a::b::C<D>` gives `C<D>`), or
/// `None` for any other kind of type, or a path with a `<T as Trait>` self.
pub(crate) fn last_segment(ty: &Type) -> Option<&PathSegment> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        Type::Group(g) => last_segment(&g.elem),
        Type::Paren(p) => last_segment(&p.elem),
        _ => None,
    }
}

/// Whether the last segment of `ty`'s path is named `name`.
pub(crate) fn is_named(ty: &Type, name: &str) -> bool {
    last_segment(ty).is_some_and(|s| s.ident == name)
}

/// The type arguments of a path segment (`Result<A, B>` gives `[A, B]`),
/// or `None` if it has any other kind of argument (a lifetime, a const, an
/// associated type binding) or parenthesized ones.
pub(crate) fn type_args(seg: &PathSegment) -> Option<Vec<&Type>> {
    match &seg.arguments {
        PathArguments::None => Some(Vec::new()),
        PathArguments::Parenthesized(_) => None,
        PathArguments::AngleBracketed(a) => a
            .args
            .iter()
            .map(|arg| match arg {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
    }
}

/// `Result<Ok, Err>` (by last path segment) gives `(Ok, Err)`.
pub(crate) fn result_parts(ty: &Type) -> Option<(&Type, &Type)> {
    let seg = last_segment(ty)?;
    if seg.ident != "Result" {
        return None;
    }
    match type_args(seg)?.as_slice() {
        [ok, err] => Some((ok, err)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    #[test]
    fn options_accept_the_crate_keyword_and_keep_order() {
        let opts: RawOptions = parse_quote!(package = "a.b", crate = "::k", package = 3);
        let keys: Vec<String> = opts.0.iter().map(|o| o.key.to_string()).collect();
        assert_eq!(keys, ["package", "crate", "package"]);
    }

    #[test]
    fn empty_options_parse() {
        let opts: RawOptions = parse_quote!();
        assert!(opts.0.is_empty());
    }

    #[test]
    fn option_without_value_is_a_parse_error() {
        assert!(syn::parse_str::<RawOptions>("package").is_err());
    }

    #[test]
    fn methods_and_other_items_are_sorted() {
        let item: ItemTrait = parse_quote! {
            trait T {
                type A;
                async fn m(&self, req: R, ctx: Context) -> Result<X, Status>;
                fn n(x: u8);
                const C: u8;
            }
        };
        let t = Trait::new(&item);
        assert_eq!(t.methods.len(), 2);
        assert_eq!(t.others.len(), 2);
        let m = &t.methods[0];
        assert!(m.receiver.is_some());
        assert_eq!(m.args.len(), 2);
        assert!(m.output.is_some());
        let n = &t.methods[1];
        assert!(n.receiver.is_none());
        assert_eq!(n.args.len(), 1);
        assert!(n.output.is_none());
    }

    #[test]
    fn knafeh_attributes_are_the_options_and_docs_are_unindented() {
        let f: TraitItemFn = parse_quote!(
            /// Says hello.
            ///
            ///     indented
            #[knafeh(idempotent)]
            #[allow(unused)]
            async fn m(&self, r: R) -> Result<X, Status>;
        );
        let m = Method::new(&f);
        assert_eq!(m.options.len(), 1);
        assert_eq!(doc_text(&f.attrs), "Says hello.\n\n    indented");
        let f: TraitItemFn = parse_quote!(
            #[doc = "  two\n  lines  "]
            #[doc = include_str!("x")]
            async fn m(&self, r: R) -> Result<X, Status>;
        );
        assert_eq!(doc_text(&f.attrs), "two\nlines");
        assert_eq!(doc_text(&[]), "");
    }

    #[test]
    fn raw_method_names_lose_their_prefix_on_the_wire() {
        let f: TraitItemFn = parse_quote!(
            async fn r#type(&self, r: R) -> Result<X, Status>;
        );
        assert_eq!(Method::new(&f).wire_name(), "type");
    }

    #[test]
    fn result_parts_by_last_segment() {
        let ty: Type = parse_quote!(::core::result::Result<A, knafeh::Status>);
        let (ok, err) = result_parts(&ty).unwrap();
        assert!(is_named(ok, "A"));
        assert!(is_named(err, "Status"));
        assert!(result_parts(&parse_quote!(Result<A>)).is_none());
        assert!(result_parts(&parse_quote!(Option<A, B>)).is_none());
        assert!(result_parts(&parse_quote!(<X as Y>::Result<A, B>)).is_none());
    }

    #[test]
    fn type_args_reject_lifetimes() {
        let ty: Type = parse_quote!(Streaming<'a, T>);
        assert!(type_args(last_segment(&ty).unwrap()).is_none());
        let ty: Type = parse_quote!(Streaming<T>);
        assert_eq!(type_args(last_segment(&ty).unwrap()).unwrap().len(), 1);
    }
}
