//! The coordinator of a distributed collection: the pod that receives a client
//! request splits a write by owning shard (or sends it to every shard when it selects
//! points by filter, or changes an index) and scatters a read to every shard, then
//! merges: top-k by score with the offset applied once, id order for scroll and
//! unscored search, sums for counts. This pod's own shard is served in-process; the
//! others over the shard-to-shard API. A shard that cannot answer fails the request
//! (naming the shard); a write that reached some shards before another failed says
//! which parts were applied. With replication a write part is proposed on its shard's
//! Raft leader (forwarded on `NotLeader`); a read goes to any one pod of the shard.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use std::time::Duration;

use futures::future::join_all;
use vectorforge::{Filter, PayloadSchemaType, PointId};

use super::{CollectionService, Description, SchemaCounts, Scroll, Search, Target};
use crate::cluster::{Call, Cluster, ShardClient, pb, wire};

/// How long a write waits for its shard to have a leader (an election after a leader
/// was lost takes 1.5–3 s).
const LEADER_WAIT: Duration = Duration::from_secs(10);
use crate::error::{ServiceError, ServiceResult};
use crate::store::{Info, PointOut, Selector, VectorSelection, Write};

/// Ids grouped by owning shard, each group in the order given.
fn by_owner(cl: &Cluster, ids: Vec<PointId>) -> BTreeMap<u32, Vec<PointId>> {
    let mut m: BTreeMap<u32, Vec<PointId>> = BTreeMap::new();
    for id in ids {
        m.entry(cl.owner(&id)).or_default().push(id);
    }
    m
}

/// A write's part per shard.
fn split(cl: &Cluster, w: Write) -> BTreeMap<u32, Write> {
    let all = |w: Write| (0..cl.shards()).map(|s| (s, w.clone())).collect();
    let ids = |ids: Vec<PointId>, make: &dyn Fn(Selector) -> Write| {
        let parts = by_owner(cl, ids);
        if parts.is_empty() {
            // nothing selected: still one (empty) write, for its operation id
            return BTreeMap::from([(cl.shard(), make(Selector::Ids(Vec::new())))]);
        }
        parts
            .into_iter()
            .map(|(s, ids)| (s, make(Selector::Ids(ids))))
            .collect()
    };
    match w {
        Write::Upsert(points) => {
            let mut m: BTreeMap<u32, Vec<_>> = BTreeMap::new();
            for p in points {
                m.entry(cl.owner(&p.id)).or_default().push(p);
            }
            m.into_iter().map(|(s, p)| (s, Write::Upsert(p))).collect()
        }
        Write::Delete(Selector::Ids(i)) => ids(i, &Write::Delete),
        Write::SetPayload {
            sel: Selector::Ids(i),
            payload,
            key,
        } => ids(i, &|sel| Write::SetPayload {
            sel,
            payload: payload.clone(),
            key: key.clone(),
        }),
        Write::OverwritePayload {
            sel: Selector::Ids(i),
            payload,
        } => ids(i, &|sel| Write::OverwritePayload {
            sel,
            payload: payload.clone(),
        }),
        Write::DeletePayload {
            sel: Selector::Ids(i),
            keys,
        } => ids(i, &|sel| Write::DeletePayload {
            sel,
            keys: keys.clone(),
        }),
        Write::ClearPayload(Selector::Ids(i)) => ids(i, &Write::ClearPayload),
        // by filter, or collection-wide: every shard
        other => all(other),
    }
}

/// How one search's merged hits are ordered.
type HitOrder = Box<dyn Fn(&PointOut, &PointOut) -> Ordering + Send>;

/// Orders hits best first (by the vector space's distance), ties by id.
fn by_score(higher_is_better: bool) -> impl Fn(&PointOut, &PointOut) -> Ordering {
    move |a, b| {
        let (x, y) = (a.score.unwrap_or(0.0), b.score.unwrap_or(0.0));
        let o = if higher_is_better {
            y.total_cmp(&x)
        } else {
            x.total_cmp(&y)
        };
        o.then_with(|| a.id.cmp(&b.id))
    }
}

/// Merges per-shard hit lists (each the shard's best `offset + limit`): the global
/// best `limit` after `offset`.
pub fn merge_hits(
    lists: Vec<Vec<PointOut>>,
    order: impl Fn(&PointOut, &PointOut) -> Ordering,
    offset: usize,
    limit: usize,
) -> Vec<PointOut> {
    let mut all: Vec<PointOut> = lists.into_iter().flatten().collect();
    all.sort_by(order);
    all.into_iter().skip(offset).take(limit).collect()
}

