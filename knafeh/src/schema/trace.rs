//! Tracing a Rust type into a [`Format`] with serde-reflection, whose
//! types stay in this file.
//!
//! One tracing run deserializes the type once, with a fresh
//! serde-reflection tracer, exploring one variant of each enum it meets
//! (`guard.rs` chooses which). Runs repeat until every variant of every
//! enum met has been explored; what they learn is merged here.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde_reflection as sr;
use serde_reflection::FormatHolder;

use super::guard::{Probe, Run, MAX_DEPTH};
use super::{Container, Field, Format, SchemaError, Variant, VariantShape};

/// Traces Rust types into [`Format`]s, collecting the named types they
/// reach.
///
/// ```
/// use knafeh::schema::{Container, Format, Tracer, Variant, VariantShape};
///
/// #[derive(serde::Deserialize)]
/// enum Tree {
///     Leaf(u32),
///     Node(Box<Tree>, Box<Tree>),
/// }
///
/// let mut tracer = Tracer::new();
/// assert_eq!(tracer.trace::<Vec<Tree>>()?, Format::Seq(Box::new(Format::Ref("Tree".into()))));
/// let tree = Format::Ref("Tree".into());
/// assert_eq!(
///     tracer.types()["Tree"],
///     Container::Enum(vec![
///         Variant { name: "Leaf".into(), shape: VariantShape::Newtype(Format::U32) },
///         Variant { name: "Node".into(), shape: VariantShape::Tuple(vec![tree.clone(), tree]) },
///     ])
/// );
/// # Ok::<(), knafeh::schema::SchemaError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Tracer {
    types: BTreeMap<String, Container>,
    /// For each named type: the Rust type whose tracing found it first.
    origins: BTreeMap<String, &'static str>,
}

impl Tracer {
    /// A tracer that knows no type yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The format of `T`; the named types it reaches are added to
    /// [`Tracer::types`].
    ///
    /// # Errors
    /// A [`SchemaError`] naming `T` when `T` (or a type it reaches) cannot
    /// be described, or when a type it reaches has the serde name of a
    /// different type traced before.
    pub fn trace<T: DeserializeOwned>(&mut self) -> Result<Format, SchemaError> {
        let rust = std::any::type_name::<T>();
        let (format, types) = trace_type::<T>().map_err(|reason| SchemaError::new(rust, reason))?;
        for (name, container) in &types {
            if let Some(known) = self.types.get(name) {
                if known != container {
                    let first = self.origins.get(name).copied().unwrap_or("another type");
                    return Err(SchemaError::new(
                        rust,
                        format!(
                            "it reaches a type named `{name}` that is not the `{name}` reached from `{first}`; \
                             give one of them another name with #[serde(rename = \"...\")]"
                        ),
                    ));
                }
            }
        }
        for (name, container) in types {
            self.origins.entry(name.clone()).or_insert(rust);
            self.types.entry(name).or_insert(container);
        }
        Ok(format)
    }

    /// The named types found so far, by serde name.
    pub fn types(&self) -> &BTreeMap<String, Container> {
        &self.types
    }

    /// The named types found, by serde name.
    pub fn into_types(self) -> BTreeMap<String, Container> {
        self.types
    }
}

/// What the runs have learnt so far.
#[derive(Default)]
struct Learnt {
    /// Structs and the like.
    containers: BTreeMap<String, Container>,
    /// Enums: the variants explored, by index.
    enums: BTreeMap<String, BTreeMap<usize, Variant>>,
}

/// The format of `T` and every named type it reaches, or why not.
fn trace_type<T: DeserializeOwned>() -> Result<(Format, BTreeMap<String, Container>), String> {
    let mut learnt = Learnt::default();
    let mut run = Run::default();
    loop {
        let cell = RefCell::new(run);
        let mut tracer = sr::Tracer::new(config());
        let samples = sr::Samples::new();
        let probe = Probe::<T> {
            run: &cell,
            _t: PhantomData,
        };
        let result = tracer.trace_type_once_with_seed(&samples, probe);
        let done = cell.into_inner();
        let (mut format, _) = result.map_err(|e| reason(&done, e))?;
        let before = learnt.explored();
        learnt.absorb(&done, tracer.registry_unchecked())?;
        let Some(plan) = learnt.plan(&done) else {
            format
                .normalize()
                .map_err(|_| incomplete("the type itself"))?;
            let format = convert(format).map_err(|()| incomplete("the type itself"))?;
            return Ok((format, learnt.finish(&done)?));
        };
        if learnt.explored() == before {
            let missing: Vec<&str> = learnt.missing(&done).collect();
            return Err(format!(
                "the variants of enum(s) {} could not all be reached",
                quoted(&missing)
            ));
        }
        run = done.next(plan);
    }
}

/// The tracer's configuration: the binary (not human-readable) form, as
/// bincode sees it, and integers offered as 1 so that `NonZero*` types
/// accept them.
fn config() -> sr::TracerConfig {
    sr::TracerConfig::default()
        .default_u8_value(1)
        .default_u16_value(1)
        .default_u32_value(1)
        .default_u64_value(1)
        .default_u128_value(1)
        .default_i8_value(1)
        .default_i16_value(1)
        .default_i32_value(1)
        .default_i64_value(1)
        .default_i128_value(1)
}

