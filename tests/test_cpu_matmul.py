"""The few-row CPU product (specgen/kernels/narrow.py) computes what nn.Linear computes, and leaves training alone."""
import pytest
import torch
from torch import nn

from specgen import CachedLM, config, kernels
from specgen.kernels import build, narrow
from specgen.loading import load_causal_lm
from tiny import tiny_model


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (2, 3), (3, 7, 2), (1, 200)])
def test_narrow_linear_matches_linear(bias, shape):
    torch.manual_seed(0)
    ref = nn.Linear(24, 40, bias=bias)
    fast = nn.Linear(24, 40, bias=bias)
    fast.load_state_dict(ref.state_dict())
    kernels.narrow_matmuls(fast)
    assert type(fast) is kernels.NarrowLinear
    x = torch.randn(*shape, 24)
    with torch.inference_mode():
        y = fast(x)
        assert y.shape == (*shape, 40) and y.is_contiguous()
        torch.testing.assert_close(y, ref(x), rtol=1e-5, atol=1e-5)
    assert fast.state_dict().keys() == ref.state_dict().keys()


@pytest.mark.parametrize("x_dtype", [torch.float32, torch.float16])
def test_fp16_weights_take_the_kernel_and_compute_in_fp32(x_dtype, monkeypatch):
    """An fp16 `NarrowLinear` (drafting copies of heads on a CPU) computes by the kernel's fp16-weight product:
    what fp32 weights holding the same values give, up to fp32 rounding, in the input's dtype, without calling
    PyTorch's fp16 product; more rows than the kernel takes go to F.linear."""
    torch.manual_seed(0)
    half = kernels.narrow_matmuls(nn.Linear(40, 33).half())
    assert type(half) is kernels.NarrowLinear
    wide = nn.Linear(40, 33)
    wide.load_state_dict({k: v.float() for k, v in half.state_dict().items()})
    calls = []
    real = torch.nn.functional.linear
    monkeypatch.setattr(narrow.F, "linear", lambda *a: calls.append(a[0].shape) or real(*a))
    x = torch.randn(2, 5, 40).to(x_dtype)
    with torch.inference_mode():
        y = half(x)
        assert y.dtype == x_dtype and calls == []
        want = wide(x.float())
        torch.testing.assert_close(y.float(), want, **({} if x_dtype == torch.float32 else dict(rtol=1e-3, atol=1e-2)))
        half(torch.randn(1, kernels.KERNEL_ROWS + 1, 40).to(x_dtype))
    assert len(calls) == 2  # wide's own product, then the rows past the kernel's


def test_few_rows_take_the_kernel_or_the_narrow_path(monkeypatch):
    """In inference, 1-24 rows go through specgen's kernel, 25-64 through W @ x.T, more rows and gradients through
    F.linear; without the kernel, one row goes through F.linear too."""
    assert build.kernel() is not None, "the kernel should build here (gcc is installed by scripts/setup.sh)"
    calls = []
    real = torch.nn.functional.linear
    monkeypatch.setattr(narrow.F, "linear", lambda *a: calls.append(a[0].shape) or real(*a))
    lin = kernels.narrow_matmuls(nn.Linear(8, 4))
    with torch.inference_mode():
        for rows in (1, 5, 24, 25, 64):
            lin(torch.randn(1, rows, 8))
        assert calls == []
        lin(torch.randn(1, 65, 8))
        assert len(calls) == 1
        monkeypatch.setattr(config, "CPU_KERNEL", False)
        lin(torch.randn(1, 1, 8))
        lin(torch.randn(1, 5, 8))
        assert len(calls) == 2
    out = lin(torch.randn(3, 8))  # gradients enabled: the plain product, so training is unchanged
    out.sum().backward()
    assert len(calls) == 3 and lin.weight.grad is not None


@pytest.mark.parametrize("features", [8, 24, 389])
def test_kernel_rows_do_not_depend_on_their_neighbours(features):
    """Each output row is the same bit for bit whether it is computed alone or among 1-16 rows (so a verification
    reproduces a decode step's products), and matches F.linear up to rounding; with and without a bias, and with
    a feature count that is not a multiple of the kernel's 8 lanes."""
    torch.manual_seed(0)
    w, b = torch.randn(37, features), torch.randn(37)
    x = torch.randn(16, features)
    with torch.inference_mode():
        for bias in (None, b):
            together = kernels.linear(x, w, bias)
            torch.testing.assert_close(together, torch.nn.functional.linear(x, w, bias), rtol=1e-5, atol=1e-4)
            for rows in (1, 2, 3, 5, 8, 11):
                for start in (0, 16 - rows):
                    assert torch.equal(kernels.linear(x[start : start + rows], w, bias), together[start : start + rows])


def test_kernel_that_cannot_build_warns_and_falls_back(monkeypatch, tmp_path):
    """No compiler: one warning naming the cause and the switch, then PyTorch's products, same results."""
    monkeypatch.setattr(build, "_LIB", [])
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.warns(UserWarning, match="kernel is unavailable.*SPECGEN_CPU_KERNEL=0"):
        assert build.kernel() is None
    x, w = torch.randn(3, 24), torch.randn(40, 24)
    with torch.inference_mode():
        torch.testing.assert_close(kernels.linear(x, w), x @ w.t())
    assert build.kernel() is None  # decided once per process: no second attempt, no second warning


def test_kernel_is_built_into_the_cache_once(monkeypatch, tmp_path):
    """A fresh cache gets one finished library file (built aside and moved in), which a later process reuses."""
    monkeypatch.setattr(build, "_LIB", [])
    monkeypatch.setenv("SPECGEN_CACHE", str(tmp_path))
    assert build.kernel() is not None
    assert [p.suffix for p in tmp_path.iterdir()] == [".so"]
    monkeypatch.setattr(build, "_LIB", [])
    assert build.kernel() is not None and len(list(tmp_path.iterdir())) == 1


def test_narrow_products_are_switched_on_only_when_asked(tmp_path):
    """CachedLM leaves the caller's model as it is; loading with narrow=True switches the plain CPU linears, and
    `narrow_matmuls` leaves subclasses of nn.Linear alone."""
    class Custom(nn.Linear):
        pass

    model = tiny_model("llama", vocab=50)
    CachedLM(model)
    assert kernels.NarrowLinear not in {type(m) for m in model.modules()}
    model.save_pretrained(tmp_path)
    loaded = load_causal_lm(str(tmp_path), "cpu", narrow=True)
    assert kernels.NarrowLinear in {type(m) for m in loaded.modules()}
    assert kernels.NarrowLinear not in {type(m) for m in load_causal_lm(str(tmp_path), "cpu").modules()}
    model.extra = Custom(4, 4)
    kernels.narrow_matmuls(model)
    kinds = {type(m) for m in model.modules() if isinstance(m, nn.Linear)}
    assert kernels.NarrowLinear in kinds and Custom in kinds and nn.Linear not in kinds
