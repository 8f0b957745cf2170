"""The fast paths compute the paper's models: the hand-written LayerNorm LSTM equals a plain
autograd LayerNorm LSTM, and every one-hot gather equals the dense one-hot product, in
outputs and gradients."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from textvae_core import MODELS, build_model, make_config
from textvae_core import lstm_ext
from textvae_core.blocks import MaskedHighwayConv
from textvae_core.lstm import LayerNormLSTM
from textvae_core.onehot import onehot_conv, project
from textvae_core.tokens import N_RESERVED, PAD

V = 54


def reference_layernorm_lstm(cell: LayerNormLSTM, x: torch.Tensor, state=None):
    """The textbook cell, step by step under autograd: LayerNorm over the 4H pre-activations."""
    B, T, _ = x.shape
    h = x.new_zeros(B, cell.hidden) if state is None else state[0][0]
    c = x.new_zeros(B, cell.hidden) if state is None else state[1][0]
    outs = []
    for t in range(T):
        a = cell.w_ih(x[:, t]) + cell.w_hh(h)
        i, f, g, o = F.layer_norm(
            a, (4 * cell.hidden,), cell.norm.weight, cell.norm.bias, 1e-5
        ).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs, 1), (h.unsqueeze(0), c.unsqueeze(0))


def _grads(module, inputs, loss):
    params = [p for p in module.parameters()] + [t for t in inputs if t.requires_grad]
    return torch.autograd.grad(loss, params)


@pytest.fixture(params=["compiled", "python-loop"])
def cell_path(request, monkeypatch):
    """Each LayerNorm-cell test runs on the compiled loop and on the Python loop."""
    if request.param == "python-loop":
        monkeypatch.setenv(lstm_ext.ENV, "0")
    else:
        monkeypatch.delenv(lstm_ext.ENV, raising=False)
        assert lstm_ext.ops() is not None, lstm_ext.status()["why_not"]
    return request.param


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("train", [True, False])
def test_layernorm_lstm_equals_reference_in_outputs_and_gradients(with_state, train, cell_path):
    torch.manual_seed(0)
    B, T, Fd, H = 3, 9, 5, 8
    cell = LayerNormLSTM(Fd + V, H).double().train(train)
    with torch.no_grad():  # a LayerNorm affine other than (1, 0), so its gradients are tested too
        cell.norm.weight.uniform_(0.5, 1.5)
        cell.norm.bias.uniform_(-0.3, 0.3)
    dense = torch.randn(B, T, Fd, dtype=torch.double, requires_grad=True)
    ids = torch.randint(N_RESERVED, V, (B, T))
    state = None
    if with_state:
        state = tuple(
            torch.randn(1, B, H, dtype=torch.double, requires_grad=True) for _ in range(2)
        )
    x = torch.cat([dense, F.one_hot(ids, V).double()], -1)
    w_out, w_h, w_c = (
        torch.randn(B, T, H, dtype=torch.double),
        torch.randn(B, H, dtype=torch.double),
        torch.randn(B, H, dtype=torch.double),
    )

    def loss_of(out, final):  # touches outputs and both final states
        return (out * w_out).sum() + (final[0][0] * w_h).sum() + (final[1][0] * w_c).sum()

    inputs = [dense] + (list(state) if state else [])
    out_ref, fin_ref = reference_layernorm_lstm(cell, x, state)
    out, fin = cell(dense, ids, state)
    torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fin[1], fin_ref[1], rtol=1e-10, atol=1e-12)
    g_ref = _grads(cell, inputs, loss_of(out_ref, fin_ref))
    g = _grads(cell, inputs, loss_of(out, fin))
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_compiled_cell_splits_rows_and_columns_between_threads_exactly(monkeypatch):
    """At 2 threads the compiled loops split the batch's rows (and dgamma's columns) between
    threads; a size where they do agrees with the Python loop in float64."""
    torch.manual_seed(6)
    B, T, H = 80, 6, 128  # rows per thread chunk >= 16384 / 4H = 32; 4H = 512 > 256 columns
    cell = LayerNormLSTM(5 + V, H).double()
    dense = torch.randn(B, T, 5, dtype=torch.double, requires_grad=True)
    ids = torch.randint(N_RESERVED, V, (B, T))
    w = torch.randn(B, T, H, dtype=torch.double)
    runs = {}
    before = torch.get_num_threads()
    for path in ("compiled", "python-loop"):
        monkeypatch.setenv(lstm_ext.ENV, "1" if path == "compiled" else "0")
        torch.set_num_threads(2)
        try:
            out, (h, c) = cell(dense, ids)
            runs[path] = [out, c, *_grads(cell, [dense], (out * w).sum() + c.sum())]
        finally:
            torch.set_num_threads(before)
    for a, b in zip(runs["compiled"], runs["python-loop"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_layernorm_lstm_passes_gradcheck(cell_path):
    torch.manual_seed(1)
    cell = LayerNormLSTM(4 + V, 3).double()
    dense = torch.randn(2, 5, 4, dtype=torch.double, requires_grad=True)
    ids = torch.randint(N_RESERVED, V, (2, 5))
    assert torch.autograd.gradcheck(lambda d: cell(d, ids)[0], (dense,))


@pytest.mark.parametrize("B, T, H", [(32, 12, 64), (5, 1, 7)])
def test_compiled_cell_agrees_with_the_python_loop_in_float32(B, T, H, monkeypatch):
    """float32 runs the compiled loop's own exponential (a polynomial, vectorised) and, on
    x86 with MKL, packed GEMMs; it agrees with ATen's float32 kernels to float rounding, at
    an odd batch and width and for a single step with a given state (sampling's case)."""
    torch.manual_seed(2)
    cell = LayerNormLSTM(6 + V, H)
    with torch.no_grad():
        cell.norm.weight.uniform_(0.5, 1.5)
        cell.norm.bias.uniform_(-0.3, 0.3)
    dense = torch.randn(B, T, 6, requires_grad=True)
    ids = torch.randint(N_RESERVED, V, (B, T))
    state = tuple(torch.randn(1, B, H) for _ in range(2))
    runs = {}
    for path in ("compiled", "python-loop"):
        monkeypatch.setenv(lstm_ext.ENV, "1" if path == "compiled" else "0")
        assert (lstm_ext.ops() is not None) == (path == "compiled")
        cell.zero_grad()
        dense.grad = None
        out, (h, c) = cell(dense, ids, state)
        (out.square().sum() + c.sum()).backward()
        runs[path] = [out, c, dense.grad] + [p.grad for p in cell.parameters()]
    for a, b in zip(runs["compiled"], runs["python-loop"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def reference_masked_highway(layer: MaskedHighwayConv, x: torch.Tensor) -> torch.Tensor:
    """The textbook layer, channel-first: a causal Conv1d(k=2) over x (left-padded by one),
    BatchNorm's place taken by a LayerNorm over channels, then the gated highway."""
    y = layer.conv(F.pad(x.transpose(1, 2), (1, 0)))  # (B, 2W, L)
    h, a = y.transpose(1, 2).chunk(2, -1)
    norm = layer.norm.norm
    r = F.relu(F.layer_norm(h, h.shape[-1:], norm.weight, norm.bias, norm.eps))
    g = torch.sigmoid(a)
    return g * r + (1 - g) * x


@pytest.mark.parametrize("threads", [1, 2])
def test_masked_highway_conv_equals_reference_in_outputs_and_gradients(threads, cell_path):
    """ByteNet's layer, on its fused compiled epilogue and on torch ops, equals a plain causal
    conv + LayerNorm + highway in float64, its output and every gradient, at 1 and 2 threads
    (the compiled backward sums its parameter gradients per thread)."""
    torch.manual_seed(3)
    B, L, W = 32, 100, 24  # 3200 rows: the compiled loops split them between 2 threads
    layer = MaskedHighwayConv(W).double()
    with torch.no_grad():
        layer.norm.norm.weight.uniform_(0.5, 1.5)
        layer.norm.norm.bias.uniform_(-0.3, 0.3)
    x = torch.randn(B, L, W, dtype=torch.double, requires_grad=True)
    weight = torch.randn(B, L, W, dtype=torch.double)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = layer(x)
        g = _grads(layer, [x], (out * weight).sum())
    finally:
        torch.set_num_threads(before)
    want = reference_masked_highway(layer, x)
    torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-12)
    for a, b in zip(g, _grads(layer, [x], (want * weight).sum())):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
    # causal: output t does not depend on inputs after t
    d = torch.autograd.grad(layer(x)[:, 4].sum(), x)[0]
    assert d[:, 5:].abs().max() == 0 and d[:, 3].abs().max() > 0


def test_masked_highway_conv_passes_gradcheck(cell_path):
    torch.manual_seed(4)
    layer = MaskedHighwayConv(6).double()
    x = torch.randn(2, 5, 6, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
    names = [name for name, _ in layer.named_parameters()]

    def of_parameters(*params):  # the layer's output as a function of its parameters
        return torch.func.functional_call(layer, dict(zip(names, params)), (x.detach(),))

    assert torch.autograd.gradcheck(of_parameters, tuple(layer.parameters()))


def test_masked_highway_conv_fused_agrees_with_torch_ops_in_float32(monkeypatch):
    """float32 runs the compiled epilogue's own exponential; it agrees with ATen's kernels to
    float rounding at the released width."""
    torch.manual_seed(5)
    layer = MaskedHighwayConv(256)
    x = torch.randn(8, 20, 256, requires_grad=True)
    runs = {}
    for path in ("compiled", "python-loop"):
        monkeypatch.setenv(lstm_ext.ENV, "1" if path == "compiled" else "0")
        assert (lstm_ext.ops() is not None) == (path == "compiled")
        layer.zero_grad()
        x.grad = None
        out = layer(x)
        out.square().sum().backward()
        runs[path] = [out, x.grad] + [p.grad for p in layer.parameters()]
    for a, b in zip(runs["compiled"], runs["python-loop"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_project_equals_dense_one_hot_linear():
    torch.manual_seed(2)
    lin = nn.Linear(6 + V, 10).double()
    dense = torch.randn(2, 7, 6, dtype=torch.double, requires_grad=True)
    ids = torch.randint(0, V, (2, 7))
    want = lin(torch.cat([dense, F.one_hot(ids, V).double()], -1))
    got = project(lin.weight, lin.bias, dense, ids)
    torch.testing.assert_close(got, want)
    for a, b in zip(
        torch.autograd.grad(got.square().sum(), [lin.weight, lin.bias, dense]),
        torch.autograd.grad(want.square().sum(), [lin.weight, lin.bias, dense]),
    ):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("length", [8, 13, 64])
def test_onehot_conv_equals_dense_conv_with_padding(length):
    torch.manual_seed(3)
    conv = nn.Conv1d(V, 12, 3, stride=2, padding=1).double()
    ids = torch.randint(0, V, (3, length))
    ids[:, -2:] = PAD  # PAD is a one-hot vector like any id; the conv's zero padding is not
    want = conv(F.one_hot(ids, V).double().transpose(1, 2))
    got = onehot_conv(conv, ids)
    torch.testing.assert_close(got, want)
    for a, b in zip(
        torch.autograd.grad(got.square().sum(), list(conv.parameters())),
        torch.autograd.grad(want.square().sum(), list(conv.parameters())),
    ):
        torch.testing.assert_close(a, b)


class _DenseOneHot:
    """The models computed the dense way: every gather replaced by the one-hot product."""

    def __init__(self, monkeypatch):
        import textvae_core.blocks as blocks
        import textvae_core.lstm as lstm

        def dense_project(weight, bias, dense, ids):
            n = 0 if dense is None else dense.shape[-1]
            parts = ([] if dense is None else [dense]) + [
                F.one_hot(ids, weight.shape[1] - n).to(weight.dtype)
            ]
            return F.linear(torch.cat(parts, -1), weight, bias)

        def dense_conv(conv, ids):
            return conv(F.one_hot(ids, conv.in_channels).to(conv.weight.dtype).transpose(1, 2))

        monkeypatch.setattr(lstm, "project", dense_project)
        monkeypatch.setattr(blocks, "project", dense_project)
        monkeypatch.setattr(blocks, "onehot_conv", dense_conv)


@pytest.mark.parametrize(
    "model,cell",
    [(m, "fused") for m in MODELS] + [("hybrid-lstm", "layernorm"), ("lstm", "layernorm")],
)
def test_models_equal_their_dense_one_hot_computation(model, cell, monkeypatch):
    cfg = make_config(model, "tiny", {"length": 20, "lstm_cell": cell, "dropout": 0.3})
    torch.manual_seed(4)
    net = build_model(cfg, V).double().train()
    x = torch.randint(N_RESERVED, V, (4, 20))

    def run():
        out = net(x, torch.Generator().manual_seed(5))
        loss = out.logits.square().mean() + out.mu.square().mean() + out.logvar.exp().mean()
        if out.aux_logits is not None:
            loss = loss + out.aux_logits.square().mean()
        return out, torch.autograd.grad(loss, list(net.parameters()), allow_unused=True)

    fast, fast_grads = run()
    with monkeypatch.context() as m:
        _DenseOneHot(m)
        dense, dense_grads = run()
    torch.testing.assert_close(fast.logits, dense.logits)
    torch.testing.assert_close(fast.mu, dense.mu)
    for (name, _), a, b in zip(net.named_parameters(), fast_grads, dense_grads):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, msg=name)


@pytest.mark.parametrize(
    "env, why",
    [
        ({lstm_ext.ENV: "0"}, "VAESTUDY_LSTM_EXT=0"),
        # no compiler: a fresh extension cache and a C++ compiler that does not exist
        ({"CXX": "/nonexistent/c++", "TORCH_EXTENSIONS_DIR": "{tmp}"}, "no C++ compiler"),
        # a compiler that fails: the build's error, cut to one line
        ({"CXX": "false", "TORCH_EXTENSIONS_DIR": "{tmp}"}, "the build failed: "),
    ],
    ids=["switched-off", "no-compiler", "failed-build"],
)
def test_without_the_compiled_cell_the_python_loop_runs_and_one_line_says_why(env, why, tmp_path):
    """`python -m textvae_core.lstm_ext` reports the path the LayerNorm cell takes: with the
    switch off, or where the build fails, the Python loop, and the log says why in one line;
    a LayerNorm LSTM still trains there."""
    import subprocess
    import sys

    from conftest import subprocess_env

    env = {k: v.format(tmp=tmp_path) for k, v in env.items()}
    code = (
        "import logging, torch; logging.basicConfig(format='%(message)s')\n"
        "from textvae_core.lstm import LayerNormLSTM\n"
        "cell = LayerNormLSTM(8, 4); out, _ = cell(torch.randn(2, 3, 8))\n"
        "out.sum().backward(); print('trained', cell.w_hh.weight.grad.abs().sum() > 0)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0 and res.stdout.strip() == "trained tensor(True)", res.stderr[-2000:]
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("compiled CPU kernels unavailable ("), lines
    assert why in lines[0] and lines[0].endswith("ByteNet's highway its torch ops"), lines


def test_a_compiler_without_openmp_builds_single_threaded_loops_once(tmp_path):
    """Where the OpenMP build fails (a compiler without OpenMP), the kernels are built without
    it, still compiled, with one log line that says so and how to undo it; a later process
    reads the marker and does not try OpenMP again."""
    import subprocess
    import sys

    from conftest import subprocess_env

    if not lstm_ext._openmp_wanted():
        pytest.skip("torch here does not run its threads on OpenMP: nothing to fall back from")
    tried = tmp_path / "openmp-attempts"
    said = "c++: error: unsupported option '-fopenmp'"  # as clang without libomp says it
    cxx = tmp_path / "c++-without-openmp"
    cxx.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do\n'
        f'  if [ "$a" = -fopenmp ]; then echo x >> {tried}; echo "{said}" >&2; exit 1; fi\n'
        "done\n"
        'exec c++ "$@"\n'
    )
    cxx.chmod(0o755)
    env = subprocess_env(CXX=str(cxx), TORCH_EXTENSIONS_DIR=str(tmp_path / "cache"))
    code = (
        "import json, logging; logging.basicConfig(format='%(message)s')\n"
        "from textvae_core import lstm_ext; print(json.dumps(lstm_ext.status()))\n"
    )
    runs = []
    for _ in range(2):
        res = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
        )
        assert res.returncode == 0, res.stderr[-2000:]
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        runs.append((json.loads(res.stdout), lines, tried.read_text().count("x")))
    for status, lines, _ in runs:
        assert status["compiled"] and status["openmp"] is False, status
        assert len(lines) == 1 and lines[0].startswith("compiled CPU kernels built without "), lines
        assert said in lines[0] and "run in one thread" in lines[0], lines
    assert runs[0][2] >= 1 and runs[1][2] == runs[0][2]  # the second process did not try again


def test_every_installed_copy_of_the_same_source_shares_one_build(tmp_path, monkeypatch):
    """The build sees the source at a path named by its content, in the extension cache: a
    checkout, a virtualenv's copy and a Ray job's working directory with the same source share
    one build (torch's cache is keyed by name and ninja rebuilds when the path changes); a
    changed source gets a build of its own."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "cache"))
    text = lstm_ext.SOURCE.read_bytes()
    copies = []
    for where in ("checkout", "site-packages", "working_dir"):
        copy = tmp_path / where / "lstm_ext.cpp"
        copy.parent.mkdir()
        copy.write_bytes(text)
        monkeypatch.setattr(lstm_ext, "SOURCE", copy)
        copies.append(lstm_ext._cached_source())
    assert len(set(copies)) == 1 and copies[0].read_bytes() == text, copies
    assert copies[0].parent == tmp_path / "cache" / "vaestudy_src"
    changed = tmp_path / "changed" / "lstm_ext.cpp"
    changed.parent.mkdir()
    changed.write_bytes(text + b"\n// changed\n")
    monkeypatch.setattr(lstm_ext, "SOURCE", changed)
    assert lstm_ext._cached_source() not in copies
