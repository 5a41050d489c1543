//! Canonical JSON of configurations, fast enough for a million jobs.
//!
//! A job id hashes `serde_json::to_string(&serde_json::to_value(config))` (keys sorted,
//! compact). Building a `serde_json::Value` per job costs tens of microseconds (one allocation
//! per key and value): 30 s for a million jobs. Consecutive jobs of a sweep differ in one or
//! two values, so [`CanonicalWriter`] keeps the canonical JSON of each top-level field and
//! recomputes only the fields the caller says may have changed (the sweep knows: those with
//! an axis whose value changed). The text is the same, byte for byte (the tests compare every
//! job id of varied sweeps with [`slow`]), so job ids do not change. Anything that does not
//! serialize as a plain struct takes the slow way.

use std::fmt;

use serde::ser::{Impossible, SerializeStruct, Serializer};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Changes a top-level field's JSON before it is written: false removes the field.
pub type Edit = fn(&str, &mut Value) -> bool;

/// See the module documentation.
#[derive(Default)]
pub struct CanonicalWriter {
    /// (key, canonical JSON of the field's last value written), in the order first seen: a
    /// struct has a handful of fields, and a hash map look-up per field and job costs more.
    cache: Vec<(&'static str, String)>,
    /// Fields whose text changed since the last [`CanonicalWriter::digest`].
    changed: Vec<&'static str>,
    /// The sorted keys of the last value digested, and the SHA-256 state after `{` and the
    /// first k of its fields for every k: SHA-256 reads its input in order and its state can be
    /// cloned, so the fields before the first one that changed are not hashed again (the
    /// `seed` axis of a big sweep changes one field near the end of the text).
    keys: Vec<&'static str>,
    states: Vec<Sha256>,
}

impl CanonicalWriter {
    /// `serde_json::to_string(&serde_json::to_value(value))`, recomputing only the top-level
    /// fields for which `fresh(key)` is true or that were not seen before.
    pub fn write<T: Serialize>(&mut self, value: &T, fresh: &dyn Fn(&str) -> bool) -> String {
        let mut fields: Vec<&'static str> = Vec::new();
        let fast = value.serialize(Top { writer: self, fresh, fields: &mut fields }).is_ok();
        if !fast {
            return slow(value, None, &[]);
        }
        fields.sort_unstable();
        let mut out = String::with_capacity(fields.iter().map(|k| k.len() + self.text(k).len() + 4).sum::<usize>() + 2);
        out.push('{');
        for (i, k) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(k).expect("a key serialises"));
            out.push(':');
            out.push_str(self.text(k));
        }
        out.push('}');
        out
    }

    /// SHA-256 of [`CanonicalWriter::write`]'s text, hashing only from the first field that
    /// changed since the last call (see `states`).
    pub fn digest<T: Serialize>(&mut self, value: &T, fresh: &dyn Fn(&str) -> bool) -> [u8; 32] {
        let mut fields: Vec<&'static str> = Vec::new();
        if value.serialize(Top { writer: self, fresh, fields: &mut fields }).is_err() {
            self.keys.clear();
            self.states.clear();
            return Sha256::digest(slow(value, None, &[]).as_bytes()).into();
        }
        fields.sort_unstable();
        let same = fields.iter().zip(&self.keys).take_while(|(k, old)| k == old && !self.changed.contains(k)).count();
        self.changed.clear();
        self.keys = fields;
        self.states.truncate(same + 1);
        if self.states.is_empty() {
            self.states.push(Sha256::new_with_prefix(b"{"));
        }
        for i in same..self.keys.len() {
            let k = self.keys[i];
            let mut h = self.states[i].clone();
            if i > 0 {
                h.update(b",");
            }
            h.update(serde_json::to_string(k).expect("a key serialises").as_bytes());
            h.update(b":");
            h.update(self.text(k).as_bytes());
            self.states.push(h);
        }
        let mut h = self.states[self.keys.len()].clone();
        h.update(b"}");
        h.finalize().into()
    }

    /// The cached text of field `key` (one that was written).
    fn text(&self, key: &str) -> &str {
        self.cache.iter().find(|(k, _)| *k == key).map(|(_, t)| t.as_str()).expect("a field written before")
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T, fresh: bool) -> Result<(), NotAStruct> {
        let slot = self.cache.iter().position(|(k, _)| *k == key);
        if !fresh && slot.is_some() {
            return Ok(());
        }
        let v = serde_json::to_value(value).map_err(|_| NotAStruct)?;
        let text = serde_json::to_string(&v).expect("a JSON value serialises");
        match slot {
            Some(i) if self.cache[i].1 == text => {}
            Some(i) => {
                self.changed.push(key);
                self.cache[i].1 = text;
            }
            None => {
                self.changed.push(key);
                self.cache.push((key, text));
            }
        }
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
    fresh: &'a dyn Fn(&str) -> bool,
    fields: &'a mut Vec<&'static str>,
}

struct TopStruct<'a> {
    writer: &'a mut CanonicalWriter,
    fresh: &'a dyn Fn(&str) -> bool,
    fields: &'a mut Vec<&'static str>,
}

