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
// Buffers are time-major, (T, B, .), contiguous. Registered as torch.ops.vaestudy_lnlstm.*.

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

}  // namespace

TORCH_LIBRARY(vaestudy_lnlstm, m) {
  m.def(
      "forward(Tensor gx, Tensor h0, Tensor c0, Tensor w_hh, Tensor gamma, Tensor beta, float eps)"
      " -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "backward(Tensor? d_out, Tensor? d_c_last, Tensor xhat, Tensor acts, Tensor hs, Tensor cs,"
      " Tensor tanh_c, Tensor rstd, Tensor w_hh, Tensor gamma)"
      " -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(vaestudy_lnlstm, CPU, m) {
  m.impl("forward", &forward);
  m.impl("backward", &backward);
}
