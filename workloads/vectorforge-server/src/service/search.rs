//! Searches of the collection service: what to search near (a vector, a stored point,
//! or nothing: points in id order), the request limits every transport shares, and
//! batches that are checked completely before any search runs.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use vectorforge::{PointId, QuantizationSearchParams, SearchRequest};

use super::{CollectionService, blocking};
use crate::error::{ServiceError, ServiceResult};
use crate::store::{PointOut, PointsCollection, VectorSelection};

/// Most results one search may ask for (limit + offset), and the largest `hnsw_ef`.
pub const MAX_RESULTS: usize = 100_000;

/// What to search near.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    Vector(Vec<f32>),
    /// The stored vector of a point (the point itself is left out of the results).
    Point(PointId),
    /// No query: points in id order (Qdrant returns them unscored).
    None,
}

/// One search. `req.vector` is ignored: the target says what to search near.
#[derive(Clone, Debug)]
pub struct Search {
    pub target: Target,
    /// The vector space ("" for the unnamed vector).
    pub using: String,
    pub req: SearchRequest,
    pub vectors: VectorSelection,
    /// Qdrant's `params.quantization`: whether and how to search on the codes.
    pub quantization: QuantizationSearchParams,
}

impl Search {
    /// The limits every transport shares.
    fn check_limits(&self) -> ServiceResult<()> {
        if self.req.limit.saturating_add(self.req.offset) > MAX_RESULTS {
            return Err(ServiceError::invalid(format!(
                "Wrong input: limit + offset must not exceed {MAX_RESULTS}"
            )));
        }
        if let Some(ef) = self.req.ef
            && !(1..=MAX_RESULTS).contains(&ef)
        {
            return Err(ServiceError::invalid(format!(
                "Wrong input: params.hnsw_ef: {ef} is not in 1..={MAX_RESULTS}"
            )));
        }
        if let Some(t) = self.req.score_threshold
            && !t.is_finite()
        {
            return Err(ServiceError::invalid(format!(
                "Wrong input: score_threshold: {t} is not a finite number"
            )));
        }
        Ok(())
    }

    /// Everything that can be checked before the search runs: limits, the vector
    /// space (when there is a query), and the query vector's dimension and values.
    pub(super) fn check(&self, c: &PointsCollection) -> ServiceResult<()> {
        self.check_limits()?;
        match &self.target {
            Target::Vector(v) => Ok(c.engine(&self.using)?.check_query(v)?),
            Target::Point(_) => c.engine(&self.using).map(drop),
            // points in id order: no vector space involved
            Target::None => Ok(()),
        }
    }
}

/// Runs one search against a collection (blocking).
fn run(c: &PointsCollection, mut s: Search) -> ServiceResult<Vec<PointOut>> {
    // the target moves into the request (a query vector is not copied)
    let exclude = match std::mem::replace(&mut s.target, Target::None) {
        Target::Vector(v) => {
            s.req.vector = v;
            None
        }
        Target::Point(id) => {
            let engine = c.engine(&s.using)?;
            let rec = engine
                .retrieve(&[id], false, true)
                .pop()
                .and_then(|r| r.vector)
                .ok_or_else(|| {
                    ServiceError::not_found(format!("Not found: No point with id {id} found"))
                })?;
            s.req.vector = rec;
            s.req.limit = s.req.limit.saturating_add(1);
            Some(id)
        }
        Target::None => {
            // no query: points in id order, like scroll (offset counts points)
            let take = s.req.offset.saturating_add(s.req.limit);
            let (points, _) = c.scroll(
                s.req.filter.clone(),
                take.max(1),
                None,
                s.req.with_payload,
                &s.vectors,
            )?;
            return Ok(points
                .into_iter()
                .skip(s.req.offset)
                .take(s.req.limit)
                .map(|p| PointOut {
                    score: Some(0.0),
                    ..p
                })
                .collect());
        }
    };
    let limit = s.req.limit;
    let mut hits = c.search(&s.using, s.req, &s.vectors, &s.quantization)?;
    if let Some(id) = exclude {
        hits.retain(|h| h.id != id);
        hits.truncate(limit.saturating_sub(1));
    }
    Ok(hits)
}

impl CollectionService {
    /// One search.
    pub async fn search(&self, name: &str, s: Search) -> ServiceResult<Vec<PointOut>> {
        if let Some(cl) = self.routed(name) {
            let mut hits = self.cluster_search(cl, name, vec![s]).await?;
            return Ok(hits.pop().unwrap_or_default());
        }
        let c = self.collection(name)?;
        s.check(&c)?;
        blocking(move || run(&c, s)).await
    }

    /// A batch: every search is checked first (an error names it as `searches[i]` and
    /// none runs); then they run in parallel and results come in order. (A distributed
    /// collection answers the batch at once, after every shard has.)
    pub fn search_batch(
        &self,
        name: &str,
        searches: Vec<Search>,
    ) -> ServiceResult<BoxStream<'static, ServiceResult<Vec<PointOut>>>> {
        if let Some(cl) = self.routed(name) {
            let (svc, cl, name) = (self.clone(), cl.clone(), name.to_owned());
            return Ok(futures::stream::once(async move {
                svc.cluster_search(&cl, &name, searches).await
            })
            .flat_map(|r| {
                let items: Vec<ServiceResult<Vec<PointOut>>> = match r {
                    Ok(all) => all.into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                };
                futures::stream::iter(items)
            })
            .boxed());
        }
        let c: Arc<PointsCollection> = self.collection(name)?;
        for (i, s) in searches.iter().enumerate() {
            s.check(&c)
                .map_err(|e| e.context(&format!("searches[{i}]")))?;
        }
        let parallel = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(futures::stream::iter(searches.into_iter().enumerate())
            .map(move |(i, s)| {
                let c = c.clone();
                async move {
                    blocking(move || run(&c, s))
                        .await
                        .map_err(|e| e.context(&format!("searches[{i}]")))
                }
            })
            .buffered(parallel)
            .boxed())
    }

    /// A batch, collected.
    pub async fn search_all(
        &self,
        name: &str,
        searches: Vec<Search>,
    ) -> ServiceResult<Vec<Vec<PointOut>>> {
        let stream = self.search_batch(name, searches)?;
        stream.collect::<Vec<_>>().await.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(limit: usize, offset: usize, ef: Option<usize>) -> Search {
        Search {
            target: Target::None,
            using: String::new(),
            req: SearchRequest {
                limit,
                offset,
                ef,
                ..Default::default()
            },
            vectors: VectorSelection::None,
            quantization: Default::default(),
        }
    }

    #[test]
    fn limits_are_one_rule_for_every_transport() {
        assert!(search(10, 0, Some(64)).check_limits().is_ok());
        assert!(search(MAX_RESULTS, 0, None).check_limits().is_ok());
        for (s, says) in [
            (search(MAX_RESULTS, 1, None), "limit + offset"),
            (search(10, 0, Some(0)), "hnsw_ef"),
            (search(10, 0, Some(MAX_RESULTS + 1)), "hnsw_ef"),
        ] {
            match s.check_limits() {
                Err(ServiceError::Invalid(m)) => assert!(m.contains(says), "{m}"),
                other => panic!("expected Invalid, got {other:?}"),
            }
        }
    }
}
