//! Nested payload key paths as Qdrant writes them: `a.b`, `a[]` (every element
//! of an array), `a[0]` (one element), combined freely (`a[].b[0].c`).

use serde_json::Value;

use crate::error::{Error, Result};
use crate::types::Payload;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Seg {
    Key(String),
    Each,
    Index(usize),
}

/// A parsed key path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyPath {
    raw: String,
    segs: Vec<Seg>,
}

impl KeyPath {
    pub fn parse(raw: &str) -> Result<Self> {
        let err = |reason: &str| Error::InvalidKeyPath {
            path: raw.to_string(),
            reason: reason.to_string(),
        };
        if raw.is_empty() {
            return Err(err("empty key"));
        }
        let mut segs = Vec::new();
        for part in raw.split('.') {
            let (name, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if name.is_empty() {
                return Err(err("empty key segment"));
            }
            segs.push(Seg::Key(name.to_string()));
            while !rest.is_empty() {
                let close = rest.find(']').ok_or_else(|| err("unclosed '['"))?;
                let inner = &rest[1..close];
                if inner.is_empty() {
                    segs.push(Seg::Each);
                } else {
                    let i = inner
                        .parse::<usize>()
                        .map_err(|_| err("array index must be a non-negative integer"))?;
                    segs.push(Seg::Index(i));
                }
                rest = &rest[close + 1..];
                if !rest.is_empty() && !rest.starts_with('[') {
                    return Err(err("unexpected characters after ']'"));
                }
            }
        }
        Ok(KeyPath {
            raw: raw.to_string(),
            segs,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The values the path points at, as stored (arrays not flattened at the end).
    /// A key applied to an array looks inside each of its objects.
    pub fn values<'a>(&self, payload: &'a Payload) -> Vec<&'a Value> {
        let mut cur: Vec<&'a Value> = Vec::new();
        for (i, seg) in self.segs.iter().enumerate() {
            if i == 0 {
                if let Seg::Key(k) = seg {
                    cur.extend(payload.get(k));
                }
                continue;
            }
            let mut next = Vec::with_capacity(cur.len());
            for v in cur {
                match seg {
                    Seg::Key(k) => match v {
                        Value::Object(o) => next.extend(o.get(k)),
                        Value::Array(a) => {
                            next.extend(a.iter().filter_map(|e| e.as_object()?.get(k)))
                        }
                        _ => {}
                    },
                    Seg::Each => {
                        if let Value::Array(a) = v {
                            next.extend(a.iter());
                        }
                    }
                    Seg::Index(n) => {
                        if let Value::Array(a) = v {
                            next.extend(a.get(*n));
                        }
                    }
                }
            }
            cur = next;
        }
        cur
    }

    /// The values with a final array flattened: what match/range conditions compare.
    pub fn flat_values<'a>(&self, payload: &'a Payload) -> Vec<&'a Value> {
        let mut out = Vec::new();
        for v in self.values(payload) {
            match v {
                Value::Array(a) => out.extend(a.iter()),
                other => out.push(other),
            }
        }
        out
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
    fn nested_paths() {
        let pl = p(json!({"a": {"b": 1}, "c": [{"d": 1}, {"d": [2, 3]}], "e": [10, 20]}));
        let vals = |s: &str| {
            KeyPath::parse(s)
                .unwrap()
                .flat_values(&pl)
                .into_iter()
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(vals("a.b"), vec![json!(1)]);
        assert_eq!(vals("c[].d"), vec![json!(1), json!(2), json!(3)]);
        assert_eq!(vals("c.d"), vec![json!(1), json!(2), json!(3)]);
        assert_eq!(vals("e[1]"), vec![json!(20)]);
        assert_eq!(vals("e[]"), vec![json!(10), json!(20)]);
        assert_eq!(vals("e"), vec![json!(10), json!(20)]);
        assert!(vals("zz").is_empty());
        assert!(KeyPath::parse("a..b").is_err());
        assert!(KeyPath::parse("a[x]").is_err());
        assert!(KeyPath::parse("").is_err());
    }
}
