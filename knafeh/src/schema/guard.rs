//! A `Deserializer` adapter around serde-reflection's tracing deserializer.
//!
//! It does three things serde-reflection leaves to its caller:
//! - it chooses which variant of each enum one tracing run explores (the
//!   first time the run meets the enum), so that repeated runs reach every
//!   variant of every enum, also of enums behind `Option`, sequences and
//!   maps, which serde-reflection explores only once per tracer;
//! - when a run meets an enum again inside itself, it picks a variant that
//!   is not already being traced, so a recursive enum ends whatever the
//!   order of its variants (serde-reflection would always take the first);
//! - it bounds the nesting, so a type with no finite value (`struct A(Box<A>)`)
//!   is an error instead of a stack overflow.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

/// Deepest nesting a tracing run follows before giving up.
pub(super) const MAX_DEPTH: usize = 128;

/// What one tracing run decides and learns, shared by all the adapters of
/// the run.
#[derive(Default)]
pub(super) struct Run {
    /// Per enum: the variant to explore when this run first meets it.
    pub(super) plan: BTreeMap<&'static str, usize>,
    /// Per enum met so far (in any run): its variant names, in index order.
    pub(super) variants: BTreeMap<&'static str, &'static [&'static str]>,
    /// Enums this run has met.
    pub(super) met: BTreeSet<&'static str>,
    /// The (enum, variant) pairs being traced right now, outermost first.
    stack: Vec<(&'static str, usize)>,
    /// Set when the nesting limit was hit.
    pub(super) too_deep: bool,
    /// Set when `deserialize_any` (or another self-describing call) was
    /// made.
    pub(super) any: Option<&'static str>,
    /// Set when an enum has no variant left that is not already being
    /// traced.
    pub(super) endless_enum: Option<&'static str>,
}

impl Run {
    /// A fresh run that keeps what earlier runs learnt.
    pub(super) fn next(&self, plan: BTreeMap<&'static str, usize>) -> Run {
        Run {
            plan,
            variants: self.variants.clone(),
            ..Run::default()
        }
    }

    /// The first variant of `name` that is not being traced already: each
    /// nested meeting takes another variant, so the nesting ends.
    fn safe_variant(&self, name: &str, count: usize) -> Option<usize> {
        let busy = |i: usize| self.stack.iter().any(|&(n, v)| n == name && v == i);
        (0..count).find(|&i| !busy(i))
    }
}

/// The seed of one run: deserializes `T` through the adapter.
pub(super) struct Probe<'r, T> {
    pub(super) run: &'r RefCell<Run>,
    pub(super) _t: PhantomData<fn() -> T>,
}

impl<'de, T: de::Deserialize<'de>> DeserializeSeed<'de> for Probe<'_, T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<T, D::Error> {
        T::deserialize(Guard {
            inner: de,
            cx: Cx {
                run: self.run,
                left: MAX_DEPTH,
            },
        })
    }
}

/// The run and the nesting still allowed.
#[derive(Clone, Copy)]
struct Cx<'r> {
    run: &'r RefCell<Run>,
    left: usize,
}

impl<'r> Cx<'r> {
    fn deeper<E: de::Error>(self) -> Result<Self, E> {
        match self.left.checked_sub(1) {
            Some(left) => Ok(Cx { left, ..self }),
            None => {
                self.run.borrow_mut().too_deep = true;
                Err(E::custom("nested too deeply"))
            }
        }
    }

    fn wrap<T>(self, inner: T) -> Wrap<'r, T> {
        Wrap { inner, cx: self }
    }
}

/// Any adapted serde object (deserializer, visitor, access or seed).
struct Wrap<'r, T> {
    inner: T,
    cx: Cx<'r>,
}

/// The adapted deserializer.
struct Guard<'r, D> {
    inner: D,
    cx: Cx<'r>,
}

macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            let cx = self.cx.deeper()?;
            self.inner.$method($($arg,)* cx.wrap(visitor))
        }
    )*};
}

