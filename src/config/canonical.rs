//! Canonical JSON of configurations, fast enough for a million jobs.
//!
//! A job id hashes `serde_json::to_string(&serde_json::to_value(config))` (keys sorted,
//! compact), and the scheduler groups jobs by the same text with the per-member values removed.
//! Building a `serde_json::Value` per job costs tens of microseconds (one allocation per key and
//! value): 30 s for a million jobs. Consecutive jobs of a sweep differ in one or two values, so
//! [`CanonicalWriter`] keeps, for each top-level field, the field's raw JSON and its canonical
//! JSON, and recomputes the canonical form only of the fields whose raw JSON changed. The text
//! is the same, byte for byte (the tests compare both ways on many configurations), so job
//! ids do not change. Anything that does not serialize as a plain struct takes the slow way.

use std::collections::HashMap;
use std::fmt;

use serde::ser::{Impossible, SerializeStruct, Serializer};
use serde::Serialize;
use serde_json::Value;

/// Changes a top-level field's JSON before it is written: false removes the field.
pub type Edit = fn(&str, &mut Value) -> bool;

/// See the module documentation.
#[derive(Default)]
pub struct CanonicalWriter {
    edit: Option<Edit>,
    /// key -> (raw JSON of the last value seen, its canonical JSON or None when removed).
    cache: HashMap<&'static str, (Vec<u8>, Option<String>)>,
    raw: Vec<u8>,
}

impl CanonicalWriter {
    /// A writer whose fields pass through `edit` (the batch key's removals).
    pub fn with_edit(edit: Edit) -> Self {
        CanonicalWriter { edit: Some(edit), ..Default::default() }
    }

    /// `serde_json::to_string(&serde_json::to_value(value))`, with `edit` applied to each
    /// top-level field and `extra` fields (key, canonical JSON) added.
    pub fn write<T: Serialize>(&mut self, value: &T, extra: &[(&'static str, String)]) -> String {
        let mut fields: Vec<(&'static str, usize)> = Vec::new();
        let fast = value.serialize(Top { writer: self, fields: &mut fields }).is_ok();
        if !fast {
            return slow(value, self.edit, extra);
        }
        let mut keyed: Vec<(&str, &str)> = fields.iter().filter_map(|(k, _)| self.cache[k].1.as_deref().map(|c| (*k, c))).collect();
        keyed.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
        keyed.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = String::with_capacity(keyed.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>() + 2);
        out.push('{');
        for (i, (k, v)) in keyed.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(k).expect("a key serialises"));
            out.push(':');
            out.push_str(v);
        }
        out.push('}');
        out
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), NotAStruct> {
        self.raw.clear();
        serde_json::to_writer(&mut self.raw, value).map_err(|_| NotAStruct)?;
        if self.cache.get(key).is_some_and(|(raw, _)| *raw == self.raw) {
            return Ok(());
        }
        let mut v = serde_json::to_value(value).map_err(|_| NotAStruct)?;
        let keep = self.edit.is_none_or(|edit| edit(key, &mut v));
        let canonical = keep.then(|| serde_json::to_string(&v).expect("a JSON value serialises"));
        self.cache.insert(key, (self.raw.clone(), canonical));
        Ok(())
    }
}

/// The reference: build the whole `Value`, edit it, write it.
pub fn slow<T: Serialize>(value: &T, edit: Option<Edit>, extra: &[(&'static str, String)]) -> String {
    let mut v = serde_json::to_value(value).expect("config serialises");
    if let Some(m) = v.as_object_mut() {
        if let Some(edit) = edit {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let keep = edit(&k, m.get_mut(&k).expect("a key of this map"));
                if !keep {
                    m.remove(&k);
                }
            }
        }
        for (k, json) in extra {
            m.insert(k.to_string(), serde_json::from_str(json).expect("extra fields are JSON"));
        }
    }
    serde_json::to_string(&v).expect("json")
}

/// The value is not a plain struct (the slow way then serves).
#[derive(Debug)]
struct NotAStruct;

impl fmt::Display for NotAStruct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a plain struct")
    }
}

impl std::error::Error for NotAStruct {}

impl serde::ser::Error for NotAStruct {
    fn custom<T: fmt::Display>(_: T) -> Self {
        NotAStruct
    }
}

/// Serializer of the top level only: hands each field to the writer's cache.
struct Top<'a> {
    writer: &'a mut CanonicalWriter,
    fields: &'a mut Vec<(&'static str, usize)>,
}

struct TopStruct<'a> {
    writer: &'a mut CanonicalWriter,
    fields: &'a mut Vec<(&'static str, usize)>,
}

