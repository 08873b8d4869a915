//! Filter evaluation, two ways: `check` tests one point against its payload (the
//! payload scan), and `FilterContext::eval` answers as much of a filter as the
//! payload index can with bitmaps, returning a superset of the matches and
//! whether it is exact.

use std::collections::HashMap;

use roaring::{MultiOps, RoaringBitmap};
use serde_json::Value;

use super::value::{MatchValue, Range, parse_datetime};
use super::{Condition, FieldCondition, Filter, Match};
use crate::payload::index::{PayloadIndex, lower, upper};
use crate::types::{Offset, Payload, PointId};

fn value_matches(v: &Value, m: &MatchValue) -> bool {
    match (v, m) {
        (Value::String(s), MatchValue::Keyword(k)) => s == k,
        (Value::Number(n), MatchValue::Integer(i)) => {
            n.as_i64() == Some(*i) || n.as_f64() == Some(*i as f64)
        }
        (Value::Bool(b), MatchValue::Bool(x)) => b == x,
        _ => false,
    }
}

fn in_range<T: PartialOrd + Copy>(
    x: T,
    gt: Option<T>,
    gte: Option<T>,
    lt: Option<T>,
    lte: Option<T>,
) -> bool {
    let lo_ok = match lower(gt, gte) {
        None => true,
        Some((b, true)) => x >= b,
        Some((b, false)) => x > b,
    };
    let hi_ok = match upper(lt, lte) {
        None => true,
        Some((b, true)) => x <= b,
        Some((b, false)) => x < b,
    };
    lo_ok && hi_ok
}

fn field_matches(fc: &FieldCondition, p: Option<&Payload>) -> bool {
    let vals = p.map(|p| fc.key.flat_values(p)).unwrap_or_default();
    if let Some(m) = &fc.r#match {
        let ok = match m {
            Match::Value(mv) => vals.iter().any(|v| value_matches(v, mv)),
            Match::Any(list) => vals
                .iter()
                .any(|v| list.iter().any(|mv| value_matches(v, mv))),
            Match::Except(list) => !vals
                .iter()
                .any(|v| list.iter().any(|mv| value_matches(v, mv))),
            Match::Text(t) => vals
                .iter()
                .any(|v| v.as_str().is_some_and(|s| s.contains(t.as_str()))),
        };
        if !ok {
            return false;
        }
    }
    if let Some(r) = &fc.range {
        let ok = match r {
            Range::Numeric { gt, gte, lt, lte } => vals
                .iter()
                .filter_map(|v| v.as_f64())
                .any(|x| in_range(x, *gt, *gte, *lt, *lte)),
            Range::Datetime { gt, gte, lt, lte } => vals
                .iter()
                .filter_map(|v| v.as_str().and_then(parse_datetime))
                .any(|x| in_range(x, *gt, *gte, *lt, *lte)),
        };
        if !ok {
            return false;
        }
    }
    if let Some(c) = &fc.values_count {
        let n = vals.len();
        if !in_range(n, c.gt, c.gte, c.lt, c.lte) {
            return false;
        }
    }
    true
}

fn condition_matches(c: &Condition, p: Option<&Payload>, id: Option<PointId>) -> bool {
    match c {
        Condition::Field(fc) => field_matches(fc, p),
        Condition::IsEmpty(k) => p.is_none_or(|p| k.flat_values(p).iter().all(|v| v.is_null())),
        Condition::IsNull(k) => p.is_some_and(|p| k.values(p).iter().any(|v| v.is_null())),
        Condition::HasId(ids) => id.is_some_and(|i| ids.contains(&i)),
        Condition::Nested { key, filter } => p.is_some_and(|p| {
            key.flat_values(p)
                .iter()
                .any(|e| e.as_object().is_some_and(|o| check(filter, Some(o), None)))
        }),
        Condition::Filter(f) => check(f, p, id),
    }
}

