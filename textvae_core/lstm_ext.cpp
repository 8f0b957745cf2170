// The paper's LayerNorm LSTM recurrence, forward and backward over all time steps, in C++.
//
// Per step: a = gx_t + h W_hh^T (one GEMM); (i, f, g, o) = LayerNorm(a) * gamma + beta over the 4H
// pre-activations; c = sig(f) c + sig(i) tanh(g); h = sig(o) tanh(c). Gate order as torch's LSTM.
// The GEMM is ATen's (the BLAS torch was built with); everything else of a step is one fused loop
// per batch row, the rows split across ATen's threads. The backward's loop is likewise one fused
// loop per row and one GEMM per step; dW_hh is one GEMM over all steps at the end.
//
// float runs its exponentials through `exp_poly`, a Cephes-style polynomial (about 1 ulp) that the
// compiler vectorises; double (the tests' reference precision) uses std::exp.
//
// Buffers are time-major, (T, B, .), contiguous. Registered as torch.ops.vaestudy_lnlstm.*, with
// ByteNet's highway epilogue (highway_forward / highway_backward, below).
//
// Built with -fopenmp, so at::parallel_for splits rows between torch's threads (without it the
// header's parallel_for runs every range in the calling thread).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <tuple>

namespace {

__attribute__((always_inline)) inline float exp_poly(float x) {
  // exp(x) = 2^n exp(r), r = x - n ln2 in [-ln2/2, ln2/2]; exp(r) by its degree-6 Taylor-like
  // minimax polynomial (Cephes expf). Inputs are clamped where float exp over/underflows.
  x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to the nearest integer
  float n = (x * 1.44269504088896341f + shifter) - shifter;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

inline double exp_poly(double x) { return std::exp(x); }

template <typename T>
__attribute__((always_inline)) inline T sigmoid(T x) {
  return T(1) / (T(1) + exp_poly(-x));
}

template <typename T>
__attribute__((always_inline)) inline T tanh_(T x) {
  return T(1) - T(2) / (exp_poly(T(2) * x) + T(1));
}

// One step of the forward for rows [b0, b1): a = gx_t + h W_hh^T (hw), normalised into x-hat;
// writes x-hat, the activations, c, tanh(c), h and 1/std.
template <typename T>
void forward_rows(int64_t b0, int64_t b1, int64_t H, const T* gx, const T* hw, T* xhat, T* acts,
                  const T* c_prev, T* c, T* tanh_c, T* h, T* rstd, const T* gamma, const T* beta,
                  double eps) {
  const int64_t H4 = 4 * H;
  for (int64_t b = b0; b < b1; ++b) {
    const T* gxb = gx + b * H4;
    const T* hwb = hw + b * H4;
    T* a = xhat + b * H4;
    T* act = acts + b * H4;
    T mean = 0;
#pragma omp simd reduction(+ : mean)
    for (int64_t j = 0; j < H4; ++j) {
      a[j] = gxb[j] + hwb[j];
      mean += a[j];
    }
    mean /= T(H4);
    T var = 0;
#pragma omp simd reduction(+ : var)
    for (int64_t j = 0; j < H4; ++j) {
      T d = a[j] - mean;
      var += d * d;
    }
    var /= T(H4);
    const T rs = T(1) / std::sqrt(var + T(eps));
    rstd[b] = rs;
    // x-hat, then the gate: sigmoid for i, f (columns 0..2H) and o (3H..4H), tanh for g
#pragma omp simd
    for (int64_t j = 0; j < 2 * H; ++j) {
      T xh = (a[j] - mean) * rs;
      a[j] = xh;
      act[j] = sigmoid(xh * gamma[j] + beta[j]);
    }
#pragma omp simd
    for (int64_t j = 2 * H; j < 3 * H; ++j) {
      T xh = (a[j] - mean) * rs;
      a[j] = xh;
      act[j] = tanh_(xh * gamma[j] + beta[j]);
    }
#pragma omp simd
    for (int64_t j = 3 * H; j < H4; ++j) {
      T xh = (a[j] - mean) * rs;
      a[j] = xh;
      act[j] = sigmoid(xh * gamma[j] + beta[j]);
    }
    const T* ig = act;
    const T* fg = act + H;
    const T* gg = act + 2 * H;
    const T* og = act + 3 * H;
    const T* cp = c_prev + b * H;
    T* cb = c + b * H;
    T* tb = tanh_c + b * H;
    T* hb = h + b * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      T cn = fg[j] * cp[j] + ig[j] * gg[j];
      T tn = tanh_(cn);
      cb[j] = cn;
      tb[j] = tn;
      hb[j] = og[j] * tn;
    }
  }
}

// One step of the backward for rows [b0, b1): adds this step's output gradient to the carried
// dh, then writes dL/dz (after the LayerNorm's affine) and dL/da (before the LayerNorm), and
// leaves dc multiplied by f, the carry into step t-1.
template <typename T>
void backward_rows(int64_t b0, int64_t b1, int64_t H, const T* d_out, const T* xhat,
                   const T* acts, const T* c_prev, const T* tanh_c, const T* rstd, const T* gamma,
                   T* dh, T* dc, T* dz, T* da) {
  const int64_t H4 = 4 * H;
  for (int64_t b = b0; b < b1; ++b) {
    const T* act = acts + b * H4;
    const T* ig = act;
    const T* fg = act + H;
    const T* gg = act + 2 * H;
    const T* og = act + 3 * H;
    const T* cp = c_prev + b * H;
    const T* tc = tanh_c + b * H;
    const T* dob = d_out == nullptr ? nullptr : d_out + b * H;
    T* dhb = dh + b * H;
    T* dcb = dc + b * H;
    T* dzb = dz + b * H4;
    T* dab = da + b * H4;
    const T* xh = xhat + b * H4;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      T d_h = dhb[j] + (dob == nullptr ? T(0) : dob[j]);
      T d_c = dcb[j] + d_h * og[j] * (T(1) - tc[j] * tc[j]);
      dzb[j] = d_c * gg[j] * ig[j] * (T(1) - ig[j]);
      dzb[H + j] = d_c * cp[j] * fg[j] * (T(1) - fg[j]);
      dzb[2 * H + j] = d_c * ig[j] * (T(1) - gg[j] * gg[j]);
      dzb[3 * H + j] = d_h * tc[j] * og[j] * (T(1) - og[j]);
      dcb[j] = d_c * fg[j];
    }
    // LayerNorm backward: da = rstd (dxh - mean(dxh) - xh mean(dxh xh)), dxh = dz gamma
    T s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
    for (int64_t j = 0; j < H4; ++j) {
      T g = dzb[j] * gamma[j];
      s1 += g;
      s2 += g * xh[j];
    }
    s1 /= T(H4);
    s2 /= T(H4);
    const T rs = rstd[b];
#pragma omp simd
    for (int64_t j = 0; j < H4; ++j) dab[j] = rs * (dzb[j] * gamma[j] - s1 - xh[j] * s2);
  }
}

