//! Validation: one rule per check, each failing with one error spanned at
//! the offending token. Independent errors are all collected, so one
//! compile shows every mistake. What passes comes out as the typed model
//! that `expand/` generates from.

use std::collections::HashMap;

use quote::ToTokens;
use syn::{Attribute, Error, Expr, ExprLit, Ident, ItemTrait, Lit, LitStr, Pat, Path, Type};

use crate::names::{
    PYTHON_MEMBERS, PYTHON_PRIVATE_PREFIX, RUST_MEMBERS, SERVICE_NAME_CONST, WITH_SUFFIX,
};
use crate::parse::{self, is_named, last_segment, result_parts, type_args, Method, RawOptions};

/// Collects independent errors and combines them into one.
#[derive(Default)]
pub(crate) struct Errors(Option<Error>);

impl Errors {
    pub(crate) fn push(&mut self, e: Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    fn spanned<T: ToTokens>(&mut self, tokens: T, msg: impl std::fmt::Display) {
        self.push(Error::new_spanned(tokens, msg));
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.0.is_some()
    }

    /// `Err` with all errors combined, if any was pushed.
    pub(crate) fn finish(self) -> syn::Result<()> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The checked attribute options.
pub(crate) struct Config {
    /// Path to the knafeh runtime crate: `::knafeh` unless `crate = "..."`.
    pub krate: Path,
    /// The protobuf-style package (`a.b`), if any.
    pub package: Option<String>,
    /// `#[pyservice]` only: the Python module the classes say they belong
    /// to (`__module__`), if given.
    pub module: Option<String>,
}

/// A checked trait, ready to expand.
pub(crate) struct Service<'a> {
    pub item: &'a ItemTrait,
    pub rpcs: Vec<Rpc<'a>>,
}

/// A checked method.
pub(crate) struct Rpc<'a> {
    pub name: &'a Ident,
    /// The name on the wire and in the path constant.
    pub wire_name: String,
    /// The user's `#[doc]` attributes.
    pub docs: Vec<&'a Attribute>,
    /// `#[knafeh(idempotent)]`: calling it twice has the effect of once.
    pub idempotent: bool,
    pub request: &'a Type,
    /// The type of the optional second (context) argument.
    pub context: Option<&'a Type>,
    /// The whole `Result<_, Status>` as written.
    pub output: &'a Type,
    pub kind: Kind<'a>,
}

/// The four call kinds: one request or a stream of them, one response or
/// a stream of them.
pub(crate) enum Kind<'a> {
    /// `req: Request` → `Result<Response, Status>`.
    Unary { response: &'a Type },
    /// `req: Request` → `Result<Streaming<Item>, Status>`.
    ServerStreaming { item: &'a Type },
    /// `req: Streaming<Request>` → `Result<Response, Status>`.
    ClientStreaming {
        request: &'a Type,
        response: &'a Type,
    },
    /// `req: Streaming<Request>` → `Result<Streaming<Item>, Status>`.
    BidiStreaming { request: &'a Type, item: &'a Type },
}

impl<'a> Kind<'a> {
    /// The type of one response message (a stream's item).
    pub(crate) fn response_message(&self) -> &'a Type {
        match *self {
            Kind::Unary { response } | Kind::ClientStreaming { response, .. } => response,
            Kind::ServerStreaming { item } | Kind::BidiStreaming { item, .. } => item,
        }
    }

    /// Whether the request is a stream of messages.
    pub(crate) fn streams_requests(&self) -> bool {
        matches!(
            self,
            Kind::ClientStreaming { .. } | Kind::BidiStreaming { .. }
        )
    }

    /// Whether the response is a stream of messages.
    pub(crate) fn streams_responses(&self) -> bool {
        matches!(
            self,
            Kind::ServerStreaming { .. } | Kind::BidiStreaming { .. }
        )
    }
}

