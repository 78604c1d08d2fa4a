//! pgvector's binary wire formats, so embeddings travel as bytes rather than text.
//!
//! `vector`: dimension (u16), a reserved u16 (0), then each component as a big-endian f32.
//! `halfvec`: the same header, then big-endian IEEE half floats. Folio stores passages as
//! `halfvec` (half the memory and disk of `vector`; the cosine ranking of MiniLM-sized
//! embeddings does not change measurably at f16) and sends queries the same way.

use std::error::Error;

use bytes::{BufMut, BytesMut};
use half::f16;
use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

/// An embedding sent or read as pgvector's `halfvec`.
#[derive(Debug, Clone, PartialEq)]
pub struct HalfVector(pub Vec<f32>);

fn header(dim: usize, out: &mut BytesMut) -> Result<(), Box<dyn Error + Sync + Send>> {
    let dim = u16::try_from(dim)
        .map_err(|_| format!("{dim} dimensions: pgvector takes at most 65535"))?;
    out.put_u16(dim);
    out.put_u16(0);
    Ok(())
}

impl ToSql for HalfVector {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        header(self.0.len(), out)?;
        for &x in &self.0 {
            out.put_u16(f16::from_f32(x).to_bits());
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "halfvec"
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for HalfVector {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        let (dim, body) = split_header(raw)?;
        if body.len() != dim * 2 {
            return Err(format!("halfvec of {dim} dimensions has {} bytes", body.len()).into());
        }
        Ok(HalfVector(
            body.chunks_exact(2)
                .map(|b| f16::from_bits(u16::from_be_bytes([b[0], b[1]])).to_f32())
                .collect(),
        ))
    }

    fn accepts(ty: &Type) -> bool {
        ty.name() == "halfvec"
    }
}

fn split_header(raw: &[u8]) -> Result<(usize, &[u8]), Box<dyn Error + Sync + Send>> {
    if raw.len() < 4 {
        return Err("a pgvector value shorter than its header".into());
    }
    Ok((usize::from(u16::from_be_bytes([raw[0], raw[1]])), &raw[4..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halfvec_round_trips_through_its_wire_format() -> Result<(), Box<dyn Error + Sync + Send>> {
        let v = HalfVector(vec![0.5, -1.25, 3.0, 0.0]);
        let mut buf = BytesMut::new();
        v.to_sql(&Type::TEXT, &mut buf)?;
        assert_eq!(&buf[..4], &[0, 4, 0, 0], "dimension 4, reserved 0");
        assert_eq!(&buf[4..6], &f16::from_f32(0.5).to_bits().to_be_bytes());
        assert_eq!(HalfVector::from_sql(&Type::TEXT, &buf)?, v);
        assert!(HalfVector::from_sql(&Type::TEXT, &buf[..5]).is_err());
        assert!(HalfVector::from_sql(&Type::TEXT, &[0]).is_err());
        let huge = HalfVector(vec![0.0; 70_000]);
        assert!(huge.to_sql(&Type::TEXT, &mut BytesMut::new()).is_err());
        Ok(())
    }
}
