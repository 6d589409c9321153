//! The built-in window functions (`sum`, `count`, `min`, `max`, `avg` over
//! a JSON field) as accumulators with a fixed binary form, and the
//! built-in evictors (count, time, delta).

use weir_core::spec::{AggregateKind, EvictorSpec, field_pointer};

/// A JSON number: integers stay integers until a float joins them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    fn add(self, other: Num) -> Num {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a.checked_add(b).map_or(Num::Float(a as f64 + b as f64), Num::Int),
            (a, b) => Num::Float(a.as_f64() + b.as_f64()),
        }
    }

    fn less(self, other: Num) -> bool {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a < b,
            (a, b) => a.as_f64() < b.as_f64(),
        }
    }

    /// Tag byte (0 integer, 1 float) and eight little-endian bytes.
    fn encode(self, out: &mut Vec<u8>) {
        match self {
            Num::Int(i) => {
                out.push(0);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Num::Float(f) => {
                out.push(1);
                out.extend_from_slice(&f.to_le_bytes());
            }
        }
    }

    fn decode(b: &[u8]) -> Option<Num> {
        let v: [u8; 8] = b.get(1..9)?.try_into().ok()?;
        match b.first()? {
            0 => Some(Num::Int(i64::from_le_bytes(v))),
            1 => Some(Num::Float(f64::from_le_bytes(v))),
            _ => None,
        }
    }

    fn write_json(self, out: &mut Vec<u8>) {
        match self {
            Num::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
            Num::Float(f) if f.is_finite() => {
                let _ = serde_json::to_writer(&mut *out, &f);
            }
            Num::Float(_) => out.extend_from_slice(b"null"),
        }
    }
}

/// A built-in aggregate over one field.
#[derive(Debug, Clone)]
pub(crate) struct Aggregate {
    pub kind: AggregateKind,
    pointer: Option<String>,
    /// The field's name when the pointer names a top-level field: read
    /// without building the whole value.
    field: Option<String>,
}

impl Aggregate {
    pub fn new(kind: AggregateKind, field: Option<&str>) -> Aggregate {
        let pointer = field.map(field_pointer);
        let field =
            pointer.as_deref().and_then(|p| p.strip_prefix('/')).filter(|f| !f.contains(['/', '~'])).map(str::to_owned);
        Aggregate { kind, pointer, field }
    }

    /// The number an element contributes (`count` reads nothing).
    pub fn input(&self, value: &[u8]) -> Result<Num, String> {
        let Some(pointer) = &self.pointer else { return Ok(Num::Int(1)) };
        let not_json = |e: serde_json::Error| {
            format!("value is not JSON ({e}), so `{}` cannot read `{pointer}`", self.kind.name())
        };
        let found = match self.field.as_deref() {
            Some(name) => top_level(value, name).map_err(not_json)?,
            None => serde_json::from_slice::<serde_json::Value>(value).map_err(not_json)?.pointer(pointer).cloned(),
        };
        match found.as_ref() {
            Some(serde_json::Value::Number(n)) => match n.as_i64() {
                Some(i) => Ok(Num::Int(i)),
                None => n.as_f64().map(Num::Float).ok_or_else(|| format!("`{pointer}` is not a finite number")),
            },
            Some(other) => Err(format!(
                "`{pointer}` holds {other}, not a number, so `{}` cannot aggregate it; fix the data or the function's `field`",
                self.kind.name()
            )),
            None => Err(format!(
                "value has no field `{pointer}` for `{}`; fix the data or the function's `field`",
                self.kind.name()
            )),
        }
    }