macro_rules! refuse_deserialize {
    ($($method:ident;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.cx.run.borrow_mut().any.get_or_insert(stringify!($method));
            self.inner.$method(visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Guard<'_, D> {
    type Error = D::Error;

    refuse_deserialize! {
        deserialize_any;
        deserialize_identifier;
        deserialize_ignored_any;
    }

    forward_deserialize! {
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let cx = self.cx.deeper()?;
        let mut run = cx.run.borrow_mut();
        run.variants.entry(name).or_insert(variants);
        if run.met.insert(name) {
            // First meeting in this run: serde-reflection records the
            // variant it is offered by name; offer only the planned one.
            let pick = run.plan.get(name).copied().unwrap_or(0);
            let pick = pick.min(variants.len().saturating_sub(1));
            run.stack.push((name, pick));
            drop(run);
            let offered = variants.get(pick..=pick).unwrap_or(variants);
            let result = self.inner.deserialize_enum(name, offered, cx.wrap(visitor));
            cx.run.borrow_mut().stack.pop();
            return result;
        }
        // Met again (serde-reflection then takes variant 0 and records
        // nothing): take a variant that is not being traced already.
        let Some(pick) = run.safe_variant(name, variants.len()) else {
            run.endless_enum = Some(name);
            return Err(de::Error::custom("every variant leads back"));
        };
        run.stack.push((name, pick));
        drop(run);
        let result = self.inner.deserialize_enum(
            name,
            variants,
            Swap {
                inner: visitor,
                pick: variants[pick],
                cx,
            },
        );
        cx.run.borrow_mut().stack.pop();
        result
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        let cx = self.cx;
        self.inner.visit_some(Guard { inner: de, cx })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        let cx = self.cx;
        self.inner.visit_newtype_struct(Guard { inner: de, cx })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let cx = self.cx;
        self.inner.visit_seq(cx.wrap(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let cx = self.cx;
        self.inner.visit_map(cx.wrap(map))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let cx = self.cx;
        self.inner.visit_enum(cx.wrap(data))
    }
}

/// Seeds handed to the tracer deserialize through the adapter.
impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Wrap<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Guard {
            inner: de,
            cx: self.cx,
        })
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let cx = self.cx;
        self.inner.next_element_seed(cx.wrap(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let cx = self.cx;
        self.inner.next_key_seed(cx.wrap(seed))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        let cx = self.cx;
        self.inner.next_value_seed(cx.wrap(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, 'r, A: EnumAccess<'de>> EnumAccess<'de> for Wrap<'r, A> {
    type Error = A::Error;
    type Variant = Wrap<'r, A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let (value, variant) = self.inner.variant_seed(seed)?;
        Ok((
            value,
            Wrap {
                inner: variant,
                cx: self.cx,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        let cx = self.cx;
        self.inner.newtype_variant_seed(cx.wrap(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let cx = self.cx;
        self.inner.tuple_variant(len, cx.wrap(visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let cx = self.cx;
        self.inner.struct_variant(fields, cx.wrap(visitor))
    }
}

/// The visitor of an enum met again: it answers the tracer's variant with
/// `pick`, by name.
struct Swap<'r, V> {
    inner: V,
    pick: &'static str,
    cx: Cx<'r>,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Swap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let cx = self.cx;
        self.inner.visit_enum(Swap {
            inner: data,
            pick: self.pick,
            cx,
        })
    }
}

impl<'de, 'r, A: EnumAccess<'de>> EnumAccess<'de> for Swap<'r, A> {
    type Error = A::Error;
    type Variant = Wrap<'r, A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let (IgnoredAny, variant) = self.inner.variant_seed(std::marker::PhantomData)?;
        let value = seed.deserialize(BorrowedStrDeserializer::<A::Error>::new(self.pick))?;
        Ok((
            value,
            Wrap {
                inner: variant,
                cx: self.cx,
            },
        ))
    }
}