/// What a method's output says: one response or a stream of them.
enum Responses<'a> {
    One(&'a Type),
    Stream(&'a Type),
}

const OPTIONS: &str = "expected one of: `package`, `crate`";
const PY_OPTIONS: &str = "expected one of: `package`, `crate`, `module`";

/// Checks the attribute options (`python`: for `#[pyservice]`, which also
/// takes `module`). Errors go to `errors`; what is valid is kept, so trait
/// errors are still found.
pub(crate) fn config(
    raw: syn::Result<RawOptions>,
    default_krate: Path,
    python: bool,
    errors: &mut Errors,
) -> Config {
    let mut config = Config {
        krate: default_krate,
        package: None,
        module: None,
    };
    let raw = match raw {
        Ok(raw) => raw,
        Err(e) => {
            errors.push(e);
            return config;
        }
    };
    let mut seen: Vec<&Ident> = Vec::new();
    for opt in &raw.0 {
        let key = opt.key.to_string();
        if key == "module" && !python {
            errors.spanned(
                &opt.key,
                "`module` names the Python module of the classes #[pyservice] generates; #[service] makes no Python classes",
            );
            continue;
        }
        if key != "package" && key != "crate" && key != "module" {
            let expected = if python { PY_OPTIONS } else { OPTIONS };
            errors.spanned(&opt.key, format_args!("unknown option `{key}`; {expected}"));
            continue;
        }
        if seen.contains(&&opt.key) {
            errors.spanned(&opt.key, format_args!("duplicate option `{key}`"));
            continue;
        }
        seen.push(&opt.key);
        let Some(lit) = string_literal(&opt.value) else {
            errors.spanned(
                &opt.value,
                format_args!("`{key}` must be a string literal, like `{key} = \"...\"`"),
            );
            continue;
        };
        if key == "package" {
            match dotted(lit, "package", "\"helloworld\" or \"acme.v1\"") {
                Ok(p) => config.package = Some(p),
                Err(e) => errors.push(e),
            }
        } else if key == "module" {
            match dotted(lit, "module", "\"greeter\" or \"acme.rpc\"") {
                Ok(m) => config.module = Some(m),
                Err(e) => errors.push(e),
            }
        } else {
            match lit.parse::<Path>() {
                Ok(p) => config.krate = p,
                Err(_) => errors.spanned(
                    lit,
                    "`crate` must be a path to the knafeh crate, like `crate = \"::knafeh\"`",
                ),
            }
        }
    }
    config
}

fn string_literal(expr: &Expr) -> Option<&LitStr> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s),
            attrs,
        }) if attrs.is_empty() => Some(s),
        Expr::Group(g) => string_literal(&g.expr),
        _ => None,
    }
}

/// A non-empty list of identifiers separated by dots (`what`: the option).
fn dotted(lit: &LitStr, what: &str, example: &str) -> syn::Result<String> {
    let value = lit.value();
    let ok = !value.is_empty()
        && value.split('.').all(|seg| {
            let mut chars = seg.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    if ok {
        Ok(value)
    } else {
        Err(Error::new_spanned(
            lit,
            format_args!(
                "invalid {what} `{value}`: expected identifiers separated by dots, like {example}"
            ),
        ))
    }
}

/// Checks the trait and its methods.
pub(crate) fn service<'a>(model: &parse::Trait<'a>, errors: &mut Errors) -> Service<'a> {
    let item = model.item;
    let generics = &item.generics;
    if !generics.params.is_empty() {
        errors.spanned(&generics.params, "a service trait cannot be generic");
    } else if let Some(w) = &generics.where_clause {
        errors.spanned(w, "a service trait cannot have a where clause");
    }
    for other in &model.others {
        let what = match other {
            syn::TraitItem::Type(_) => "associated types",
            syn::TraitItem::Const(_) => "associated consts",
            syn::TraitItem::Macro(_) => "macro invocations",
            _ => "items other than `async fn` methods",
        };
        errors.spanned(
            other,
            format_args!(
                "{what} are not supported in a service trait; it may only hold `async fn` methods"
            ),
        );
    }
    let rpcs = model
        .methods
        .iter()
        .filter_map(|m| method(m, errors))
        .collect();
    names(item, &model.methods, errors);
    Service { item, rpcs }
}

/// Checks one method; `None` if any rule failed.
/// One trait method as an RPC, or `None` after reporting every problem
/// with it (all of them: signature, receiver, arguments, output).
fn method<'a>(m: &Method<'a>, errors: &mut Errors) -> Option<Rpc<'a>> {
    // In source order: the attributes come before the signature.
    let idempotent = method_options(m, errors);
    let signature_ok = signature(m, errors);
    let receiver_ok = receiver(m, errors);
    let args = arguments(m, errors);
    let requests = args.and_then(|(request, _)| requests(request, errors));
    let responses = output(m, errors);
    let body_ok = no_default_body(m, errors);
    let ((request, context), requests, responses, output, idempotent) =
        (args?, requests?, responses?, m.output?, idempotent?);
    if !(signature_ok && receiver_ok && body_ok) {
        return None;
    }
    let kind = match (requests, responses) {
        (None, Responses::One(response)) => Kind::Unary { response },
        (None, Responses::Stream(item)) => Kind::ServerStreaming { item },
        (Some(request), Responses::One(response)) => Kind::ClientStreaming { request, response },
        (Some(request), Responses::Stream(item)) => Kind::BidiStreaming { request, item },
    };
    Some(Rpc {
        name: m.name,
        wire_name: m.wire_name(),
        docs: m
            .item
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"))
            .collect(),
        idempotent,
        request,
        context,
        output,
        kind,
    })
}