// dgamma += sum_b dz x-hat, dbeta += sum_b dz for one step, columns [j0, j1).
template <typename T>
void affine_grads(int64_t j0, int64_t j1, int64_t B, int64_t H4, const T* dz, const T* xhat,
                  T* d_gamma, T* d_beta) {
  for (int64_t b = 0; b < B; ++b) {
    const T* dzb = dz + b * H4;
    const T* xh = xhat + b * H4;
#pragma omp simd
    for (int64_t j = j0; j < j1; ++j) {
      d_gamma[j] += dzb[j] * xh[j];
      d_beta[j] += dzb[j];
    }
  }
}

int64_t grain_rows(int64_t H) {
  // Split rows across threads only in chunks big enough to pay for the hand-off (~16k elements).
  int64_t rows = 16384 / (4 * H);
  return rows < 1 ? 1 : rows;
}

// x W^T for a (B, K) x and a W (N, K) used at every step. With MKL (torch's x86 builds), W is
// packed once for the whole sequence and each step runs MKL's packed GEMM, which skips
// re-packing the weights every step; elsewhere a plain matmul.
class StepGemm {
 public:
  StepGemm(const at::Tensor& w, int64_t batch) : w_(w.contiguous()), batch_(batch) {
    static const auto reorder = c10::Dispatcher::singleton().findSchema(
        {"mkl::_mkl_reorder_linear_weight", ""});
    static const auto linear = c10::Dispatcher::singleton().findSchema({"mkl::_mkl_linear", ""});
    if (reorder.has_value() && linear.has_value() && w_.scalar_type() == at::kFloat) {
      packed_ = reorder->typed<at::Tensor(const at::Tensor&, int64_t)>().call(w_, batch);
      linear_ = *linear;
    }
  }
  at::Tensor operator()(const at::Tensor& x_in) const {
    const at::Tensor x = x_in.contiguous();
    if (packed_.defined()) {
      return linear_->typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                        const std::optional<at::Tensor>&, int64_t)>()
          .call(x, packed_, w_, std::nullopt, batch_);
    }
    return at::mm(x, w_.t());
  }

 private:
  at::Tensor w_, packed_;
  int64_t batch_;
  std::optional<c10::OperatorHandle> linear_;
};