impl SerializeStruct for TopStruct<'_> {
    type Ok = ();
    type Error = NotAStruct;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), NotAStruct> {
        self.writer.field(key, value)?;
        self.fields.push((key, self.fields.len()));
        Ok(())
    }

    fn end(self) -> Result<(), NotAStruct> {
        Ok(())
    }
}

macro_rules! not_a_struct {
    ($($name:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $name(self, $(_: $arg),*) -> Result<(), NotAStruct> { Err(NotAStruct) })*
    };
}

impl<'a> Serializer for Top<'a> {
    type Ok = ();
    type Error = NotAStruct;
    type SerializeSeq = Impossible<(), NotAStruct>;
    type SerializeTuple = Impossible<(), NotAStruct>;
    type SerializeTupleStruct = Impossible<(), NotAStruct>;
    type SerializeTupleVariant = Impossible<(), NotAStruct>;
    type SerializeMap = Impossible<(), NotAStruct>;
    type SerializeStruct = TopStruct<'a>;
    type SerializeStructVariant = Impossible<(), NotAStruct>;

    not_a_struct!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), NotAStruct> {
        Err(NotAStruct)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, _: &T) -> Result<(), NotAStruct> {
        Err(NotAStruct)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(self, _: &'static str, _: u32, _: &'static str, _: &T) -> Result<(), NotAStruct> {
        Err(NotAStruct)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, NotAStruct> {
        Err(NotAStruct)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, NotAStruct> {
        Err(NotAStruct)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, NotAStruct> {
        Err(NotAStruct)
    }
    fn serialize_tuple_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Self::SerializeTupleVariant, NotAStruct> {
        Err(NotAStruct)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotAStruct> {
        Err(NotAStruct)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<TopStruct<'a>, NotAStruct> {
        Ok(TopStruct { writer: self.writer, fields: self.fields })
    }
    fn serialize_struct_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Self::SerializeStructVariant, NotAStruct> {
        Err(NotAStruct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Sweep;

    fn drop_seed_and_eps(key: &str, v: &mut Value) -> bool {
        if let (true, Some(m)) = (key == "problem", v.as_object_mut()) {
            m.remove("eps");
        }
        key != "seed"
    }

    /// The fast text equals the reference on every job of sweeps that vary every kind of
    /// section (scalars, tagged problem and balancer sections, maps, lists, optional L-BFGS),
    /// in an order where fields change back and forth, with and without an edit.
    #[test]
    fn equals_the_reference_on_varied_sweeps() {
        let sweeps = [
            "problem: {kind: darcy1d, eps: 0.5}\nsweep:\n  eps: [0.5, 0.25]\n  loss.eps_rescale: [false, true]\n  width: [8, 16]\n  seed: [0, 1, 2]\n",
            "problem: {kind: wave1d}\nevaluation: {points: 50}\ncollocation: {residual: {points: 30, resample: true}}\ntraining: {steps: 10, stages: [{steps: 5, lr: 0.01}]}\n\
             sweep:\n  balancer: [none, {kind: ntk, every: 5}, relobralo]\n  training.lbfgs: [null, {steps: 3}]\n  normalization: [none, zscore]\n",
            "problem: {kind: helmholtz2d}\nevaluation: {points: 50}\nloss: {weights: {boundary: 10.0}}\nntk: {points: {residual: 20}}\nsweep:\n  seed: [0, 1]\n  ntk.enabled: [true, false]\n",
        ];
        for text in sweeps {
            let s = Sweep::parse(text, "t.yaml", "t", &[]).unwrap();
            let mut plain = CanonicalWriter::default();
            let mut edited = CanonicalWriter::with_edit(drop_seed_and_eps);
            let extra = [("total_steps", "42".to_string())];
            // Forward, then backward: every field changes in both directions.
            for j in s.jobs.iter().chain(s.jobs.iter().rev()) {
                let reference = serde_json::to_string(&serde_json::to_value(&j.config).unwrap()).unwrap();
                assert_eq!(plain.write(&j.config, &[]), reference);
                assert_eq!(edited.write(&j.config, &extra), slow(&j.config, Some(drop_seed_and_eps), &extra));
            }
        }
    }

    /// What is not a struct takes the slow way, with the same result.
    #[test]
    fn other_values_take_the_slow_way() {
        let mut w = CanonicalWriter::default();
        let map: std::collections::BTreeMap<&str, i32> = [("b", 1), ("a", 2)].into_iter().collect();
        assert_eq!(w.write(&map, &[]), r#"{"a":2,"b":1}"#);
        assert_eq!(w.write(&vec![3, 1], &[]), "[3,1]");
    }
}