const METHOD_OPTIONS: &str = "expected `#[knafeh(idempotent)]`";

/// The method's `#[knafeh(...)]` options: only `idempotent`, at most once.
/// `Some(idempotent)`, or `None` after reporting every bad option.
fn method_options(m: &Method<'_>, errors: &mut Errors) -> Option<bool> {
    let mut ok = true;
    let mut idempotent = false;
    for attr in &m.options {
        let list = match &attr.meta {
            syn::Meta::List(list) => list,
            syn::Meta::Path(path) => {
                ok = false;
                errors.spanned(
                    path,
                    format_args!("`#[knafeh]` needs an option: {METHOD_OPTIONS}"),
                );
                continue;
            }
            syn::Meta::NameValue(nv) => {
                ok = false;
                let (eq, value) = (&nv.eq_token, &nv.value);
                errors.spanned(
                    quote::quote!(#eq #value),
                    format_args!("`#[knafeh = ...]` is not an option: {METHOD_OPTIONS}"),
                );
                continue;
            }
        };
        let metas = match list.parse_args_with(
            syn::punctuated::Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated,
        ) {
            Ok(metas) => metas,
            Err(e) => {
                ok = false;
                errors.push(Error::new(e.span(), format_args!("{e}: {METHOD_OPTIONS}")));
                continue;
            }
        };
        if metas.is_empty() {
            ok = false;
            errors.spanned(attr, format_args!("empty `#[knafeh()]`: {METHOD_OPTIONS}"));
        }
        for meta in &metas {
            ok &= method_option(meta, &mut idempotent, errors);
        }
    }
    ok.then_some(idempotent)
}

/// One option inside `#[knafeh(...)]`; `false` after reporting it.
fn method_option(meta: &syn::Meta, idempotent: &mut bool, errors: &mut Errors) -> bool {
    let path = meta.path();
    if !path.is_ident("idempotent") {
        let shown = path.to_token_stream().to_string().replace(' ', "");
        errors.spanned(
            path,
            format_args!("unknown method option `{shown}`; {METHOD_OPTIONS}"),
        );
        return false;
    }
    match meta {
        syn::Meta::Path(_) => {}
        syn::Meta::NameValue(nv) => {
            let (eq, value) = (&nv.eq_token, &nv.value);
            errors.spanned(
                quote::quote!(#eq #value),
                "`idempotent` takes no value: write `#[knafeh(idempotent)]`",
            );
            return false;
        }
        syn::Meta::List(list) => {
            errors.push(Error::new(
                list.delimiter.span().join(),
                "`idempotent` takes no arguments: write `#[knafeh(idempotent)]`",
            ));
            return false;
        }
    }
    if *idempotent {
        errors.spanned(path, "duplicate option `idempotent`");
        return false;
    }
    *idempotent = true;
    true
}

/// The signature's qualifiers and shape: `async fn`, no generics, no
/// `const`/`unsafe`/`extern`, not variadic.
fn signature(m: &Method<'_>, errors: &mut Errors) -> bool {
    let mut ok = true;
    let mut fail = |errors: &mut Errors, e: Error| {
        ok = false;
        errors.push(e);
    };
    let sig = m.sig;
    if !sig.generics.params.is_empty() {
        fail(
            errors,
            Error::new_spanned(&sig.generics.params, "service methods cannot be generic"),
        );
    } else if let Some(w) = &sig.generics.where_clause {
        fail(
            errors,
            Error::new_spanned(w, "service methods cannot have a where clause"),
        );
    }
    if let Some(c) = &sig.constness {
        fail(
            errors,
            Error::new_spanned(c, "service methods cannot be `const`"),
        );
    }
    if let Some(u) = &sig.unsafety {
        fail(
            errors,
            Error::new_spanned(u, "service methods cannot be `unsafe`"),
        );
    }
    if let Some(abi) = &sig.abi {
        fail(
            errors,
            Error::new_spanned(abi, "service methods cannot be `extern`"),
        );
    }
    if sig.asyncness.is_none() {
        fail(
            errors,
            Error::new_spanned(
                sig.fn_token,
                "service methods must be `async fn`: write `async fn` here",
            ),
        );
    }
    if let Some(v) = &sig.variadic {
        fail(
            errors,
            Error::new_spanned(v, "service methods cannot be variadic"),
        );
    }
    ok
}

/// No default body: handlers are implemented in an `impl` block.
fn no_default_body(m: &Method<'_>, errors: &mut Errors) -> bool {
    if let Some(body) = &m.item.default {
        errors.push(Error::new_spanned(
            body,
            "service methods cannot have a default body; implement them in an `impl` block",
        ));
        return false;
    }
    true
}

/// The receiver: `&self`.
fn receiver(m: &Method<'_>, errors: &mut Errors) -> bool {
    let mut ok = true;
    let mut fail = |errors: &mut Errors, e: Error| {
        ok = false;
        errors.push(e);
    };
    match m.receiver {
        None => fail(
            errors,
            Error::new_spanned(
                m.name,
                "service methods take `&self` as their first argument",
            ),
        ),
        Some(r) => {
            let plain_ref = r.reference.is_some() && r.mutability.is_none();
            if r.colon_token.is_some() || !plain_ref {
                fail(
                    errors,
                    Error::new_spanned(
                        r,
                        "service methods take `&self`: handlers run concurrently on a shared service",
                    ),
                );
            }
        }
    }
    ok
}

/// The arguments: one request, then optionally a `knafeh::Context`, each
/// bound to a plain identifier.
fn arguments<'a>(m: &Method<'a>, errors: &mut Errors) -> Option<(&'a Type, Option<&'a Type>)> {
    let mut ok = true;
    let mut fail = |errors: &mut Errors, e: Error| {
        ok = false;
        errors.push(e);
    };
    for arg in &m.args {
        let plain = match &*arg.pat {
            Pat::Ident(p) => p.by_ref.is_none() && p.mutability.is_none() && p.subpat.is_none(),
            Pat::Wild(_) => true,
            _ => false,
        };
        if !plain {
            fail(
                errors,
                Error::new_spanned(
                    &arg.pat,
                    "expected an identifier: patterns are not allowed in service method arguments",
                ),
            );
        }
    }
    let request = m.args.first().map(|a| &*a.ty);
    let mut context = None;
    match m.args.as_slice() {
        [] => fail(
            errors,
            Error::new_spanned(
                m.name,
                "service methods take one request argument: `req: MyRequest`",
            ),
        ),
        [_, rest @ ..] => {
            for (i, arg) in rest.iter().enumerate() {
                if i == 0 && is_named(&arg.ty, "Context") {
                    context = Some(&*arg.ty);
                    continue;
                }
                fail(
                    errors,
                    Error::new_spanned(
                        arg,
                        "unexpected argument: a service method takes one request argument; an optional second argument must be `knafeh::Context`",
                    ),
                );
            }
        }
    }
    let request = request?;
    ok.then_some((request, context))
}

/// The request type: one message (`Some(None)`), or `Streaming<Request>`,
/// a stream of them (`Some(Some(Request))`); `None` after reporting why
/// neither.
fn requests<'a>(ty: &'a Type, errors: &mut Errors) -> Option<Option<&'a Type>> {
    if let Type::ImplTrait(_) = ty {
        errors.spanned(
            ty,
            "a stream of requests is written `Streaming<Request>` (`knafeh::Streaming`); \
             clients may still pass any `Stream<Item = Request>`",
        );
        return None;
    }
    match streaming(ty) {
        Streaming::No => message_type(ty, errors).then_some(None),
        Streaming::Item(item) => stream_item(item, errors).then_some(Some(item)),
        Streaming::Malformed => {
            errors.spanned(
                ty,
                "`Streaming` takes exactly one type argument, the request type: `Streaming<Request>`",
            );
            None
        }
    }
}

