//! Payload index: per indexed field, roaring bitmaps of point offsets by value.
//! Keyword / uuid / bool are hash maps of value -> bitmap; integer, float and
//! datetime are ordered maps so ranges are a walk over the matching keys.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use roaring::{MultiOps, RoaringBitmap};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::path::KeyPath;
use crate::error::{Error, Result};
use crate::filter::value::{MatchValue, Range, parse_datetime};
use crate::types::{Offset, Payload};

/// Index types (Qdrant's `PayloadSchemaType` names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadSchemaType {
    Keyword,
    Integer,
    Float,
    Bool,
    Datetime,
    Uuid,
}

impl PayloadSchemaType {
    /// Accepts Qdrant's `field_schema`: `"keyword"` or `{"type": "keyword", ...}`.
    pub fn from_json(v: &Value) -> Result<Self> {
        let name = match v {
            Value::String(s) => s.as_str(),
            Value::Object(o) => o
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::UnknownIndexType(v.to_string()))?,
            other => return Err(Error::UnknownIndexType(other.to_string())),
        };
        serde_json::from_value(Value::String(name.to_string()))
            .map_err(|_| Error::UnknownIndexType(name.to_string()))
    }
}

/// f64 with a total order, for ordered maps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OrdF64(pub f64);
impl Eq for OrdF64 {}
impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for OrdF64 {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

pub(crate) enum Values {
    Keyword(HashMap<String, RoaringBitmap>),
    Integer(BTreeMap<i64, RoaringBitmap>),
    Float(BTreeMap<OrdF64, RoaringBitmap>),
    Bool([RoaringBitmap; 2]),
    Datetime(BTreeMap<i64, RoaringBitmap>),
    Uuid(HashMap<u128, RoaringBitmap>),
}

/// The index of one field.
pub struct FieldIndex {
    pub path: KeyPath,
    pub kind: PayloadSchemaType,
    pub(crate) values: Values,
    /// Points with at least one indexable value.
    pub(crate) has_values: RoaringBitmap,
}

fn add_to<K: Ord>(m: &mut BTreeMap<K, RoaringBitmap>, k: K, off: Offset) {
    m.entry(k).or_default().insert(off);
}

fn range_union<K: Ord + Copy>(
    m: &BTreeMap<K, RoaringBitmap>,
    lo: Bound<K>,
    hi: Bound<K>,
) -> RoaringBitmap {
    if let (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) =
        (lo, hi)
        && (a > b
            || (a == b && !(matches!(lo, Bound::Included(_)) && matches!(hi, Bound::Included(_)))))
    {
        return RoaringBitmap::new();
    }
    m.range((lo, hi)).map(|(_, b)| b).union()
}

impl FieldIndex {
    pub fn new(path: KeyPath, kind: PayloadSchemaType) -> Self {
        let values = match kind {
            PayloadSchemaType::Keyword => Values::Keyword(HashMap::new()),
            PayloadSchemaType::Integer => Values::Integer(BTreeMap::new()),
            PayloadSchemaType::Float => Values::Float(BTreeMap::new()),
            PayloadSchemaType::Bool => Values::Bool([RoaringBitmap::new(), RoaringBitmap::new()]),
            PayloadSchemaType::Datetime => Values::Datetime(BTreeMap::new()),
            PayloadSchemaType::Uuid => Values::Uuid(HashMap::new()),
        };
        FieldIndex {
            path,
            kind,
            values,
            has_values: RoaringBitmap::new(),
        }
    }

    /// Indexes the field's values in `p` for point `off`.
    pub fn add(&mut self, off: Offset, p: &Payload) {
        let mut any = false;
        for v in self.path.flat_values(p) {
            any |= match (&mut self.values, v) {
                (Values::Keyword(m), Value::String(s)) => {
                    m.entry(s.clone()).or_default().insert(off);
                    true
                }
                (Values::Integer(m), Value::Number(n)) => {
                    n.as_i64().map(|i| add_to(m, i, off)).is_some()
                }
                (Values::Float(m), Value::Number(n)) => {
                    n.as_f64().map(|f| add_to(m, OrdF64(f), off)).is_some()
                }
                (Values::Bool(b), Value::Bool(x)) => {
                    b[*x as usize].insert(off);
                    true
                }
                (Values::Datetime(m), Value::String(s)) => {
                    parse_datetime(s).map(|t| add_to(m, t, off)).is_some()
                }
                (Values::Uuid(m), Value::String(s)) => uuid::Uuid::parse_str(s)
                    .ok()
                    .map(|u| m.entry(u.as_u128()).or_default().insert(off))
                    .is_some(),
                _ => false,
            };
        }
        if any {
            self.has_values.insert(off);
        }
    }

    /// Removes point `off` (whose indexed payload was `p`).
    pub fn remove(&mut self, off: Offset, p: &Payload) {
        if !self.has_values.remove(off) {
            return;
        }
        for v in self.path.flat_values(p) {
            match (&mut self.values, v) {
                (Values::Keyword(m), Value::String(s)) => drop_from_hash(m, s, off),
                (Values::Integer(m), Value::Number(n)) => {
                    if let Some(i) = n.as_i64() {
                        drop_from(m, &i, off)
                    }
                }
                (Values::Float(m), Value::Number(n)) => {
                    if let Some(f) = n.as_f64() {
                        drop_from(m, &OrdF64(f), off)
                    }
                }
                (Values::Bool(b), Value::Bool(x)) => {
                    b[*x as usize].remove(off);
                }
                (Values::Datetime(m), Value::String(s)) => {
                    if let Some(t) = parse_datetime(s) {
                        drop_from(m, &t, off)
                    }
                }
                (Values::Uuid(m), Value::String(s)) => {
                    if let Ok(u) = uuid::Uuid::parse_str(s) {
                        drop_from_hash(m, &u.as_u128(), off)
                    }
                }
                _ => {}
            }
        }
    }

    /// Points whose field has at least one value of the indexed type.
    pub fn has_values(&self) -> &RoaringBitmap {
        &self.has_values
    }

    /// Points matching `v` exactly, or None when this index cannot answer it.
    pub fn match_value(&self, v: &MatchValue) -> Option<RoaringBitmap> {
        let empty = RoaringBitmap::new;
        Some(match (&self.values, v) {
            (Values::Keyword(m), MatchValue::Keyword(s)) => m.get(s).cloned().unwrap_or_else(empty),
            (Values::Integer(m), MatchValue::Integer(i)) => m.get(i).cloned().unwrap_or_else(empty),
            (Values::Float(m), MatchValue::Integer(i)) => {
                m.get(&OrdF64(*i as f64)).cloned().unwrap_or_else(empty)
            }
            (Values::Bool(b), MatchValue::Bool(x)) => b[*x as usize].clone(),
            (Values::Uuid(m), MatchValue::Keyword(s)) => match uuid::Uuid::parse_str(s) {
                Ok(u) => m.get(&u.as_u128()).cloned().unwrap_or_else(empty),
                Err(_) => empty(),
            },
            _ => return None,
        })
    }

    /// Points with a value in `r`, or None when this index cannot answer it.
    pub fn range(&self, r: &Range) -> Option<RoaringBitmap> {
        match (&self.values, r) {
            (Values::Float(m), Range::Numeric { gt, gte, lt, lte }) => {
                let lo =
                    lower(*gt, *gte).map_or(Bound::Unbounded, |(v, inc)| bound(OrdF64(v), inc));
                let hi =
                    upper(*lt, *lte).map_or(Bound::Unbounded, |(v, inc)| bound(OrdF64(v), inc));
                Some(range_union(m, lo, hi))
            }
            (Values::Integer(m), Range::Numeric { gt, gte, lt, lte }) => {
                let lo = match lower(*gt, *gte) {
                    None => Bound::Unbounded,
                    Some((v, true)) => Bound::Included(clamp_i64(v.ceil())),
                    Some((v, false)) => Bound::Included(clamp_i64(v.floor()).saturating_add(1)),
                };
                let hi = match upper(*lt, *lte) {
                    None => Bound::Unbounded,
                    Some((v, true)) => Bound::Included(clamp_i64(v.floor())),
                    Some((v, false)) => Bound::Included(clamp_i64(v.ceil()).saturating_sub(1)),
                };
                Some(range_union(m, lo, hi))
            }
            (Values::Datetime(m), Range::Datetime { gt, gte, lt, lte }) => {
                let lo = lower(*gt, *gte).map_or(Bound::Unbounded, |(v, inc)| bound(v, inc));
                let hi = upper(*lt, *lte).map_or(Bound::Unbounded, |(v, inc)| bound(v, inc));
                Some(range_union(m, lo, hi))
            }
            _ => None,
        }
    }
}

fn clamp_i64(v: f64) -> i64 {
    v.clamp(i64::MIN as f64, i64::MAX as f64) as i64
}

fn bound<K>(v: K, inclusive: bool) -> Bound<K> {
    if inclusive {
        Bound::Included(v)
    } else {
        Bound::Excluded(v)
    }
}

/// The tighter lower bound of `gt` / `gte` as (value, inclusive).
pub fn lower<T: PartialOrd>(gt: Option<T>, gte: Option<T>) -> Option<(T, bool)> {
    match (gt, gte) {
        (Some(a), Some(b)) => Some(if a >= b { (a, false) } else { (b, true) }),
        (Some(a), None) => Some((a, false)),
        (None, Some(b)) => Some((b, true)),
        (None, None) => None,
    }
}

/// The tighter upper bound of `lt` / `lte` as (value, inclusive).
pub fn upper<T: PartialOrd>(lt: Option<T>, lte: Option<T>) -> Option<(T, bool)> {
    match (lt, lte) {
        (Some(a), Some(b)) => Some(if a <= b { (a, false) } else { (b, true) }),
        (Some(a), None) => Some((a, false)),
        (None, Some(b)) => Some((b, true)),
        (None, None) => None,
    }
}

fn drop_from<K: Ord>(m: &mut BTreeMap<K, RoaringBitmap>, k: &K, off: Offset) {
    if let Some(b) = m.get_mut(k) {
        b.remove(off);
        if b.is_empty() {
            m.remove(k);
        }
    }
}

fn drop_from_hash<
    K: std::hash::Hash + Eq + ?Sized,
    Q: std::hash::Hash + Eq + std::borrow::Borrow<K>,
>(
    m: &mut HashMap<Q, RoaringBitmap>,
    k: &K,
    off: Offset,
) {
    if let Some(b) = m.get_mut(k) {
        b.remove(off);
        if b.is_empty() {
            m.remove(k);
        }
    }
}

/// All field indexes of a collection.
#[derive(Default)]
pub struct PayloadIndex {
    pub(crate) fields: HashMap<String, FieldIndex>,
}

impl PayloadIndex {
    pub fn get(&self, key: &str) -> Option<&FieldIndex> {
        self.fields.get(key)
    }

    /// Creates (or replaces) the index of `key`, filled from `payloads`.
    pub fn create<'a>(
        &mut self,
        key: &str,
        kind: PayloadSchemaType,
        payloads: impl Iterator<Item = (Offset, &'a Payload)>,
    ) -> Result<()> {
        let mut f = FieldIndex::new(KeyPath::parse(key)?, kind);
        for (off, p) in payloads {
            f.add(off, p);
        }
        self.fields.insert(key.to_string(), f);
        Ok(())
    }

    pub fn drop_field(&mut self, key: &str) -> bool {
        self.fields.remove(key).is_some()
    }

    pub fn add(&mut self, off: Offset, p: &Payload) {
        self.fields.values_mut().for_each(|f| f.add(off, p));
    }

    pub fn remove(&mut self, off: Offset, p: &Payload) {
        self.fields.values_mut().for_each(|f| f.remove(off, p));
    }

    /// `(key, type)` of every index, sorted by key.
    pub fn schema(&self) -> Vec<(String, PayloadSchemaType)> {
        let mut v: Vec<_> = self
            .fields
            .iter()
            .map(|(k, f)| (k.clone(), f.kind))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(v: Value) -> Payload {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn schema_type_parsing() {
        assert_eq!(
            PayloadSchemaType::from_json(&json!("keyword")).unwrap(),
            PayloadSchemaType::Keyword
        );
        assert_eq!(
            PayloadSchemaType::from_json(&json!({"type": "integer", "range": true})).unwrap(),
            PayloadSchemaType::Integer
        );
        assert!(matches!(
            PayloadSchemaType::from_json(&json!("geo")),
            Err(Error::UnknownIndexType(_))
        ));
        assert!(PayloadSchemaType::from_json(&json!(5)).is_err());
    }

    #[test]
    fn integer_and_float_ranges() {
        let mut i = FieldIndex::new(KeyPath::parse("n").unwrap(), PayloadSchemaType::Integer);
        let mut f = FieldIndex::new(KeyPath::parse("n").unwrap(), PayloadSchemaType::Float);
        for off in 0..10u32 {
            let pl = p(json!({"n": off}));
            i.add(off, &pl);
            f.add(off, &pl);
        }
        let r = Range::Numeric {
            gt: Some(2.5),
            gte: None,
            lt: None,
            lte: Some(5.0),
        };
        assert_eq!(
            i.range(&r).unwrap().iter().collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(
            f.range(&r).unwrap().iter().collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        let empty = Range::Numeric {
            gt: Some(5.0),
            gte: None,
            lt: Some(5.0),
            lte: None,
        };
        assert!(i.range(&empty).unwrap().is_empty());
        assert!(f.range(&empty).unwrap().is_empty());
        i.remove(4, &p(json!({"n": 4})));
        assert_eq!(i.range(&r).unwrap().iter().collect::<Vec<_>>(), vec![3, 5]);
        assert_eq!(
            i.match_value(&MatchValue::Integer(7))
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            vec![7]
        );
        assert!(i.match_value(&MatchValue::Keyword("7".into())).is_none());
    }

    #[test]
    fn keyword_bool_uuid_datetime() {
        let u = "550e8400-e29b-41d4-a716-446655440000";
        let mut idx = PayloadIndex::default();
        let pls = [
            p(json!({"k": ["a", "b"], "b": true, "u": u, "t": "2024-01-02T00:00:00Z"})),
            p(json!({"k": "b", "b": false, "t": "2024-03-01T12:00:00+01:00"})),
        ];
        for (key, kind) in [
            ("k", PayloadSchemaType::Keyword),
            ("b", PayloadSchemaType::Bool),
            ("u", PayloadSchemaType::Uuid),
            ("t", PayloadSchemaType::Datetime),
        ] {
            idx.create(
                key,
                kind,
                pls.iter().enumerate().map(|(i, p)| (i as u32, p)),
            )
            .unwrap();
        }
        let k = idx.get("k").unwrap();
        assert_eq!(
            k.match_value(&MatchValue::Keyword("b".into()))
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            k.match_value(&MatchValue::Keyword("a".into()))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            idx.get("b")
                .unwrap()
                .match_value(&MatchValue::Bool(false))
                .unwrap()
                .iter()
                .next(),
            Some(1)
        );
        assert_eq!(
            idx.get("u")
                .unwrap()
                .match_value(&MatchValue::Keyword(u.into()))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(idx.get("u").unwrap().has_values().len(), 1);
        let t = parse_datetime("2024-02-01T00:00:00Z").unwrap();
        let r = Range::Datetime {
            gt: Some(t),
            gte: None,
            lt: None,
            lte: None,
        };
        assert_eq!(
            idx.get("t")
                .unwrap()
                .range(&r)
                .unwrap()
                .iter()
                .collect::<Vec<_>>(),
            vec![1]
        );
        assert_eq!(
            parse_datetime("2024-01-02"),
            parse_datetime("2024-01-02T00:00:00Z")
        );
    }
}
