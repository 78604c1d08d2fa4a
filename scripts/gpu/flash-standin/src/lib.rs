//! CPU stand-in for the two candle-flash-attn functions Folio calls, same signatures and
//! layouts: softmax(q kᵀ · scale [+ causal mask]) v per sequence, grouped-query heads shared
//! by consecutive query heads. `FLASH_STANDIN_FAIL=1` makes every call fail, to show a test
//! run really went through these functions.

use candle_core::{D, Result, Tensor};

fn guard(name: &str) -> Result<()> {
    if std::env::var_os("FLASH_STANDIN_FAIL").is_some() {
        candle_core::bail!("flash stand-in: {name} called with FLASH_STANDIN_FAIL set");
    }
    Ok(())
}

/// One sequence: `q` `(t, heads, d)`, `k`, `v` `(t, kv_heads, d)` -> `(t, heads, d)`.
fn sequence(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32, causal: bool) -> Result<Tensor> {
    let (t, heads, d) = q.dims3()?;
    let (s, kv_heads, _) = k.dims3()?;
    let group = heads / kv_heads;
    let per_head = |x: &Tensor| -> Result<Tensor> {
        x.transpose(0, 1)?
            .unsqueeze(1)?
            .broadcast_as((kv_heads, group, s, d))?
            .reshape((heads, s, d))
    };
    let q = q.transpose(0, 1)?.contiguous()?;
    let (k, v) = (per_head(k)?, per_head(v)?);
    let mut scores = (q.matmul(&k.t()?)? * f64::from(scale))?;
    if causal {
        let mask: Vec<f32> = (0..t)
            .flat_map(|i| {
                (0..s).map(move |j| {
                    if j + t <= i + s {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
            })
            .collect();
        let mask = Tensor::from_vec(mask, (t, s), q.device())?.to_dtype(q.dtype())?;
        scores = scores.broadcast_add(&mask)?;
    }
    let e = scores
        .broadcast_sub(&scores.max_keepdim(D::Minus1)?)?
        .exp()?;
    let p = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
    p.matmul(&v)?.transpose(0, 1)?.contiguous()
}

/// `q` `(b, t, heads, d)`, `k`, `v` `(b, s, kv_heads, d)` -> `(b, t, heads, d)`.
pub fn flash_attn(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32, causal: bool) -> Result<Tensor> {
    guard("flash_attn")?;
    let out = (0..q.dim(0)?)
        .map(|i| sequence(&q.get(i)?, &k.get(i)?, &v.get(i)?, scale, causal))
        .collect::<Result<Vec<_>>>()?;
    Tensor::stack(&out, 0)
}

/// Rows `(total, heads, d)` split into sequences at the cumulative `seqlens_q` (the same
/// for k and v here).
#[allow(clippy::too_many_arguments)]
pub fn flash_attn_varlen(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    seqlens_q: &Tensor,
    seqlens_k: &Tensor,
    _max_seqlen_q: usize,
    _max_seqlen_k: usize,
    scale: f32,
    causal: bool,
) -> Result<Tensor> {
    guard("flash_attn_varlen")?;
    let starts: Vec<u32> = seqlens_q.to_vec1()?;
    if starts != seqlens_k.to_vec1::<u32>()? {
        candle_core::bail!("flash stand-in: query and key sequences differ");
    }
    let out = starts
        .windows(2)
        .map(|w| {
            let (at, n) = (w[0] as usize, (w[1] - w[0]) as usize);
            let rows = |x: &Tensor| x.narrow(0, at, n);
            sequence(&rows(q)?, &rows(k)?, &rows(v)?, scale, causal)
        })
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&out, 0)
}
