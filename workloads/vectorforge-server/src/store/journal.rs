//! The journal's record codec: one engine operation per vector space, as
//! `[count u32]` then `[len u64][operation]` for each.

use vectorforge::Operation;

use crate::error::ServiceResult;

pub(super) fn encode_ops(ops: &[Operation]) -> ServiceResult<Vec<u8>> {
    let mut out = Vec::new();
    out.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    for op in ops {
        let b = op.encode()?;
        out.extend_from_slice(&(b.len() as u64).to_le_bytes());
        out.extend_from_slice(&b);
    }
    Ok(out)
}

pub(super) fn decode_ops(mut b: &[u8]) -> Result<Vec<Operation>, vectorforge::Error> {
    let bad = || vectorforge::Error::Decode("journal record is truncated".into());
    let take = |b: &mut &[u8], n: usize| -> Result<Vec<u8>, vectorforge::Error> {
        if b.len() < n {
            return Err(bad());
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head.to_vec())
    };
    let n = u32::from_le_bytes(take(&mut b, 4)?.try_into().map_err(|_| bad())?) as usize;
    let mut ops = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let len = u64::from_le_bytes(take(&mut b, 8)?.try_into().map_err(|_| bad())?);
        let len = usize::try_from(len).map_err(|_| bad())?;
        ops.push(Operation::decode(&take(&mut b, len)?)?);
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vectorforge::PointId;

    #[test]
    fn journal_records_round_trip() {
        let ops = vec![
            Operation::Delete(vec![PointId::Num(1)]),
            Operation::ClearPayload { ids: vec![] },
        ];
        assert_eq!(decode_ops(&encode_ops(&ops).unwrap()).unwrap(), ops);
        assert!(decode_ops(&[1, 0, 0]).is_err());
    }
}