/// A message type (a request, a response, a stream item) contains no
/// `Streaming`: streams are only the whole request or response.
fn message_type(ty: &Type, errors: &mut Errors) -> bool {
    match nested_streaming(ty) {
        Some(inner) => {
            errors.spanned(
                inner,
                "`Streaming` is only supported as the whole request type (`req: Streaming<Request>`) \
                 or inside the whole `Ok` type (`Result<Streaming<Item>, Status>`)",
            );
            false
        }
        None => true,
    }
}

/// The item of a `Streaming<Item>`: a message type, not a `Result` (a
/// stream carries its error itself: it yields `Result<Item, Status>`).
fn stream_item(item: &Type, errors: &mut Errors) -> bool {
    if is_named(item, "Streaming") {
        errors.spanned(
            item,
            "a stream of streams is not supported: the item type of `Streaming` is a message type",
        );
        return false;
    }
    if result_parts(item).is_some() || is_named(item, "Result") {
        errors.spanned(
            item,
            "the item type of `Streaming` is the message type: write `Streaming<Item>`; \
             the stream yields `Result<Item, Status>` by itself",
        );
        return false;
    }
    message_type(item, errors)
}

/// The first `Streaming` anywhere inside `ty` (not `ty` itself).
fn nested_streaming(ty: &Type) -> Option<&Type> {
    let inner: Vec<&Type> = match ty {
        Type::Path(p) => p
            .path
            .segments
            .iter()
            .filter_map(type_args)
            .flatten()
            .collect(),
        Type::Reference(r) => vec![&*r.elem],
        Type::Slice(s) => vec![&*s.elem],
        Type::Array(a) => vec![&*a.elem],
        Type::Ptr(p) => vec![&*p.elem],
        Type::Paren(p) => vec![&*p.elem],
        Type::Group(g) => vec![&*g.elem],
        Type::Tuple(t) => t.elems.iter().collect(),
        _ => Vec::new(),
    };
    inner.into_iter().find_map(|t| {
        if is_named(t, "Streaming") {
            Some(t)
        } else {
            nested_streaming(t)
        }
    })
}