    /// Folds `x` into the stored accumulator `acc` (absent: none yet),
    /// writing the new one to `out`. Stored forms: `sum`, `min`, `max`:
    /// a number (tag byte 0 = i64, 1 = f64, then 8 bytes LE); `count`: u64
    /// LE; `avg`: count u64 LE then sum f64 LE.
    pub fn fold(&self, acc: Option<&[u8]>, x: Num, out: &mut Vec<u8>) {
        out.clear();
        match self.kind {
            AggregateKind::Count | AggregateKind::Component => {
                let n = acc.and_then(|a| a.try_into().ok()).map_or(0, u64::from_le_bytes);
                out.extend_from_slice(&(n + 1).to_le_bytes());
            }
            AggregateKind::Avg => {
                let (n, s) = acc.and_then(avg_parts).unwrap_or((0, 0.0));
                out.extend_from_slice(&(n + 1).to_le_bytes());
                out.extend_from_slice(&(s + x.as_f64()).to_le_bytes());
            }
            AggregateKind::Sum | AggregateKind::Min | AggregateKind::Max => {
                let next = match acc.and_then(Num::decode) {
                    None => x,
                    Some(a) => match self.kind {
                        AggregateKind::Sum => a.add(x),
                        AggregateKind::Min => {
                            if x.less(a) {
                                x
                            } else {
                                a
                            }
                        }
                        _ => {
                            if a.less(x) {
                                x
                            } else {
                                a
                            }
                        }
                    },
                };
                next.encode(out);
            }
        }
    }

    /// Merges accumulator `b` into `a` (session windows merging).
    pub fn merge(&self, a: &[u8], b: &[u8], out: &mut Vec<u8>) {
        out.clear();
        match self.kind {
            AggregateKind::Count | AggregateKind::Component => {
                let n = |x: &[u8]| x.try_into().ok().map_or(0, u64::from_le_bytes);
                out.extend_from_slice(&(n(a) + n(b)).to_le_bytes());
            }
            AggregateKind::Avg => {
                let (n1, s1) = avg_parts(a).unwrap_or((0, 0.0));
                let (n2, s2) = avg_parts(b).unwrap_or((0, 0.0));
                out.extend_from_slice(&(n1 + n2).to_le_bytes());
                out.extend_from_slice(&(s1 + s2).to_le_bytes());
            }
            _ => match Num::decode(b) {
                Some(x) => self.fold(Some(a), x, out),
                None => out.extend_from_slice(a),
            },
        }
    }

    /// Writes the result of an accumulator as JSON (`null` for the min,
    /// max or mean of nothing).
    pub fn result(&self, acc: Option<&[u8]>, out: &mut Vec<u8>) {
        match self.kind {
            AggregateKind::Count | AggregateKind::Component => {
                let n = acc.and_then(|a| a.try_into().ok()).map_or(0, u64::from_le_bytes);
                out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            }
            AggregateKind::Avg => match acc.and_then(avg_parts) {
                Some((n, s)) if n > 0 => Num::Float(s / n as f64).write_json(out),
                _ => out.extend_from_slice(b"null"),
            },
            AggregateKind::Sum => acc.and_then(Num::decode).unwrap_or(Num::Int(0)).write_json(out),
            _ => match acc.and_then(Num::decode) {
                Some(n) => n.write_json(out),
                None => out.extend_from_slice(b"null"),
            },
        }
    }
}

