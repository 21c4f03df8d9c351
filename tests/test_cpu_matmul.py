"""The few-row CPU product (specgen/cpu.py) computes what nn.Linear computes, and leaves training alone."""
import pytest
import torch
from torch import nn

from specgen import CachedLM, cpu
from tiny import tiny_model


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (2, 3), (3, 7, 2), (1, 200)])
def test_narrow_linear_matches_linear(bias, shape):
    torch.manual_seed(0)
    ref = nn.Linear(24, 40, bias=bias)
    fast = nn.Linear(24, 40, bias=bias)
    fast.load_state_dict(ref.state_dict())
    cpu.narrow_matmuls(fast)
    assert type(fast) is cpu.NarrowLinear
    x = torch.randn(*shape, 24)
    with torch.inference_mode():
        y = fast(x)
        assert y.shape == (*shape, 40) and y.is_contiguous()
        torch.testing.assert_close(y, ref(x), rtol=1e-5, atol=1e-5)
    assert fast.state_dict().keys() == ref.state_dict().keys()


def test_few_rows_take_the_narrow_path(monkeypatch):
    """2-64 rows in inference go through W @ x.T; one row, many rows and gradients go through F.linear."""
    calls = []
    real = torch.nn.functional.linear
    monkeypatch.setattr(cpu.F, "linear", lambda *a: calls.append(a[0].shape) or real(*a))
    lin = cpu.narrow_matmuls(nn.Linear(8, 4))
    with torch.inference_mode():
        lin(torch.randn(1, 5, 8))
        assert calls == []
        lin(torch.randn(1, 1, 8))
        lin(torch.randn(1, 65, 8))
    assert len(calls) == 2
    out = lin(torch.randn(3, 8))  # gradients enabled: the plain product, so training is unchanged
    out.sum().backward()
    assert len(calls) == 3 and lin.weight.grad is not None


def test_cached_lm_switches_only_plain_cpu_linears():
    class Custom(nn.Linear):
        pass

    model = tiny_model("llama", vocab=50)
    model.extra = Custom(4, 4)
    CachedLM(model)
    kinds = {type(m) for m in model.modules() if isinstance(m, nn.Linear)}
    assert cpu.NarrowLinear in kinds and Custom in kinds and nn.Linear not in kinds
