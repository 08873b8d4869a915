//! Binary form of the payload index, stored in snapshots so that opening a collection
//! loads the roaring bitmaps instead of re-reading every payload to rebuild them.
//!
//! Layout (little-endian): field count; per field its key, type tag, the bitmap of
//! points with values, then `(value, bitmap)` entries. Bitmaps use roaring's portable
//! serialization; decoding validates every length and bitmap.

use std::collections::{BTreeMap, HashMap};

use roaring::RoaringBitmap;

use super::index::{FieldIndex, OrdF64, PayloadIndex, PayloadSchemaType, Values};
use super::path::KeyPath;
use crate::error::{Error, Result};
use crate::ops::Cursor;

fn tag(k: PayloadSchemaType) -> u8 {
    match k {
        PayloadSchemaType::Keyword => 0,
        PayloadSchemaType::Integer => 1,
        PayloadSchemaType::Float => 2,
        PayloadSchemaType::Bool => 3,
        PayloadSchemaType::Datetime => 4,
        PayloadSchemaType::Uuid => 5,
    }
}

fn kind_of(t: u8) -> Result<PayloadSchemaType> {
    Ok(match t {
        0 => PayloadSchemaType::Keyword,
        1 => PayloadSchemaType::Integer,
        2 => PayloadSchemaType::Float,
        3 => PayloadSchemaType::Bool,
        4 => PayloadSchemaType::Datetime,
        5 => PayloadSchemaType::Uuid,
        t => return Err(Error::Decode(format!("unknown payload index type tag {t}"))),
    })
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_bitmap(out: &mut Vec<u8>, b: &RoaringBitmap) -> Result<()> {
    let mut buf = Vec::with_capacity(b.serialized_size());
    b.serialize_into(&mut buf)
        .map_err(|e| Error::Decode(format!("cannot serialize a bitmap: {e}")))?;
    put_bytes(out, &buf);
    Ok(())
}

fn get_bitmap(c: &mut Cursor<'_>) -> Result<RoaringBitmap> {
    let n = c.u32()? as usize;
    RoaringBitmap::deserialize_from(c.bytes(n)?)
        .map_err(|e| Error::Decode(format!("corrupt bitmap: {e}")))
}

fn put_entries<K>(
    out: &mut Vec<u8>,
    entries: Vec<(K, &RoaringBitmap)>,
    key: impl Fn(&mut Vec<u8>, K),
) -> Result<()> {
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (k, b) in entries {
        key(out, k);
        put_bitmap(out, b)?;
    }
    Ok(())
}

fn get_entries<K>(
    c: &mut Cursor<'_>,
    mut key: impl FnMut(&mut Cursor<'_>) -> Result<K>,
) -> Result<Vec<(K, RoaringBitmap)>> {
    let n = c.u32()? as usize;
    let mut v = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let k = key(c)?;
        v.push((k, get_bitmap(c)?));
    }
    Ok(v)
}

fn i64_of(c: &mut Cursor<'_>) -> Result<i64> {
    Ok(c.u64()? as i64)
}

impl PayloadIndex {
    /// Serialises every field index (fields in key order, so equal indexes give equal bytes).
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut keys: Vec<&String> = self.fields.keys().collect();
        keys.sort();
        out.extend_from_slice(&(keys.len() as u32).to_le_bytes());
        for key in keys {
            let f = &self.fields[key];
            put_bytes(&mut out, key.as_bytes());
            out.push(tag(f.kind));
            put_bitmap(&mut out, &f.has_values)?;
            match &f.values {
                Values::Keyword(m) => {
                    let mut e: Vec<_> = m.iter().collect();
                    e.sort_by(|a, b| a.0.cmp(b.0));
                    put_entries(&mut out, e, |o, k| put_bytes(o, k.as_bytes()))?
                }
                Values::Integer(m) | Values::Datetime(m) => {
                    put_entries(&mut out, m.iter().collect(), |o, k| {
                        o.extend_from_slice(&k.to_le_bytes())
                    })?
                }
                Values::Float(m) => put_entries(&mut out, m.iter().collect(), |o, k| {
                    o.extend_from_slice(&k.0.to_bits().to_le_bytes())
                })?,
                Values::Bool(b) => {
                    put_entries(&mut out, vec![(0u8, &b[0]), (1u8, &b[1])], |o, k| o.push(k))?
                }
                Values::Uuid(m) => {
                    let mut e: Vec<_> = m.iter().collect();
                    e.sort_by_key(|x| *x.0);
                    put_entries(&mut out, e, |o, k| o.extend_from_slice(&k.to_le_bytes()))?
                }
            }
        }
        Ok(out)
    }

    /// Reads what [`PayloadIndex::encode`] wrote.
    pub fn decode(b: &[u8]) -> Result<PayloadIndex> {
        let mut c = Cursor::new(b);
        let n = c.u32()? as usize;
        let mut fields = HashMap::with_capacity(n.min(1024));
        for _ in 0..n {
            let klen = c.u32()? as usize;
            let key = std::str::from_utf8(c.bytes(klen)?)
                .map_err(|e| Error::Decode(format!("payload index key: {e}")))?
                .to_string();
            let kind = kind_of(c.u8()?)?;
            let has_values = get_bitmap(&mut c)?;
            let values = match kind {
                PayloadSchemaType::Keyword => Values::Keyword(
                    get_entries(&mut c, |c| {
                        let n = c.u32()? as usize;
                        std::str::from_utf8(c.bytes(n)?)
                            .map(str::to_string)
                            .map_err(|e| Error::Decode(format!("keyword value: {e}")))
                    })?
                    .into_iter()
                    .collect(),
                ),
                PayloadSchemaType::Integer => Values::Integer(
                    get_entries(&mut c, i64_of)?
                        .into_iter()
                        .collect::<BTreeMap<_, _>>(),
                ),
                PayloadSchemaType::Datetime => {
                    Values::Datetime(get_entries(&mut c, i64_of)?.into_iter().collect())
                }
                PayloadSchemaType::Float => Values::Float(
                    get_entries(&mut c, |c| Ok(OrdF64(f64::from_bits(c.u64()?))))?
                        .into_iter()
                        .collect(),
                ),
                PayloadSchemaType::Bool => {
                    let mut e = get_entries(&mut c, |c| c.u8())?;
                    if e.len() != 2 || e[0].0 != 0 || e[1].0 != 1 {
                        return Err(Error::Decode("bool index needs entries 0 and 1".into()));
                    }
                    let t = e.pop().map(|x| x.1).unwrap_or_default();
                    let f = e.pop().map(|x| x.1).unwrap_or_default();
                    Values::Bool([f, t])
                }
                PayloadSchemaType::Uuid => Values::Uuid(
                    get_entries(&mut c, |c| {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(c.bytes(16)?);
                        Ok(u128::from_le_bytes(a))
                    })?
                    .into_iter()
                    .collect(),
                ),
            };
            let mut f = FieldIndex::new(KeyPath::parse(&key)?, kind);
            f.values = values;
            f.has_values = has_values;
            fields.insert(key, f);
        }
        if !c.done() {
            return Err(Error::Decode(
                "trailing bytes after the payload index".into(),
            ));
        }
        Ok(PayloadIndex { fields })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::filter::{MatchValue, Range};
    use crate::types::Payload;

    fn payloads() -> Vec<(u32, Payload)> {
        (0..300u32)
            .map(|i| {
                let p = json!({
                    "kw": format!("k{}", i % 7), "int": i as i64 - 100, "f": i as f64 / 3.0,
                    "b": i % 2 == 0, "dt": format!("2026-01-{:02}T00:00:00Z", i % 28 + 1),
                    "u": format!("00000000-0000-0000-0000-{:012}", i % 5),
                });
                (i, p.as_object().cloned().unwrap_or_default())
            })
            .collect()
    }

    #[test]
    fn every_index_type_round_trips_and_answers_the_same() {
        let data = payloads();
        let mut idx = PayloadIndex::default();
        for (key, kind) in [
            ("kw", PayloadSchemaType::Keyword),
            ("int", PayloadSchemaType::Integer),
            ("f", PayloadSchemaType::Float),
            ("b", PayloadSchemaType::Bool),
            ("dt", PayloadSchemaType::Datetime),
            ("u", PayloadSchemaType::Uuid),
        ] {
            idx.create(key, kind, data.iter().map(|(o, p)| (*o, p)))
                .unwrap();
        }
        let bytes = idx.encode().unwrap();
        let back = PayloadIndex::decode(&bytes).unwrap();
        assert_eq!(
            back.encode().unwrap(),
            bytes,
            "decode then encode is the identity"
        );
        assert_eq!(back.schema(), idx.schema());
        let kw = MatchValue::Keyword("k3".into());
        assert_eq!(
            back.get("kw").unwrap().match_value(&kw),
            idx.get("kw").unwrap().match_value(&kw)
        );
        let r = Range::Numeric {
            gt: None,
            gte: Some(-10.0),
            lt: Some(50.0),
            lte: None,
        };
        assert_eq!(
            back.get("int").unwrap().range(&r),
            idx.get("int").unwrap().range(&r)
        );
        assert_eq!(
            back.get("f").unwrap().range(&r),
            idx.get("f").unwrap().range(&r)
        );
        assert_eq!(
            back.get("b").unwrap().has_values(),
            idx.get("b").unwrap().has_values()
        );
    }

    #[test]
    fn corrupt_bytes_are_refused() {
        let data = payloads();
        let mut idx = PayloadIndex::default();
        idx.create(
            "kw",
            PayloadSchemaType::Keyword,
            data.iter().map(|(o, p)| (*o, p)),
        )
        .unwrap();
        let bytes = idx.encode().unwrap();
        assert!(PayloadIndex::decode(&bytes[..bytes.len() - 3]).is_err());
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(PayloadIndex::decode(&extra).is_err());
        let mut bad_tag = bytes.clone();
        bad_tag[4 + 4 + 2] = 9; // the type tag after the key "kw"
        assert!(PayloadIndex::decode(&bad_tag).is_err());
    }
}