/// The value of top-level field `name` of the JSON object `value` (the
/// rest is checked but not built; `None` when absent or not an object).
fn top_level(value: &[u8], name: &str) -> Result<Option<serde_json::Value>, serde_json::Error> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
    struct Field<'a>(&'a str);
    struct IsName<'a>(&'a str);
    impl<'de> DeserializeSeed<'de> for IsName<'_> {
        type Value = bool;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_str(self)
        }
    }
    impl<'de> Visitor<'de> for IsName<'_> {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a field name")
        }
        fn visit_str<E>(self, v: &str) -> Result<bool, E> {
            Ok(v == self.0)
        }
    }
    impl<'de> Visitor<'de> for Field<'_> {
        type Value = Option<serde_json::Value>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(is) = map.next_key_seed(IsName(self.0))? {
                if is {
                    found = Some(map.next_value()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    let mut d = serde_json::Deserializer::from_slice(value);
    let found = d.deserialize_any(Field(name))?;
    d.end()?;
    Ok(found)
}

fn avg_parts(a: &[u8]) -> Option<(u64, f64)> {
    let n = u64::from_le_bytes(a.get(..8)?.try_into().ok()?);
    let s = f64::from_le_bytes(a.get(8..16)?.try_into().ok()?);
    Some((n, s))
}

/// A built-in evictor (Flink's `CountEvictor`, `TimeEvictor`,
/// `DeltaEvictor`), over elements as (timestamp, value) in arrival order.
#[derive(Debug, Clone)]
pub(crate) struct Evictor {
    spec: EvictorSpec,
    pointer: Option<String>,
}

impl Evictor {
    /// The built-in evictor of `spec` (none for a component).
    pub fn new(spec: &EvictorSpec) -> Option<Evictor> {
        let pointer = match spec {
            EvictorSpec::Delta { field, .. } => Some(field_pointer(field)),
            EvictorSpec::Component { .. } => return None,
            _ => None,
        };
        Some(Evictor { spec: spec.clone(), pointer })
    }

    fn after(&self) -> bool {
        match self.spec {
            EvictorSpec::Count { after, .. } | EvictorSpec::Time { after, .. } | EvictorSpec::Delta { after, .. } => {
                after
            }
            EvictorSpec::Component { .. } => false,
        }
    }

    /// Evicts before the function runs (unless it evicts after).
    pub fn before(&self, elements: &mut Vec<(i64, Vec<u8>)>) -> Result<(), String> {
        if self.after() { Ok(()) } else { self.evict(elements) }
    }

    /// Evicts after the function ran (if it evicts after).
    pub fn after_function(&self, elements: &mut Vec<(i64, Vec<u8>)>) -> Result<(), String> {
        if self.after() { self.evict(elements) } else { Ok(()) }
    }

    fn evict(&self, elements: &mut Vec<(i64, Vec<u8>)>) -> Result<(), String> {
        match &self.spec {
            EvictorSpec::Count { count, .. } => {
                let n = elements.len();
                if n as u64 > *count {
                    elements.drain(..n - *count as usize);
                }
            }
            EvictorSpec::Time { keep_ms, .. } => {
                // Flink evicts by time only when elements carry timestamps.
                if elements.first().is_none_or(|(t, _)| *t == weir_core::NO_TIMESTAMP) {
                    return Ok(());
                }
                let newest = elements.iter().map(|(t, _)| *t).max().unwrap_or(i64::MIN);
                let cutoff = newest.saturating_sub(*keep_ms);
                elements.retain(|(t, _)| *t > cutoff);
            }
            EvictorSpec::Component { .. } => {}
            EvictorSpec::Delta { threshold, .. } => {
                let Some(last) = elements.last() else { return Ok(()) };
                let last = self.number(&last.1)?;
                let mut kept = Vec::with_capacity(elements.len());
                for (t, v) in elements.drain(..) {
                    if (self.number(&v)? - last).abs() < *threshold {
                        kept.push((t, v));
                    }
                }
                *elements = kept;
            }
        }
        Ok(())
    }

    fn number(&self, value: &[u8]) -> Result<f64, String> {
        let pointer = self.pointer.as_deref().unwrap_or("");
        let v: serde_json::Value = serde_json::from_slice(value)
            .map_err(|e| format!("value is not JSON ({e}), so the delta evictor cannot read `{pointer}`"))?;
        v.pointer(pointer)
            .and_then(serde_json::Value::as_f64)
            .ok_or_else(|| format!("the delta evictor needs a number at `{pointer}`; fix the data or its `field`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: AggregateKind, xs: &[&str]) -> String {
        let a = Aggregate::new(kind, Some("v"));
        let mut acc: Option<Vec<u8>> = None;
        for x in xs {
            let n = a.input(format!("{{\"v\":{x}}}").as_bytes()).unwrap();
            let mut out = Vec::new();
            a.fold(acc.as_deref(), n, &mut out);
            acc = Some(out);
        }
        let mut out = Vec::new();
        a.result(acc.as_deref(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn built_in_aggregates_keep_integers_exact() {
        assert_eq!(run(AggregateKind::Sum, &["1", "2", "-7"]), "-4");
        assert_eq!(run(AggregateKind::Sum, &["1", "2.5"]), "3.5");
        assert_eq!(run(AggregateKind::Sum, &["9223372036854775807", "1"]), "9.223372036854776e+18");
        assert_eq!(run(AggregateKind::Count, &["1", "2", "3"]), "3");
        assert_eq!(run(AggregateKind::Min, &["4", "-2", "3"]), "-2");
        assert_eq!(run(AggregateKind::Max, &["4", "-2", "4.5"]), "4.5");
        assert_eq!(run(AggregateKind::Avg, &["1", "2"]), "1.5");
        assert_eq!(run(AggregateKind::Max, &[]), "null");
        assert_eq!(run(AggregateKind::Sum, &[]), "0");
    }

    #[test]
    fn accumulators_merge_like_folding_everything_into_one() {
        for kind in
            [AggregateKind::Sum, AggregateKind::Count, AggregateKind::Min, AggregateKind::Max, AggregateKind::Avg]
        {
            let a = Aggregate::new(kind, Some("v"));
            let fold = |xs: &[i64]| {
                let mut acc: Option<Vec<u8>> = None;
                for x in xs {
                    let mut out = Vec::new();
                    a.fold(acc.as_deref(), Num::Int(*x), &mut out);
                    acc = Some(out);
                }
                acc.unwrap()
            };
            let mut merged = Vec::new();
            a.merge(&fold(&[3, 9]), &fold(&[-1]), &mut merged);
            assert_eq!(merged, fold(&[3, 9, -1]), "{kind:?}");
        }
    }

    #[test]
    fn a_field_that_is_missing_or_not_a_number_is_named() {
        let a = Aggregate::new(AggregateKind::Sum, Some("v"));
        assert!(a.input(br#"{"w":1}"#).unwrap_err().contains("no field `/v`"));
        assert!(a.input(br#"{"v":"x"}"#).unwrap_err().contains("not a number"));
        assert!(a.input(b"nope").unwrap_err().contains("not JSON"));
        assert!(a.input(br#"{"v":1} x"#).unwrap_err().contains("not JSON"), "trailing text");
        assert!(a.input(br#"[1]"#).unwrap_err().contains("no field"));
        assert_eq!(a.input(br#"{"a":[{"v":9}],"v":-3,"b":"x"}"#).unwrap(), Num::Int(-3), "top level only");
        let nested = Aggregate::new(AggregateKind::Sum, Some("/a/v"));
        assert_eq!(nested.input(br#"{"a":{"v":2.5}}"#).unwrap(), Num::Float(2.5));
    }

    #[test]
    fn evictors_keep_what_flinks_keep() {
        let els = |ts: &[i64]| ts.iter().map(|t| (*t, format!("{{\"v\":{t}}}").into_bytes())).collect::<Vec<_>>();
        let mut e = els(&[5, 1, 9, 3]);
        Evictor::new(&EvictorSpec::Count { count: 2, after: false }).unwrap().before(&mut e).unwrap();
        assert_eq!(e, els(&[9, 3]), "the last two in arrival order");
        let mut e = els(&[5, 1, 9, 3]);
        Evictor::new(&EvictorSpec::Time { keep_ms: 4, after: false }).unwrap().before(&mut e).unwrap();
        assert_eq!(e, els(&[9]), "older than newest - keep are evicted; the cutoff itself too");
        let mut e = els(&[5, 1, 9, 3]);
        Evictor::new(&EvictorSpec::Time { keep_ms: 6, after: false }).unwrap().before(&mut e).unwrap();
        assert_eq!(e, els(&[5, 9]));
        let mut e = els(&[5, 1, 9, 3]);
        Evictor::new(&EvictorSpec::Delta { field: "v".into(), threshold: 3.0, after: false })
            .unwrap()
            .before(&mut e)
            .unwrap();
        assert_eq!(e, els(&[5, 1, 3]), "within the threshold of the last element");
        let mut e = els(&[5, 1, 9, 3]);
        let after = Evictor::new(&EvictorSpec::Count { count: 1, after: true }).unwrap();
        after.before(&mut e).unwrap();
        assert_eq!(e.len(), 4, "an evict-after evictor keeps everything for the function");
        after.after_function(&mut e).unwrap();
        assert_eq!(e, els(&[3]));
    }
}
