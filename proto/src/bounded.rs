//! Bounds applied *while* postcard decodes untrusted bytes.
//!
//! postcard checks that a string's bytes are present before it hands them
//! over, but it happily turns 16 MiB of one-byte items into hundreds of MiB
//! of `String`s and structs. [`Bounded`] wraps any serde `Deserializer` and,
//! generically for every type we decode:
//! - refuses a string longer than [`DecodeLimits::max_string`] before the
//!   visitor copies it;
//! - refuses a sequence (a `Vec`) that claims more items than
//!   [`DecodeLimits::max_items`], or more items than there are bytes left
//!   (postcard reports no size hint then), before serde preallocates it;
//! - charges every string's bytes and every sequence item's in-memory size
//!   to a [`Budget`] and stops once it exceeds [`DecodeLimits::max_memory`].
//!
//! Being generic, it needs no change when a field is added; the
//! hand-written [`crate::Payload::heap_bytes`] must agree with what it
//! charges (a property test checks they are equal).
//!
//! serde errors carry no typed payload through postcard, so the precise
//! [`ProtoError`] is kept in the [`Budget`] and [`Budget::error`] prefers it.

use crate::error::ProtoError;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::mem::size_of;

/// The bounds of one decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DecodeLimits {
    /// Longest string, bytes.
    pub max_string: usize,
    /// Most items in one sequence.
    pub max_items: usize,
    /// Most bytes of memory the decoded value may take.
    pub max_memory: usize,
}

/// Running account of one decode: memory charged so far and the first
/// bound that was broken.
pub(crate) struct Budget {
    limits: DecodeLimits,
    used: Cell<usize>,
    refused: RefCell<Option<ProtoError>>,
}

impl Budget {
    /// A fresh budget.
    pub fn new(limits: DecodeLimits) -> Self {
        Budget {
            limits,
            used: Cell::new(0),
            refused: RefCell::new(None),
        }
    }

    /// Memory charged so far, bytes.
    pub fn used(&self) -> usize {
        self.used.get()
    }

    /// Charges `bytes` of memory; refuses once the total passes the limit.
    pub fn charge(&self, bytes: usize) -> Result<(), ProtoError> {
        let used = self.used.get().saturating_add(bytes);
        self.used.set(used);
        if used > self.limits.max_memory {
            return Err(self.refuse(ProtoError::MemoryBudget {
                limit: self.limits.max_memory,
            }));
        }
        Ok(())
    }

    /// The typed error for a failed decode: the bound that was broken, if
    /// one was, else postcard's own complaint.
    pub fn error(&self, e: impl fmt::Display) -> ProtoError {
        self.refused
            .borrow()
            .clone()
            .unwrap_or_else(|| ProtoError::Malformed(e.to_string()))
    }

    fn refuse(&self, e: ProtoError) -> ProtoError {
        self.refused.borrow_mut().get_or_insert(e).clone()
    }

    fn string<E: de::Error>(&self, len: usize) -> Result<(), E> {
        if len > self.limits.max_string {
            let e = self.refuse(ProtoError::StringTooLong {
                len,
                limit: self.limits.max_string,
            });
            return Err(E::custom(e));
        }
        self.charge(len).map_err(E::custom)
    }

    fn sequence<E: de::Error>(&self, claimed: Option<usize>) -> Result<(), E> {
        match claimed {
            Some(n) if n <= self.limits.max_items => Ok(()),
            _ => Err(E::custom(self.refuse(ProtoError::SequenceTooLong {
                limit: self.limits.max_items,
            }))),
        }
    }
}

/// A serde `Deserializer` that applies a [`Budget`] to everything `inner`
/// decodes.
pub(crate) struct Bounded<'b, D> {
    inner: D,
    budget: &'b Budget,
}

impl<'b, D> Bounded<'b, D> {
    /// Wraps `inner`.
    pub fn new(inner: D, budget: &'b Budget) -> Self {
        Bounded { inner, budget }
    }
}

/// Whether a visited sequence is a heap allocation (`Vec`) or inline data
/// (struct fields, tuples, arrays), which only the heap kind is charged for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Heap,
    Inline,
}

macro_rules! forward {
    ($($method:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            self.inner.$method(Wrap::inline(visitor, self.budget))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Bounded<'_, D> {
    type Error = D::Error;

    forward!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let wrap = Wrap {
            inner: visitor,
            budget: self.budget,
            shape: Shape::Heap,
        };
        self.inner.deserialize_seq(wrap)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let wrap = Wrap::inline(visitor, self.budget);
        self.inner.deserialize_unit_struct(name, wrap)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let wrap = Wrap::inline(visitor, self.budget);
        self.inner.deserialize_newtype_struct(name, wrap)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner
            .deserialize_tuple(len, Wrap::inline(visitor, self.budget))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let wrap = Wrap::inline(visitor, self.budget);
        self.inner.deserialize_tuple_struct(name, len, wrap)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let wrap = Wrap::inline(visitor, self.budget);
        self.inner.deserialize_struct(name, fields, wrap)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let wrap = Wrap::inline(visitor, self.budget);
        self.inner.deserialize_enum(name, variants, wrap)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// A `DeserializeSeed` whose value is decoded through [`Bounded`].
struct Seed<'b, S> {
    inner: S,
    budget: &'b Budget,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Bounded::new(d, self.budget))
    }
}

/// A `Visitor` that checks strings and sequences before `inner` sees them.
struct Wrap<'b, V> {
    inner: V,
    budget: &'b Budget,
    shape: Shape,
}

