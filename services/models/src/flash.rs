//! Fused attention (flash-attention 2, through candle-flash-attn) for the decoder blocks
//! and the Qwen2-VL vision tower.
//!
//! The kernels run only where all of these hold: the crate is built with the `flash-attn`
//! feature, the tensors live on a CUDA device, the dtype is bf16 or f16, and the head width
//! is one the kernels take (a multiple of 8, at most 512). Everywhere else the functions
//! here answer `None` and the caller runs its own matmul-softmax attention, which is the
//! path the CPU parity tests pin against HF transformers. On CUDA the kernels never build
//! the `(t, t)` score matrix, so memory stays linear in the sequence length.

use candle_core::{DType, Device, Result as CResult, Tensor};

/// Whether the fused kernels can serve attention on `device` in `dtype` with heads
/// `head_dim` wide.
pub(crate) fn applies(device: &Device, dtype: DType, head_dim: usize) -> bool {
    cfg!(feature = "flash-attn")
        && device.is_cuda()
        && matches!(dtype, DType::BF16 | DType::F16)
        && head_dim.is_multiple_of(8)
        && head_dim <= 512
}

/// Unmasked attention of `q` `(b, t, heads, d)` over `k`, `v` `(b, s, kv_heads, d)`
/// (`kv_heads` divides `heads`), scores scaled by `scale`: `(b, t, heads, d)`, or `None`
/// where the kernels do not apply.
pub(crate) fn full(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> CResult<Option<Tensor>> {
    if !applies(q.device(), q.dtype(), q.dim(3)?) {
        return Ok(None);
    }
    #[cfg(feature = "flash-attn")]
    {
        let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
        candle_flash_attn::flash_attn(&q, &k, &v, scale as f32, false).map(Some)
    }
    #[cfg(not(feature = "flash-attn"))]
    {
        let _ = (k, v, scale);
        candle_core::bail!("built without the flash-attn feature")
    }
}

/// Causal attention over a left-padded batch, laid out as one run of rows `(b * t, heads,
/// d)`: each row's padding and each row's tokens form separate sequences, so a token sees
/// its own row's tokens up to itself and never the padding (padding rows see only padding;
/// their outputs are never read).
#[cfg_attr(not(feature = "flash-attn"), allow(dead_code))]
pub(crate) struct CausalRows {
    /// Cumulative sequence starts, `u32` on the device: `0, s1, s1 + s2, ...`.
    bounds: Tensor,
    /// The longest sequence.
    longest: usize,
}

impl CausalRows {
    /// The sequences of a batch of `lens.len()` rows, each `t` wide and holding `lens[i]`
    /// real tokens after its padding; `None` where the kernels do not apply.
    pub(crate) fn left_padded(
        lens: &[usize],
        t: usize,
        device: &Device,
        dtype: DType,
        head_dim: usize,
    ) -> CResult<Option<Self>> {
        if !applies(device, dtype, head_dim) {
            return Ok(None);
        }
        if lens.iter().any(|&len| len > t) {
            candle_core::bail!("a row of {t} holds more tokens: {lens:?}");
        }
        let bounds = sequence_bounds(lens, t);
        Ok(Some(Self {
            bounds: Tensor::new(bounds, device)?,
            longest: t,
        }))
    }

    /// Attention of `q` `(b * t, heads, d)` over `k`, `v` `(b * t, kv_heads, d)`, scores
    /// scaled by `scale`: `(b * t, heads, d)`.
    pub(crate) fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> CResult<Tensor> {
        #[cfg(feature = "flash-attn")]
        {
            let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
            candle_flash_attn::flash_attn_varlen(
                &q,
                &k,
                &v,
                &self.bounds,
                &self.bounds,
                self.longest,
                self.longest,
                scale as f32,
                true,
            )
        }
        #[cfg(not(feature = "flash-attn"))]
        {
            let _ = (q, k, v, scale);
            candle_core::bail!("built without the flash-attn feature")
        }
    }
}

/// Cumulative starts of the sequences in a left-padded batch of rows `t` wide: for each row
/// its padding (when there is any), then its tokens.
fn sequence_bounds(lens: &[usize], t: usize) -> Vec<u32> {
    let mut bounds = vec![0u32];
    let mut end = 0usize;
    for &len in lens {
        for part in [t - len, len] {
            if part > 0 {
                end += part;
                bounds.push(end as u32);
            }
        }
    }
    bounds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_and_tokens_are_separate_sequences() {
        assert_eq!(sequence_bounds(&[3, 5, 1], 5), vec![0, 2, 5, 10, 14, 15]);
        assert_eq!(sequence_bounds(&[4], 4), vec![0, 4]);
    }

    #[test]
    fn the_cpu_and_f32_keep_the_plain_path() -> CResult<()> {
        let q = Tensor::zeros((1, 4, 2, 8), DType::F32, &Device::Cpu)?;
        assert!(full(&q, &q, &q, 1.0)?.is_none());
        let q = q.to_dtype(DType::BF16)?;
        assert!(full(&q, &q, &q, 1.0)?.is_none());
        assert!(CausalRows::left_padded(&[4], 4, &Device::Cpu, DType::BF16, 8)?.is_none());
        Ok(())
    }

    /// On a CUDA device (a `flash-attn` build, run on a GPU machine) the kernels must give
    /// what the plain attention gives in f32, within bf16 rounding.
    #[cfg(feature = "flash-attn")]
    mod cuda {
        use super::super::*;
        use candle_core::{D, IndexOp};

        fn cuda() -> CResult<Device> {
            Device::new_cuda(0)
        }

        /// softmax(q k^T * scale + mask) v in f32 on the CPU; `(b, heads, t, d)` layout.
        fn reference(
            q: &Tensor,
            k: &Tensor,
            v: &Tensor,
            scale: f64,
            mask: Option<&Tensor>,
        ) -> CResult<Tensor> {
            let f = |x: &Tensor| x.to_device(&Device::Cpu)?.to_dtype(DType::F32);
            let (q, k, v) = (f(q)?, f(k)?, f(v)?);
            let scores = (q.matmul(&k.t()?)? * scale)?;
            let scores = match mask {
                Some(m) => scores.broadcast_add(m)?,
                None => scores,
            };
            candle_nn::ops::softmax_last_dim(&scores)?.matmul(&v)
        }

        fn max_abs_diff(a: &Tensor, b: &Tensor) -> CResult<f32> {
            let a = a.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
            let b = b.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
            (a - b)?
                .abs()?
                .flatten_all()?
                .max(D::Minus1)?
                .to_scalar::<f32>()
        }

        #[test]
        fn full_attention_matches_the_plain_path() -> CResult<()> {
            let dev = cuda()?;
            let (b, t, heads, d) = (2, 37, 4, 80);
            let r = |dims| Tensor::randn(0f32, 1.0, dims, &dev)?.to_dtype(DType::BF16);
            let (q, k, v) = (
                r((b, t, heads, d))?,
                r((b, t, heads, d))?,
                r((b, t, heads, d))?,
            );
            let scale = 1.0 / (d as f64).sqrt();
            let got = full(&q, &k, &v, scale)?.expect("flash applies on CUDA bf16");
            let perm = |x: &Tensor| x.transpose(1, 2);
            let want =
                reference(&perm(&q)?, &perm(&k)?, &perm(&v)?, scale, None)?.transpose(1, 2)?;
            let err = max_abs_diff(&got, &want)?;
            assert!(err < 2e-2, "max abs error {err}");
            Ok(())
        }

        #[test]
        fn left_padded_causal_rows_match_the_mask() -> CResult<()> {
            let dev = cuda()?;
            let (lens, t, heads, kv_heads, d) = ([5usize, 9, 2], 9, 4, 2, 64);
            let b = lens.len();
            let r = |n| Tensor::randn(0f32, 1.0, (b * t, n, d), &dev)?.to_dtype(DType::BF16);
            let (q, k, v) = (r(heads)?, r(kv_heads)?, r(kv_heads)?);
            let scale = 1.0 / (d as f64).sqrt();
            let rows = CausalRows::left_padded(&lens, t, &dev, DType::BF16, d)?
                .expect("flash applies on CUDA bf16");
            let got = rows.attend(&q, &k, &v, scale)?;
            let to_bhtd = |x: &Tensor, n: usize| -> CResult<Tensor> {
                let x = x.reshape((b, t, n, d))?.transpose(1, 2)?;
                crate::llama::repeat_kv(x.contiguous()?, heads / n)
            };
            let mask = crate::llama::left_padded_causal_mask(&lens, t, &Device::Cpu)?;
            let want = reference(
                &to_bhtd(&q, heads)?,
                &to_bhtd(&k, kv_heads)?,
                &to_bhtd(&v, kv_heads)?,
                scale,
                Some(&mask),
            )?;
            let got = got.reshape((b, t, heads, d))?.transpose(1, 2)?;
            // Only real tokens are compared: padding rows' outputs are never read.
            for (row, &len) in lens.iter().enumerate() {
                let real = |x: &Tensor| x.i(row)?.narrow(1, t - len, len);
                let err = max_abs_diff(&real(&got)?, &real(&want)?)?;
                assert!(err < 2e-2, "row {row}: max abs error {err}");
            }
            Ok(())
        }
    }
}