/// Merges per-shard scroll pages (each up to `limit + 1` points from the same
/// offset): the page of `limit` points and where the next one starts.
pub fn merge_pages(lists: Vec<Vec<PointOut>>, limit: usize) -> (Vec<PointOut>, Option<PointId>) {
    let mut all: Vec<PointOut> = lists.into_iter().flatten().collect();
    all.sort_by_key(|p| p.id);
    let next = all.get(limit).map(|p| p.id);
    all.truncate(limit);
    (all, next)
}

/// Adds up the shards' counts for CollectionInfo.
pub fn merge_descriptions(parts: Vec<(Info, SchemaCounts)>) -> (Info, SchemaCounts) {
    let mut info = Info {
        points: 0,
        indexed_vectors: 0,
        stored_vectors: 0,
        all_indexed: true,
        last_seq: 0,
        indexed_fields: Vec::new(),
    };
    let mut schema: BTreeMap<(String, PayloadSchemaType), usize> = BTreeMap::new();
    for (i, s) in parts {
        info.points += i.points;
        info.indexed_vectors += i.indexed_vectors;
        info.stored_vectors += i.stored_vectors;
        info.all_indexed &= i.all_indexed;
        info.last_seq = info.last_seq.max(i.last_seq);
        for (k, t, n) in s {
            *schema.entry((k, t)).or_default() += n;
        }
    }
    info.indexed_fields = schema.keys().cloned().collect();
    let schema = schema.into_iter().map(|((k, t), n)| (k, t, n)).collect();
    (info, schema)
}

fn filter_json(f: &Option<Filter>) -> Option<String> {
    f.as_ref().map(wire::filter_to)
}

