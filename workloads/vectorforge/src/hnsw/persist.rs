//! Saving and loading the graph (so a restart does not rebuild it) and compaction:
//! dropping deleted nodes and repairing the lists that pointed at them.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;

use rayon::prelude::*;

use super::{Hnsw, Scored};
use crate::error::{Error, IoContext, Result};
use crate::storage::VectorSource;
use crate::types::Distance;

const MAGIC: &[u8; 8] = b"VFHNSW01";
pub const NONE: u32 = u32::MAX;

impl Hnsw {
    /// Writes nodes `0..n` to `path` (with a trailing CRC32C) and fsyncs it.
    pub fn save(&self, path: &Path, n: usize) -> Result<()> {
        let mut buf: Vec<u8> = Vec::with_capacity(n * (self.links.m0 + 2) * 4 + 64);
        buf.extend_from_slice(MAGIC);
        let entry = *self.entry.read();
        let (ep, top) = entry.map_or((NONE, 0), |(e, t)| (e, t));
        for v in [
            self.links.m as u32,
            n as u32,
            ep,
            top as u32,
            self.inserted() as u32,
        ] {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        let mut list = Vec::new();
        for node in 0..n as u32 {
            let level = self.links.level(node);
            buf.push(level);
            for l in 0..=level {
                self.links.read(node, l, &mut list);
                buf.extend_from_slice(&(list.len() as u16).to_le_bytes());
                for id in &list {
                    buf.extend_from_slice(&id.to_le_bytes());
                }
            }
        }
        let crc = crc32c::crc32c(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        let mut f = std::fs::File::create(path).at(path)?;
        f.write_all(&buf).at(path)?;
        f.sync_all().at(path)
    }

    /// Loads a graph written by `save` over the vectors it was built on (the f16
    /// codes of cosine graphs are not in the file: they are made from `vecs`).
    pub fn load<V: VectorSource>(
        path: &Path,
        ef_construct: usize,
        distance: Distance,
        vecs: &V,
    ) -> Result<(Hnsw, usize)> {
        Self::load_with_f16(path, ef_construct, distance, vecs, true)
    }

    /// Like `load`; `f16` as in [`Hnsw::with_f16`].
    pub fn load_with_f16<V: VectorSource>(
        path: &Path,
        ef_construct: usize,
        distance: Distance,
        vecs: &V,
        f16: bool,
    ) -> Result<(Hnsw, usize)> {
        let bad = |reason: &str| Error::SnapshotInvalid {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let data = std::fs::read(path).at(path)?;
        if data.len() < 8 + 20 + 4 || &data[..8] != MAGIC {
            return Err(bad("not a graph file"));
        }
        let (body, tail) = data.split_at(data.len() - 4);
        let crc = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
        if crc32c::crc32c(body) != crc {
            return Err(bad("graph checksum mismatch"));
        }
        let mut r = Reader { b: body, p: 8 };
        let m = r.u32().ok_or_else(|| bad("truncated header"))? as usize;
        let n = r.u32().ok_or_else(|| bad("truncated header"))? as usize;
        let ep = r.u32().ok_or_else(|| bad("truncated header"))?;
        let top = r.u32().ok_or_else(|| bad("truncated header"))? as u8;
        let inserted = r.u32().ok_or_else(|| bad("truncated header"))? as usize;
        if n > vecs.len() {
            return Err(bad(&format!(
                "graph of {n} nodes over only {} stored vectors",
                vecs.len()
            )));
        }
        let g = Hnsw::with_f16(m, ef_construct, distance, vecs.dim(), f16);
        let mut list = Vec::new();
        for node in 0..n as u32 {
            let level = r.u8().ok_or_else(|| bad("truncated node"))?;
            g.links.init_node(node, level, vecs.vector(node));
            for l in 0..=level {
                let c = r.u16().ok_or_else(|| bad("truncated list"))? as usize;
                list.clear();
                for _ in 0..c {
                    let id = r.u32().ok_or_else(|| bad("truncated list"))?;
                    if id as usize >= n {
                        return Err(bad("link to a node outside the graph"));
                    }
                    list.push(id);
                }
                g.links.write(node, l, &list);
            }
        }
        if ep != NONE {
            if ep as usize >= n {
                return Err(bad("entry point outside the graph"));
            }
            *g.entry.write() = Some((ep, top));
        }
        g.inserted.store(inserted, Ordering::Relaxed);
        Ok((g, n))
    }

    /// A new graph without the nodes mapped to `NONE` in `remap` (old id -> new id),
    /// over the compacted vectors `new_vecs`. Lists that lost neighbours are refilled
    /// from the removed nodes' neighbours with the selection heuristic.
    pub fn compact<V: VectorSource>(&self, remap: &[u32], new_vecs: &V) -> Hnsw {
        let g = Hnsw::with_f16(
            self.links.m,
            self.ef_construct,
            self.distance,
            self.dim,
            self.lossy(),
        );
        let mut best_entry: Option<(u32, u8)> = None;
        for (old, &new) in remap.iter().enumerate() {
            if new != NONE {
                let level = self.links.level(old as u32);
                g.links.init_node(new, level, new_vecs.vector(new));
                if best_entry.is_none_or(|(_, l)| level > l) {
                    best_entry = Some((new, level));
                }
            }
        }
        let map = |x: u32| remap.get(x as usize).copied().unwrap_or(NONE);
        (0..remap.len() as u32)
            .into_par_iter()
            .filter(|&o| map(o) != NONE)
            .for_each(|old| {
                let new = map(old);
                let mut list = Vec::new();
                let mut extra = Vec::new();
                for l in 0..=self.links.level(old) {
                    self.links.read(old, l, &mut list);
                    let mut kept: Vec<u32> = Vec::with_capacity(list.len());
                    let mut lost = false;
                    for &x in &list {
                        match map(x) {
                            NONE => {
                                lost = true;
                                self.links.read(x, l, &mut extra);
                                kept.extend(
                                    extra
                                        .iter()
                                        .map(|&y| map(y))
                                        .filter(|&y| y != NONE && y != new),
                                );
                            }
                            y => kept.push(y),
                        }
                    }
                    kept.sort_unstable();
                    kept.dedup();
                    let cap = g.links.cap(l);
                    if lost || kept.len() > cap {
                        let vn = new_vecs.vector(new);
                        let mut c: Vec<Scored> = kept
                            .iter()
                            .map(|&y| Scored((self.dist)(vn, new_vecs.vector(y)), y))
                            .collect();
                        c.sort_unstable();
                        kept = g
                            .select(new_vecs, &c, cap)
                            .into_iter()
                            .map(|s| s.1)
                            .collect();
                    }
                    g.links.write(new, l, &kept);
                }
            });
        let old_entry = *self.entry.read();
        let entry = match old_entry {
            Some((e, t)) if map(e) != NONE => Some((map(e), t)),
            _ => best_entry,
        };
        *g.entry.write() = entry;
        g.inserted.store(
            remap.iter().filter(|&&x| x != NONE).count(),
            Ordering::Relaxed,
        );
        g
    }
}

struct Reader<'a> {
    b: &'a [u8],
    p: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.b.get(self.p..self.p + N)?;
        self.p += N;
        s.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take::<2>().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance;
    use crate::types::Distance;
    use rand::{Rng, SeedableRng};

    fn unit(v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        distance::normalize(&mut v);
        v
    }

    #[test]
    fn save_load_roundtrip_and_corruption() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let vecs: Vec<Vec<f32>> = (0..500)
            .map(|_| (0..8).map(|_| rng.random::<f32>()).collect())
            .collect();
        for d in [Distance::Euclid, Distance::Cosine] {
            let vecs: Vec<Vec<f32>> = if d == Distance::Cosine {
                vecs.iter().map(|v| unit(v)).collect()
            } else {
                vecs.clone()
            };
            let g = Hnsw::new(8, 50, d, 8);
            for i in 0..500 {
                g.insert(&vecs, i);
            }
            let tmp = tempfile::tempdir().unwrap();
            let p = tmp.path().join("g.bin");
            g.save(&p, 500).unwrap();
            let (h, n) = Hnsw::load(&p, 50, d, &vecs).unwrap();
            assert_eq!(n, 500);
            for q in vecs.iter().take(20) {
                assert_eq!(
                    g.search(&vecs, q, 5, 50, |_| true),
                    h.search(&vecs, q, 5, 50, |_| true)
                );
            }
            // fewer stored vectors than graph nodes
            assert!(matches!(
                Hnsw::load(&p, 50, d, &vecs[..499].to_vec()),
                Err(Error::SnapshotInvalid { .. })
            ));
            let mut data = std::fs::read(&p).unwrap();
            data[100] ^= 0xff;
            std::fs::write(&p, &data).unwrap();
            assert!(matches!(
                Hnsw::load(&p, 50, d, &vecs),
                Err(Error::SnapshotInvalid { .. })
            ));
        }
    }

    #[test]
    fn compaction_keeps_recall() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let vecs: Vec<Vec<f32>> = (0..2000)
            .map(|_| (0..8).map(|_| rng.random::<f32>()).collect())
            .collect();
        let f = distance::internal_fn(Distance::Euclid);
        let g = Hnsw::new(8, 64, Distance::Euclid, 8);
        for i in 0..2000 {
            g.insert(&vecs, i);
        }
        // delete every third node
        let mut remap = vec![NONE; 2000];
        let mut live = Vec::new();
        for i in 0..2000 {
            if i % 3 != 0 {
                remap[i] = live.len() as u32;
                live.push(vecs[i].clone());
            }
        }
        let c = g.compact(&remap, &live);
        let mut hit = 0;
        for q in live.iter().step_by(50) {
            let mut all: Vec<Scored> = (0..live.len() as u32)
                .map(|i| Scored(f(q, &live[i as usize]), i))
                .collect();
            all.sort_unstable();
            let got = c.search(&live, q, 10, 64, |_| true);
            hit += got
                .iter()
                .filter(|s| all[..10].iter().any(|t| t.1 == s.1))
                .count();
        }
        let total = live.iter().step_by(50).count() * 10;
        assert!(
            hit as f64 / total as f64 >= 0.9,
            "recall after compaction {}",
            hit as f64 / total as f64
        );
    }
}