/// The output: `Result<Response, Status>` or `Result<Streaming<Item>, Status>`.
fn output<'a>(m: &Method<'a>, errors: &mut Errors) -> Option<Responses<'a>> {
    let mut ok = true;
    let mut fail = |errors: &mut Errors, e: Error| {
        ok = false;
        errors.push(e);
    };
    let kind = match m.output {
        None => {
            fail(
                errors,
                Error::new_spanned(
                    m.name,
                    "missing return type: service methods return `Result<Response, Status>`",
                ),
            );
            None
        }
        Some(ty) => match result_parts(ty) {
            Some((ok_ty, err_ty)) if is_named(err_ty, "Status") => match streaming(ok_ty) {
                Streaming::No if message_type(ok_ty, errors) => Some(Responses::One(ok_ty)),
                Streaming::Item(item) if stream_item(item, errors) => Some(Responses::Stream(item)),
                Streaming::No | Streaming::Item(_) => {
                    ok = false;
                    None
                }
                Streaming::Malformed => {
                    fail(
                        errors,
                        Error::new_spanned(
                            ok_ty,
                            "`Streaming` takes exactly one type argument, the item type: `Streaming<Item>`",
                        ),
                    );
                    None
                }
            },
            Some((_, err_ty)) => {
                fail(
                    errors,
                    Error::new_spanned(
                        err_ty,
                        "the error type of a service method must be `knafeh::Status`",
                    ),
                );
                None
            }
            None => {
                fail(
                    errors,
                    Error::new_spanned(
                        ty,
                        "service methods return `Result<Response, Status>` or `Result<Streaming<Item>, Status>`",
                    ),
                );
                None
            }
        },
    };
    let kind = kind?;
    ok.then_some(kind)
}

/// What the `Ok` type of a method says about streaming.
pub(crate) enum Streaming<'a> {
    No,
    Item(&'a Type),
    Malformed,
}

pub(crate) fn streaming(ty: &Type) -> Streaming<'_> {
    match last_segment(ty) {
        Some(seg) if seg.ident == "Streaming" => match type_args(seg).as_deref() {
            Some([item]) => Streaming::Item(item),
            _ => Streaming::Malformed,
        },
        _ => Streaming::No,
    }
}

/// Method names that would clash with the Python classes' own members.
pub(crate) fn python_names(svc: &Service<'_>, errors: &mut Errors) {
    for rpc in &svc.rpcs {
        let name = rpc.name.to_string();
        if PYTHON_MEMBERS.contains(&name.as_str()) || name.starts_with(PYTHON_PRIVATE_PREFIX) {
            errors.push(Error::new(
                rpc.name.span(),
                format!(
                    "`{name}` clashes with a member of the Python classes #[pyservice] generates; rename the method"
                ),
            ));
        }
    }
}