impl SerializeStruct for TopStruct<'_> {
    type Ok = ();
    type Error = NotAStruct;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), NotAStruct> {
        self.writer.field(key, value, (self.fresh)(key))?;
        self.fields.push(key);
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
        Ok(TopStruct { writer: self.writer, fresh: self.fresh, fields: self.fields })
    }
    fn serialize_struct_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Self::SerializeStructVariant, NotAStruct> {
        Err(NotAStruct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sweep::job_id;
    use sha2::{Digest, Sha256};
    use crate::config::Sweep;

    /// Every job id of sweeps that vary every kind of section (scalars, tagged problem and
    /// balancer sections, maps, lists, optional L-BFGS; several axes under one section) equals
    /// the reference, and a writer told that nothing changed reuses its fields.
    #[test]
    fn ids_equal_the_reference_on_varied_sweeps() {
        let sweeps = [
            "problem: {kind: darcy1d, eps: 0.5}\nsweep:\n  eps: [0.5, 0.25]\n  loss.eps_rescale: [false, true]\n  width: [8, 16]\n  depth: [2, 3]\n  seed: [0, 1, 2]\n",
            "problem: {kind: wave1d}\nevaluation: {points: 50}\ncollocation: {residual: {points: 30, resample: true}}\ntraining: {steps: 10, stages: [{steps: 5, lr: 0.01}]}\n\
             sweep:\n  balancer: [none, {kind: ntk, every: 5}, relobralo]\n  training.lbfgs: [null, {steps: 3}]\n  normalization: [none, zscore]\n  lr: [0.1, 0.01]\n",
            "problem: {kind: helmholtz2d}\nevaluation: {points: 50}\nloss: {weights: {boundary: 10.0}}\nntk: {points: {residual: 20}}\nsweep:\n  seed: [0, 1]\n  ntk.enabled: [true, false]\n",
            // Seed first (every field after it is hashed again when it changes), the network
            // schemes, the NTK method, a list item, an expression problem's constant, and a whole
            // section swept beside an axis inside it.
            "problem: {kind: expression, inputs: {x: [0, 1]}, constants: {eps: 0.5}, solution: sin(pi*x) + eps*x, operator: -u_xx}\n\
             training: {steps: 10, stages: [{steps: 5, lr: 0.01}]}\nsweep:\n  seed: [3, 4]\n  eps: [0.5, 0.25]\n  training.stages.0.lr: [0.01, 0.02]\n  \
             activation: [tanh, sin]\n  adaptive_activation: [none, {kind: layerwise, scale: 4}]\n  fourier: [null, {features: 4, sigma: 1}]\n  \
             ntk_method: [exact, hutchinson]\n  probes: [8, 16]\n",
            "problem: {kind: darcy1d, eps: 0.5}\nsweep:\n  model: [{width: 8, depth: 2}, {width: 16, depth: 3}]\n  width: [4, 5]\n  seed: [0, 1]\n",
        ];
        for text in sweeps {
            let s = Sweep::parse(text, "t.yaml", "t", &[]).unwrap();
            assert!(s.jobs.len() >= 4);
            for j in &s.jobs {
                assert_eq!(j.id, job_id(&j.config), "job {} of\n{text}", j.index);
            }
            let ids: std::collections::HashSet<&String> = s.jobs.iter().map(|j| &j.id).collect();
            assert_eq!(ids.len(), s.jobs.len(), "distinct ids");
            let mut w = CanonicalWriter::default();
            let first = w.write(&s.jobs[0].config, &|_| true);
            assert_eq!(w.write(&s.jobs[1].config, &|_| false), first, "nothing recomputed");
            assert_ne!(w.write(&s.jobs[1].config, &|_| true), first);
        }
    }

    /// The digest hashes again only from the first field whose text changed, and equals the
    /// SHA-256 of the text whatever changed: fields in the middle, at the end, none, a field
    /// that appears or disappears (an optional section), back and forth.
    #[test]
    fn digest_of_a_changed_suffix_equals_the_digest_of_the_text() {
        let text = "problem: {kind: darcy1d, eps: 0.5}\ntraining: {steps: 10}\nsweep:\n  training.lbfgs: [null, {steps: 3}]\n  width: [8, 16]\n  eps: [0.5, 0.25]\n  seed: [0, 1]\n";
        let s = Sweep::parse(text, "t.yaml", "t", &[]).unwrap();
        let mut w = CanonicalWriter::default();
        for j in s.jobs.iter().chain(s.jobs.iter().rev()).chain([&s.jobs[3], &s.jobs[3], &s.jobs[12]]) {
            let want: [u8; 32] = Sha256::digest(slow(&j.config, None, &[]).as_bytes()).into();
            assert_eq!(w.digest(&j.config, &|_| true), want, "job {}", j.index);
        }
    }

    /// What is not a struct takes the slow way, with the same result.
    #[test]
    fn other_values_take_the_slow_way() {
        let mut w = CanonicalWriter::default();
        let map: std::collections::BTreeMap<&str, i32> = [("b", 1), ("a", 2)].into_iter().collect();
        assert_eq!(w.write(&map, &|_| true), r#"{"a":2,"b":1}"#);
        assert_eq!(w.write(&vec![3, 1], &|_| true), "[3,1]");
    }
}