impl Learnt {
    fn explored(&self) -> usize {
        self.enums.values().map(BTreeMap::len).sum()
    }

    /// Takes in what one run recorded.
    fn absorb(&mut self, run: &Run, registry: sr::Registry) -> Result<(), String> {
        for (name, container) in registry {
            match (container, run.variants.get(name.as_str())) {
                (sr::ContainerFormat::Enum(found), Some(names)) => {
                    let known = self.enums.entry(name.clone()).or_default();
                    for (
                        _,
                        sr::Named {
                            name: variant,
                            value,
                        },
                    ) in found
                    {
                        let Some(index) = names.iter().position(|n| *n == variant) else {
                            return Err(incomplete(&name));
                        };
                        let shape = variant_shape(value).map_err(|_| incomplete(&name))?;
                        let new = Variant {
                            name: variant,
                            shape,
                        };
                        if known.get(&index).is_some_and(|old| *old != new) {
                            return Err(clash(&name));
                        }
                        known.insert(index, new);
                    }
                }
                (sr::ContainerFormat::Enum(_), None) => return Err(incomplete(&name)),
                (container, _) => {
                    let new = container_format(container).map_err(|_| incomplete(&name))?;
                    if self.containers.get(&name).is_some_and(|old| *old != new) {
                        return Err(clash(&name));
                    }
                    self.containers.insert(name, new);
                }
            }
        }
        Ok(())
    }

    /// The enums (met in `run`) with variants not explored yet.
    fn missing<'r>(&'r self, run: &'r Run) -> impl Iterator<Item = &'static str> + 'r {
        run.variants.iter().filter_map(|(&name, names)| {
            let known = self.enums.get(name).map_or(0, BTreeMap::len);
            (known < names.len()).then_some(name)
        })
    }

    /// Which variant the next run explores first for each enum: one not
    /// explored yet, else one that leads to an enum with such variants.
    /// `None` when every enum is complete.
    fn plan(&self, run: &Run) -> Option<BTreeMap<&'static str, usize>> {
        let missing: BTreeSet<&str> = self.missing(run).collect();
        if missing.is_empty() {
            return None;
        }
        let mut plan = BTreeMap::new();
        for (&name, names) in &run.variants {
            let known = self.enums.get(name);
            let explored = |i: &usize| known.is_some_and(|k| k.contains_key(i));
            let pick = (0..names.len()).find(|i| !explored(i)).or_else(|| {
                let variants = known?;
                variants
                    .iter()
                    .find(|(_, v)| self.leads_to(&v.shape, &missing))
                    .map(|(&i, _)| i)
            });
            plan.insert(name, pick.unwrap_or(0));
        }
        Some(plan)
    }

    /// Whether `shape` reaches, through named types, one of `targets`.
    fn leads_to<'a>(&'a self, shape: &'a VariantShape, targets: &BTreeSet<&str>) -> bool {
        let mut todo: Vec<&'a str> = Vec::new();
        shape_refs(shape, &mut todo);
        let mut seen = BTreeSet::new();
        while let Some(name) = todo.pop() {
            if targets.contains(name) {
                return true;
            }
            if !seen.insert(name) {
                continue;
            }
            if let Some(c) = self.containers.get(name) {
                container_refs(c, &mut todo);
            }
            for v in self.enums.get(name).into_iter().flat_map(BTreeMap::values) {
                shape_refs(&v.shape, &mut todo);
            }
        }
        false
    }

    /// Every named type, enums with all their variants in index order.
    fn finish(self, run: &Run) -> Result<BTreeMap<String, Container>, String> {
        let mut types = self.containers;
        for (name, variants) in self.enums {
            let count = run.variants.get(name.as_str()).map_or(0, |v| v.len());
            if variants.len() != count || variants.keys().copied().ne(0..count) {
                return Err(incomplete(&name));
            }
            types.insert(name, Container::Enum(variants.into_values().collect()));
        }
        Ok(types)
    }
}

fn quoted(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    quoted.join(", ")
}

fn incomplete(name: &str) -> String {
    format!("the format of `{name}` could not be fully traced")
}

fn clash(name: &str) -> String {
    format!(
        "two different types reached from it are both named `{name}`; \
         give one of them another name with #[serde(rename = \"...\")]"
    )
}

/// The reason for a failed run, in words a user can act on.
fn reason(run: &Run, e: sr::Error) -> String {
    if run.too_deep {
        return format!(
            "it nests more than {MAX_DEPTH} levels deep, or without end (a type that always \
             contains itself, such as `struct A(Box<A>)`, has no finite value)"
        );
    }
    if let Some(name) = run.endless_enum {
        return format!(
            "every variant of enum `{name}` contains `{name}` itself, so it has no finite value"
        );
    }
    if let Some(call) = run.any {
        return format!(
            "its Deserialize asks the format what comes next ({call}): untagged enums, \
             internally or adjacently tagged enums and #[serde(flatten)] cannot be described; \
             use serde's default enum representation and plain fields"
        );
    }
    match e {
        sr::Error::Incompatible(a, b) => format!(
            "two different types reached from it share one serde name, or its Serialize and \
             Deserialize disagree ({a} vs {b}); give each type its own name with \
             #[serde(rename = \"...\")]"
        ),
        sr::Error::Custom(msg) => format!(
            "its Deserialize rejected the sample value the tracer offered ({msg}); types \
             whose Deserialize only accepts some values cannot be described"
        ),
        sr::Error::NotSupported(what) if what.contains("0 variants") => {
            "it reaches an enum with no variants, which has no value".to_owned()
        }
        other => other.to_string(),
    }
}