// gx (T, B, 4H). Returns hs (T+1, B, H) = h_{-1}..h_{T-1}, cs likewise, x-hat (T, B, 4H), the
// activations (T, B, 4H), tanh(c) (T, B, H) and 1/std (T, B).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> forward(
    const at::Tensor& gx_in, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& w_hh,
    const at::Tensor& gamma, const at::Tensor& beta, double eps) {
  TORCH_CHECK(gx_in.dim() == 3, "gx must be a (T, B, 4H) tensor");
  const at::Tensor gx = gx_in.contiguous();
  const int64_t T = gx.size(0), B = gx.size(1), H4 = gx.size(2), H = H4 / 4;
  at::Tensor xhat = at::empty({T, B, H4}, gx.options());
  at::Tensor acts = at::empty({T, B, H4}, gx.options());
  at::Tensor hs = at::empty({T + 1, B, H}, gx.options());
  at::Tensor cs = at::empty({T + 1, B, H}, gx.options());
  at::Tensor tanh_c = at::empty({T, B, H}, gx.options());
  at::Tensor rstd = at::empty({T, B}, gx.options());
  hs[0].copy_(h0);
  cs[0].copy_(c0);
  const StepGemm recur(w_hh, B);
  const at::Tensor g = gamma.contiguous(), bt = beta.contiguous();
  AT_DISPATCH_FLOATING_TYPES(gx.scalar_type(), "lnlstm_forward", [&] {
    const int64_t grain = grain_rows(H);
    const int64_t BH = B * H, BH4 = B * H4;
    const scalar_t* gxp = gx.data_ptr<scalar_t>();
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* bp = bt.data_ptr<scalar_t>();
    scalar_t* xp = xhat.data_ptr<scalar_t>();
    scalar_t* ap = acts.data_ptr<scalar_t>();
    scalar_t* hp = hs.data_ptr<scalar_t>();
    scalar_t* cp = cs.data_ptr<scalar_t>();
    scalar_t* tp = tanh_c.data_ptr<scalar_t>();
    scalar_t* rp = rstd.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      const at::Tensor hw = recur(hs[t]);  // h_{t-1} W_hh^T, (B, 4H)
      const scalar_t* hwp = hw.data_ptr<scalar_t>();
      at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
        forward_rows<scalar_t>(b0, b1, H, gxp + t * BH4, hwp, xp + t * BH4, ap + t * BH4,
                               cp + t * BH, cp + (t + 1) * BH, tp + t * BH, hp + (t + 1) * BH,
                               rp + t * B, gp, bp, eps);
      });
    }
  });
  return {hs, cs, xhat, acts, tanh_c, rstd};
}