/// Method names that would clash with each other or with generated items.
fn names(item: &ItemTrait, methods: &[Method<'_>], errors: &mut Errors) {
    let server = format!("{}Server", item.ident);
    let client = format!("{}Client", item.ident);
    let mut by_name: HashMap<String, &Ident> = HashMap::new();
    let mut by_const: HashMap<String, &Ident> = HashMap::new();
    for m in methods {
        let name = m.wire_name();
        let upper = name.to_uppercase();
        let member = RUST_MEMBERS.iter().find(|m| m.name == name);
        let clash = match member {
            Some(member) => Some(member.describe(&server, &client)),
            None if upper == SERVICE_NAME_CONST => Some(format!(
                "constant `{client}::{SERVICE_NAME_CONST}` (each method gets a path constant named after it)"
            )),
            None => None,
        };
        if let Some(what) = clash {
            errors.spanned(
                m.name,
                format_args!(
                    "method name `{name}` clashes with the generated {what}; rename the method"
                ),
            );
        }
        if by_name.contains_key(&name) {
            errors.spanned(
                m.name,
                format_args!("duplicate method `{name}`: a service method name must be unique"),
            );
            continue;
        }
        if let Some(other) = by_const.get(&upper) {
            errors.spanned(
                m.name,
                format_args!(
                    "method `{name}` clashes with method `{}`: both get the path constant `{client}::{upper}`",
                    other.unraw_string()
                ),
            );
        }
        by_name.insert(name, m.name);
        by_const.insert(upper, m.name);
    }
    for m in methods {
        let name = m.wire_name();
        if let Some(base) = name.strip_suffix(WITH_SUFFIX) {
            if by_name.contains_key(base) {
                errors.spanned(
                    m.name,
                    format_args!(
                        "method `{name}` clashes with the generated `{client}::{name}`, the call-options variant of method `{base}`; rename one of them"
                    ),
                );
            }
        }
    }
}

trait UnrawString {
    fn unraw_string(&self) -> String;
}

impl UnrawString for Ident {
    fn unraw_string(&self) -> String {
        syn::ext::IdentExt::unraw(self).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    /// The messages of every error for `item`, in order.
    fn errors(item: ItemTrait) -> Vec<String> {
        let mut errors = Errors::default();
        let model = parse::Trait::new(&item);
        let svc = service(&model, &mut errors);
        match errors.finish() {
            Ok(()) => {
                assert_eq!(svc.rpcs.len(), model.methods.len());
                Vec::new()
            }
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn config_errors(attr: proc_macro2::TokenStream) -> (Config, Vec<String>) {
        let mut errors = Errors::default();
        let config = config(
            syn::parse2(attr),
            syn::parse_quote!(::knafeh),
            false,
            &mut errors,
        );
        let msgs = match errors.finish() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        };
        (config, msgs)
    }

    fn one(item: ItemTrait, needle: &str) {
        let errs = errors(item);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains(needle), "{errs:?}");
    }

    #[test]
    fn a_full_service_is_valid_and_sorted_by_kind() {
        let item: ItemTrait = parse_quote! {
            pub trait Greeter {
                /// Unary.
                async fn say_hello(&self, req: HelloRequest) -> Result<HelloReply, Status>;
                async fn count_to(&self, req: CountRequest) -> Result<knafeh::Streaming<Count>, knafeh::Status>;
                async fn whoami(&self, _: Empty, ctx: knafeh::Context) -> Result<Who, Status>;
            }
        };
        let mut errors = Errors::default();
        let model = parse::Trait::new(&item);
        let svc = service(&model, &mut errors);
        assert!(errors.finish().is_ok());
        assert!(matches!(svc.rpcs[0].kind, Kind::Unary { .. }));
        assert_eq!(svc.rpcs[0].docs.len(), 1);
        assert!(
            matches!(svc.rpcs[1].kind, Kind::ServerStreaming { item } if is_named(item, "Count"))
        );
        assert!(svc.rpcs[2].context.is_some());
        assert!(svc.rpcs[0].context.is_none());
    }

    #[test]
    fn generic_traits_are_rejected() {
        one(
            parse_quote!(
                trait T<A> {}
            ),
            "cannot be generic",
        );
        one(
            parse_quote!(
                trait T<'a> {}
            ),
            "cannot be generic",
        );
        one(
            parse_quote!(
                trait T where
                    Self: Sized,
                {
                }
            ),
            "where clause",
        );
    }

    #[test]
    fn non_method_items_are_rejected() {
        let errs = errors(parse_quote!(
            trait T {
                type A;
                const C: u8;
                m!();
            }
        ));
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].contains("associated types"));
        assert!(errs[1].contains("associated consts"));
        assert!(errs[2].contains("macro invocations"));
    }

    #[test]
    fn method_shape_rules() {
        let ok = "(&self, r: R) -> Result<X, Status>";
        let cases: &[(&str, &str)] = &[
            (
                "async fn m<A>(&self, r: R) -> Result<X, Status>;",
                "cannot be generic",
            ),
            (
                "async fn m(&self, r: R) -> Result<X, Status> where R: Sized;",
                "where clause",
            ),
            (
                "fn m(&self, r: R) -> Result<X, Status>;",
                "must be `async fn`",
            ),
            (
                "const unsafe fn m(&self, r: R) -> Result<X, Status>;",
                "cannot be `const`",
            ),
            (
                "async unsafe fn m(&self, r: R) -> Result<X, Status>;",
                "cannot be `unsafe`",
            ),
            (
                "async extern \"C\" fn m(&self, r: R) -> Result<X, Status>;",
                "cannot be `extern`",
            ),
            (
                "async fn m(&mut self, r: R) -> Result<X, Status>;",
                "take `&self`",
            ),
            (
                "async fn m(self, r: R) -> Result<X, Status>;",
                "take `&self`",
            ),
            (
                "async fn m(mut self, r: R) -> Result<X, Status>;",
                "take `&self`",
            ),
            (
                "async fn m(self: Box<Self>, r: R) -> Result<X, Status>;",
                "take `&self`",
            ),
            ("async fn m(r: R) -> Result<X, Status>;", "first argument"),
            (
                "async fn m(&self) -> Result<X, Status>;",
                "one request argument",
            ),
            (
                "async fn m(&self, r: R, s: S) -> Result<X, Status>;",
                "must be `knafeh::Context`",
            ),
            (
                "async fn m(&self, (a, b): R) -> Result<X, Status>;",
                "patterns are not allowed",
            ),
            (
                "async fn m(&self, mut r: R) -> Result<X, Status>;",
                "patterns are not allowed",
            ),
            ("async fn m(&self, r: R);", "missing return type"),
            (
                "async fn m(&self, r: R) -> X;",
                "return `Result<Response, Status>`",
            ),
            (
                "async fn m(&self, r: R) -> Result<X, E>;",
                "must be `knafeh::Status`",
            ),
            (
                "async fn m(&self, r: R) -> Result<Streaming, Status>;",
                "exactly one type argument",
            ),
            (
                "async fn m(&self, r: R) -> Result<Streaming<A, B>, Status>;",
                "exactly one type argument",
            ),
            (
                "async fn m(&self, r: R) -> Result<X, Status> { todo!() }",
                "default body",
            ),
        ];
        for (method, needle) in cases {
            let item: ItemTrait = syn::parse_str(&format!("trait T {{ {method} }}"))
                .unwrap_or_else(|e| panic!("{method}: {e}"));
            let errs = errors(item);
            let expected = if method.starts_with("const") { 3 } else { 1 };
            assert_eq!(errs.len(), expected, "{method}: {errs:?}");
            assert!(
                errs.iter().any(|e| e.contains(needle)),
                "{method}: {errs:?}"
            );
        }
        let item: ItemTrait = syn::parse_str(&format!("trait T {{ async fn m{ok}; }}")).unwrap();
        assert!(errors(item).is_empty());
    }

    #[test]
    fn independent_method_errors_are_all_reported() {
        let errs = errors(parse_quote! {
            trait T {
                fn a(&mut self, r: R, s: S) -> X;
                async fn b(&self) { }
            }
        });
        // a: not async, &mut self, extra argument, bad return type;
        // b: no request, no return type, default body.
        assert_eq!(errs.len(), 7, "{errs:?}");
    }

    #[test]
    fn three_arguments_report_each_extra_one() {
        let errs = errors(parse_quote! {
            trait T { async fn m(&self, r: R, c: Context, x: X) -> Result<A, Status>; }
        });
        assert_eq!(errs.len(), 1, "{errs:?}");
    }

    #[test]
    fn names_that_clash_with_generated_items() {
        for name in ["new", "client", "from_arc", "schema", "service_name"] {
            let item: ItemTrait = syn::parse_str(&format!(
                "trait T {{ async fn {name}(&self, r: R) -> Result<X, Status>; }}"
            ))
            .unwrap();
            one(item, "clashes with the generated");
        }
        one(
            parse_quote! {
                trait T {
                    async fn m(&self, r: R) -> Result<X, Status>;
                    async fn m_with(&self, r: R) -> Result<X, Status>;
                }
            },
            "call-options variant of method `m`",
        );
        one(
            parse_quote! {
                trait T {
                    async fn m(&self, r: R) -> Result<X, Status>;
                    async fn m(&self, r: R) -> Result<X, Status>;
                }
            },
            "duplicate method `m`",
        );
        one(
            parse_quote! {
                trait T {
                    async fn foo_bar(&self, r: R) -> Result<X, Status>;
                    #[allow(non_snake_case)]
                    async fn Foo_Bar(&self, r: R) -> Result<X, Status>;
                }
            },
            "both get the path constant `TClient::FOO_BAR`",
        );
    }

    #[test]
    fn idempotent_is_the_one_method_option() {
        let item: ItemTrait = parse_quote! {
            trait T {
                #[knafeh(idempotent)]
                async fn get(&self, r: R) -> Result<X, Status>;
                async fn put(&self, r: R) -> Result<X, Status>;
            }
        };
        let mut errors = Errors::default();
        let model = parse::Trait::new(&item);
        let svc = service(&model, &mut errors);
        assert!(errors.finish().is_ok());
        assert!(svc.rpcs[0].idempotent);
        assert!(!svc.rpcs[1].idempotent);
    }

    #[test]
    fn method_option_errors() {
        let cases: &[(&str, &str)] = &[
            (
                "#[knafeh(idempotnt)]",
                "unknown method option `idempotnt`; expected `#[knafeh(idempotent)]`",
            ),
            (
                "#[knafeh(a::b)]",
                "unknown method option `a::b`; expected `#[knafeh(idempotent)]`",
            ),
            (
                "#[knafeh(idempotent = true)]",
                "`idempotent` takes no value: write `#[knafeh(idempotent)]`",
            ),
            (
                "#[knafeh(idempotent(yes))]",
                "`idempotent` takes no arguments: write `#[knafeh(idempotent)]`",
            ),
            (
                "#[knafeh]",
                "`#[knafeh]` needs an option: expected `#[knafeh(idempotent)]`",
            ),
            (
                "#[knafeh()]",
                "empty `#[knafeh()]`: expected `#[knafeh(idempotent)]`",
            ),
            (
                "#[knafeh = \"idempotent\"]",
                "`#[knafeh = ...]` is not an option: expected `#[knafeh(idempotent)]`",
            ),
            (
                "#[knafeh(idempotent, idempotent)]",
                "duplicate option `idempotent`",
            ),
            (
                "#[knafeh(idempotent)] #[knafeh(idempotent)]",
                "duplicate option `idempotent`",
            ),
            ("#[knafeh(1)]", "expected `#[knafeh(idempotent)]`"),
        ];
        for (attr, expected) in cases {
            let item: ItemTrait = syn::parse_str(&format!(
                "trait T {{ {attr} async fn m(&self, r: R) -> Result<X, Status>; }}"
            ))
            .unwrap_or_else(|e| panic!("{attr}: {e}"));
            let errs = errors(item);
            assert_eq!(errs.len(), 1, "{attr}: {errs:?}");
            assert!(errs[0].ends_with(expected), "{attr}: {errs:?}");
        }
    }

    #[test]
    fn method_option_errors_are_reported_with_the_others() {
        let errs = errors(parse_quote! {
            trait T {
                #[knafeh(idempotnt, retry)]
                fn a(&self, r: R) -> Result<X, Status>;
                #[knafeh]
                async fn b(&self, r: R) -> Result<X, Status>;
            }
        });
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs[0].contains("`idempotnt`"), "{errs:?}");
        assert!(errs[1].contains("`retry`"), "{errs:?}");
        assert!(errs[2].contains("must be `async fn`"), "{errs:?}");
        assert!(errs[3].contains("needs an option"), "{errs:?}");
    }

    #[test]
    fn options_default_and_parse() {
        let (c, errs) = config_errors(quote::quote!());
        assert!(errs.is_empty());
        assert!(c.package.is_none());
        assert_eq!(c.krate, parse_quote!(::knafeh));
        let (c, errs) = config_errors(quote::quote!(package = "a.b_2", crate = "::x::y"));
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(c.package.as_deref(), Some("a.b_2"));
        assert_eq!(c.krate, parse_quote!(::x::y));
    }

    #[test]
    fn option_errors() {
        let (_, errs) = config_errors(quote::quote!(pakage = "a"));
        assert_eq!(
            errs,
            ["unknown option `pakage`; expected one of: `package`, `crate`"]
        );
        let (_, errs) = config_errors(quote::quote!(package = "a", package = "b"));
        assert_eq!(errs, ["duplicate option `package`"]);
        for bad in ["", ".a", "a.", "a..b", "1a", "a-b", "a b"] {
            let (_, errs) = config_errors(quote::quote!(package = #bad));
            assert_eq!(errs.len(), 1, "{bad:?}");
            assert!(errs[0].starts_with("invalid package"), "{bad:?}");
        }
        let (_, errs) = config_errors(quote::quote!(package = helloworld, crate = "not a path"));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains("must be a string literal"));
        assert!(errs[1].contains("must be a path"));
    }

    #[test]
    fn module_is_a_pyservice_option() {
        let py = |attr: proc_macro2::TokenStream| {
            let mut errors = Errors::default();
            let c = config(
                syn::parse2(attr),
                parse_quote!(::knafeh_py),
                true,
                &mut errors,
            );
            let errs: Vec<String> = match errors.finish() {
                Ok(()) => Vec::new(),
                Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
            };
            (c, errs)
        };
        let (c, errs) = py(quote::quote!(module = "acme.rpc", package = "a"));
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(c.module.as_deref(), Some("acme.rpc"));
        assert_eq!(c.package.as_deref(), Some("a"));
        let (_, errs) = py(quote::quote!(modul = "x"));
        assert_eq!(
            errs,
            ["unknown option `modul`; expected one of: `package`, `crate`, `module`"]
        );
        for bad in ["", "a-b", "a..b"] {
            let (_, errs) = py(quote::quote!(module = #bad));
            assert_eq!(errs.len(), 1, "{bad:?}");
            assert!(errs[0].starts_with("invalid module"), "{bad:?}");
        }
        // #[service] has no Python classes.
        let (c, errs) = config_errors(quote::quote!(module = "x"));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("#[service] makes no Python classes"));
        assert!(c.module.is_none());
    }
}