impl<'b, V> Wrap<'b, V> {
    fn inline(inner: V, budget: &'b Budget) -> Self {
        Wrap {
            inner,
            budget,
            shape: Shape::Inline,
        }
    }
}

macro_rules! pass {
    ($($method:ident: $ty:ty),* $(,)?) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.inner.expecting(f)
    }

    pass!(
        visit_bool: bool,
        visit_i8: i8,
        visit_i16: i16,
        visit_i32: i32,
        visit_i64: i64,
        visit_i128: i128,
        visit_u8: u8,
        visit_u16: u16,
        visit_u32: u32,
        visit_u64: u64,
        visit_u128: u128,
        visit_f32: f32,
        visit_f64: f64,
        visit_char: char,
    );

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.budget.string(v.len())?;
        self.inner.visit_str(v)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.budget.string(v.len())?;
        self.inner.visit_borrowed_str(v)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.budget.string(v.len())?;
        self.inner.visit_string(v)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        self.budget.string(v.len())?;
        self.inner.visit_bytes(v)
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<V::Value, E> {
        self.budget.string(v.len())?;
        self.inner.visit_borrowed_bytes(v)
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<V::Value, E> {
        self.budget.string(v.len())?;
        self.inner.visit_byte_buf(v)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Bounded::new(d, self.budget))
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner
            .visit_newtype_struct(Bounded::new(d, self.budget))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        if self.shape == Shape::Heap {
            // postcard gives no hint when the claim exceeds the bytes left.
            self.budget.sequence(seq.size_hint())?;
        }
        self.inner.visit_seq(Items {
            inner: seq,
            budget: self.budget,
            shape: self.shape,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.budget.sequence(map.size_hint())?;
        self.inner.visit_map(Entries {
            inner: map,
            budget: self.budget,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Variant {
            inner: data,
            budget: self.budget,
        })
    }
}

/// Items of a sequence; for a `Vec`, each is charged its in-memory size.
struct Items<'b, A> {
    inner: A,
    budget: &'b Budget,
    shape: Shape,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Items<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let seed = Seed {
            inner: seed,
            budget: self.budget,
        };
        let item = self.inner.next_element_seed(seed)?;
        if item.is_some() && self.shape == Shape::Heap {
            self.budget
                .charge(size_of::<T::Value>())
                .map_err(<A::Error as de::Error>::custom)?;
        }
        Ok(item)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// Entries of a map, each charged its key's and value's in-memory size.
struct Entries<'b, A> {
    inner: A,
    budget: &'b Budget,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Entries<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let seed = Seed {
            inner: seed,
            budget: self.budget,
        };
        let key = self.inner.next_key_seed(seed)?;
        if key.is_some() {
            self.budget
                .charge(size_of::<K::Value>())
                .map_err(<A::Error as de::Error>::custom)?;
        }
        Ok(key)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.budget
            .charge(size_of::<T::Value>())
            .map_err(<A::Error as de::Error>::custom)?;
        self.inner.next_value_seed(Seed {
            inner: seed,
            budget: self.budget,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// An enum's variant, whose content is decoded through [`Bounded`].
struct Variant<'b, A> {
    inner: A,
    budget: &'b Budget,
}

impl<'de, 'b, A: EnumAccess<'de>> EnumAccess<'de> for Variant<'b, A> {
    type Error = A::Error;
    type Variant = Variant<'b, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let (tag, content) = self.inner.variant_seed(seed)?;
        Ok((
            tag,
            Variant {
                inner: content,
                budget: self.budget,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Variant<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.newtype_variant_seed(Seed {
            inner: seed,
            budget: self.budget,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner
            .tuple_variant(len, Wrap::inline(visitor, self.budget))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner
            .struct_variant(fields, Wrap::inline(visitor, self.budget))
    }
}

/// Decodes one `T` from the front of `bytes` within `budget`; returns it and
/// the bytes after it.
pub(crate) fn take<'de, T: serde::Deserialize<'de>>(
    bytes: &'de [u8],
    budget: &Budget,
) -> Result<(T, &'de [u8]), ProtoError> {
    let mut de = postcard::Deserializer::from_bytes(bytes);
    let value = T::deserialize(Bounded::new(&mut de, budget)).map_err(|e| budget.error(e))?;
    let rest = de.finalize().map_err(|e| budget.error(e))?;
    Ok((value, rest))
}

/// Decodes one `T` that must use every byte, within `limits`.
pub(crate) fn decode_exact<'de, T: serde::Deserialize<'de>>(
    bytes: &'de [u8],
    limits: DecodeLimits,
) -> Result<T, ProtoError> {
    let budget = Budget::new(limits);
    budget.charge(size_of::<T>())?;
    let (value, rest) = take(bytes, &budget)?;
    if !rest.is_empty() {
        return Err(ProtoError::TrailingBytes(rest.len()));
    }
    Ok(value)
}