fn convert(f: sr::Format) -> Result<Format, ()> {
    let boxed = |f: Box<sr::Format>| convert(*f).map(Box::new);
    Ok(match f {
        sr::Format::Variable(_) => return Err(()),
        sr::Format::TypeName(n) => Format::Ref(n),
        sr::Format::Unit => Format::Unit,
        sr::Format::Bool => Format::Bool,
        sr::Format::I8 => Format::I8,
        sr::Format::I16 => Format::I16,
        sr::Format::I32 => Format::I32,
        sr::Format::I64 => Format::I64,
        sr::Format::I128 => Format::I128,
        sr::Format::U8 => Format::U8,
        sr::Format::U16 => Format::U16,
        sr::Format::U32 => Format::U32,
        sr::Format::U64 => Format::U64,
        sr::Format::U128 => Format::U128,
        sr::Format::F32 => Format::F32,
        sr::Format::F64 => Format::F64,
        sr::Format::Char => Format::Char,
        sr::Format::Str => Format::Str,
        sr::Format::Bytes => Format::Bytes,
        sr::Format::Option(f) => Format::Option(boxed(f)?),
        sr::Format::Seq(f) => Format::Seq(boxed(f)?),
        sr::Format::Map { key, value } => Format::Map {
            key: boxed(key)?,
            value: boxed(value)?,
        },
        sr::Format::Tuple(fs) => Format::Tuple(convert_all(fs)?),
        sr::Format::TupleArray { content, size } => Format::Array {
            item: boxed(content)?,
            len: size,
        },
    })
}

fn convert_all(fs: Vec<sr::Format>) -> Result<Vec<Format>, ()> {
    fs.into_iter().map(convert).collect()
}

fn fields(fs: Vec<sr::Named<sr::Format>>) -> Result<Vec<Field>, ()> {
    fs.into_iter()
        .map(|f| {
            Ok(Field {
                name: f.name,
                format: convert(f.value)?,
            })
        })
        .collect()
}

fn container_format(c: sr::ContainerFormat) -> Result<Container, ()> {
    Ok(match c {
        sr::ContainerFormat::UnitStruct => Container::UnitStruct,
        sr::ContainerFormat::NewTypeStruct(f) => Container::Newtype(convert(*f)?),
        sr::ContainerFormat::TupleStruct(fs) => Container::TupleStruct(convert_all(fs)?),
        sr::ContainerFormat::Struct(fs) => Container::Struct(fields(fs)?),
        sr::ContainerFormat::Enum(_) => return Err(()),
    })
}

fn variant_shape(v: sr::VariantFormat) -> Result<VariantShape, ()> {
    Ok(match v {
        sr::VariantFormat::Variable(_) => return Err(()),
        sr::VariantFormat::Unit => VariantShape::Unit,
        sr::VariantFormat::NewType(f) => VariantShape::Newtype(convert(*f)?),
        sr::VariantFormat::Tuple(fs) => VariantShape::Tuple(convert_all(fs)?),
        sr::VariantFormat::Struct(fs) => VariantShape::Struct(fields(fs)?),
    })
}

/// Pushes the names `f` refers to.
fn format_refs<'a>(f: &'a Format, out: &mut Vec<&'a str>) {
    match f {
        Format::Ref(n) => out.push(n),
        Format::Option(f) | Format::Seq(f) | Format::Array { item: f, .. } => format_refs(f, out),
        Format::Map { key, value } => {
            format_refs(key, out);
            format_refs(value, out);
        }
        Format::Tuple(fs) => fs.iter().for_each(|f| format_refs(f, out)),
        _ => {}
    }
}

fn shape_refs<'a>(s: &'a VariantShape, out: &mut Vec<&'a str>) {
    match s {
        VariantShape::Unit => {}
        VariantShape::Newtype(f) => format_refs(f, out),
        VariantShape::Tuple(fs) => fs.iter().for_each(|f| format_refs(f, out)),
        VariantShape::Struct(fs) => fs.iter().for_each(|f| format_refs(&f.format, out)),
    }
}

fn container_refs<'a>(c: &'a Container, out: &mut Vec<&'a str>) {
    match c {
        Container::UnitStruct => {}
        Container::Newtype(f) => format_refs(f, out),
        Container::TupleStruct(fs) => fs.iter().for_each(|f| format_refs(f, out)),
        Container::Struct(fs) => fs.iter().for_each(|f| format_refs(&f.format, out)),
        Container::Enum(vs) => vs.iter().for_each(|v| shape_refs(&v.shape, out)),
    }
}