impl CollectionService {
    /// A write split by shard; the parts run in parallel. Returns the highest
    /// operation id of the parts.
    pub(super) async fn cluster_write(
        &self,
        cl: &Arc<Cluster>,
        name: &str,
        w: Write,
    ) -> ServiceResult<u64> {
        if let Write::Upsert(points) = &w {
            // every shard has the same settings: check the whole batch here first, so
            // that a bad point rejects the batch before any shard applies a part
            self.prepare(name, Write::Upsert(points.clone())).await?;
        }
        let parts = split(cl, w);
        let calls = parts.into_iter().map(|(shard, part)| async move {
            (shard, self.write_to_leader(cl, name, shard, part).await)
        });
        let results = join_all(calls).await;
        let applied: Vec<u32> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(s, _)| *s)
            .collect();
        let mut op = 0;
        for (shard, r) in results {
            match r {
                Ok(seq) => op = op.max(seq),
                Err(e) if applied.is_empty() => return Err(e),
                Err(e) => {
                    let e = e.context(&format!("shard {shard}"));
                    return Err(match e {
                        ServiceError::Invalid(m) => ServiceError::Invalid(format!(
                            "{m} (the parts for shards {applied:?} were applied)"
                        )),
                        other => ServiceError::Unavailable(format!(
                            "{other} (the parts for shards {applied:?} were applied; retrying the write is safe)"
                        )),
                    });
                }
            }
        }
        Ok(op)
    }

    /// A shard's part of a write: proposed on the shard's leader (this pod,
    /// or the pod a `NotLeader` answer names), retried through an election for up to
    /// [`LEADER_WAIT`].
    async fn write_to_leader(
        &self,
        cl: &Arc<Cluster>,
        name: &str,
        shard: u32,
        part: Write,
    ) -> ServiceResult<u64> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let mut leader: Option<String> = None;
        loop {
            let msg = wire::write_to(name, part.clone());
            let method = |mut c: ShardClient<_>, r| -> Call<pb::WriteReply> {
                Box::pin(async move { c.write(r).await })
            };
            let r = match (&leader, shard == cl.shard()) {
                (Some(addr), _) => cl.call_at(addr, msg, method).await,
                (None, true) => self
                    .local_write(name, part.clone())
                    .await
                    .map(|operation_id| pb::WriteReply { operation_id }),
                (None, false) => cl.call(shard, msg, method).await,
            };
            match r {
                Ok(w) => return Ok(w.operation_id),
                Err(e) if e.retryable() && tokio::time::Instant::now() < deadline => {
                    leader = match e {
                        ServiceError::NotLeader { leader } => leader,
                        _ => None,
                    };
                    if leader.is_none() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The stored vector of `id` in vector space `using`, from its shard.
    async fn vector_of(
        &self,
        cl: &Arc<Cluster>,
        name: &str,
        using: &str,
        id: PointId,
    ) -> ServiceResult<Vec<f32>> {
        let sel = VectorSelection::Names(vec![using.to_owned()]);
        let found = self
            .cluster_retrieve(cl, name, vec![id], false, sel)
            .await?;
        let v = found.into_iter().next().and_then(|p| p.vector);
        match v {
            Some(crate::store::VectorOut::Single(v)) => Ok(v),
            Some(crate::store::VectorOut::Named(mut m)) => m.remove(using).ok_or_else(|| {
                ServiceError::not_found(format!("Not found: No point with id {id} found"))
            }),
            None => Err(ServiceError::not_found(format!(
                "Not found: No point with id {id} found"
            ))),
        }
    }

    /// A batch of searches over every shard: one call per shard for the batch, then
    /// each search's hits merged.
    pub(super) async fn cluster_search(
        &self,
        cl: &Arc<Cluster>,
        name: &str,
        mut searches: Vec<Search>,
    ) -> ServiceResult<Vec<Vec<PointOut>>> {
        let c = self.collection(name)?;
        let mut plans = Vec::with_capacity(searches.len());
        for (i, s) in searches.iter_mut().enumerate() {
            let ctx = |e: ServiceError| e.context(&format!("searches[{i}]"));
            s.check(&c).map_err(ctx)?;
            let (offset, limit) = (s.req.offset, s.req.limit);
            // a stored point's vector comes from its shard; the point itself is left out
            let exclude = match s.target {
                Target::Point(id) => {
                    let v = self.vector_of(cl, name, &s.using, id).await.map_err(ctx)?;
                    s.target = Target::Vector(v);
                    Some(id)
                }
                _ => None,
            };
            let order: HitOrder = match s.target {
                Target::None => Box::new(|a: &PointOut, b: &PointOut| a.id.cmp(&b.id)),
                _ => Box::new(by_score(
                    c.engine(&s.using)
                        .map_err(ctx)?
                        .config()
                        .distance
                        .higher_is_better(),
                )),
            };
            // every shard returns its best offset + limit (+1 for the excluded point)
            s.req.limit = offset
                .saturating_add(limit)
                .saturating_add(usize::from(exclude.is_some()));
            s.req.offset = 0;
            plans.push((order, offset, limit, exclude));
        }
        let msg = pb::SearchRequest {
            collection: name.to_owned(),
            searches: searches.iter().map(wire::search_to).collect(),
        };
        let local = self.local();
        let (mine, theirs) = futures::join!(
            local.search_all(name, searches),
            cl.scatter(msg, |mut c, r| Box::pin(async move { c.search(r).await }))
        );
        let mut per_shard = vec![mine?];
        for r in theirs? {
            per_shard.push(
                r.results
                    .into_iter()
                    .map(|h| wire::points_from(h.points))
                    .collect::<ServiceResult<Vec<_>>>()?,
            );
        }
        let mut out = Vec::with_capacity(plans.len());
        for (i, (order, offset, limit, exclude)) in plans.into_iter().enumerate() {
            let lists = per_shard
                .iter_mut()
                .map(|shard| {
                    let mut hits = std::mem::take(shard.get_mut(i).ok_or_else(|| {
                        ServiceError::internal(
                            "Service internal error: a shard answered fewer searches than asked",
                        )
                    })?);
                    if let Some(id) = exclude {
                        hits.retain(|h| h.id != id);
                    }
                    Ok(hits)
                })
                .collect::<ServiceResult<Vec<_>>>()?;
            out.push(merge_hits(lists, order, offset, limit));
        }
        Ok(out)
    }

    /// Points by id from their shards, in the order asked (missing ids skipped).
    pub(super) async fn cluster_retrieve(
        &self,
        cl: &Arc<Cluster>,
        name: &str,
        ids: Vec<PointId>,
        with_payload: bool,
        vectors: VectorSelection,
    ) -> ServiceResult<Vec<PointOut>> {
        let parts = by_owner(cl, ids.clone());
        let calls = parts.into_iter().map(|(shard, part)| {
            let vectors = vectors.clone();
            async move {
                if shard == cl.shard() {
                    return self.local_retrieve(name, part, with_payload, vectors).await;
                }
                let msg = pb::RetrieveRequest {
                    collection: name.to_owned(),
                    ids: part.into_iter().map(wire::id_to).collect(),
                    with_payload,
                    vectors: Some(wire::selection_to(&vectors)),
                };
                let r = cl
                    .call(shard, msg, |mut c, r| {
                        Box::pin(async move { c.retrieve(r).await })
                    })
                    .await?;
                wire::points_from(r.points)
            }
        });
        let mut found: HashMap<PointId, PointOut> = HashMap::new();
        for r in join_all(calls).await {
            for p in r? {
                found.insert(p.id, p);
            }
        }
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    /// A page in id order over every shard.
    pub(super) async fn cluster_scroll(
        &self,
        cl: &Arc<Cluster>,
        name: &str,
        s: Scroll,
    ) -> ServiceResult<(Vec<PointOut>, Option<PointId>)> {
        let limit = s.limit;
        let ask = Scroll {
            limit: limit.saturating_add(1),
            ..s
        };
        let msg = pb::ScrollRequest {
            collection: name.to_owned(),
            filter_json: filter_json(&ask.filter),
            limit: ask.limit as u64,
            offset: ask.offset.map(wire::id_to),
            with_payload: ask.with_payload,
            vectors: Some(wire::selection_to(&ask.vectors)),
        };
        let (mine, theirs) = futures::join!(
            self.local_scroll(name, ask),
            cl.scatter(msg, |mut c, r| Box::pin(async move { c.scroll(r).await }))
        );
        let mut lists = vec![mine?.0];
        for r in theirs? {
            lists.push(wire::points_from(r.points)?);
        }
        Ok(merge_pages(lists, limit))
    }

    pub(super) async fn cluster_count(
        &self,
        cl: &Arc<Cluster>,
        name: &str,
        filter: Option<Filter>,
    ) -> ServiceResult<usize> {
        let msg = pb::CountRequest {
            collection: name.to_owned(),
            filter_json: filter_json(&filter),
        };
        let (mine, theirs) = futures::join!(
            self.local_count(name, filter),
            cl.scatter(msg, |mut c, r| Box::pin(async move { c.count(r).await }))
        );
        Ok(mine? + theirs?.iter().map(|r| r.count as usize).sum::<usize>())
    }

    pub(super) async fn cluster_describe(
        &self,
        cl: &Arc<Cluster>,
        name: &str,
    ) -> ServiceResult<Description> {
        let msg = pb::DescribeRequest {
            collection: name.to_owned(),
        };
        let (mine, theirs) = futures::join!(
            self.local_describe(name),
            cl.scatter(msg, |mut c, r| Box::pin(async move { c.describe(r).await }))
        );
        let mine = mine?;
        let mut parts = vec![(mine.info, mine.payload_schema)];
        for r in theirs? {
            parts.push(wire::describe_from(r)?);
        }
        let (info, payload_schema) = merge_descriptions(parts);
        Ok(Description {
            info,
            payload_schema,
            params: mine.params,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: u64, score: f32) -> PointOut {
        PointOut {
            id: PointId::Num(id),
            score: Some(score),
            payload: None,
            vector: None,
        }
    }

    fn ids(v: &[PointOut]) -> Vec<u64> {
        v.iter()
            .map(|p| match p.id {
                PointId::Num(n) => n,
                PointId::Uuid(_) => u64::MAX,
            })
            .collect()
    }

    #[test]
    fn hits_merge_best_first_with_the_offset_applied_once() {
        let a = vec![hit(1, 0.9), hit(4, 0.5), hit(6, 0.1)];
        let b = vec![hit(2, 0.8), hit(3, 0.7), hit(5, 0.5)];
        // similarity: higher first, ties by id; offset 1, limit 3
        let m = merge_hits(vec![a.clone(), b.clone()], by_score(true), 1, 3);
        assert_eq!(ids(&m), vec![2, 3, 4]);
        // distance: lower first
        let m = merge_hits(vec![a, b], by_score(false), 0, 2);
        assert_eq!(ids(&m), vec![6, 4]);
    }

    #[test]
    fn pages_merge_in_id_order_and_say_where_the_next_starts() {
        let a = vec![hit(1, 0.0), hit(5, 0.0), hit(9, 0.0)];
        let b = vec![hit(2, 0.0), hit(3, 0.0)];
        let (page, next) = merge_pages(vec![a.clone(), b.clone()], 3);
        assert_eq!(ids(&page), vec![1, 2, 3]);
        assert_eq!(next, Some(PointId::Num(5)));
        let (page, next) = merge_pages(vec![a, b], 5);
        assert_eq!(page.len(), 5);
        assert_eq!(next, None);
    }

    #[test]
    fn descriptions_add_up() {
        let info = |points, all| Info {
            points,
            indexed_vectors: points,
            stored_vectors: points,
            all_indexed: all,
            last_seq: points as u64,
            indexed_fields: vec![],
        };
        let kw = PayloadSchemaType::Keyword;
        let (i, s) = merge_descriptions(vec![
            (info(10, true), vec![("lang".into(), kw, 4)]),
            (info(7, false), vec![("lang".into(), kw, 3)]),
        ]);
        assert_eq!((i.points, i.all_indexed, i.last_seq), (17, false, 10));
        assert_eq!(s, vec![("lang".to_string(), kw, 7)]);
        assert_eq!(i.indexed_fields, vec![("lang".to_string(), kw)]);
    }
}