// d_out (T, B, H) or undefined, d_c_last (B, H) or undefined. Returns dL/dgx (T, B, 4H),
// dL/dh0, dL/dc0, dL/dW_hh, dL/dgamma, dL/dbeta.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const std::optional<at::Tensor>& d_out_opt, const std::optional<at::Tensor>& d_c_last_opt,
    const at::Tensor& xhat, const at::Tensor& acts, const at::Tensor& hs, const at::Tensor& cs,
    const at::Tensor& tanh_c, const at::Tensor& rstd, const at::Tensor& w_hh,
    const at::Tensor& gamma) {
  const int64_t T = acts.size(0), B = acts.size(1), H4 = acts.size(2), H = H4 / 4;
  at::Tensor dz = at::empty({B, H4}, acts.options());  // scratch, one step
  at::Tensor da = at::empty({T, B, H4}, acts.options());
  at::Tensor dh = at::zeros({B, H}, acts.options());
  at::Tensor dc = d_c_last_opt.has_value() && d_c_last_opt->defined()
                      ? d_c_last_opt->contiguous().clone()
                      : at::zeros({B, H}, acts.options());
  at::Tensor d_gamma = at::zeros({H4}, acts.options());
  at::Tensor d_beta = at::zeros({H4}, acts.options());
  at::Tensor d_out;
  if (d_out_opt.has_value() && d_out_opt->defined()) d_out = d_out_opt->contiguous();
  const StepGemm back(w_hh.t(), B);  // da W_hh: the weights as (H, 4H)
  const at::Tensor g = gamma.contiguous();
  AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "lnlstm_backward", [&] {
    const int64_t grain = grain_rows(H);
    const int64_t BH = B * H, BH4 = B * H4;
    scalar_t* dcp = dc.data_ptr<scalar_t>();
    scalar_t* dzp = dz.data_ptr<scalar_t>();
    scalar_t* dgp = d_gamma.data_ptr<scalar_t>();
    scalar_t* dbp = d_beta.data_ptr<scalar_t>();
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* dop = d_out.defined() ? d_out.data_ptr<scalar_t>() : nullptr;
    const scalar_t* xp = xhat.data_ptr<scalar_t>();
    const scalar_t* ap = acts.data_ptr<scalar_t>();
    const scalar_t* cp = cs.data_ptr<scalar_t>();
    const scalar_t* tp = tanh_c.data_ptr<scalar_t>();
    const scalar_t* rp = rstd.data_ptr<scalar_t>();
    scalar_t* dap = da.data_ptr<scalar_t>();
    for (int64_t t = T - 1; t >= 0; --t) {
      scalar_t* dhp = dh.data_ptr<scalar_t>();
      at::parallel_for(0, B, grain, [&](int64_t b0, int64_t b1) {
        backward_rows<scalar_t>(b0, b1, H, dop ? dop + t * BH : nullptr, xp + t * BH4,
                                ap + t * BH4, cp + t * BH, tp + t * BH, rp + t * B, gp, dhp, dcp,
                                dzp, dap + t * BH4);
      });
      at::parallel_for(0, H4, 256, [&](int64_t j0, int64_t j1) {
        affine_grads<scalar_t>(j0, j1, B, H4, dzp, xp + t * BH4, dgp, dbp);
      });
      dh = back(da[t]);
    }
  });
  // dW_hh = sum_t da_t^T h_{t-1}: one GEMM over all steps.
  at::Tensor d_w_hh = da.view({T * B, H4}).t().mm(hs.narrow(0, 0, T).reshape({T * B, H}));
  return {da, dh, dc, d_w_hh, d_gamma, d_beta};
}