/// Whether a point with payload `p` and id `id` matches `f` (payload scan).
pub fn check(f: &Filter, p: Option<&Payload>, id: Option<PointId>) -> bool {
    f.must.iter().all(|c| condition_matches(c, p, id))
        && (f.should.is_empty() || f.should.iter().any(|c| condition_matches(c, p, id)))
        && f.min_should.as_ref().is_none_or(|m| {
            m.conditions
                .iter()
                .filter(|c| condition_matches(c, p, id))
                .count()
                >= m.min_count
        })
        && !f.must_not.iter().any(|c| condition_matches(c, p, id))
}

/// What the bitmap evaluation needs to see of a collection.
pub struct FilterContext<'a> {
    pub index: &'a PayloadIndex,
    pub offsets: &'a HashMap<PointId, Offset>,
    /// Offsets of live (not deleted) points.
    pub live: &'a RoaringBitmap,
}

impl FilterContext<'_> {
    /// A superset of the live points matching `f`, and whether it is exact.
    pub fn eval(&self, f: &Filter) -> (RoaringBitmap, bool) {
        let mut sup = self.live.clone();
        let mut exact = true;
        for c in &f.must {
            match self.cond(c) {
                Some(b) => sup &= b,
                None => exact = false,
            }
        }
        if !f.should.is_empty() {
            match f
                .should
                .iter()
                .map(|c| self.cond(c))
                .collect::<Option<Vec<_>>>()
            {
                Some(bs) => sup &= bs.union(),
                None => exact = false,
            }
        }
        if let Some(m) = &f.min_should {
            match m
                .conditions
                .iter()
                .map(|c| self.cond(c))
                .collect::<Option<Vec<_>>>()
            {
                Some(bs) if m.min_count > 0 => {
                    let mut counts: HashMap<u32, usize> = HashMap::new();
                    for b in &bs {
                        for o in b {
                            *counts.entry(o).or_default() += 1;
                        }
                    }
                    sup &= counts
                        .into_iter()
                        .filter(|(_, n)| *n >= m.min_count)
                        .map(|(o, _)| o)
                        .collect::<RoaringBitmap>();
                }
                Some(_) => {}
                None => exact = false,
            }
        }
        for c in &f.must_not {
            match self.cond(c) {
                Some(b) => sup -= b,
                None => exact = false,
            }
        }
        (sup, exact)
    }

    /// The exact live points matching one condition, when the index can tell.
    fn cond(&self, c: &Condition) -> Option<RoaringBitmap> {
        match c {
            Condition::HasId(ids) => Some(
                ids.iter()
                    .filter_map(|i| self.offsets.get(i))
                    .filter(|o| self.live.contains(**o))
                    .copied()
                    .collect(),
            ),
            Condition::Field(fc) => {
                if fc.values_count.is_some() {
                    return None;
                }
                let idx = self.index.get(fc.key.as_str())?;
                let mut acc = self.live.clone();
                if let Some(m) = &fc.r#match {
                    let b = match m {
                        Match::Value(v) => idx.match_value(v)?,
                        Match::Any(vs) => vs
                            .iter()
                            .map(|v| idx.match_value(v))
                            .collect::<Option<Vec<_>>>()?
                            .union(),
                        Match::Except(vs) => {
                            self.live
                                - vs.iter()
                                    .map(|v| idx.match_value(v))
                                    .collect::<Option<Vec<_>>>()?
                                    .union()
                        }
                        Match::Text(_) => return None,
                    };
                    acc &= b;
                }
                if let Some(r) = &fc.range {
                    acc &= idx.range(r)?;
                }
                Some(acc)
            }
            Condition::IsEmpty(k) => self
                .index
                .get(k.as_str())
                .map(|idx| self.live - idx.has_values()),
            Condition::IsNull(_) | Condition::Nested { .. } => None,
            Condition::Filter(f) => match self.eval(f) {
                (b, true) => Some(b),
                _ => None,
            },
        }
    }
}