// ByteNet's highway epilogue (blocks.MaskedHighwayConv): from the masked conv's product y (N, 2W),
// its bias, and its input x (N, W), with [h | a] = y + bias: out = x + sigmoid(a) (relu(LayerNorm(h)
// gamma + beta) - x), one fused loop per row (the bias added here, not broadcast into the GEMM's
// output first). Returns out and each row's mean and 1/std of h.
template <typename T>
void highway_forward_rows(int64_t i0, int64_t i1, int64_t W, const T* y, const T* x,
                          const T* bias, const T* gamma, const T* beta, double eps, T* out,
                          T* mean, T* rstd) {
  const T* bh = bias;
  const T* ba = bias + W;
  for (int64_t i = i0; i < i1; ++i) {
    const T* h = y + i * 2 * W;
    const T* a = h + W;
    const T* xi = x + i * W;
    T* o = out + i * W;
    T m = 0;
#pragma omp simd reduction(+ : m)
    for (int64_t j = 0; j < W; ++j) m += h[j] + bh[j];
    m /= T(W);
    T var = 0;
#pragma omp simd reduction(+ : var)
    for (int64_t j = 0; j < W; ++j) var += (h[j] + bh[j] - m) * (h[j] + bh[j] - m);
    const T rs = T(1) / std::sqrt(var / T(W) + T(eps));
    mean[i] = m;
    rstd[i] = rs;
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) {
      T n = (h[j] + bh[j] - m) * rs * gamma[j] + beta[j];
      T r = n > T(0) ? n : T(0);
      T g = sigmoid(a[j] + ba[j]);
      o[j] = xi[j] + g * (r - xi[j]);
    }
  }
}

// The epilogue's backward for rows [i0, i1): dy = [dL/dh | dL/da] (N, 2W), dL/dx through the
// highway's carry (N, W), and this thread's sums for dbias, dgamma, dbeta (acc, 4W).
template <typename T>
void highway_backward_rows(int64_t i0, int64_t i1, int64_t W, const T* d_out, const T* y,
                           const T* x, const T* mean, const T* rstd, const T* bias,
                           const T* gamma, const T* beta, T* dy, T* dx, T* acc) {
  const T* bh = bias;
  const T* ba = bias + W;
  T* d_bias = acc;
  T* d_gamma = acc + 2 * W;
  T* d_beta = acc + 3 * W;
  for (int64_t i = i0; i < i1; ++i) {
    const T* h = y + i * 2 * W;
    const T* a = h + W;
    const T* xi = x + i * W;
    const T* go = d_out + i * W;
    T* dh = dy + i * 2 * W;
    T* da = dh + W;
    T* dxi = dx + i * W;
    const T m = mean[i], rs = rstd[i];
    T s1 = 0, s2 = 0;
    // dh holds dL/d(x-hat) until the LayerNorm's backward below
#pragma omp simd reduction(+ : s1, s2)
    for (int64_t j = 0; j < W; ++j) {
      T xh = (h[j] + bh[j] - m) * rs;
      T n = xh * gamma[j] + beta[j];
      T r = n > T(0) ? n : T(0);
      T g = sigmoid(a[j] + ba[j]);
      T d_a = go[j] * (r - xi[j]) * g * (T(1) - g);
      dxi[j] = go[j] * (T(1) - g);
      da[j] = d_a;
      d_bias[W + j] += d_a;
      T dn = n > T(0) ? go[j] * g : T(0);
      d_gamma[j] += dn * xh;
      d_beta[j] += dn;
      T dxh = dn * gamma[j];
      dh[j] = dxh;
      s1 += dxh;
      s2 += dxh * xh;
    }
    s1 /= T(W);
    s2 /= T(W);
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) {
      T d_h = rs * (dh[j] - s1 - (h[j] + bh[j] - m) * rs * s2);
      dh[j] = d_h;
      d_bias[j] += d_h;
    }
  }
}

int64_t grain_rows_of(int64_t width) {
  int64_t rows = 16384 / width;
  return rows < 1 ? 1 : rows;
}

// y (N, 2W), x (N, W), bias (2W) -> out (N, W), mean (N), rstd (N).
std::tuple<at::Tensor, at::Tensor, at::Tensor> highway_forward(
    const at::Tensor& y_in, const at::Tensor& x_in, const at::Tensor& bias,
    const at::Tensor& gamma, const at::Tensor& beta, double eps) {
  TORCH_CHECK(y_in.dim() == 2 && x_in.dim() == 2 && y_in.size(1) == 2 * x_in.size(1) &&
                  y_in.size(0) == x_in.size(0),
              "highway_forward takes y (N, 2W) and x (N, W)");
  const at::Tensor y = y_in.contiguous(), x = x_in.contiguous();
  const at::Tensor g = gamma.contiguous(), b = beta.contiguous(), bi = bias.contiguous();
  const int64_t N = x.size(0), W = x.size(1);
  at::Tensor out = at::empty({N, W}, x.options());
  at::Tensor mean = at::empty({N}, x.options());
  at::Tensor rstd = at::empty({N}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "highway_forward", [&] {
    const scalar_t* yp = y.data_ptr<scalar_t>();
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* bp = b.data_ptr<scalar_t>();
    const scalar_t* bip = bi.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    scalar_t* mp = mean.data_ptr<scalar_t>();
    scalar_t* rp = rstd.data_ptr<scalar_t>();
    at::parallel_for(0, N, grain_rows_of(3 * W), [&](int64_t i0, int64_t i1) {
      highway_forward_rows<scalar_t>(i0, i1, W, yp, xp, bip, gp, bp, eps, op, mp, rp);
    });
  });
  return {out, mean, rstd};
}

// d_out (N, W) -> dy (N, 2W), dx (N, W; the carry's part only), dbias (2W), dgamma (W),
// dbeta (W).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> highway_backward(
    const at::Tensor& d_out_in, const at::Tensor& y_in, const at::Tensor& x_in,
    const at::Tensor& mean, const at::Tensor& rstd, const at::Tensor& bias,
    const at::Tensor& gamma, const at::Tensor& beta) {
  const at::Tensor d_out = d_out_in.contiguous(), y = y_in.contiguous(), x = x_in.contiguous();
  const at::Tensor g = gamma.contiguous(), b = beta.contiguous(), bi = bias.contiguous();
  const int64_t N = x.size(0), W = x.size(1);
  at::Tensor dy = at::empty({N, 2 * W}, x.options());
  at::Tensor dx = at::empty({N, W}, x.options());
  // one row of (dbias, dgamma, dbeta) sums per thread, added up at the end: no sharing
  at::Tensor acc = at::zeros({at::get_num_threads(), 4 * W}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "highway_backward", [&] {
    const scalar_t* dop = d_out.data_ptr<scalar_t>();
    const scalar_t* yp = y.data_ptr<scalar_t>();
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* mp = mean.data_ptr<scalar_t>();
    const scalar_t* rp = rstd.data_ptr<scalar_t>();
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* bp = b.data_ptr<scalar_t>();
    const scalar_t* bip = bi.data_ptr<scalar_t>();
    scalar_t* dyp = dy.data_ptr<scalar_t>();
    scalar_t* dxp = dx.data_ptr<scalar_t>();
    scalar_t* ap = acc.data_ptr<scalar_t>();
    at::parallel_for(0, N, grain_rows_of(3 * W), [&](int64_t i0, int64_t i1) {
      highway_backward_rows<scalar_t>(i0, i1, W, dop, yp, xp, mp, rp, bip, gp, bp, dyp, dxp,
                                      ap + at::get_thread_num() * 4 * W);
    });
  });
  at::Tensor sums = acc.sum(0);
  return {dy, dx, sums.narrow(0, 0, 2 * W), sums.narrow(0, 2 * W, W), sums.narrow(0, 3 * W, W)};
}

}  // namespace

TORCH_LIBRARY(vaestudy_lnlstm, m) {
  m.def(
      "forward(Tensor gx, Tensor h0, Tensor c0, Tensor w_hh, Tensor gamma, Tensor beta, float eps)"
      " -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "backward(Tensor? d_out, Tensor? d_c_last, Tensor xhat, Tensor acts, Tensor hs, Tensor cs,"
      " Tensor tanh_c, Tensor rstd, Tensor w_hh, Tensor gamma)"
      " -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("highway_forward(Tensor y, Tensor x, Tensor bias, Tensor gamma, Tensor beta, float eps)"
        " -> (Tensor, Tensor, Tensor)");
  m.def(
      "highway_backward(Tensor d_out, Tensor y, Tensor x, Tensor mean, Tensor rstd, Tensor bias,"
      " Tensor gamma, Tensor beta) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(vaestudy_lnlstm, CPU, m) {
  m.impl("forward", &forward);
  m.impl("backward", &backward);
  m.impl("highway_forward", &highway_forward);
  m.impl("highway_backward", &highway_backward);
}
